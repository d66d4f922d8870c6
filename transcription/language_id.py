"""Spoken-language identification per segment: Whisper's language head, then a decision rule.

Two parts, kept apart so the rule is testable without a model:

- ``WhisperLanguageId.probabilities(audios)``: for each segment (16 kHz), the probability
  of every language Whisper knows, from the segment's own first 30 s, batched across
  segments (of any recordings).
- ``decide_languages(probs, durations, policy)``: the language of each segment of ONE
  recording.

The rule (``LidPolicy``), per segment, never per file (WhisperX decides a whole file's
language from its first 30 s and mislabels everything after a language switch):

1. Confident: the top language has probability >= ``min_probability``. The segment gets
   it; it is kept when that language is configured, otherwise dropped
   ("language xx not in configured languages").
2. The recording's majority language: the configured language with the most seconds
   among the confident, kept segments (ties: order of ``languages``). None when there is
   no confident segment.
3. Tie-breaker, for low-confidence segments only: when the majority language is also the
   segment's most probable configured language and its probability is at least
   ``tie_break_min_probability``, the segment gets the majority language (with that
   probability, and ``language_tie_break`` set in its extra). Otherwise it is dropped as
   uncertain. The tie-breaker never overrides a confident segment, and never picks a
   language the segment's own audio ranks below another configured language.

Every segment, dropped or not, records a language and its probability (for a dropped one:
its top language).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class LidPolicy:
    languages: tuple[str, ...] = ("en", "zh")
    min_probability: float = 0.5
    tie_break_min_probability: float | None = 0.2  # None: no tie-breaking


@dataclass
class LidDecision:
    language: str
    probability: float
    drop_reason: str | None = None
    tie_break: bool = False
    top: list[tuple[str, float]] = field(default_factory=list)


def _top(probs: dict[str, float], k: int = 3) -> list[tuple[str, float]]:
    return sorted(probs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def decide_languages(probs: list[dict[str, float]], durations: list[float], policy: LidPolicy,
                     eligible: list[bool] | None = None) -> list[LidDecision]:
    """Decisions for the segments of one recording, in order.

    ``eligible[i]`` False: the segment was already dropped by an earlier stage; it gets a
    decision but does not count toward the majority language.
    """
    eligible = eligible if eligible is not None else [True] * len(probs)
    allowed = list(policy.languages)
    decisions: list[LidDecision | None] = [None] * len(probs)
    seconds = {lang: 0.0 for lang in allowed}
    for i, p in enumerate(probs):
        top = _top(p)
        lang, prob = top[0] if top else ("", 0.0)
        if prob >= policy.min_probability:
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
        if (majority is not None and policy.tie_break_min_probability is not None and best_allowed == majority
                and p.get(majority, 0.0) >= policy.tie_break_min_probability):
            decisions[i] = LidDecision(majority, p.get(majority, 0.0), None, tie_break=True, top=top)
        else:
            decisions[i] = LidDecision(lang, prob, (
                f"language_id: uncertain, top probability < {policy.min_probability} (language_id.min_probability)"
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
        from faster_whisper.audio import pad_or_trim

        fe = self.model.feature_extractor
        out: list[dict[str, float]] = []
        for start in range(0, len(audios), self.batch_size):
            chunk = audios[start : start + self.batch_size]
            feats = np.stack([pad_or_trim(fe(np.ascontiguousarray(a[: fe.n_samples], dtype=np.float32))[..., :-1])
                              for a in chunk])
            encoded = self.model.encode(feats)
            for result in self.model.model.detect_language(encoded):
                out.append({token[2:-2]: float(prob) for token, prob in result})
        return out


def identify_languages(recordings: list, lid: LanguageIdentifier, policy: LidPolicy, pad_s: float = 0.0) -> None:
    """Language of every segment of every recording (``RecordingSegments``), in place.

    One batched pass over all segments of all recordings, then the decision per recording.
    Segments already dropped get a language too but keep their first drop reason. Each
    segment is heard with ``pad_s`` of context on both sides.
    """
    audios = [rec.cut(seg, pad_s) for rec in recordings for seg in rec.segments]
    probs = lid.probabilities(audios) if audios else []
    pos = 0
    for rec in recordings:
        own = probs[pos : pos + len(rec.segments)]
        pos += len(rec.segments)
        decisions = decide_languages(own, [s.duration for s in rec.segments], policy,
                                     eligible=[s.kept for s in rec.segments])
        for seg, dec in zip(rec.segments, decisions):
            seg.language = dec.language
            seg.language_prob = round(dec.probability, 4)
            seg.extra["language_top"] = [[lang, round(p, 4)] for lang, p in dec.top]
            if dec.tie_break:
                seg.extra["language_tie_break"] = "recording_majority"
            if dec.drop_reason:
                seg.drop(dec.drop_reason)
