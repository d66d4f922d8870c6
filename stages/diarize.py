"""Stages 3-6, diarize: speaker-homogeneous segments per recording (an actor pool stage).

Each actor loads the segmentation and speaker-embedding models once; per recording it
runs ``diarization.diarizer.Diarizer`` on the shared 16 kHz analysis signal and writes the
segments (speaker ``<recording_id>/S<k>``, overlap ratio, drop reasons).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from diarization.diarizer import Diarizer
from diarization.params import DiarizationParams
from manifests.planned_segment import to_rows
from stages.base import MODEL_PLACEMENT, ActorPool, Placement, Resources, RunContext, Section, Stage, append_models, model_placement
from stages.segment import SegmentSection


class DiarizationSection(DiarizationParams, Section):
    """Stages 3-5: diarization, cluster merging, chunk reassignment."""

    placement_fields: ClassVar[frozenset[str]] = MODEL_PLACEMENT | {"embedding_device", "embedding_batch_size"}
    enabled: bool = True
    embedding_device: str = "cpu"
    embedding_batch_size: int = Field(32, ge=1, description="waveforms per embedding forward pass")
    device: str = "cpu"
    batch_size: int = Field(32, ge=1)
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class DiarizeStage(Stage):
    name = "diarize"
    sections = {"diarization": DiarizationSection, "segment": SegmentSection}
    uses_model = True

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        p: DiarizationSection = cfg.diarization
        self.diarizer = Diarizer(p, cfg.segment, device=p.device, batch_size=p.batch_size,
                                 embedding_device=p.embedding_device, embedding_batch_size=p.embedding_batch_size)

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return cfg.diarization.enabled

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return model_placement(cfg.diarization, 1)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("status", "recording_id", "analysis", "models")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("status", "error", "segments", "speakers", "models")

    def model_ids(self) -> list[tuple[str, str]]:
        return list(self.diarizer.model_ids.items())

    def process_batch(self, rows: list[dict]) -> list[dict]:
        return [self.diarize_row(r) for r in rows]

    def diarize_row(self, row: dict) -> dict:
        out = dict(row, segments=[], speakers=None, models=append_models(row.get("models"), self.model_ids()))
        if row["status"] != "ok":
            return out
        try:
            result = self.diarizer.diarize(row["analysis"])
            for seg in result.segments:
                seg.speaker = f"{row['recording_id']}/{seg.speaker}"
            out["segments"] = to_rows(result.segments)
            out["speakers"] = result.speakers
        except Exception as exc:  # noqa: BLE001 - one bad recording must not stop the run
            out.update(status="failed", error=f"diarization failed: {type(exc).__name__}: {exc}")
        return out
