"""A small demo catalogue, generated in code, laid out like the Rakuten France challenge download.

Every row, word list and picture here is our own: titles and descriptions are assembled from
per-category vocabularies (French and English) with templates, and photos are simple shapes
drawn with PIL. The result is deterministic for a given seed, byte for byte, and reads with
``prodcat.data.read_catalog(path, format="rakuten")``::

    out/
      X_train_update.csv        ,designation,description,productid,imageid
      Y_train_CVw08PX.csv       ,prdtypecode
      categories.csv            prdtypecode,name,parent
      images/image_train/image_{imageid}_product_{productid}.jpg   (about 88% of listings)

The text is learnable but noisy: neighbouring categories (books and magazines, video games and
consoles, pool toys and toys...) share words and brands, some titles borrow a neighbour's words,
about a third of the descriptions are empty and some carry HTML noise (tags, ``&eacute;``,
double-escaped ``&amp;eacute;``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

__all__ = ["DEMO_CATEGORIES", "DEMO_EXAMPLE", "DEMO_VERSION", "demo_catalog_path",
           "write_demo_catalog"]

#: Bumped whenever the generator's output changes, so cached copies are rebuilt.
DEMO_VERSION = 1
_MARKER = ".prodcat-demo-complete"

#: A typical French listing, for printing one prediction at the end of the demo (a book, code 10).
DEMO_EXAMPLE = {
    "title": "Roman policier - édition de poche, très bon état",
    "description": "Un polar haletant de 320 pages qui se lit d'une traite. "
                   "Couverture souple légèrement usée, aucune annotation.",
}

# Generation knobs (tuned so that a TF-IDF + logistic regression reaches ~0.9 accuracy).
_P_EMPTY_DESCRIPTION = 0.35
_P_HTML = 0.15 / (1 - _P_EMPTY_DESCRIPTION)  # share of the non-empty descriptions
_P_IMAGE = 0.88
_P_FRENCH = 0.65
_P_STRIP_ACCENTS = 0.15  # French sellers who type without accents
_P_UPPER_TITLE = 0.04
_P_SLOT_FROM_NEIGHBOUR = 0.10  # a title word taken from a neighbouring category
_P_CROSSOVER = 0.04  # the title's main noun itself comes from a neighbour (a true ambiguity)
_P_IMAGE_FROM_NEIGHBOUR = 0.04

_JPEG_QUALITY = 85


@dataclass(frozen=True)
class _Category:
    code: int
    name: str
    parent: str
    share: float
    neighbours: tuple[int, ...]
    # Per language ("fr", "en"): nouns, adjectives, extras; brands and number formats are shared.
    nouns: dict[str, tuple[str, ...]]
    adjectives: dict[str, tuple[str, ...]]
    extras: dict[str, tuple[str, ...]]
    brands: tuple[str, ...]
    numbers: tuple[str, ...]
    sentences: dict[str, tuple[str, ...]]


def _c(code, name, parent, share, neighbours, nouns, adjectives, extras, brands, numbers, sentences):
    return _Category(code, name, parent, share, tuple(neighbours), nouns, adjectives, extras,
                     tuple(brands), tuple(numbers), sentences)


_PLATFORMS = ("PS4", "PS5", "Switch", "Xbox One", "Xbox Series X", "Wii U", "3DS", "PS Vita")

_CATEGORIES: tuple[_Category, ...] = (
    _c(10, "Livres", "Culture", 0.15, (20,),
       {"fr": ("roman", "livre", "bande dessinée", "manga", "essai", "biographie", "polar",
               "recueil de poèmes", "guide pratique", "livre de cuisine", "album jeunesse",
               "dictionnaire", "roman policier", "livre d'histoire"),
        "en": ("novel", "book", "paperback", "hardcover", "cookbook", "biography", "thriller",
               "comic book", "poetry collection", "travel guide", "children's book", "crime novel")},
       {"fr": ("poche", "broché", "relié", "illustré", "dédicacé", "première édition", "inédit",
               "intégrale", "grand format"),
        "en": ("illustrated", "signed", "first edition", "annotated", "complete", "unabridged",
               "large print")},
       {"fr": ("auteur français", "traduit de l'anglais", "édition collector", "texte intégral",
               "prix Goncourt", "littérature"),
        "en": ("bestseller", "translated from French", "collector's edition", "award winner",
               "literature")},
       ("Gallimard", "Folio", "Hachette", "Flammarion", "Penguin", "HarperCollins",
        "Le Livre de Poche", "Pocket", "Actes Sud", "Glénat"),
       ("{n} pages", "tome {k}", "vol. {k}", "{year}"),
       {"fr": ("Un roman captivant qui se lit d'une traite.",
               "Livre en très bon état, couverture légèrement usée.",
               "Édition de poche de {n} pages.",
               "L'auteur nous plonge dans une intrigue haletante.",
               "Idéal pour les amateurs de littérature.",
               "Quelques pages cornées, aucune annotation.",
               "Un récit émouvant sur la mémoire et la famille.",
               "Couverture souple, dos non cassé, lecture agréable.",
               "Chaque chapitre révèle un nouveau secret."),
        "en": ("A gripping story you will not put down.",
               "Paperback in very good condition, slight wear on the cover.",
               "{n} pages, English edition.",
               "A must-read for literature lovers.",
               "The author weaves a haunting tale of love and loss.",
               "No writing or highlighting inside, spine intact.",
               "Each chapter reveals a new secret.")}),
    _c(20, "Magazines", "Culture", 0.06, (10,),
       {"fr": ("magazine", "revue", "numéro", "hors-série", "lot de magazines", "journal",
               "mensuel", "fanzine"),
        "en": ("magazine", "issue", "special issue", "back issue", "journal", "periodical",
               "magazine bundle")},
       {"fr": ("ancien", "collector", "rare", "complet", "hebdomadaire", "spécial"),
        "en": ("vintage", "rare", "collector's", "weekly", "monthly", "special")},
       {"fr": ("avec supplément", "édition spéciale", "couverture brillante", "presse"),
        "en": ("with supplement", "special edition", "glossy cover", "press")},
       ("Paris Match", "Géo", "Science & Vie", "Elle", "Télérama", "National Geographic",
        "Vogue", "Hachette", "Le Monde", "Marie Claire"),
       ("n° {k}", "issue {k}", "{month} {year}", "{year}"),
       {"fr": ("Numéro de {month} {year} en bon état.",
               "Magazine complet avec tous ses suppléments.",
               "Lot de {k} numéros de la même année.",
               "Couverture brillante, pages intactes.",
               "Dossier spécial et reportages photo.",
               "Revue mensuelle, idéale pour les collectionneurs."),
        "en": ("Issue from {month} {year} in good condition.",
               "Complete magazine with all inserts.",
               "Bundle of {k} issues from the same year.",
               "Glossy cover, pages intact.",
               "Special report and photo features.")}),
    _c(30, "Jeux vidéo", "Jeux vidéo & consoles", 0.13, (40, 90),
       {"fr": ("jeu", "jeu vidéo", "cartouche", "jeu de course", "jeu de rôle", "jeu de combat",
               "jeu de plateforme", "jeu de foot"),
        "en": ("game", "video game", "cartridge", "racing game", "RPG", "fighting game",
               "shooter", "platformer")},
       {"fr": ("PAL", "version française", "sous blister", "édition limitée", "complet",
               "en boîte", "multijoueur"),
        "en": ("complete in box", "sealed", "limited edition", "collector's edition", "PAL",
               "multiplayer")},
       {"fr": ("avec notice", "code de téléchargement", "aventure", "monde ouvert"),
        "en": ("with manual", "download code", "adventure", "open world")},
       ("Nintendo", "Sony", "Ubisoft", "Electronic Arts", "Sega", "Capcom", "Square Enix",
        "Bandai Namco", "Pokémon", "Mario", "Zelda", "FIFA"),
       ("{platform}", "{platform}", "{year}", "PEGI {pegi}"),
       {"fr": ("Jeu complet avec boîte et notice.",
               "Disque sans rayure, testé et fonctionnel.",
               "Compatible {platform}.",
               "Plongez dans une aventure épique en monde ouvert.",
               "Multijoueur jusqu'à {k} joueurs en ligne.",
               "Affrontez vos amis dans des courses endiablées.",
               "Sauvegardes effacées, prêt à jouer."),
        "en": ("Complete game with case and manual.",
               "Disc has no scratches, tested and working.",
               "Compatible with {platform}.",
               "Explore a huge open world full of quests.",
               "Online multiplayer for up to {k} players.",
               "Race your friends on dozens of tracks.")}),
    _c(40, "Consoles", "Jeux vidéo & consoles", 0.08, (30,),
       {"fr": ("console", "manette", "pack console", "console portable", "station d'accueil",
               "chargeur de manette", "casque gaming"),
        "en": ("console", "controller", "gamepad", "handheld console", "console bundle",
               "charging dock", "gaming headset")},
       {"fr": ("reconditionnée", "noire", "blanche", "sans fil", "édition spéciale", "neuve"),
        "en": ("refurbished", "wireless", "black", "white", "slim", "special edition")},
       {"fr": ("avec câble HDMI", "avec deux manettes", "garantie", "boîte d'origine"),
        "en": ("with HDMI cable", "with two controllers", "warranty", "original box")},
       ("Nintendo", "Sony", "Microsoft", "Sega", "Atari", "Nacon", "Turtle Beach", "PlayStation"),
       ("{platform}", "{platform}", "{storage} Go", "{storage} GB"),
       {"fr": ("Console en parfait état de fonctionnement.",
               "Livrée avec une manette et le câble HDMI.",
               "Batterie d'une autonomie de {k} heures.",
               "Mise à jour effectuée, prête à jouer.",
               "Compatible {platform}.",
               "Stockage de {storage} Go, lecteur de disque fonctionnel."),
        "en": ("Console in perfect working order.",
               "Comes with one controller and the HDMI cable.",
               "Battery lasts about {k} hours.",
               "Updated and ready to play.",
               "Compatible with {platform}.",
               "{storage} GB storage, disc drive works.")}),
    _c(50, "Piscine & jeux d'eau", "Jardin & plein air", 0.10, (90, 60),
       {"fr": ("bouée", "piscine gonflable", "matelas gonflable", "ballon de plage",
               "frite de piscine", "brassards", "pompe de filtration", "bâche de piscine",
               "bouée licorne"),
        "en": ("pool float", "inflatable pool", "swim ring", "beach ball", "air mattress",
               "pool noodle", "armbands", "filter pump", "pool cover")},
       {"fr": ("gonflable", "géante", "pour enfants", "ronde", "XXL", "résistante"),
        "en": ("inflatable", "giant", "kids", "round", "XXL", "heavy-duty")},
       {"fr": ("été", "plage", "kit de réparation", "jardin"),
        "en": ("summer", "beach", "repair kit", "backyard")},
       ("Intex", "Bestway", "Zodiac", "Gré", "Swimline", "Jilong"),
       ("Ø {n} cm", "{n} x {m} cm", "{litres} L"),
       {"fr": ("Idéale pour l'été au bord de la piscine.",
               "Vinyle épais et résistant aux UV.",
               "Se gonfle en quelques minutes.",
               "Kit de réparation inclus.",
               "Pour enfants à partir de {k} ans, sous surveillance d'un adulte.",
               "Capacité de {litres} litres, filtration incluse."),
        "en": ("Perfect for summer days by the pool.",
               "Thick UV-resistant vinyl.",
               "Inflates in a few minutes.",
               "Repair patch included.",
               "For children aged {k} and up, adult supervision required.")}),
    _c(60, "Plantes & jardinage", "Jardin & plein air", 0.09, (50, 70),
       {"fr": ("plante", "cactus", "bonsaï", "pot de fleurs", "jardinière", "graines",
               "terreau", "arrosoir", "plante d'intérieur", "orchidée", "olivier"),
        "en": ("plant", "houseplant", "succulent", "bonsai tree", "flower pot", "planter",
               "seeds", "potting soil", "watering can")},
       {"fr": ("en pot", "d'intérieur", "d'extérieur", "en terre cuite", "bio", "vivace"),
        "en": ("potted", "indoor", "outdoor", "terracotta", "organic", "evergreen")},
       {"fr": ("jardin", "balcon", "avec soucoupe", "facile d'entretien"),
        "en": ("garden", "balcony", "with saucer", "low maintenance")},
       ("Truffaut", "Gamm Vert", "Elho", "Jardiland", "Gardena", "Botanic"),
       ("{n} cm", "pot Ø {n} cm", "{litres} L"),
       {"fr": ("Plante livrée en pot, hauteur environ {n} cm.",
               "Arrosage modéré, exposition lumineuse sans soleil direct.",
               "Pot en terre cuite avec soucoupe.",
               "Feuillage persistant, facile d'entretien.",
               "Rempotage conseillé au printemps."),
        "en": ("Delivered potted, about {n} cm tall.",
               "Water moderately, bright indirect light.",
               "Terracotta pot with saucer.",
               "Evergreen foliage, easy to care for.")}),
    _c(70, "Mobilier", "Maison", 0.12, (100, 80, 60),
       {"fr": ("chaise", "fauteuil", "tabouret", "table basse", "banc", "étagère",
               "chaise de bureau", "transat", "commode"),
        "en": ("chair", "armchair", "stool", "coffee table", "bench", "shelf", "office chair",
               "deck chair", "dresser")},
       {"fr": ("en bois", "scandinave", "en métal", "empilable", "pliante", "rembourrée",
               "en chêne massif"),
        "en": ("wooden", "scandinavian", "metal", "stackable", "folding", "padded",
               "solid oak")},
       {"fr": ("salon", "salle à manger", "à monter soi-même", "design"),
        "en": ("living room", "dining room", "flat-pack", "design")},
       ("Ikea", "Maisons du Monde", "Conforama", "Habitat", "Alinéa", "Vitra"),
       ("lot de {k}", "{n} x {m} cm", "H {n} cm"),
       {"fr": ("Assise confortable, structure en bois massif.",
               "Montage facile, notice et visserie fournies.",
               "Dimensions : {n} x {m} cm.",
               "Pieds en métal noir, style industriel.",
               "Supporte jusqu'à {kg} kg."),
        "en": ("Comfortable seat, solid wood frame.",
               "Easy to assemble, instructions and screws included.",
               "Dimensions: {n} x {m} cm.",
               "Black metal legs, industrial style.",
               "Holds up to {kg} kg.")}),
    _c(80, "Arts de la table", "Maison", 0.09, (70, 100),
       {"fr": ("mug", "tasse", "bol", "théière", "assiette", "verre", "service à café",
               "carafe", "tasse à café"),
        "en": ("mug", "cup", "bowl", "teapot", "plate", "glass", "coffee set", "jug",
               "coffee mug")},
       {"fr": ("en céramique", "en porcelaine", "personnalisé", "fait main", "en grès"),
        "en": ("ceramic", "porcelain", "personalised", "handmade", "stoneware")},
       {"fr": ("passe au lave-vaisselle", "micro-ondes", "petit déjeuner", "cuisine"),
        "en": ("dishwasher safe", "microwave safe", "breakfast", "kitchen")},
       ("Le Creuset", "Villeroy & Boch", "Arcopal", "Duralex", "Ikea", "Emma Bridgewater"),
       ("{cl} cl", "{ml} ml", "lot de {k}"),
       {"fr": ("Mug en céramique d'une contenance de {cl} cl.",
               "Passe au lave-vaisselle et au micro-ondes.",
               "Parfait pour le thé ou le café du matin.",
               "Émail brillant, fabriqué à la main.",
               "Lot de {k} tasses assorties."),
        "en": ("Ceramic mug holding {ml} ml.",
               "Dishwasher and microwave safe.",
               "Perfect for your morning tea or coffee.",
               "Glossy glaze, handmade.",
               "Set of {k} matching cups.")}),
    _c(90, "Jouets & peluches", "Enfants", 0.11, (50, 30),
       {"fr": ("peluche", "ours en peluche", "doudou", "poupée", "figurine", "jouet d'éveil",
               "jeu de construction", "puzzle", "jouet en bois"),
        "en": ("plush", "teddy bear", "soft toy", "doll", "action figure", "building set",
               "puzzle", "baby toy", "wooden toy")},
       {"fr": ("douce", "lavable", "pour bébé", "géante", "musicale", "éducatif"),
        "en": ("soft", "washable", "baby", "giant", "musical", "educational")},
       {"fr": ("cadeau de naissance", "anniversaire", "enfant", "Noël"),
        "en": ("baby shower gift", "birthday", "kids", "Christmas")},
       ("Lego", "Playmobil", "Vtech", "Fisher-Price", "Jellycat", "Mattel", "Hasbro",
        "Pokémon", "Disney"),
       ("{n} cm", "dès {k} ans", "{pieces} pièces", "ages {k}+"),
       {"fr": ("Peluche toute douce de {n} cm.",
               "Lavable en machine à 30 degrés.",
               "Convient aux enfants dès {k} ans.",
               "Boîte de {pieces} pièces, notice incluse.",
               "Le compagnon idéal pour les câlins du soir."),
        "en": ("Super soft {n} cm plush.",
               "Machine washable at 30 degrees.",
               "Suitable for children aged {k} and up.",
               "Box of {pieces} pieces, instructions included.",
               "The perfect bedtime companion.")}),
    _c(100, "Luminaires", "Maison", 0.07, (70, 80),
       {"fr": ("lampe", "lampe de chevet", "lampadaire", "suspension", "applique",
               "ampoule LED", "guirlande lumineuse", "abat-jour"),
        "en": ("lamp", "bedside lamp", "floor lamp", "pendant light", "wall light", "LED bulb",
               "fairy lights", "lampshade")},
       {"fr": ("design", "vintage", "en laiton", "à intensité variable", "industrielle"),
        "en": ("design", "vintage", "brass", "dimmable", "industrial")},
       {"fr": ("salon", "chambre", "lumière chaude", "culot E27"),
        "en": ("living room", "bedroom", "warm white", "E27 socket")},
       ("Philips", "Ikea", "Habitat", "Maisons du Monde", "Osram", "Lexon"),
       ("{w} W", "E27", "{n} cm"),
       {"fr": ("Lumière chaude et tamisée pour le salon.",
               "Ampoule LED de {w} W incluse.",
               "Câble textile de {k} mètres avec interrupteur.",
               "Abat-jour en lin, pied en métal.",
               "Hauteur {n} cm, culot E27."),
        "en": ("Warm, soft light for the living room.",
               "{w} W LED bulb included.",
               "{k} m fabric cable with switch.",
               "Linen shade, metal base.",
               "{n} cm tall, E27 socket.")}),
)

#: The demo's categories: code → (name, parent).
DEMO_CATEGORIES = {c.code: (c.name, c.parent) for c in _CATEGORIES}
_BY_CODE = {c.code: c for c in _CATEGORIES}

_GENERIC = {
    "fr": ("neuf", "occasion", "très bon état", "pas cher", "livraison gratuite", "promo",
           "idée cadeau", "qualité premium", "original", "comme neuf", "destockage"),
    "en": ("new", "used", "great condition", "free shipping", "sale", "gift idea",
           "premium quality", "original", "like new", "clearance"),
}
_GENERIC_SENTENCES = {
    "fr": ("Envoi rapide et soigné.", "Remise en main propre possible.",
           "N'hésitez pas à me contacter pour plus de photos.",
           "Article provenant d'un intérieur non fumeur.", "Garantie {k} mois.", "Prix ferme.",
           "Expédition sous {k} jours ouvrés.", "Voir les photos pour l'état."),
    "en": ("Fast and careful shipping.", "Please ask if you need more photos.",
           "Comes from a smoke-free home.", "{k}-month warranty.", "Price is firm.",
           "Ships within {k} business days.", "See photos for condition."),
}
_MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}
_ENTITIES = {"é": "&eacute;", "è": "&egrave;", "ê": "&ecirc;", "à": "&agrave;", "ç": "&ccedil;",
             "ô": "&ocirc;", "û": "&ucirc;", "î": "&icirc;", "É": "&Eacute;", "°": "&deg;"}
_STRIP = str.maketrans("éèêëàâäçôöûùüîïÉÈÊÀÇØ", "eeeeaaacoouuuiiEEEACO")


# ---------------------------------------------------------------------------------------------
# Text


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _fill(template: str, rng: np.random.Generator, lang: str) -> str:
    if "{" not in template:
        return template
    values = {
        "n": int(rng.integers(8, 400)), "m": int(rng.integers(20, 200)),
        "k": int(rng.integers(2, 9)), "year": int(rng.integers(1985, 2024)),
        "month": _pick(rng, _MONTHS[lang]), "platform": _pick(rng, _PLATFORMS),
        "pegi": _pick(rng, (3, 7, 12, 16, 18)), "storage": _pick(rng, (32, 64, 500, 825, 1000)),
        "litres": _pick(rng, (5, 10, 20, 300, 1200, 3800)), "cl": _pick(rng, (25, 30, 35, 45)),
        "ml": _pick(rng, (250, 300, 350, 450)), "kg": _pick(rng, (80, 100, 120, 150)),
        "pieces": _pick(rng, (50, 100, 250, 500, 1000)), "w": _pick(rng, (4, 6, 9, 12, 40, 60)),
    }
    return template.format(**values)


def _slot_source(rng: np.random.Generator, cat: _Category) -> _Category:
    if cat.neighbours and rng.random() < _P_SLOT_FROM_NEIGHBOUR:
        return _BY_CODE[_pick(rng, cat.neighbours)]
    return cat


def _title(rng: np.random.Generator, cat: _Category, lang: str) -> str:
    noun_cat = _BY_CODE[_pick(rng, cat.neighbours)] if rng.random() < _P_CROSSOVER else cat
    noun = _pick(rng, noun_cat.nouns[lang])
    adj = _pick(rng, _slot_source(rng, cat).adjectives[lang]) if rng.random() < 0.7 else ""
    brand = _pick(rng, _slot_source(rng, cat).brands) if rng.random() < 0.55 else ""
    extra = _pick(rng, _slot_source(rng, cat).extras[lang]) if rng.random() < 0.45 else ""
    number = (_fill(_pick(rng, _slot_source(rng, cat).numbers), rng, lang)
              if rng.random() < 0.45 else "")
    generic = _pick(rng, _GENERIC[lang]) if rng.random() < 0.3 else ""
    form = int(rng.integers(5))
    if form == 0:
        parts = [brand, noun, adj, extra, number, generic]
    elif form == 1:
        parts = [noun, adj, "-", brand, number, extra, generic]
    elif form == 2:
        parts = [generic.capitalize() if generic else "", noun, adj, brand, "-", extra, number]
    elif form == 3 and lang == "en":
        parts = [brand, adj, noun, "(" + number + ")" if number else "", extra, generic]
    else:
        parts = [noun, brand, adj, number, "|" if extra else "", extra, generic]
    text = " ".join(p for p in parts if p)
    text = text.strip(" -|").replace("- -", "-").replace("| -", "-")
    text = " ".join(text.split())
    text = text[:1].upper() + text[1:]
    if rng.random() < _P_UPPER_TITLE:
        text = text.upper()
    return text


def _description(rng: np.random.Generator, cat: _Category, lang: str, title: str) -> str:
    if rng.random() < _P_EMPTY_DESCRIPTION:
        return ""
    if rng.random() < 0.08:  # a description in the other language
        lang = "en" if lang == "fr" else "fr"
    sentences = []
    if rng.random() < 0.15:
        sentences.append(title + ".")
    for _ in range(int(rng.integers(1, 4))):
        sentences.append(_fill(_pick(rng, _slot_source(rng, cat).sentences[lang]), rng, lang))
    if rng.random() < 0.5:
        sentences.insert(int(rng.integers(len(sentences) + 1)),
                         _fill(_pick(rng, _GENERIC_SENTENCES[lang]), rng, lang))
    if rng.random() < _P_HTML:
        return _html_noise(rng, sentences)
    return " ".join(dict.fromkeys(sentences))


def _html_noise(rng: np.random.Generator, sentences: list[str]) -> str:
    sentences = list(dict.fromkeys(sentences))
    if rng.random() < 0.5:
        i = int(rng.integers(len(sentences)))
        sentences[i] = f"<b>{sentences[i]}</b>"
    sep = _pick(rng, ("<br>", "<br />", "<br/><br/>", " "))
    text = sep.join(sentences)
    if rng.random() < 0.4:
        text = f"<p>{text}</p>"
    style = rng.random()
    if style < 0.8:  # entities, sometimes double-escaped as seller feeds do
        double = style < 0.3
        text = text.replace("&", "&amp;")
        for char, entity in _ENTITIES.items():
            text = text.replace(char, entity.replace("&", "&amp;") if double else entity)
    return text


def _strip_accents(text: str) -> str:
    return text.translate(_STRIP)


# ---------------------------------------------------------------------------------------------
# Images


def _jit(rng: np.random.Generator, rgb, spread: float = 18.0) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.normal(0, spread), 0, 255)) for c in rgb)


def _darker(rgb, factor: float = 0.6) -> tuple[int, int, int]:
    return tuple(int(c * factor) for c in rgb)


def _lighter(rgb, amount: float = 0.5) -> tuple[int, int, int]:
    return tuple(int(c + (255 - c) * amount) for c in rgb)


Box = tuple[float, float, float, float]


def _sub(box: Box, fx0: float, fy0: float, fx1: float, fy1: float) -> list[float]:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return [x0 + fx0 * w, y0 + fy0 * h, x0 + fx1 * w, y0 + fy1 * h]


def _text_lines(d: ImageDraw.ImageDraw, rng, box: Box, colour, n: int, top: float, bottom: float):
    step = (bottom - top) / max(n, 1)
    for i in range(n):
        y = top + i * step
        right = rng.uniform(0.55, 0.9)
        d.rectangle(_sub(box, 0.15, y, right, y + step * 0.35), fill=colour)


def _draw_book(d, rng, box, bg):
    palette = [(150, 30, 35), (25, 40, 100), (30, 90, 50), (200, 160, 40), (30, 30, 30),
               (235, 225, 200), (20, 120, 130)]
    if rng.random() < 0.3:  # a stack of books seen from the side
        n = int(rng.integers(3, 6))
        for i in range(n):
            colour = _jit(rng, _pick(rng, palette))
            dx = rng.uniform(-0.06, 0.06)
            top = 0.1 + i * 0.8 / n
            d.rectangle(_sub(box, 0.1 + dx, top, 0.9 + dx, top + 0.8 / n - 0.02), fill=colour,
                        outline=_darker(colour))
            d.rectangle(_sub(box, 0.3 + dx, top + 0.3 / n, 0.7 + dx, top + 0.45 / n),
                        fill=_lighter(colour, 0.6))
        return
    colour = _jit(rng, _pick(rng, palette))
    cover = _sub(box, 0.15, 0.0, 0.85, 1.0)
    d.rectangle(cover, fill=colour, outline=_darker(colour, 0.5))
    d.rectangle(_sub(cover, 0.0, 0.0, 0.08, 1.0), fill=_darker(colour))
    d.rectangle(_sub(cover, 0.12, 0.1, 0.9, 0.3), fill=_lighter(colour, 0.7))
    _text_lines(d, rng, cover, _lighter(colour, 0.8), int(rng.integers(3, 6)), 0.4, 0.8)
    d.rectangle(_sub(cover, 0.25, 0.88, 0.75, 0.92), fill=_lighter(colour, 0.5))


def _draw_magazine(d, rng, box, bg):
    palette = [(240, 60, 130), (250, 220, 40), (40, 200, 230), (230, 40, 40), (250, 250, 250),
               (250, 140, 30)]
    pages = 2 if rng.random() < 0.25 else 1
    for p in range(pages):
        off = 0.08 * (pages - 1 - p)
        colour = _jit(rng, _pick(rng, palette), 25)
        cover = _sub(box, 0.12 + off, 0.02 + off * 0.5, 0.82 + off, 0.98 - off * 0.5)
        d.rectangle(cover, fill=colour, outline=(60, 60, 60))
        mast = _jit(rng, _pick(rng, [(220, 0, 0), (20, 20, 20), (255, 255, 255)]), 10)
        d.rectangle(_sub(cover, 0.0, 0.0, 1.0, 0.18), fill=mast)
        d.rectangle(_sub(cover, 0.1, 0.04, 0.8, 0.13), fill=colour)
        if rng.random() < 0.6:  # a face
            d.ellipse(_sub(cover, 0.25, 0.28, 0.75, 0.8), fill=_jit(rng, (225, 180, 150)))
            d.ellipse(_sub(cover, 0.2, 0.22, 0.8, 0.5), fill=_jit(rng, (80, 50, 30)))
            d.ellipse(_sub(cover, 0.3, 0.45, 0.7, 0.85), fill=_jit(rng, (225, 180, 150)))
        else:
            d.rectangle(_sub(cover, 0.1, 0.25, 0.9, 0.75), fill=_jit(rng, _pick(rng, palette), 40))
        for i in range(int(rng.integers(2, 5))):
            y = 0.8 + i * 0.045
            d.rectangle(_sub(cover, 0.08, y, rng.uniform(0.4, 0.9), y + 0.025),
                        fill=_jit(rng, (30, 30, 30)))


def _draw_game(d, rng, box, bg):
    band = _pick(rng, [(0, 60, 160), (220, 0, 20), (16, 124, 16), (240, 240, 240)])
    if rng.random() < 0.25:  # a cartridge
        cart = _sub(box, 0.2, 0.2, 0.8, 0.85)
        d.rounded_rectangle(cart, radius=4, fill=_jit(rng, (120, 120, 125)), outline=(60, 60, 60))
        d.rectangle(_sub(cart, 0.12, 0.12, 0.88, 0.7), fill=_jit(rng, band, 30))
        d.ellipse(_sub(cart, 0.3, 0.25, 0.7, 0.6), fill=_jit(rng, (250, 200, 50), 40))
        return
    case = _sub(box, 0.15, 0.0, 0.85, 1.0)
    d.rectangle(case, fill=_jit(rng, (40, 40, 60), 40), outline=(20, 20, 20))
    d.rectangle(_sub(case, 0.0, 0.0, 1.0, 0.12), fill=_jit(rng, band, 8))
    for _ in range(int(rng.integers(3, 7))):  # cover art
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = rng.uniform(0.05, 0.7), rng.uniform(0.15, 0.75)
        s = rng.uniform(0.15, 0.4)
        shape = _sub(case, x, y, min(x + s, 0.95), min(y + s, 0.95))
        if rng.random() < 0.5:
            d.ellipse(shape, fill=colour)
        else:
            x0, y0, x1, y1 = shape
            d.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=colour)
    d.rectangle(_sub(case, 0.1, 0.85, 0.6, 0.92), fill=(240, 240, 240))


def _draw_console(d, rng, box, bg):
    body = _jit(rng, (240, 240, 240) if rng.random() < 0.25 else (35, 35, 40), 12)
    kind = rng.random()
    if kind < 0.45:  # a controller
        pad = _sub(box, 0.05, 0.3, 0.95, 0.75)
        d.rounded_rectangle(pad, radius=int((pad[3] - pad[1]) * 0.4), fill=body,
                            outline=_darker(body, 0.5))
        d.ellipse(_sub(box, 0.0, 0.45, 0.35, 0.95), fill=body)
        d.ellipse(_sub(box, 0.65, 0.45, 1.0, 0.95), fill=body)
        cross = (110, 110, 110) if body[0] < 128 else (60, 60, 60)
        d.rectangle(_sub(box, 0.17, 0.46, 0.27, 0.5), fill=cross)
        d.rectangle(_sub(box, 0.2, 0.42, 0.24, 0.55), fill=cross)
        for (fx, fy), colour in zip(((0.72, 0.4), (0.8, 0.46), (0.72, 0.52), (0.64, 0.46)),
                                    ((40, 200, 120), (220, 50, 50), (60, 110, 230), (230, 200, 40)),
                                    strict=True):
            d.ellipse(_sub(box, fx, fy, fx + 0.06, fy + 0.06), fill=colour)
    elif kind < 0.85:  # a console box
        unit = _sub(box, 0.05, 0.35, 0.95, 0.7)
        d.rectangle(unit, fill=body, outline=_darker(body, 0.5))
        d.line(_sub(unit, 0.08, 0.5, 0.7, 0.5), fill=_darker(body, 0.4) if body[0] > 128 else
               (90, 90, 95), width=2)
        d.ellipse(_sub(unit, 0.85, 0.35, 0.9, 0.6), fill=_jit(rng, (60, 140, 255), 20))
    else:  # a handheld
        unit = _sub(box, 0.05, 0.25, 0.95, 0.75)
        d.rounded_rectangle(unit, radius=6, fill=body)
        d.rectangle(_sub(unit, 0.28, 0.12, 0.72, 0.88), fill=_jit(rng, (70, 90, 120), 20))
        d.ellipse(_sub(unit, 0.06, 0.4, 0.18, 0.6), fill=(90, 90, 90))
        d.ellipse(_sub(unit, 0.82, 0.4, 0.94, 0.6), fill=_jit(rng, (220, 50, 50)))


def _draw_pool(d, rng, box, bg):
    kind = rng.random()
    bright = [(230, 40, 40), (250, 250, 250), (250, 210, 30), (40, 170, 230), (250, 120, 180),
              (60, 200, 90)]
    if kind < 0.4:  # a swim ring
        ring = _sub(box, 0.05, 0.05, 0.95, 0.95)
        a, b = _jit(rng, _pick(rng, bright)), _jit(rng, _pick(rng, bright))
        start = rng.uniform(0, 45)
        for i in range(8):
            d.pieslice(ring, start + i * 45, start + (i + 1) * 45, fill=a if i % 2 else b)
        d.ellipse(_sub(box, 0.33, 0.33, 0.67, 0.67), fill=bg)
    elif kind < 0.7:  # a beach ball
        ball = _sub(box, 0.1, 0.1, 0.9, 0.9)
        start = rng.uniform(0, 60)
        for i in range(6):
            d.pieslice(ball, start + i * 60, start + (i + 1) * 60, fill=_jit(rng, bright[i], 15))
        d.ellipse(_sub(box, 0.44, 0.44, 0.56, 0.56), fill=(250, 250, 250))
    else:  # an inflatable pool
        rim = _jit(rng, (40, 120, 220), 20)
        d.ellipse(_sub(box, 0.0, 0.25, 1.0, 0.85), fill=rim, outline=_darker(rim))
        d.ellipse(_sub(box, 0.1, 0.33, 0.9, 0.77), fill=_jit(rng, (140, 210, 245), 12))


def _draw_plant(d, rng, box, bg):
    pot = _jit(rng, _pick(rng, [(190, 100, 60), (190, 100, 60), (240, 240, 235), (90, 90, 95)]))
    x0, y0, x1, y1 = _sub(box, 0.25, 0.6, 0.75, 1.0)
    inset = (x1 - x0) * 0.12
    d.polygon([(x0, y0), (x1, y0), (x1 - inset, y1), (x0 + inset, y1)], fill=pot)
    d.rectangle([x0 - 1, y0, x1 + 1, y0 + (y1 - y0) * 0.15], fill=_darker(pot, 0.85))
    green = (50, 140, 60)
    if rng.random() < 0.2:  # a cactus
        cactus = _jit(rng, (60, 130, 70), 15)
        d.rounded_rectangle(_sub(box, 0.42, 0.1, 0.58, 0.62), radius=6, fill=cactus)
        d.rounded_rectangle(_sub(box, 0.25, 0.28, 0.35, 0.5), radius=4, fill=cactus)
        d.rounded_rectangle(_sub(box, 0.65, 0.2, 0.75, 0.45), radius=4, fill=cactus)
        return
    for _ in range(int(rng.integers(5, 10))):
        cx, cy = rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.55)
        w, h = rng.uniform(0.1, 0.2), rng.uniform(0.06, 0.12)
        d.ellipse(_sub(box, cx - w, cy - h, cx + w, cy + h), fill=_jit(rng, green, 25))
    d.line(_sub(box, 0.5, 0.3, 0.5, 0.6), fill=(60, 100, 40), width=2)


def _draw_chair(d, rng, box, bg):
    wood = _jit(rng, _pick(rng, [(150, 100, 60), (150, 100, 60), (30, 30, 30), (235, 235, 230),
                                 (200, 160, 110)]))
    width = max(2, int((box[2] - box[0]) * 0.05))
    if rng.random() < 0.25:  # a table
        d.rectangle(_sub(box, 0.0, 0.35, 1.0, 0.45), fill=wood, outline=_darker(wood))
        for fx in (0.05, 0.88):
            d.rectangle(_sub(box, fx, 0.45, fx + 0.07, 0.95), fill=_darker(wood, 0.8))
        return
    seat = _jit(rng, _pick(rng, [wood, (190, 60, 50), (60, 90, 150), (120, 120, 120)]), 10)
    d.rectangle(_sub(box, 0.2, 0.0, 0.8, 0.45), fill=wood, outline=_darker(wood))
    d.rectangle(_sub(box, 0.26, 0.07, 0.74, 0.38), fill=_lighter(wood, 0.25))
    d.rectangle(_sub(box, 0.15, 0.5, 0.85, 0.6), fill=seat, outline=_darker(seat))
    for fx0, fx1 in ((0.18, 0.12), (0.82, 0.88)):
        d.line(_sub(box, fx0, 0.6, fx1, 1.0), fill=_darker(wood, 0.8), width=width)
    d.line(_sub(box, 0.3, 0.6, 0.32, 0.93), fill=_darker(wood, 0.7), width=max(1, width - 1))
    d.line(_sub(box, 0.7, 0.6, 0.68, 0.93), fill=_darker(wood, 0.7), width=max(1, width - 1))


def _draw_mug(d, rng, box, bg):
    colour = _jit(rng, _pick(rng, [(250, 250, 250), (200, 40, 40), (40, 80, 170), (30, 30, 30),
                                   (250, 200, 210), (170, 220, 200)]))
    if rng.random() < 0.2:  # a plate
        d.ellipse(_sub(box, 0.0, 0.2, 1.0, 0.8), fill=colour, outline=_darker(colour, 0.7))
        d.ellipse(_sub(box, 0.2, 0.32, 0.8, 0.68), fill=_darker(colour, 0.92))
        return
    width = max(3, int((box[2] - box[0]) * 0.07))
    d.ellipse(_sub(box, 0.58, 0.35, 0.92, 0.75), outline=_darker(colour, 0.9), width=width)
    body = _sub(box, 0.15, 0.25, 0.72, 0.92)
    d.rounded_rectangle(body, radius=5, fill=colour, outline=_darker(colour, 0.7))
    d.ellipse(_sub(body, 0.0, -0.06, 1.0, 0.08), fill=_darker(colour, 0.5))
    pattern = rng.random()
    if pattern < 0.2:
        accent = _jit(rng, _pick(rng, [(240, 200, 40), (250, 250, 250), (230, 60, 60)]))
        for fx, fy in ((0.2, 0.3), (0.55, 0.35), (0.35, 0.6), (0.7, 0.7), (0.15, 0.8)):
            d.ellipse(_sub(body, fx, fy, fx + 0.12, fy + 0.1), fill=accent)
    elif pattern < 0.35:
        d.rectangle(_sub(body, 0.0, 0.45, 1.0, 0.6), fill=_darker(colour, 0.6))
    if rng.random() < 0.25:  # steam
        for fx in (0.3, 0.45, 0.6):
            d.arc(_sub(box, fx - 0.05, 0.02, fx + 0.05, 0.2), 90, 270, fill=(170, 170, 170), width=2)


def _draw_toy(d, rng, box, bg):
    if rng.random() < 0.3:  # building bricks
        for _ in range(int(rng.integers(3, 6))):
            colour = _jit(rng, _pick(rng, [(220, 30, 30), (250, 200, 0), (0, 90, 190),
                                           (40, 160, 60), (250, 250, 250)]), 10)
            x, y = rng.uniform(0.05, 0.55), rng.uniform(0.2, 0.75)
            d.rectangle(_sub(box, x, y, x + 0.4, y + 0.18), fill=colour, outline=_darker(colour))
            for i in range(4):
                d.rectangle(_sub(box, x + 0.03 + i * 0.1, y - 0.04, x + 0.09 + i * 0.1, y),
                            fill=colour)
        return
    fur = _jit(rng, _pick(rng, [(150, 100, 60), (150, 100, 60), (220, 190, 150), (240, 170, 190),
                                (235, 235, 230), (140, 140, 140)]))
    d.ellipse(_sub(box, 0.22, 0.45, 0.78, 1.0), fill=fur)
    d.ellipse(_sub(box, 0.2, 0.0, 0.38, 0.18), fill=fur)
    d.ellipse(_sub(box, 0.62, 0.0, 0.8, 0.18), fill=fur)
    d.ellipse(_sub(box, 0.25, 0.05, 0.75, 0.55), fill=fur)
    d.ellipse(_sub(box, 0.4, 0.3, 0.6, 0.48), fill=_lighter(fur, 0.5))
    d.ellipse(_sub(box, 0.36, 0.2, 0.42, 0.26), fill=(20, 20, 20))
    d.ellipse(_sub(box, 0.58, 0.2, 0.64, 0.26), fill=(20, 20, 20))
    d.ellipse(_sub(box, 0.47, 0.33, 0.53, 0.38), fill=(30, 20, 20))
    d.ellipse(_sub(box, 0.1, 0.5, 0.3, 0.7), fill=fur)
    d.ellipse(_sub(box, 0.7, 0.5, 0.9, 0.7), fill=fur)


def _draw_lamp(d, rng, box, bg):
    shade = _jit(rng, _pick(rng, [(245, 235, 205), (250, 250, 250), (30, 30, 30),
                                  (210, 170, 60)]))
    metal = _jit(rng, _pick(rng, [(180, 150, 80), (40, 40, 40), (190, 190, 190)]))
    kind = rng.random()
    if kind < 0.2:  # a bulb
        d.ellipse(_sub(box, 0.2, 0.0, 0.8, 0.6), fill=_jit(rng, (255, 240, 170), 10),
                  outline=(200, 190, 140))
        d.rectangle(_sub(box, 0.36, 0.58, 0.64, 0.85), fill=_jit(rng, (170, 170, 170), 10))
        return
    d.ellipse(_sub(box, 0.1, 0.05, 0.9, 0.6), fill=_jit(rng, (255, 240, 180), 8))  # glow
    if kind < 0.5:  # a pendant
        d.line(_sub(box, 0.5, -0.5, 0.5, 0.3), fill=(40, 40, 40), width=2)
        d.pieslice(_sub(box, 0.15, 0.3, 0.85, 0.9), 180, 360, fill=shade, outline=_darker(shade))
        return
    x0, y0, x1, y1 = _sub(box, 0.2, 0.05, 0.8, 0.4)
    inset = (x1 - x0) * 0.2
    d.polygon([(x0 + inset, y0), (x1 - inset, y0), (x1, y1), (x0, y1)], fill=shade,
              outline=_darker(shade))
    d.line(_sub(box, 0.5, 0.4, 0.5, 0.92), fill=metal, width=max(2, int((box[2] - box[0]) * 0.04)))
    d.ellipse(_sub(box, 0.3, 0.88, 0.7, 0.98), fill=metal)


_DRAWERS: dict[int, Callable] = {
    10: _draw_book, 20: _draw_magazine, 30: _draw_game, 40: _draw_console, 50: _draw_pool,
    60: _draw_plant, 70: _draw_chair, 80: _draw_mug, 90: _draw_toy, 100: _draw_lamp,
}
#: Typical backdrops (a pool's water, a living-room floor, a dim room for a lamp...).
_BACKGROUNDS = {10: (205, 180, 140), 20: (235, 200, 215), 30: (120, 110, 160), 40: (70, 70, 80), 50: (150, 205, 240), 60: (225, 215, 190),
                70: (215, 195, 165), 80: (200, 205, 200), 90: (245, 215, 225), 100: (90, 80, 75)}


def _draw_image(rng: np.random.Generator, cat: _Category, size: int) -> Image.Image:
    code = cat.code
    if cat.neighbours and rng.random() < _P_IMAGE_FROM_NEIGHBOUR:
        code = _pick(rng, cat.neighbours)
    border = int(rng.integers(3, max(4, size // 7))) if rng.random() < 0.2 else 0
    inner = size - 2 * border
    roll = rng.random()
    if roll < 0.4:
        bg = _jit(rng, (252, 252, 252), 3)
    elif code in _BACKGROUNDS and roll < 0.85:
        bg = _jit(rng, _BACKGROUNDS[code], 15)
    else:
        bg = tuple(int(v) for v in rng.integers(180, 246, 3))
    img = Image.new("RGB", (inner, inner), bg)
    d = ImageDraw.Draw(img)
    frac = rng.uniform(0.6, 0.9)
    side = frac * inner
    cx = inner / 2 + rng.uniform(-0.4, 0.4) * (inner - side)
    cy = inner / 2 + rng.uniform(-0.4, 0.4) * (inner - side)
    _DRAWERS[code](d, rng, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), bg)
    if rng.random() < 0.4:
        pixels = np.asarray(img, dtype=np.int16)
        pixels = pixels + rng.normal(0, rng.uniform(3, 9), pixels.shape).astype(np.int16)
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if border:
        framed = Image.new("RGB", (size, size), (255, 255, 255))
        framed.paste(img, (border, border))
        img = framed
    return img


# ---------------------------------------------------------------------------------------------
# The catalogue


def _class_counts(n: int) -> list[int]:
    shares = np.array([c.share for c in _CATEGORIES], dtype=float)
    exact = shares / shares.sum() * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def write_demo_catalog(out_dir: str | Path, *, n_listings: int = 480, seed: int = 0,
                       image_size: int = 128) -> Path:
    """Write the demo catalogue into ``out_dir`` (created if needed) and return its path.

    The folder reads with ``read_catalog(out_dir, format="rakuten")``. The same arguments give
    the same bytes. Existing ``image_*.jpg`` files in ``out_dir/images/image_train`` are
    replaced.
    """
    n = int(n_listings)
    if n < len(_CATEGORIES):
        raise ValueError(f"n_listings must be at least {len(_CATEGORIES)}, got {n_listings}")
    if int(image_size) < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    out = Path(out_dir).expanduser()
    image_dir = out / "images" / "image_train"
    image_dir.mkdir(parents=True, exist_ok=True)
    for old in image_dir.glob("image_*.jpg"):
        old.unlink()

    rng = np.random.default_rng([seed, 0])
    labels = np.repeat([c.code for c in _CATEGORIES], _class_counts(n))
    labels = labels[rng.permutation(n)]
    product_ids = rng.choice(4_200_000_000, size=n, replace=False) + 100_000_000
    image_ids = rng.choice(500_000_000, size=n, replace=False) + 900_000_000
    has_image = rng.random(n) < _P_IMAGE

    titles, descriptions = [], []
    for code in labels:
        cat = _BY_CODE[int(code)]
        lang = "fr" if rng.random() < _P_FRENCH else "en"
        title = _title(rng, cat, lang)
        description = _description(rng, cat, lang, title)
        if lang == "fr" and rng.random() < _P_STRIP_ACCENTS:
            title, description = _strip_accents(title), _strip_accents(description)
        titles.append(title)
        descriptions.append(description)

    x = pd.DataFrame({"designation": titles, "description": descriptions,
                      "productid": product_ids.astype(np.int64),
                      "imageid": image_ids.astype(np.int64)})
    y = pd.DataFrame({"prdtypecode": labels.astype(np.int64)})
    categories = pd.DataFrame({"prdtypecode": [c.code for c in _CATEGORIES],
                               "name": [c.name for c in _CATEGORIES],
                               "parent": [c.parent for c in _CATEGORIES]})
    csv = {"encoding": "utf-8", "lineterminator": "\n"}
    x.to_csv(out / "X_train_update.csv", **csv)
    y.to_csv(out / "Y_train_CVw08PX.csv", **csv)
    categories.to_csv(out / "categories.csv", index=False, **csv)

    for i in np.flatnonzero(has_image):
        img = _draw_image(np.random.default_rng([seed, 1, int(i)]), _BY_CODE[int(labels[i])],
                          int(image_size))
        img.save(image_dir / f"image_{image_ids[i]}_product_{product_ids[i]}.jpg", "JPEG",
                 quality=_JPEG_QUALITY, optimize=False, progressive=False)
    return out


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PRODCAT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prodcat"


def demo_catalog_path(cache_dir: str | Path | None = None) -> Path:
    """The demo catalogue's folder, written once under the cache root and reused afterwards.

    The cache root is ``cache_dir`` if given, else ``$PRODCAT_CACHE_DIR``, else
    ``~/.cache/prodcat``; the catalogue lives in ``<root>/demo-v1``. A marker file written last
    tells a complete copy from an interrupted one.
    """
    root = _cache_root(cache_dir)
    target = root / f"demo-v{DEMO_VERSION}"
    if (target / _MARKER).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-tmp-", dir=root))
    try:
        write_demo_catalog(tmp)
        (tmp / _MARKER).write_text(f"prodcat demo catalogue v{DEMO_VERSION}\n", encoding="utf-8")
        if target.exists() and not (target / _MARKER).is_file():
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / _MARKER).is_file():  # not another process finishing first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
