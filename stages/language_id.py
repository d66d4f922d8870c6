"""Stage 7, language ID: an actor pool stage over ``transcription.language_id``.

Each actor loads the Whisper model once. A call batches the kept segments of all its rows
through Whisper's language head, then decides per recording (per segment; majority only
as a tie-breaker). Rows that are not ``ok`` pass through (with the stage's model noted, as every
model stage does).
"""

from __future__ import annotations

from typing import Any, ClassVar

from stages.base import Placement, RunContext, Stage, model_placement
from stages.whisper_placement import WhisperPlacement
from transcription.language_id import LanguageIdParams, WhisperLanguageId, identify_languages
from transcription.models import load_whisper, whisper_model_version
from transcription.rows import process_rows


class LanguageIdSection(LanguageIdParams, WhisperPlacement):
    """Stage 7: Whisper language identification per segment (transcription.language_id)."""

    cpu_batch: ClassVar[int] = 1
    gpu_batch: ClassVar[int] = 16


class LanguageIdStage(Stage):
    name = "language_id"
    sections = {"language_id": LanguageIdSection}
    uses_model = True

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        p: LanguageIdSection = cfg.language_id
        self.params = p
        self.lid = WhisperLanguageId(load_whisper(p.model, p.device, p.precision, p.cpu_threads), p.segments_per_batch())

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return cfg.language_id.enabled

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return model_placement(cfg.language_id, cfg.language_id.recordings_per_call)

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
        return self.with_models(done)
