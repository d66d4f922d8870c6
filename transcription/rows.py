"""Recording rows as the Ray graph carries them, seen from the transcription stages.

A row holds one recording: ``status``, ``segments`` (a list of dicts with the fields of
``manifests.planned_segment.PlannedSegment``), ``analysis`` (mono float32) and
``analysis_rate``. The models here all take 16 kHz audio, and the 16 kHz analysis signal
is made once upstream: nothing here resamples, and a row at any other rate is refused.
Which models a stage used is recorded by the stage, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from manifests.planned_segment import PlannedSegment, from_rows, to_rows

MODEL_RATE = 16000


@dataclass
class RecordingSegments:
    """One row's segments, decoded for editing, with its analysis audio at 16 kHz."""

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

    def finish(self) -> dict:
        """The output row: the row as it came, with its segments written back."""
        return dict(self.row, segments=to_rows(self.segments))


def analysis_audio(row: dict) -> np.ndarray:
    """The row's 16 kHz analysis signal; ValueError when it is at another rate (never resampled here)."""
    rate = int(row["analysis_rate"])
    if rate != MODEL_RATE:
        raise ValueError(f"analysis signal at {rate} Hz; the transcription models take {MODEL_RATE} Hz "
                         f"(the 16 kHz signal is made upstream, never resampled here)")
    return np.asarray(row["analysis"], dtype=np.float32)


def open_rows(rows: list[dict], with_audio: bool = True) -> list[RecordingSegments | None]:
    """One entry per row; None for rows that are not ``ok`` (they pass through untouched).

    ``with_audio`` False leaves the audio empty (for stages that read only the segments;
    the row need not carry ``analysis`` then).
    """
    out: list[RecordingSegments | None] = []
    for row in rows:
        if row.get("status") != "ok":
            out.append(None)
            continue
        audio = analysis_audio(row) if with_audio else np.zeros(0, dtype=np.float32)
        out.append(RecordingSegments(row, from_rows(row.get("segments")), audio))
    return out


def process_rows(rows: list[dict], step: str, fn: Callable[[list[RecordingSegments]], None],
                 with_audio: bool = True) -> list[dict]:
    """Open the ``ok`` rows, run ``fn`` over all of them at once (it edits their segments),
    write them back. If ``fn`` raises, those rows fail with the reason and the job goes on;
    rows that were not ``ok`` pass through untouched."""
    recs = open_rows(rows, with_audio=with_audio)
    try:
        fn([r for r in recs if r is not None])
    except Exception as exc:  # noqa: BLE001 - the rows fail, the job goes on
        return [row if rec is None else fail_row(row, step, exc) for row, rec in zip(rows, recs)]
    return [row if rec is None else rec.finish() for row, rec in zip(rows, recs)]


def fail_row(row: dict, stage: str, exc: BaseException) -> dict:
    return dict(row, status="failed", error=f"{stage} failed: {type(exc).__name__}: {exc}")
