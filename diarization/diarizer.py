"""Speaker-homogeneous segments for one recording: DESIGN stages 3 to 6, in order.

    segmentation (segmentation-3.0, sliding windows)  -> local speakers per window
    stitching                                         -> raw turns (tracks)        der_raw
    turn embeddings + cluster merging (cos > 0.6)     -> merged turns              der_merged
    1.5 s chunk embeddings + reassignment (cos < 0.5) -> reassigned turns          der_reassigned
    segment merging (<= 27 s, gap <= 2 s), split, min length -> final segments

Backends for the raw turns: ``pyannote_pipeline`` (the offline default: pyannote.audio's
own SpeakerDiarization, assembled from segmentation-3.0 and our speaker embedder, or a
full pipeline from a hub id / local directory) and ``segmentation`` (the windows above,
stitched here: cheaper, 126 s against 162 s for a whole run over the 5 diarization clips, but
shipped DER 0.489 against 0.464 on them). The Kimi
steps follow either. Each step is a pure function in its own module; this class only
wires them and holds the models.

Input is the recording's 16 kHz analysis signal (made once upstream, never resampled
here); the speaker embedder resamples it to its own rate when that differs. Parameters:
``DiarizationParams`` (stages 3-5) and ``SegmentMergeParams`` (stage 6); device and batch
sizes are placement, given to the constructor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audio_io.resample import resample
from diarization.chunk_reassign import chunk_spans, reassign
from diarization.cluster_merge import merge_clusters
from diarization.params import DiarizationParams
from diarization.segment_merge import SegmentMergeParams, finalize_segments, overlap_ratio
from diarization.segmentation import SAMPLE_RATE, PowersetSegmentation
from diarization.stitching import Tracks, stitch, stitch_params
from manifests.planned_segment import PlannedSegment
from manifests.span import Span

__all__ = ["DiarizationParams", "DiarizationResult", "Diarizer", "overlap_ratio", "relabel_by_first_appearance"]


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


def relabel_by_first_appearance(spans: list[Span], prefix: str = "S") -> tuple[list[Span], dict[str, str]]:
    order: dict[str, str] = {}
    for s in sorted(spans):
        if s.speaker not in order:
            order[s.speaker] = f"{prefix}{len(order):02d}"
    return [Span(s.start, s.end, order[s.speaker]) for s in spans], order


class Diarizer:
    """Holds the models of one worker; ``diarize`` is called per recording."""

    sample_rate = SAMPLE_RATE

    def __init__(self, params: DiarizationParams, merge_params: SegmentMergeParams, *, device: str = "cpu",
                 batch_size: int = 32, embedding_device: str = "cpu", embedding_batch_size: int = 32) -> None:
        from diarization.embedding import load_embedder

        self.params = params
        self.merge_params = merge_params
        self.embedder = load_embedder(params.embedding_model, device=embedding_device, batch_size=embedding_batch_size)
        self.stitch_params = stitch_params(params)
        if params.backend == "segmentation":
            self.segmentation = PowersetSegmentation(params.segmentation_model, device, batch_size,
                                                     step_s=params.segmentation_step_s)
            self.pipeline = None
        else:
            from diarization.pyannote_backend import ASSEMBLED, assemble_pipeline, load_pyannote_pipeline

            self.segmentation = None
            if params.pipeline_model == ASSEMBLED:
                self.pipeline = assemble_pipeline(
                    params.pipeline_segmentation, self.embedder, clustering_threshold=params.pipeline_clustering_threshold,
                    min_cluster_size=params.pipeline_min_cluster_size, segmentation_step=params.pipeline_step,
                    device=device, batch_size=batch_size)
            else:
                self.pipeline = load_pyannote_pipeline(params.pipeline_model, device)
        self.model_ids = {"diarization": self.model_id, "speaker_embedding": self.embedder.model_id}

    @property
    def model_id(self) -> str:
        p = self.params
        if p.backend == "segmentation":
            return p.segmentation_model
        return f"pyannote.audio SpeakerDiarization({p.pipeline_segmentation})" if p.pipeline_model == "assembled" else p.pipeline_model

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

    def diarize(self, audio16k: np.ndarray, sample_rate: int = SAMPLE_RATE) -> DiarizationResult:
        """Segments of one recording from its 16 kHz analysis signal (``sample_rate`` must be 16000)."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"diarization takes the {SAMPLE_RATE} Hz analysis signal, got {sample_rate} Hz "
                             "(resample once upstream, not here)")
        audio = audio16k
        tracks = self.raw_diarization(audio)
        raw = tracks.turns
        if not raw:
            return DiarizationResult(raw, [], [], [], speakers=0)
        p = self.params

        merged = merge_clusters(raw, self._embed_spans(audio, raw), p.merge_threshold(),
                                cannot_link=tracks.cannot_link)
        merged_turns = merged.turns

        min_last = p.reassign_min_last_chunk_s
        chunk_lists = [chunk_spans(t, p.reassign_chunk_s, min_last) for t in merged_turns]
        flat = [c for chunks in chunk_lists for c in chunks]
        flat_emb = self._embed_spans(audio, flat)
        per_turn, i = [], 0
        for chunks in chunk_lists:
            per_turn.append(flat_emb[i : i + len(chunks)])
            i += len(chunks)
        reassigned = reassign(merged_turns, per_turn, merged.representatives, p.reassignment_threshold(),
                              chunk_s=p.reassign_chunk_s, min_last_s=min_last)

        segments = finalize_segments(reassigned.segments, self.merge_params, audio, tracks.overlap_mask())
        # Speakers "S00".. by first appearance among the final segments (kept and dropped).
        _, names = relabel_by_first_appearance([Span(s.start, s.end, s.speaker) for s in segments])
        for seg in segments:
            seg.speaker = names[seg.speaker]
        segments.sort(key=lambda s: (s.start, s.end, s.speaker or ""))
        return DiarizationResult(
            raw_turns=raw, merged_turns=merged_turns, reassigned_turns=reassigned.segments, segments=segments,
            speakers=len({s.speaker for s in segments if s.kept}), merges=len(merged.history),
            chunks_moved=reassigned.moved,
            figures={"tracks": len({t.speaker for t in raw}), "clusters": len(merged.representatives),
                     "chunks": reassigned.chunks, "chunks_marked": reassigned.marked,
                     "chunks_moved_s": round(reassigned.moved_s, 3), "names": names},
        )
