"""The signals a recording row carries: one 16 kHz analysis signal, and whole-recording FLAC variants.

The models of diarization, language ID and ASR all take 16 kHz: ``analysis_signal`` makes
it once, where the analysed signal is made (decode, or enhance), and the model stages
share it. The output variants (raw, enhanced) are needed only by the writer: they are
encoded once, at the output rate, as one FLAC per recording (``encode_variant``), which
rides past the model stages at about a sixth of the float32 size and is cut by the writer
(``cut_variant``). Cutting integer PCM gives exactly the samples that encoding each
segment from the float signal would give, so the shards are the same byte for byte.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from audio_io.flac import encode_flac
from audio_io.resample import resample

ANALYSIS_RATE = 16000
_PCM_DTYPE = {"PCM_16": "int16", "PCM_24": "int32"}


def analysis_signal(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The 16 kHz float32 signal the analysis models share."""
    return resample(np.asarray(samples, dtype=np.float32), sample_rate, ANALYSIS_RATE)


def encode_variant(samples: np.ndarray, sample_rate: int, output_rate: int, subtype: str = "PCM_16") -> bytes:
    """The whole recording at ``output_rate`` as FLAC bytes (float samples clipped to [-1, 1])."""
    return encode_flac(resample(np.asarray(samples, dtype=np.float32), sample_rate, output_rate), output_rate, subtype)


def read_variant(data: bytes, subtype: str = "PCM_16") -> tuple[np.ndarray, int]:
    """Integer PCM samples and rate of a variant made by ``encode_variant``."""
    samples, rate = sf.read(io.BytesIO(data), dtype=_PCM_DTYPE[subtype])
    return samples, rate


# read_variant's integer PCM -> [-1, 1) floats (24-bit FLAC reads left-aligned in int32).
_PCM_SCALE = {"PCM_16": 2.0**15, "PCM_24": 2.0**31}


def read_variant_float(data: bytes, subtype: str = "PCM_16") -> tuple[np.ndarray, int]:
    """Float32 samples in [-1, 1) and rate of a variant made by ``encode_variant``."""
    pcm, rate = read_variant(data, subtype)
    return pcm.astype(np.float32) / np.float32(_PCM_SCALE[subtype]), rate


def cut_variant(pcm: np.ndarray, rate: int, start: float, end: float, subtype: str = "PCM_16") -> bytes:
    """FLAC bytes of [start, end) seconds of integer PCM from ``read_variant`` (at least one sample)."""
    a, b = int(round(start * rate)), int(round(end * rate))
    buf = io.BytesIO()
    sf.write(buf, pcm[a: max(b, a + 1)], rate, format="FLAC", subtype=subtype)
    return buf.getvalue()
