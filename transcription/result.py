"""What a transcriber returns for one segment."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AsrResult:
    """Transcript of one segment.

    ``words``: [{token, start, end, prob}], times in seconds relative to the segment start
    (``prob`` None where the model gives none). ``extra``: diagnostics for the segment's
    ``extra`` (avg_logprob, no_speech_prob, compression_ratio, decode pass...). ``error``:
    why no transcript could be made (the stage drops the segment with it).
    """

    text: str
    words: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    error: str | None = None
