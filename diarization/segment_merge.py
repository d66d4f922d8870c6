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
* ``partition_by_length``: spans shorter than ``min_duration_s`` are separated out so the
  caller can record them as dropped (never silently lost).
"""

from __future__ import annotations

import math

import numpy as np

from manifests.span import Span


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


def partition_by_length(spans: list[Span], min_duration_s: float) -> tuple[list[Span], list[Span]]:
    kept = [s for s in spans if s.duration >= min_duration_s]
    short = [s for s in spans if s.duration < min_duration_s]
    return kept, short
