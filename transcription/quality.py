"""Measures of a transcript that reveal ASR hallucinations: pure functions, no thresholds.

Thresholds live in the config (``transcribe.retry_*`` decide a deterministic re-decode,
``filters.*`` decide a drop); these functions only measure.
"""

from __future__ import annotations

import zlib

from transcription.text import lexical_units, strip_punctuation


def compression_ratio(text: str) -> float:
    """len(utf-8 bytes) / len(zlib-compressed bytes), as Whisper computes it; 0 for empty text.

    Looping output ("thank you thank you thank you ...") compresses well: Whisper's own
    fallback triggers above 2.4.
    """
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


def max_ngram_repeats(units: list[str], max_n: int) -> tuple[int, int]:
    """The longest run of one n-gram repeated back to back, over n = 1..max_n.

    Returns (copies, n): e.g. "a b a b a b c" gives (3, 2). (1, 1) for text without any
    immediate repetition, (0, 0) for no units.
    """
    if not units:
        return 0, 0
    best = (1, 1)
    size = len(units)
    for n in range(1, min(max_n, size // 2) + 1):
        for start in range(0, size - n):
            copies = 1
            pos = start + n
            while pos + n <= size and units[pos : pos + n] == units[start : start + n]:
                copies += 1
                pos += n
            if copies > best[0]:
                best = (copies, n)
    return best


def repeated_ngram(text: str, language: str, max_n: int) -> tuple[int, int]:
    return max_ngram_repeats(lexical_units(text, language), max_n)


def normalise_phrase(text: str) -> str:
    return " ".join(strip_punctuation(text.lower(), keep="").split())


def silence_phrase(text: str, phrases: list[str]) -> str | None:
    """The configured phrase this whole text amounts to (Whisper's output on silence/music).

    Matching ignores case, punctuation and spacing, and holds only when the text is
    nothing but that phrase (possibly repeated): "Thanks for watching!" matches
    "thanks for watching"; "thanks for watching the game with me" does not.
    """
    norm = normalise_phrase(text).replace(" ", "")
    if not norm:
        return None
    for phrase in phrases:
        p = normalise_phrase(phrase).replace(" ", "")
        if p and norm == p * (len(norm) // len(p)) and len(norm) % len(p) == 0:
            return phrase
    return None
