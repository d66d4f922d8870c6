"""The two small types every synthesis backend speaks: a waveform, and a voice to aim for."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Speech:
    """Mono float32 audio in [-1, 1] at ``sample_rate``."""

    audio: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class VoiceReference:
    """A target voice: reference speech (and its transcript), as a voice-library row or an
    assistant-voice reference recording. ``embedding`` is the speaker embedding of ``speech``
    when it was computed already (the voice library stores it)."""

    voice_id: str
    speech: Speech
    text: str
    language: str
    embedding: np.ndarray | None = field(default=None, compare=False)
    source: str | None = None  # where it came from (segment id, file path)
