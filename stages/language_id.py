"""Stage 7, language ID: an actor pool stage over ``transcription.language_id``.

Each actor loads the Whisper model once. A call batches the kept segments of all its rows
through Whisper's language head, then decides per recording (per segment; majority only
as a tie-breaker). Rows that are not ``ok`` pass through (with the stage's model noted, as every
model stage does).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from stages.base import MODEL_PLACEMENT, ActorPool, Placement, Resources, RunContext, Section, Stage, append_models
from transcription.language_id import LanguageIdParams, WhisperLanguageId, identify_languages
from transcription.models import load_whisper, whisper_model_version
from transcription.rows import process_rows


class LanguageIdSection(LanguageIdParams, Section):
    """Stage 7: Whisper language identification per segment (transcription.language_id)."""

    placement_fields: ClassVar[frozenset[str]] = MODEL_PLACEMENT
    enabled: bool = True
    device: str = "cpu"
    cpu_threads: int = Field(0, ge=0, description="CTranslate2 threads; 0: its default (follows OMP_NUM_THREADS, set by Ray)")
    batch_size: int | None = Field(None, ge=1, description="segments per encoder batch; None: 1 on CPU, 16 "
                                   "on a GPU (on CPU, small batches keep the working set in cache: measured faster, "
                                   "and the results are the same)")
    recordings_per_call: int = Field(1, ge=1, description="recordings an actor takes per call; its segments are "
                                     "batched together. One keeps the graph streaming on small clusters (a call "
                                     "waits for this many recordings) and makes every batch the same whatever the "
                                     "timing; raise it on GPUs to fill batches with short recordings")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class LanguageIdStage(Stage):
    name = "language_id"
    sections = {"language_id": LanguageIdSection}
    uses_model = True

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        p: LanguageIdSection = cfg.language_id
        self.params = p
        self.lid = WhisperLanguageId(load_whisper(p.model, p.device, p.precision, p.cpu_threads), self.segments_per_batch(p))

    @staticmethod
    def segments_per_batch(p: Any) -> int:
        return p.batch_size or (16 if p.device.startswith("cuda") else 1)

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return cfg.language_id.enabled

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return Placement(cfg.language_id.resources, rows_per_call=cfg.language_id.recordings_per_call, pool=cfg.language_id.pool)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("status", "analysis", "analysis_rate", "segments", "models")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("status", "error", "segments", "models")

    def model_ids(self) -> list[tuple[str, str]]:
        return [("language_id", whisper_model_version(self.params.model))]

    def process_batch(self, rows: list[dict]) -> list[dict]:
        done = process_rows(rows, "language ID", lambda recs: identify_languages(recs, self.lid, self.params))
        return [dict(r, models=append_models(r.get("models"), self.model_ids())) for r in done]
