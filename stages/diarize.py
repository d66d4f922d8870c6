"""Stages 3-6, diarize: speaker-homogeneous segments per recording (an actor pool stage).

Each actor loads the segmentation and speaker-embedding models once; per recording it
runs ``diarization.diarizer.Diarizer`` and writes the segments (speaker
``<recording_id>/S<k>``, overlap ratio, drop reasons) into ``segments_json``.
"""

from __future__ import annotations

from diarization.diarizer import Diarizer
from manifests import planned_segment
from pipeline.config import DiarizationConfig, SegmentConfig


class DiarizeSegmenter:
    def __init__(self, diarization: DiarizationConfig, segment: SegmentConfig) -> None:
        self.diarizer = Diarizer(diarization, segment)

    def __call__(self, rows: list[dict]) -> list[dict]:
        return [self.diarize_row(r) for r in rows]

    def diarize_row(self, row: dict) -> dict:
        models = planned_segment.append_models(row.get("models_json"), list(self.diarizer.model_ids.items()))
        out = dict(row, segments_json="[]", models_json=models, speakers=None)
        if row["status"] != "ok":
            return out
        try:
            result = self.diarizer.diarize(row["samples"], row["sample_rate"])
            for seg in result.segments:
                seg.speaker = f"{row['recording_id']}/{seg.speaker}"
            out["segments_json"] = planned_segment.dumps(result.segments)
            out["speakers"] = result.speakers
        except Exception as exc:  # noqa: BLE001 - one bad recording must not stop the run
            out.update(status="failed", error=f"diarization failed: {type(exc).__name__}: {exc}")
        return out
