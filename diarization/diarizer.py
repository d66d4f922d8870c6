"""Speaker-homogeneous segments for one recording: DESIGN stages 3 to 6, in order.

    segmentation (segmentation-3.0, sliding windows)  -> local speakers per window
    stitching                                         -> raw turns (tracks)        der_raw
    turn embeddings + cluster merging (cos > 0.6)     -> merged turns              der_merged
    1.5 s chunk embeddings + reassignment (cos < 0.5) -> reassigned turns          der_reassigned
    segment merging (<= 27 s, gap <= 2 s), split, min length -> final segments

Backends: ``segmentation`` (the offline default above) and ``pyannote_pipeline`` (the full
pyannote.audio pipeline from a hub id or a local directory: its turns and its per-speaker
embeddings, then the same Kimi steps). Each step is a pure function in its own module;
this class only wires them and holds the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audio_io.resample import resample
from diarization.chunk_reassign import chunk_spans, reassign
from diarization.cluster_merge import merge_clusters
from diarization.segment_merge import merge_adjacent, partition_by_length, split_long
from diarization.segmentation import SAMPLE_RATE, PowersetSegmentation, frame_center_s
from diarization.stitching import StitchParams, Tracks, stitch
from manifests.planned_segment import PlannedSegment
from manifests.span import Span
from pipeline.config import DiarizationConfig, SegmentConfig


@dataclass
class DiarizationResult:
    raw_turns: list[Span]
    merged_turns: list[Span]
    reassigned_turns: list[Span]
    segments: list[PlannedSegment]  # final, speakers "S00".. by first appearance
    speakers: int
    merges: int = 0
    chunks_moved: int = 0
    figures: dict = field(default_factory=dict)


def overlap_ratio(span: Span, overlap: np.ndarray) -> float:
    """Share of the span's frames where two or more speakers are active."""
    if overlap.size == 0:
        return 0.0
    centers = frame_center_s(np.arange(len(overlap)))
    inside = (centers >= span.start) & (centers < span.end)
    n = int(inside.sum())
    return round(float(overlap[inside].sum()) / n, 4) if n else 0.0


def relabel_by_first_appearance(spans: list[Span], prefix: str = "S") -> tuple[list[Span], dict[str, str]]:
    order: dict[str, str] = {}
    for s in sorted(spans):
        if s.speaker not in order:
            order[s.speaker] = f"{prefix}{len(order):02d}"
    return [Span(s.start, s.end, order[s.speaker]) for s in spans], order


class Diarizer:
    """Holds the models of one worker; ``diarize`` is called per recording."""

    sample_rate = SAMPLE_RATE

    def __init__(self, cfg: DiarizationConfig, segment: SegmentConfig) -> None:
        from diarization.embedding import load_embedder

        self.cfg = cfg
        self.seg_cfg = segment
        self.embedder = load_embedder(cfg.embedding_model, device=cfg.embedding_device,
                                      batch_size=cfg.embedding_batch_size)
        self.stitch_params = StitchParams(
            onset=cfg.onset, min_present_frames=cfg.min_present_frames, link_threshold=cfg.link_threshold,
            min_duration_on=cfg.min_duration_on_s, min_duration_off=cfg.min_duration_off_s,
        )
        if cfg.backend == "segmentation":
            self.segmentation = PowersetSegmentation(cfg.segmentation_model, cfg.device, cfg.batch_size,
                                                     step_s=cfg.segmentation_step_s)
            self.pipeline = None
        else:
            from diarization.pyannote_backend import load_pyannote_pipeline

            self.segmentation = None
            self.pipeline = load_pyannote_pipeline(cfg.pipeline_model, cfg.device)
        self.model_ids = {"diarization": self.model_id, "speaker_embedding": self.embedder.model_id}

    @property
    def model_id(self) -> str:
        return self.cfg.segmentation_model if self.cfg.backend == "segmentation" else self.cfg.pipeline_model

    # ---- steps -------------------------------------------------------------------------
    def raw_diarization(self, audio16k: np.ndarray) -> Tracks:
        duration = len(audio16k) / SAMPLE_RATE
        if self.pipeline is not None:
            from diarization.pyannote_backend import run_pyannote_pipeline

            return run_pyannote_pipeline(self.pipeline, audio16k)
        return stitch(self.segmentation(audio16k), self.stitch_params, duration)

    def _embed_spans(self, audio16k: np.ndarray, spans: list[Span]) -> np.ndarray:
        rate = self.embedder.sample_rate
        audio = resample(audio16k, SAMPLE_RATE, rate) if rate != SAMPLE_RATE else audio16k
        pieces = [audio[int(s.start * rate) : max(int(s.end * rate), int(s.start * rate) + 1)] for s in spans]
        if not pieces:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return self.embedder.embed(pieces)

    def diarize(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> DiarizationResult:
        audio = resample(samples, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else samples
        duration = len(audio) / SAMPLE_RATE
        tracks = self.raw_diarization(audio)
        raw = tracks.turns
        if not raw:
            return DiarizationResult(raw, [], [], [], speakers=0)

        merged = merge_clusters(raw, self._embed_spans(audio, raw), self.cfg.cluster_merge_threshold,
                                cannot_link=tracks.cannot_link)
        merged_turns = merged.turns

        min_last = self.cfg.reassign_min_last_chunk_s
        chunk_lists = [chunk_spans(t, self.cfg.reassign_chunk_s, min_last) for t in merged_turns]
        flat = [c for chunks in chunk_lists for c in chunks]
        flat_emb = self._embed_spans(audio, flat)
        per_turn, i = [], 0
        for chunks in chunk_lists:
            per_turn.append(flat_emb[i : i + len(chunks)])
            i += len(chunks)
        reassigned = reassign(merged_turns, per_turn, merged.representatives, self.cfg.reassign_threshold,
                              chunk_s=self.cfg.reassign_chunk_s, min_last_s=min_last)

        final = merge_adjacent(reassigned.segments, self.seg_cfg.max_duration_s, self.seg_cfg.max_gap_s)
        final = split_long(final, self.seg_cfg.max_duration_s, audio, SAMPLE_RATE)
        final = [Span(s.start, min(s.end, duration), s.speaker) for s in final if s.start < duration]
        final, names = relabel_by_first_appearance(final)
        kept, short = partition_by_length(final, self.seg_cfg.min_duration_s)
        overlap = tracks.overlap_mask()
        reason = f"shorter than {self.seg_cfg.min_duration_s} s (segment.min_duration_s)"
        segments = [PlannedSegment(s.start, s.end, s.speaker, overlap_ratio=overlap_ratio(s, overlap)) for s in kept]
        segments += [PlannedSegment(s.start, s.end, s.speaker, drop_reason=reason, overlap_ratio=overlap_ratio(s, overlap))
                     for s in short]
        segments.sort(key=lambda s: (s.start, s.end, s.speaker or ""))
        return DiarizationResult(
            raw_turns=raw, merged_turns=merged_turns, reassigned_turns=reassigned.segments, segments=segments,
            speakers=len({s.speaker for s in kept}), merges=len(merged.history), chunks_moved=reassigned.moved,
            figures={"tracks": len({t.speaker for t in raw}), "clusters": len(merged.representatives),
                     "chunks": reassigned.chunks, "chunks_marked": reassigned.marked,
                     "chunks_moved_s": round(reassigned.moved_s, 3), "names": names},
        )

