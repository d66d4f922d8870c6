"""What a transcriber returns for one segment."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AsrResult:
    """Transcript of one segment, and the figures its model gave.

    ``words``: [{token, start, end, prob}], times in seconds relative to the segment start
    (``prob`` None where the model gives none). ``error``: why no transcript could be made
    (the stage drops the segment with it). The other fields land in the segment's ``asr_*``
    fields of the same name (``manifests.planned_segment.PlannedSegment``); None where the
    model gives no such figure (Paraformer has no log-probabilities and no retry).
    """

    text: str
    words: list[dict] = field(default_factory=list)
    error: str | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None
    decode_pass: int | None = None  # 1, or 2 when the deterministic retry's text was taken
    retried: bool | None = None
    failed_checks: list[str] | None = None  # retry checks the chosen text still fails
    pass1_failed_checks: list[str] | None = None  # what pass 1 failed (retried segments only)
    raw_text: str | None = None  # zh: the recogniser's text before conversion and punctuation
    note: str | None = None  # a recogniser warning (e.g. tokens and timestamps that do not match)
