"""Segment merging (DESIGN stage 6) and the length rules around it.

Rules, each a pure function over ``Span`` lists sorted by start:

* ``merge_adjacent``: walk the spans in time order; a span joins the previous output span
  when both have the same speaker, the silence between them is <= ``max_gap_s`` and the
  merged span would be <= ``max_duration_s``. Greedy from the left, so the result does
  not depend on anything but the input order. A span of another speaker in between
  breaks the chain (spans are only "adjacent" on the timeline).
* ``split_long``: a span longer than ``max_duration_s`` is cut at the quietest 50 ms frame
  in the latest allowed window, repeatedly, so no piece exceeds the limit; without the
  signal it is cut into equal pieces.
* ``absorb_short``: a span shorter than ``min_duration_s`` joins the nearest span of the
  same speaker when the silence between them is <= ``max_gap_s`` (or they overlap), the
  union stays <= ``max_duration_s`` and no turn of another speaker lies wholly inside the
  gap (that would be a speaker change, not a pause). ``merge_adjacent`` only sees the
  previous span, so a short piece after another speaker's overlapping interjection was
  dropped although its speaker's turn had just ended.
* ``partition_by_length``: spans still shorter than ``min_duration_s`` are separated out so
  the caller can record them as dropped (never silently lost).

``finalize_segments`` is the tail both segmenters (voice activity, diarization) share:
merge, split, clamp to the recording, partition by length, one ``PlannedSegment`` each,
in time order. Its parameters are ``SegmentMergeParams`` (the ``segment`` config section).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from diarization.segmentation import SAMPLE_RATE, frame_center_s
from manifests.params import Params
from manifests.planned_segment import PlannedSegment
from manifests.span import Span


class SegmentMergeParams(Params):
    """Segment merging (stage 6): shared by VAD segmentation and diarization."""

    max_duration_s: float = Field(27.0, gt=0, description="no segment is longer")
    max_gap_s: float = Field(2.0, ge=0, description="adjacent same-speaker pieces merge across gaps up to this")
    min_duration_s: float = Field(1.0, ge=0, description="shorter segments that cannot merge are dropped and counted")


def merge_adjacent(spans: list[Span], max_duration_s: float, max_gap_s: float) -> list[Span]:
    out: list[Span] = []
    for span in sorted(spans):
        if out:
            prev = out[-1]
            if (
                prev.speaker == span.speaker
                and 0 <= prev.gap_to(span) <= max_gap_s
                and span.end - prev.start <= max_duration_s + 1e-9
            ):
                out[-1] = Span(prev.start, max(prev.end, span.end), prev.speaker)
                continue
        out.append(span)
    return out


def split_long(
    spans: list[Span],
    max_duration_s: float,
    samples: np.ndarray | None = None,
    sample_rate: int | None = None,
    frame_s: float = 0.05,
) -> list[Span]:
    out: list[Span] = []
    for span in spans:
        out.extend(_split_one(span, max_duration_s, samples, sample_rate, frame_s))
    return out


def _split_one(span: Span, max_d: float, samples, sample_rate, frame_s: float) -> list[Span]:
    if span.duration <= max_d + 1e-9:
        return [span]
    if samples is None or sample_rate is None:
        n = math.ceil(span.duration / max_d - 1e-9)
        step = span.duration / n
        edges = [span.start + i * step for i in range(n)] + [span.end]
        return [Span(a, b, span.speaker) for a, b in zip(edges[:-1], edges[1:])]
    pieces: list[Span] = []
    start = span.start
    while span.end - start > max_d + 1e-9:
        # Search the second half of the allowed window so pieces stay long.
        lo, hi = start + max_d / 2, start + max_d
        cut = _quietest_point(samples, sample_rate, lo, hi, frame_s)
        pieces.append(Span(start, cut, span.speaker))
        start = cut
    pieces.append(Span(start, span.end, span.speaker))
    return pieces


def _quietest_point(samples: np.ndarray, sr: int, lo: float, hi: float, frame_s: float) -> float:
    frame = max(1, int(frame_s * sr))
    a, b = int(lo * sr), min(int(hi * sr), len(samples))
    n = (b - a) // frame
    if n < 1:
        return hi
    energy = np.square(samples[a : a + n * frame].astype(np.float64)).reshape(n, frame).mean(axis=1)
    k = int(np.argmin(energy))
    return (a + k * frame + frame // 2) / sr


def absorb_short(spans: list[Span], min_duration_s: float, max_gap_s: float, max_duration_s: float) -> list[Span]:
    out = sorted(spans)
    while True:
        move = _best_absorption(out, min_duration_s, max_gap_s, max_duration_s)
        if move is None:
            return out
        short, into = move
        a, b = out[short], out[into]
        merged = Span(min(a.start, b.start), max(a.end, b.end), b.speaker)
        out = sorted([s for k, s in enumerate(out) if k not in (short, into)] + [merged])


def _best_absorption(spans: list[Span], min_d: float, max_gap: float, max_d: float) -> tuple[int, int] | None:
    """(short span, span it joins) with the smallest gap, first short span first; None if none can."""
    for i, s in enumerate(spans):
        if s.duration >= min_d:
            continue
        best: tuple[float, int] | None = None
        for j, t in enumerate(spans):
            if j == i or t.speaker != s.speaker:
                continue
            gap = max(t.start - s.end, s.start - t.end)
            if gap > max_gap or max(s.end, t.end) - min(s.start, t.start) > max_d + 1e-9:
                continue
            lo, hi = (s.end, t.start) if t.start >= s.end else (t.end, s.start)
            if gap > 0 and any(o.speaker != s.speaker and o.start >= lo and o.end <= hi for o in spans):
                continue
            if best is None or gap < best[0]:
                best = (gap, j)
        if best is not None:
            return i, best[1]
    return None


def partition_by_length(spans: list[Span], min_duration_s: float) -> tuple[list[Span], list[Span]]:
    kept = [s for s in spans if s.duration >= min_duration_s]
    short = [s for s in spans if s.duration < min_duration_s]
    return kept, short


def overlap_ratio(span: Span, overlap: np.ndarray) -> float:
    """Share of the span's frames (segmentation frame grid) where two or more speakers are active."""
    if overlap.size == 0:
        return 0.0
    centers = frame_center_s(np.arange(len(overlap)))
    inside = (centers >= span.start) & (centers < span.end)
    n = int(inside.sum())
    return round(float(overlap[inside].sum()) / n, 4) if n else 0.0


