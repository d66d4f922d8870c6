"""Segmentation by voice activity (until diarization replaces it): an actor pool stage.

Each actor loads Silero VAD once. Per recording: speech regions (Silero, split at 27 s),
then segment merging and the length rules of ``diarization.segment_merge``. Output: the
decision per segment as JSON (start, end, speaker, drop_reason), the audio untouched.
"""

from __future__ import annotations

from importlib.metadata import version

from diarization.segment_merge import merge_adjacent, partition_by_length, split_long
from diarization.vad import SileroVad, VadParams
from manifests import planned_segment
from manifests.planned_segment import PlannedSegment
from pipeline.config import SegmentConfig, VadConfig


class VadSegmenter:
    def __init__(self, vad: VadConfig, segment: SegmentConfig) -> None:
        self.vad_cfg = vad
        self.seg_cfg = segment
        self.vad = SileroVad(vad.model, vad.sample_rate, vad.device)
        self.model_id = f"{vad.model}@{version('silero-vad')}"
        self.params = VadParams(
            threshold=vad.threshold, min_speech_s=vad.min_speech_s, min_silence_s=vad.min_silence_s,
            speech_pad_s=vad.speech_pad_s, max_speech_s=segment.max_duration_s,
        )

    def __call__(self, rows: list[dict]) -> list[dict]:
        return [self.segment_row(r) for r in rows]

    def segment_row(self, row: dict) -> dict:
        out = dict(row, segments_json="[]",
                   models_json=planned_segment.append_models(row.get("models_json"), [("vad", self.model_id)]))
        if row["status"] != "ok":
            return out
        try:
            samples, sr = row["samples"], row["sample_rate"]
            spans = self.vad.speech_spans(samples, sr, self.params)
            spans = merge_adjacent(spans, self.seg_cfg.max_duration_s, self.seg_cfg.max_gap_s)
            spans = split_long(spans, self.seg_cfg.max_duration_s, samples, sr)
            kept, short = partition_by_length(spans, self.seg_cfg.min_duration_s)
            reason = f"shorter than {self.seg_cfg.min_duration_s} s (segment.min_duration_s)"
            planned = [PlannedSegment(s.start, s.end, s.speaker) for s in kept]
            planned += [PlannedSegment(s.start, s.end, s.speaker, drop_reason=reason) for s in short]
            out["segments_json"] = planned_segment.dumps(planned)
        except Exception as exc:  # noqa: BLE001
            out.update(status="failed", error=f"segmentation failed: {type(exc).__name__}: {exc}")
        return out
