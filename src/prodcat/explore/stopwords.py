"""French and English stop words for word counts, word clouds and class centroids.

Short lists written for prodcat: articles, pronouns, prepositions, conjunctions, auxiliaries and
the filler words of marketplace listings in both languages. They are shipped with the package (no
download, no extra dependency) and matched on lower-case words with and without accents, because
sellers type ``très`` as well as ``tres``.
"""

from __future__ import annotations

import unicodedata

_FRENCH = """
a à afin ai aie aient ainsi ait alors as au aucun aucune auquel aussi autre autres aux auxquelles
auxquels avaient avais avait avant avec avez aviez avions avoir avons ayant c ça car ce ceci cela
celle celles celui cependant ces cet cette ceux chaque chez ci comme comment d dans de depuis des
dès desquelles desquels deux donc dont du duquel elle elles en encore entre es est et étaient étais
était étant été être eu eue eues eûmes eurent eus eut eux fait faites fois font furent fut il ils j
je jusqu jusque l la là laquelle le lequel les lesquelles lesquels leur leurs lui m ma mais me même
mêmes mes moi moins mon n ne ni nos notre nous on ont ou où par parce pas peu peut plus plutôt pour
pourquoi qu quand que quel quelle quelles quels qui quoi s sa sans se selon sera seront ses si sien
soi soient sois soit sommes son sont sous suis sur t ta te tes toi ton tous tout toute toutes très
tu un une unes uns v vers via voici voilà vos votre vous y
"""

_ENGLISH = """
a about above after again against all am an and any are aren as at be because been before being
below between both but by can cannot could couldn d did didn do does doesn doing don down during
each few for from further had hadn has hasn have haven having he her here hers herself him himself
his how i if in into is isn it its itself just ll m me more most my myself no nor not now of off on
once only or other our ours ourselves out over own re s same shan she should shouldn so some such t
than that the their theirs them themselves then there these they this those through to too under
until up ve very was wasn we were weren what when where which while who whom why will with won
would wouldn y you your yours yourself yourselves also may per via etc
"""

# Words every listing carries whatever its category (units, and the headings of sellers'
# description templates: "Caractéristiques", "Haute qualité", "Matériel: ..."): they would top
# every class's list and hide the words that tell classes apart.
_MARKETPLACE = """
cm mm kg g ml x pcs pc lot new neuf neuve nouveau nouvelle size taille couleur couleurs color
colour colors colours caractéristiques caractéristique dimensions dimension description produit
produits contenu comprend paquet forfait emballage qualité haute matériel matériau facile plaît
quality high features feature package includes included product products material easy
"""


def _strip_accents(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def _with_unaccented(words: str) -> frozenset[str]:
    base = set(words.split())
    return frozenset(base | {_strip_accents(w) for w in base})


#: French stop words (with and without accents).
FRENCH: frozenset[str] = _with_unaccented(_FRENCH)
#: English stop words.
ENGLISH: frozenset[str] = _with_unaccented(_ENGLISH)
#: Units and description-template words of both languages.
MARKETPLACE: frozenset[str] = _with_unaccented(_MARKETPLACE)
#: Everything removed before words are counted.
STOP_WORDS: frozenset[str] = FRENCH | ENGLISH | MARKETPLACE
