"""Scoring transcripts against references: WER for English, CER for Chinese.

- English: both sides through Whisper's English normaliser (whisper-normalizer:
  lower case, punctuation removed, spelled-out numbers and number words made the same,
  British/American spellings unified), then word error rate.
- Chinese: both sides to simplified characters, punctuation and whitespace removed, then
  character error rate.

Totals are corpus-level: all errors over all reference units, not a mean of per-file rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from transcription.text import is_cjk, strip_punctuation, to_simplified


@lru_cache(maxsize=1)
def _english_normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_en(text: str) -> str:
    return " ".join(_english_normalizer()(text).split())


def normalize_zh(text: str) -> str:
    return "".join(strip_punctuation(to_simplified(text), keep="").split()).lower()


def reference_language(text: str) -> str:
    """'zh' when most of the reference's letters are CJK characters, else 'en'."""
    letters = [c for c in text if c.isalpha()]
    cjk = sum(1 for c in letters if is_cjk(c))
    return "zh" if letters and cjk * 2 >= len(letters) else "en"


@dataclass
class Score:
    metric: str  # "wer" | "cer"
    errors: int
    units: int  # reference words or characters
    hyp_norm: str
    ref_norm: str

    @property
    def rate(self) -> float:
        return self.errors / self.units if self.units else float(self.errors > 0)


def score(hyp: str, ref: str, language: str) -> Score:
    import jiwer

    if language == "zh":
        h, r = normalize_zh(hyp), normalize_zh(ref)
        if not r:
            return Score("cer", len(h), 0, h, r)
        out = jiwer.process_characters(r, h) if h else None
        errors = (out.substitutions + out.deletions + out.insertions) if out else len(r)
        return Score("cer", errors, len(r), h, r)
    h, r = normalize_en(hyp), normalize_en(ref)
    if not r:
        return Score("wer", len(h.split()), 0, h, r)
    out = jiwer.process_words(r, h) if h else None
    errors = (out.substitutions + out.deletions + out.insertions) if out else len(r.split())
    return Score("wer", errors, len(r.split()), h, r)


def total_rate(scores: list[Score], metric: str) -> float | None:
    """Corpus-level rate over the scores of one metric; None when there are none."""
    chosen = [s for s in scores if s.metric == metric]
    if not chosen:
        return None
    units = sum(s.units for s in chosen)
    errors = sum(s.errors for s in chosen)
    return errors / units if units else float(errors > 0)