def finalize_segments(spans: list[Span], params: SegmentMergeParams, audio16k: np.ndarray,
                      overlap: np.ndarray | None = None) -> list[PlannedSegment]:
    """Spans of one recording -> its planned segments, sorted by (start, end, speaker).

    ``audio16k`` is the recording's 16 kHz analysis signal: long spans are cut at its
    quietest points, and spans are clamped to its duration. Segments shorter than
    ``min_duration_s`` are kept in the list with a drop reason. With ``overlap`` (frames
    with two or more speakers, on the segmentation frame grid) each segment gets its
    ``overlap_ratio``; without it the field stays None.
    """
    duration = len(audio16k) / SAMPLE_RATE
    out = merge_adjacent(spans, params.max_duration_s, params.max_gap_s)
    out = split_long(out, params.max_duration_s, audio16k, SAMPLE_RATE)
    out = [Span(s.start, min(s.end, duration), s.speaker) for s in out if s.start < duration]
    out = absorb_short(out, params.min_duration_s, params.max_gap_s, params.max_duration_s)
    kept, short = partition_by_length(out, params.min_duration_s)
    reason = f"segment_length: shorter than {params.min_duration_s} s (segment.min_duration_s)"

    def ratio(span: Span) -> float | None:
        return overlap_ratio(span, overlap) if overlap is not None else None

    segments = [PlannedSegment(s.start, s.end, s.speaker, overlap_ratio=ratio(s)) for s in kept]
    segments += [PlannedSegment(s.start, s.end, s.speaker, drop_reason=reason, overlap_ratio=ratio(s)) for s in short]
    segments.sort(key=lambda s: (s.start, s.end, s.speaker or ""))
    return segments
