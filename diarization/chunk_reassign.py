"""Chunk reassignment (DESIGN stage 5): fix speaker changes that diarization missed.

Two pure functions over ``Span`` lists; the caller embeds the chunks in between.

``chunk_spans(segment, chunk_s, min_last_s)`` cuts one segment into chunks:

* A segment no longer than ``chunk_s`` (default 1.5 s, ``diarization.reassign_chunk_s``)
  is one chunk; a segment of exactly 1.5 s is one chunk.
* A longer segment is cut at ``start + k * chunk_s``. What is left after the last full
  chunk, if shorter than ``min_last_s`` (``diarization.reassign_min_last_chunk_s``;
  None, the default, means ``chunk_s / 2``), joins the last full chunk, which then
  lasts up to ``chunk_s + min_last_s``: a sliver embeds too badly to judge on its own.
  A remainder of at least ``min_last_s`` is a chunk of its own. A segment that is an
  exact multiple of ``chunk_s`` has no remainder.
* The chunks tile the segment: the first starts at its start, the last ends at its
  end, each ends where the next starts, and all carry the segment's speaker.

``reassign(segments, chunk_embeddings, representatives, threshold, chunk_s=, min_last_s=)``,
with the chunks of each segment as ``chunk_spans`` gives them and one L2-normalised
embedding per chunk, in order:

* For each adjacent pair of chunks in a segment, compute the cosine of their
  embeddings. A pair whose cosine is strictly below ``threshold`` (default 0.5,
  ``diarization.reassign_threshold``) marks both of its chunks: the voice changes
  somewhere around them, and the pair alone cannot say which side changed.
* Each marked chunk goes to the cluster whose representative (from cluster merging) is
  most similar to it, possibly its own cluster. Ties go to its own label, then to the
  label that sorts first.
* Unmarked chunks keep the segment's label. A segment of one chunk has no pair, so it
  never moves; a short last piece joined to the previous chunk moves with that chunk.
* Consecutive chunks with the same label are joined, so a segment is split exactly where
  the label changes.
* Only where input segments of different speakers overlap in time can two pieces of one
  speaker overlap afterwards; such pieces are united, as one voice cannot speak twice at
  once. Without overlapping input, every input instant is covered exactly once.

The result lists the new segments sorted by (start, end, speaker) and counts the
chunks seen, marked and moved (moved: marked and given another label).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from diarization.cluster_merge import check_unit_rows
from manifests.span import Span

# Float noise in times (seconds): far below one sample at any rate (1/192000 s = 5e-6 s).
_EPS = 1e-9


@dataclass(frozen=True)
class ReassignResult:
    segments: list[Span]
    chunks: int  # chunks seen in all segments
    marked: int  # chunks next to a pair below the threshold
    moved: int  # marked chunks given a label other than their segment's
    moved_s: float  # their total duration


def chunk_spans(segment: Span, chunk_s: float, min_last_s: float | None = None) -> list[Span]:
    if chunk_s <= 0:
        raise ValueError(f"chunk_s must be > 0, got {chunk_s}")
    if min_last_s is None:
        min_last_s = chunk_s / 2
    if segment.duration <= chunk_s + _EPS:
        return [segment]
    n_full = math.floor(segment.duration / chunk_s + _EPS)
    # Edges from start + k * chunk_s, not by accumulation, so no drift on long segments.
    edges = [segment.start + k * chunk_s for k in range(n_full)] + [segment.end]
    remainder = segment.end - (segment.start + n_full * chunk_s)
    if remainder >= min_last_s - _EPS and remainder > _EPS:
        edges.insert(n_full, segment.start + n_full * chunk_s)
    return [Span(a, b, segment.speaker) for a, b in zip(edges[:-1], edges[1:])]


def reassign(
    segments: Sequence[Span],
    chunk_embeddings: Sequence[np.ndarray],
    representatives: Mapping[str, np.ndarray],
    threshold: float,
    *,
    chunk_s: float,
    min_last_s: float | None = None,
) -> ReassignResult:
    if len(chunk_embeddings) != len(segments):
        raise ValueError(f"{len(chunk_embeddings)} chunk embedding arrays for {len(segments)} segments")
    labels, reps = _representatives(representatives)
    pieces: list[Span] = []
    n_chunks = n_marked = n_moved = 0
    moved_s = 0.0
    for k, (segment, emb) in enumerate(zip(segments, chunk_embeddings)):
        if segment.speaker not in labels:
            raise ValueError(f"segment {k} has label {segment.speaker!r}, which is no cluster: {labels}")
        chunks = chunk_spans(segment, chunk_s, min_last_s)
        emb = check_unit_rows(emb, len(chunks), f"segment {k} chunk embeddings (one row per chunk_spans chunk)")
        marked = _marked_chunks(emb, threshold)
        new_labels = [
            _closest_cluster(emb[i], segment.speaker, labels, reps) if marked[i] else segment.speaker
            for i in range(len(chunks))
        ]
        for chunk, is_marked, label in zip(chunks, marked, new_labels):
            n_chunks += 1
            n_marked += int(is_marked)
            if label != segment.speaker:
                n_moved += 1
                moved_s += chunk.duration
        pieces.extend(_join_runs(chunks, new_labels))
    return ReassignResult(_unite_overlaps(pieces), n_chunks, n_marked, n_moved, moved_s)


def _marked_chunks(emb: np.ndarray, threshold: float) -> np.ndarray:
    """Chunks on either side of an adjacent pair with cosine < threshold."""
    marked = np.zeros(len(emb), dtype=bool)
    if len(emb) < 2:
        return marked
    adjacent = np.einsum("ij,ij->i", emb[:-1], emb[1:])
    low = adjacent < threshold
    marked[:-1] |= low
    marked[1:] |= low
    return marked


def _closest_cluster(vec: np.ndarray, own: str, labels: list[str], reps: np.ndarray) -> str:
    sims = reps @ vec
    best = sims.max()
    # Among equally similar clusters prefer staying put, then the first label in order.
    if sims[labels.index(own)] == best:
        return own
    return labels[int(np.flatnonzero(sims == best)[0])]


def _representatives(representatives: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    labels = sorted(representatives)
    if not labels:
        raise ValueError("no cluster representatives given")
    reps = np.stack([np.asarray(representatives[c], dtype=np.float64) for c in labels])
    # A zero representative (a cluster whose embeddings cancel out) is allowed: cosine 0.
    nonzero = np.linalg.norm(reps, axis=1) > 0
    check_unit_rows(reps[nonzero], int(nonzero.sum()), "cluster representatives")
    return labels, reps


def _join_runs(chunks: list[Span], labels: list[str]) -> list[Span]:
    out: list[Span] = []
    run_start = 0
    for i in range(1, len(chunks) + 1):
        if i == len(chunks) or labels[i] != labels[run_start]:
            out.append(Span(chunks[run_start].start, chunks[i - 1].end, labels[run_start]))
            run_start = i
    return out


def _unite_overlaps(pieces: list[Span]) -> list[Span]:
    by_speaker: dict[str | None, list[Span]] = {}
    for p in sorted(pieces, key=lambda s: (str(s.speaker), s.start, s.end)):
        runs = by_speaker.setdefault(p.speaker, [])
        # Strict overlap only: touching pieces are left for segment merging (stage 6).
        if runs and p.start < runs[-1].end:
            runs[-1] = Span(runs[-1].start, max(runs[-1].end, p.end), p.speaker)
        else:
            runs.append(p)
    return sorted(s for runs in by_speaker.values() for s in runs)
