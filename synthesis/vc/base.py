"""The voice-conversion interface: source speech + target reference -> the target timbre,
with the source's content and prosody (timing, intonation shape) kept."""

from __future__ import annotations

from typing import Protocol

from synthesis.speech import Speech, VoiceReference


class VcError(RuntimeError):
    """A converter cannot convert this input (missing weights, unvoiced reference, empty input)."""


class VoiceConverter(Protocol):
    name: str  # backend name as in the config: world, seed-vc

    def model_id(self) -> str:
        ...

    def convert(self, source: Speech, target: VoiceReference) -> Speech:
        """``source`` spoken in ``target``'s voice, at ``source.sample_rate``; deterministic."""
        ...
