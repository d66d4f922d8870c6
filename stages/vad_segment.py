"""Segmentation by voice activity, when diarization is off: an actor pool stage.

Each actor loads Silero VAD once; per recording ``diarization.vad.segment_by_voice`` gives
the segments (no speakers), with the length rules of segment merging.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any, ClassVar

from pydantic import Field

from diarization.vad import SileroVad, VadParams, segment_by_voice
from manifests.planned_segment import to_rows
from stages.base import MODEL_PLACEMENT, ActorPool, Placement, Resources, RunContext, Section, Stage, append_models, model_placement
from stages.segment import SegmentSection


class VadSection(VadParams, Section):
    """Voice-activity segmentation (Silero VAD). Used when diarization is off."""

    placement_fields: ClassVar[frozenset[str]] = MODEL_PLACEMENT
    device: str = "cpu"
    batch_size: int = Field(1, ge=1, description="recordings per actor call")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class VadSegmentStage(Stage):
    name = "segment"
    sections = {"vad": VadSection, "segment": SegmentSection}
    uses_model = True

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        self.params: VadSection = cfg.vad
        self.merge: SegmentSection = cfg.segment
        self.vad = SileroVad(self.params.model, self.params.sample_rate, self.params.device)
        self.model_id = f"{self.params.model}@{version('silero-vad')}"

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return not cfg.diarization.enabled

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return model_placement(cfg.vad, cfg.vad.batch_size)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("status", "analysis", "models")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("status", "error", "segments", "models")

    def model_ids(self) -> list[tuple[str, str]]:
        return [("vad", self.model_id)]

    def process_batch(self, rows: list[dict]) -> list[dict]:
        return [self.segment_row(r) for r in rows]

    def segment_row(self, row: dict) -> dict:
        out = dict(row, segments=[], models=append_models(row.get("models"), self.model_ids()))
        if row["status"] != "ok":
            return out
        try:
            out["segments"] = to_rows(segment_by_voice(self.vad, row["analysis"], self.params, self.merge))
        except Exception as exc:  # noqa: BLE001 - one bad recording must not stop the run
            out.update(status="failed", error=f"segmentation failed: {type(exc).__name__}: {exc}")
        return out
