"""Text cleaning before n-grams are counted."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from prodcat.text import clean_text, listing_texts
from prodcat.text.cleaning import frame_texts


@pytest.mark.parametrize(("raw", "expected"), [
    ("Caf&eacute; cr&egrave;me", "cafe creme"),
    ("T&amp;eacute;l&amp;eacute;commande", "telecommande"),  # double-escaped feed
    ("Tom &amp; Jerry", "tom & jerry"),
    ("5&nbsp;cm", "5 cm"),
    ("&#233;t&#xE9;", "ete"),
    ("<p>Grand <b>stylet</b><br/>bleu</p>", "grand stylet bleu"),
    ("&lt;p&gt;escaped&lt;/p&gt; tags", "escaped tags"),
    ('<div class="x" style="a:b">texte</div>', "texte"),
    ("ﬁltre ＰＳ４ x²", "filtre ps4 x2"),  # NFKC: ligature, full-width, superscript
    ("Télécommande ÉLÉGANTE", "telecommande elegante"),
    ("  beaucoup \t d'espaces\n\nici\u00a0! ", "beaucoup d'espaces ici !"),
    ("", ""),
])
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_clean_text_missing_values():
    assert clean_text(None) == ""
    assert clean_text(float("nan")) == ""
    assert clean_text(math.nan) == ""
    assert clean_text(pd.NA) == ""
    assert clean_text(12345) == "12345"


def test_clean_text_options():
    assert clean_text("Télécommande", strip_accents=False) == "télécommande"
    assert clean_text("Télécommande", lowercase=False) == "Telecommande"
    assert clean_text("Télé &amp;eacute;", lowercase=False, strip_accents=False) == "Télé é"


def test_accented_and_plain_spellings_meet():
    assert clean_text("télécommande") == clean_text("telecommande") == clean_text("TÉLÉCOMMANDE")


def test_listing_texts_joins_title_and_description():
    out = listing_texts(["Stylo <b>bleu</b>", "Cahier"], ["Encre &eacute;paisse", ""])
    assert out == ["stylo bleu encre epaisse", "cahier"]


def test_listing_texts_truncates_description_only():
    title = "Titre " * 20
    desc = "abcdefghij" * 30
    out = listing_texts([title], [desc], max_description_chars=25)[0]
    assert out == f"{clean_text(title)} {desc[:25]}"
    # truncation counts cleaned characters (tags and entities removed first)
    out = listing_texts(["t"], ["<p>" + "&eacute;" * 10 + "</p>"], max_description_chars=4)[0]
    assert out == "t eeee"
    full = listing_texts([title], [desc], max_description_chars=None)[0]
    assert full.endswith(desc) and len(full) == len(clean_text(title)) + 1 + len(desc)


def test_listing_texts_description_only_and_empty():
    assert listing_texts([""], ["Seulement une description"]) == ["seulement une description"]
    assert listing_texts([None], [None]) == [""]


def test_listing_texts_lengths_must_match():
    with pytest.raises(ValueError):
        listing_texts(["a", "b"], ["x"])


def test_frame_texts_accepts_frames_and_title_lists():
    frame = pd.DataFrame({"title": ["Pompe piscine"], "description": ["Filtre &amp; skimmer"]})
    assert frame_texts(frame) == ["pompe piscine filtre & skimmer"]
    assert frame_texts(pd.DataFrame({"title": ["Seul"]})) == ["seul"]
    assert frame_texts(["Un", "Deux"]) == ["un", "deux"]


def test_accent_stripping_removes_exactly_the_combining_characters():
    import sys
    import unicodedata

    from prodcat.text.cleaning import strip_combining

    def reference(s):
        return "".join(c for c in s if not unicodedata.combining(c))

    samples = ["télécommande à écran", "Tiếng Việt có dấu", "עִבְרִית", "हिन्दी", "a\u034fb\u0301c",
               "plain ascii", "", "日本語の本", "ё й", "x\u20d7 y\u1dc0"]
    every_mark = "".join(chr(cp) for cp in range(sys.maxunicode + 1) if unicodedata.combining(chr(cp)))
    samples.append("a" + every_mark + "\u034fz")
    for s in samples:
        nfkd = unicodedata.normalize("NFKD", s)
        assert strip_combining(nfkd) == reference(nfkd), s
    assert strip_combining("a\u034fb") == "a\u034fb"  # the grapheme joiner has combining class 0


def test_one_cleaning_gives_every_description_length():
    from prodcat.text.cleaning import frame_text_views, frame_texts

    frame = pd.DataFrame({"title": ["Pompe", None], "description": ["<b>Filtre</b> &amp; skimmer inox", "Épée"]})
    short, whole = frame_text_views(frame, (6, None))
    assert short == frame_texts(frame, 6) == ["pompe filtre", "epee"]
    assert whole == frame_texts(frame, None) == ["pompe filtre & skimmer inox", "epee"]
