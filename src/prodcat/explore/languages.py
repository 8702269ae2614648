"""Offline language identification of listings, with the detector imported lazily.

The detector is ``py3langid`` (a maintained fork of ``langid.py``: a naive Bayes model over byte
n-grams that ships inside the wheel, covers about 140 languages and needs no network). It is
deterministic, so no seed is needed. It is an optional dependency (``pip install
'prodcat[explore]'``): without it :func:`load_detector` returns None and the report says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: Label for a text with no letters to judge (only digits, codes or nothing).
UNDETERMINED = "und"
#: Codes that are not a language: left out of the count of languages and of the main one.
NOT_A_LANGUAGE = frozenset({UNDETERMINED, "zxx"})
#: Characters of the cleaned text judged per listing: enough for a stable answer, and the
#: detector's cost grows with the text.
MAX_CHARS = 400

INSTALL_HINT = "pip install 'prodcat[explore]'"

#: English names of the detector's language codes (a code missing here is shown as it is).
LANGUAGE_NAMES = {
    "ace": "Acehnese", "af": "Afrikaans", "am": "Amharic", "an": "Aragonese", "ar": "Arabic",
    "ary": "Moroccan Arabic", "arz": "Egyptian Arabic", "as": "Assamese", "az": "Azerbaijani",
    "ba": "Bashkir", "bcl": "Central Bikol", "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali",
    "br": "Breton", "bs": "Bosnian", "ca": "Catalan", "crh": "Crimean Tatar", "cs": "Czech",
    "cy": "Welsh", "da": "Danish", "de": "German", "dz": "Dzongkha", "el": "Greek", "en": "English",
    "eo": "Esperanto", "es": "Spanish", "et": "Estonian", "eu": "Basque", "ext": "Extremaduran",
    "fa": "Persian", "fi": "Finnish", "fo": "Faroese", "fr": "French", "fuv": "Nigerian Fulfulde",
    "fy": "Frisian", "ga": "Irish", "gcf": "Guadeloupean Creole", "gcr": "Guianese Creole",
    "gd": "Scottish Gaelic", "gl": "Galician", "gom": "Konkani", "grc": "Ancient Greek",
    "gu": "Gujarati", "gug": "Guarani", "guw": "Gun", "ha": "Hausa", "hbo": "Ancient Hebrew",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole", "hu": "Hungarian",
    "hy": "Armenian", "id": "Indonesian", "ig": "Igbo", "is": "Icelandic", "it": "Italian",
    "ja": "Japanese", "jv": "Javanese", "ka": "Georgian", "kab": "Kabyle", "kik": "Kikuyu",
    "kk": "Kazakh", "km": "Khmer", "kn": "Kannada", "ko": "Korean", "ku": "Kurdish", "ky": "Kyrgyz",
    "la": "Latin", "lb": "Luxembourgish", "lg": "Ganda", "lij": "Ligurian", "ln": "Lingala",
    "lo": "Lao", "lt": "Lithuanian", "ltg": "Latgalian", "lv": "Latvian", "mg": "Malagasy",
    "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi", "ms": "Malay",
    "mt": "Maltese", "my": "Burmese", "ne": "Nepali", "nl": "Dutch", "nn": "Norwegian Nynorsk",
    "no": "Norwegian", "nso": "Northern Sotho", "oc": "Occitan", "om": "Oromo", "or": "Odia",
    "pa": "Punjabi", "pcm": "Nigerian Pidgin", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese",
    "qu": "Quechua", "ro": "Romanian", "ru": "Russian", "rw": "Kinyarwanda", "sa": "Sanskrit",
    "sdh": "Southern Kurdish", "se": "Northern Sami", "si": "Sinhala", "sk": "Slovak",
    "sl": "Slovenian", "sn": "Shona", "so": "Somali", "sq": "Albanian", "sr": "Serbian",
    "st": "Southern Sotho", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu",
    "tg": "Tajik", "th": "Thai", "tk": "Turkmen", "tl": "Tagalog", "tr": "Turkish", "tt": "Tatar",
    "ug": "Uyghur", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "uzs": "Southern Uzbek",
    "vec": "Venetian", "vi": "Vietnamese", "vo": "Volapük", "wa": "Walloon", "wuu": "Wu Chinese",
    "xh": "Xhosa", "yo": "Yoruba", "yue": "Cantonese", "zh": "Chinese", "zu": "Zulu",
    "zxx": "no linguistic content", UNDETERMINED: "undetermined",
}

_LETTERS = re.compile(r"[^\W\d_]{2,}")


def language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


class LanguageDetector:
    """Wraps one loaded py3langid model; ``detect(text)`` gives an ISO 639-1 code."""

    def __init__(self, classify: Callable[[str], tuple], name: str) -> None:
        self._classify = classify
        self.name = name

    def detect(self, text: str) -> str:
        text = text[:MAX_CHARS]
        # Without two letters in a row there is nothing to judge; the model would still answer
        # (its prior), which would invent a language for "12345 ref-x".
        if not _LETTERS.search(text):
            return UNDETERMINED
        return str(self._classify(text)[0])


def load_detector() -> tuple[LanguageDetector | None, str | None]:
    """The offline detector, or ``(None, reason)`` when py3langid is not installed or fails."""
    try:
        import py3langid
    except ImportError:
        return None, f"language detection needs py3langid ({INSTALL_HINT})"
    try:
        py3langid.classify("bonjour")  # loads the bundled model once, here rather than mid-loop
    except Exception as exc:  # a broken install must cost the section, never the report
        return None, f"py3langid could not load its model: {type(exc).__name__}: {exc}"
    try:
        from importlib.metadata import version

        name = f"py3langid {version('py3langid')}"
    except Exception:
        name = "py3langid"
    return LanguageDetector(py3langid.classify, name), None
