"""Recording rows as the Ray graph carries them, seen from the transcription stages.

A row holds one recording: ``status``, ``samples`` (mono float32), ``sample_rate``,
``segments_json`` (``PlannedSegment`` list) and ``models_json`` ([stage, model id] pairs).
The models here all take 16 kHz audio; ``SegmentAudio`` resamples a recording once and
cuts its segments from that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from audio_io.resample import resample
from manifests import planned_segment
from manifests.planned_segment import PlannedSegment, append_models

MODEL_RATE = 16000


@dataclass
class RecordingSegments:
    """One row's segments, decoded for editing, with its audio at 16 kHz."""

    row: dict
    segments: list[PlannedSegment]
    audio: np.ndarray  # 16 kHz

    def cut(self, seg: PlannedSegment, pad_s: float = 0.0) -> np.ndarray:
        """The segment's audio, widened by ``pad_s`` of context on each side within the recording."""
        return self.audio[self._index(seg.start - pad_s) : max(self._index(seg.start - pad_s), self._index(seg.end + pad_s))]

    def pad_before(self, seg: PlannedSegment, pad_s: float) -> float:
        """Seconds of context ``cut(seg, pad_s)`` puts before the segment's start."""
        return (self._index(seg.start) - self._index(seg.start - pad_s)) / MODEL_RATE

    def _index(self, t: float) -> int:
        return min(len(self.audio), max(0, int(round(t * MODEL_RATE))))

    def finish(self, models: list[tuple[str, str]]) -> dict:
        """The output row: segments written back, this stage's models appended."""
        out = dict(self.row)
        out["segments_json"] = planned_segment.dumps(self.segments)
        out["models_json"] = append_models(self.row.get("models_json"), models)
        return out


def open_rows(rows: list[dict], with_audio: bool = True) -> list[RecordingSegments | None]:
    """One entry per row; None for rows that are not ``ok`` (they pass through untouched).

    ``with_audio`` False skips the resampling (for stages that read only the segments).
    """
    out: list[RecordingSegments | None] = []
    for row in rows:
        if row.get("status") != "ok":
            out.append(None)
            continue
        audio = np.zeros(0, dtype=np.float32)
        if with_audio:
            audio = resample(np.asarray(row["samples"], dtype=np.float32), int(row["sample_rate"]), MODEL_RATE)
        out.append(RecordingSegments(row, planned_segment.loads(row.get("segments_json")), audio))
    return out


def process_rows(rows: list[dict], step: str, fn: Callable[[list[RecordingSegments]], None],
                 models: list[tuple[str, str]], with_audio: bool = True) -> list[dict]:
    """Open the ``ok`` rows, run ``fn`` over all of them at once (it edits their segments),
    write them back with ``models`` recorded. If ``fn`` raises, those rows fail with the
    reason and the job goes on; rows that were not ``ok`` pass through untouched."""
    recs = open_rows(rows, with_audio=with_audio)
    try:
        fn([r for r in recs if r is not None])
    except Exception as exc:  # noqa: BLE001 - the rows fail, the job goes on
        return [row if rec is None else fail_row(row, step, exc) for row, rec in zip(rows, recs)]
    return [row if rec is None else rec.finish(models) for row, rec in zip(rows, recs)]


def fail_row(row: dict, stage: str, exc: BaseException) -> dict:
    return dict(row, status="failed", error=f"{stage} failed: {type(exc).__name__}: {exc}")
