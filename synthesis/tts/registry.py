"""Choosing and loading TTS backends: ``TtsParams``, ``load_tts(backend, params)`` and ``TtsSet`` (one
backend per language, loaded on first use).

Defaults follow what was measured here (module docstrings of each backend): Kokoro for
English (neural, intelligible, blended voices) and espeak-ng for Mandarin (always there);
Kokoro also reads Mandarin through its own pinyin front end, at a lower CER than espeak-ng
on the same sentences (0.09-0.18 vs 0.30), so ``zh_backend: kokoro`` is the better choice
when a GPU-less run wants neural Mandarin. The zero-shot backends need weights and
packages that are not installed here; choosing one fails at load time with a one-line
reason.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from manifests.params import Params
from synthesis.tts.base import TextToSpeech, TtsError

Backend = Literal["kokoro", "piper", "espeak-ng", "cosyvoice2", "f5-tts"]
BACKENDS: tuple[str, ...] = ("kokoro", "piper", "espeak-ng", "cosyvoice2", "f5-tts")


class TtsParams(Params):
    en_backend: Backend = "kokoro"
    zh_backend: Backend = "kokoro"  # measured CER (Whisper base) 0.09-0.18 vs espeak-ng pinyin voice 0.30+
    cosyvoice2_model: str = "FunAudioLLM/CosyVoice2-0.5B"  # hub id (local HF cache only) or a local directory
    f5_model: str = "SWivid/F5-TTS"
    f5_vocoder: str = "charactr/vocos-mel-24khz"
    # Kokoro's per-seed speaking-rate factor is drawn from this range (times the style's rate)
    kokoro_speed: tuple[float, float] = (0.92, 1.08)
    piper_noise: Literal["seeded", "off"] = "seeded"  # seeded: natural, ~1 s per call extra; off: flat, fast
    espeak_zh_voice: Literal["cmn-latn-pinyin", "cmn"] = "cmn-latn-pinyin"  # cmn + Han reads pinyin as English
    # where derived model files go (the joined Kokoro model); None: transcription.models.model_cache_dir()
    cache_dir: str | None = None
    device: str = "cpu"
    threads: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _speed_range(self) -> "TtsParams":
        lo, hi = self.kokoro_speed
        if not 0.5 <= lo <= hi <= 2.0:
            raise ValueError(f"kokoro_speed {self.kokoro_speed} must satisfy 0.5 <= low <= high <= 2.0")
        return self

    def backend_for(self, language: str) -> str:
        if language == "en":
            return self.en_backend
        if language == "zh":
            return self.zh_backend
        raise TtsError(f"no TTS backend is configured for language {language!r} (en, zh)")


def cache_root(params: TtsParams) -> Path:
    if params.cache_dir:
        return Path(params.cache_dir)
    from transcription.models import model_cache_dir

    return model_cache_dir()


def load_tts(backend: str, params: TtsParams | None = None, device: str | None = None,
             threads: int | None = None) -> TextToSpeech:
    """A loaded backend by its config name. ``device``/``threads`` None: those of ``params``."""
    params = params or TtsParams()
    device = device or params.device
    threads = threads or params.threads
    if backend == "kokoro":
        from synthesis.tts.kokoro import KokoroTts

        return KokoroTts(cache_dir=cache_root(params) / "kokoro", threads=threads, speed_range=params.kokoro_speed)
    if backend == "piper":
        from synthesis.tts.piper import PiperTts

        return PiperTts(threads=threads, noise=params.piper_noise)
    if backend == "espeak-ng":
        from synthesis.tts.espeak import EspeakTts

        return EspeakTts(zh_voice=params.espeak_zh_voice)
    if backend == "cosyvoice2":
        from synthesis.tts.zero_shot import CosyVoice2Tts

        return CosyVoice2Tts(params.cosyvoice2_model, device=device, threads=threads)
    if backend == "f5-tts":
        from synthesis.tts.zero_shot import F5Tts

        return F5Tts(params.f5_model, vocoder=params.f5_vocoder, device=device, threads=threads)
    raise TtsError(f"unknown TTS backend {backend!r}; known: {', '.join(BACKENDS)}")


class TtsSet:
    """The backends of one run, per language, each loaded once on first use (a backend serving both
    languages is loaded once)."""

    def __init__(self, params: TtsParams | None = None, device: str | None = None, threads: int | None = None) -> None:
        self.params = params or TtsParams()
        self.device = device
        self.threads = threads
        self._loaded: dict[str, TextToSpeech] = {}
        self._lock = threading.Lock()

    def for_language(self, language: str) -> TextToSpeech:
        backend = self.params.backend_for(language)
        with self._lock:
            if backend not in self._loaded:
                self._loaded[backend] = load_tts(backend, self.params, self.device, self.threads)
            tts = self._loaded[backend]
        if language not in tts.languages:
            raise TtsError(f"{backend} does not speak {language!r} (it speaks {sorted(tts.languages)})")
        return tts

    def models(self) -> list[str]:
        """``model_id()`` of every backend loaded so far, sorted (for the ``models`` column)."""
        return sorted(t.model_id() for t in self._loaded.values())
