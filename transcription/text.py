"""Text helpers shared by transcription, filters and scoring: scripts, punctuation, Chinese conversion."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# CJK Unified Ideographs, extension A, compatibility ideographs (the characters Chinese ASR emits).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF))


def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def is_punctuation(ch: str) -> bool:
    """Unicode punctuation or symbol (covers ASCII and full-width CJK marks)."""
    return unicodedata.category(ch)[0] in "PS"


def strip_punctuation(text: str, keep: str = "'") -> str:
    """Punctuation and symbols become spaces (``keep`` characters stay: English apostrophes)."""
    return "".join(" " if is_punctuation(c) and c not in keep else c for c in text)


@lru_cache(maxsize=1)
def _t2s():
    import opencc  # opencc-python-reimplemented: pure Python, ships its dictionaries

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional -> simplified Chinese characters (other text unchanged)."""
    return _t2s().convert(text) if text else text


_LATIN_WORD = re.compile(r"[A-Za-z0-9']+")


def lexical_units(text: str, language: str) -> list[str]:
    """The units that repetition checks and CER/WER count: words for en, characters for zh.

    For zh, each CJK character is a unit and runs of Latin letters/digits are one unit each;
    for other languages, lowercased words with punctuation removed.
    """
    if language == "zh":
        units: list[str] = []
        for piece in strip_punctuation(text, keep="").split():
            buf = ""
            for ch in piece:
                if is_cjk(ch):
                    if buf:
                        units.append(buf.lower())
                        buf = ""
                    units.append(ch)
                else:
                    buf += ch
            if buf:
                units.append(buf.lower())
        return units
    return strip_punctuation(text.lower()).split()
