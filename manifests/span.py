"""The one time-span type, from VAD through diarization to ASR: seconds in the recording."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Span:
    start: float
    end: float
    speaker: str | None = None

    def __post_init__(self) -> None:
        if not (self.end >= self.start >= 0):
            raise ValueError(f"invalid span [{self.start}, {self.end}]")

    @property
    def duration(self) -> float:
        return self.end - self.start

    def gap_to(self, later: "Span") -> float:
        """Silence between this span and a later one (negative when they overlap)."""
        return later.start - self.end
