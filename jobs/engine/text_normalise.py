"""Accent- and case-folding for matching customer text against playbook keywords.

`fold` keeps the length of the text (one character in, one character out), so a span found in
the folded text is the same span in the original: captured values keep the customer's own
spelling and casing ("Bogotá", "Pérez") while matching ignores both.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    # NFD splits "á" into "a" + a combining accent; keep the base letter. Lowercasing may yield
    # two characters ("İ" -> "i̇"); the first is the letter, and keeping one preserves length.
    base = unicodedata.normalize("NFD", char)[0]
    return base.lower()[0]


def fold(text: str) -> str:
    """Lowercase `text` and strip its accents ("Cuánto VALE" -> "cuanto vale"), same length."""
    if text.isascii():
        return text.lower()
    return "".join(_fold_char(c) for c in text)


def strip_accents(text: str) -> str:
    """Accents off, case kept: for regular expressions, where lowercasing would turn \\W
    into \\w."""
    if text.isascii():
        return text
    return "".join(unicodedata.normalize("NFD", c)[0] for c in text)


def fold_phrase(text: str) -> str:
    """`fold`, then trim and collapse runs of whitespace: the canonical form of a keyword."""
    return _SPACES.sub(" ", fold(text)).strip()
