"""The TTS interface: (text, language, voice, style, seed) -> a waveform at a declared rate."""

from __future__ import annotations

from typing import Protocol

from synthesis.speech import Speech, VoiceReference


class TtsError(RuntimeError):
    """A backend cannot speak this request (unsupported language, missing weights, empty output)."""


class TextToSpeech(Protocol):
    name: str  # backend name as in the config: kokoro, piper, espeak-ng, cosyvoice2, f5-tts
    sample_rate: int  # the rate of every waveform it returns
    languages: frozenset[str]  # ISO 639-1 codes it speaks

    def model_id(self) -> str:
        """``name:model@version`` for the ``models`` column."""
        ...

    def voice_for(self, seed: int) -> str:
        """A voice id of this backend drawn deterministically from ``seed``."""
        ...

    def synthesize(self, text: str, language: str, *, voice: str | None = None, style: str | None = None,
                   seed: int = 0, prompt: VoiceReference | None = None) -> Speech:
        """Speak ``text``. ``voice`` None: ``voice_for(seed)``. ``prompt``: reference speech for
        zero-shot backends (others ignore it). The same arguments give the same samples."""
        ...
