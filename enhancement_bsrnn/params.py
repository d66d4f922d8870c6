"""The enhancement parameters (stage 2), the one place of each default.

The stage's config section (``enhance``) is this class plus what the stage decides
itself (enabled, variants, analysis_variant) and placement (device, batch_size,
recordings_per_call, resources, pool).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from manifests.params import Params

Precision = Literal["float32", "float16", "bfloat16", "int8", "int8_float32", "int8_float16"]


class EnhanceParams(Params):
    """Speech enhancement (BSRNN at 48 kHz, or DeepFilterNet3)."""

    backend: Literal["bsrnn", "deepfilternet3"] = "bsrnn"
    model: str | None = Field(None, description="BSRNN weights file; None: the small model shipped in enhancement_bsrnn/weights")
    sample_rate: int | None = Field(48000, ge=8000, le=48000, description="rate the enhancer runs at (the signal is "
                                    "resampled to it and back); None: the decode working rate. Audio above half the "
                                    "working rate is gone after decode, so set decode.sample_rate to 48000 for a full-band result")
    chunk_s: float = Field(8.0, gt=0, description="window length of chunked inference")
    overlap_s: float = Field(1.0, ge=0, description="overlap of adjacent windows, cross-faded")
    precision: Precision = Field("float32", description="float16/bfloat16 autocast on CUDA; CPU runs float32")
