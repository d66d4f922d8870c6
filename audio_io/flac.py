"""FLAC encoding of segment audio for the shards."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def encode_flac(samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """Mono float samples in [-1, 1] (clipped beyond) to FLAC bytes."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), sample_rate, format="FLAC", subtype=subtype)
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(data), dtype="float32")
    return samples, rate
