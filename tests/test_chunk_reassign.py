import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diarization.chunk_reassign import chunk_spans, reassign
from diarization.cluster_merge import merge_clusters
from manifests.span import Span
from diarization.params import KIMI_THRESHOLDS, DiarizationParams

CFG = DiarizationParams(**KIMI_THRESHOLDS)  # the rule at Kimi's documented thresholds
CHUNK, MIN_LAST, THRESHOLD = CFG.reassign_chunk_s, CFG.reassign_min_last_chunk_s, CFG.reassignment_threshold()

A, B, C = np.eye(3)
REPS = {"A": A, "B": B, "C": C}


def at_cos(c: float) -> np.ndarray:
    """A unit vector at cosine c from A, on B's side."""
    return np.array([c, math.sqrt(1 - c * c), 0.0])


def run(segments, embeddings, threshold=THRESHOLD, reps=REPS, chunk_s=CHUNK, min_last_s=MIN_LAST):
    return reassign(
        segments, [np.stack(e) for e in embeddings], reps, threshold, chunk_s=chunk_s, min_last_s=min_last_s
    )


def lengths(chunks: list[Span]) -> list[float]:
    return [round(c.duration, 9) for c in chunks]


# ---- chunking -----------------------------------------------------------------------------


def test_defaults_are_the_kimi_values():
    # No configured last-chunk minimum means half a chunk.
    assert (CHUNK, MIN_LAST, THRESHOLD) == (1.5, None, 0.5)
    assert chunk_spans(Span(0, 2.25, "A"), CHUNK) == chunk_spans(Span(0, 2.25, "A"), CHUNK, 0.75)


def test_a_segment_up_to_one_chunk_long_is_one_chunk():
    assert chunk_spans(Span(2, 3.5, "A"), CHUNK, MIN_LAST) == [Span(2, 3.5, "A")]
    assert chunk_spans(Span(2, 3.0, "A"), CHUNK, MIN_LAST) == [Span(2, 3.0, "A")]
    assert chunk_spans(Span(2, 2, "A"), CHUNK, MIN_LAST) == [Span(2, 2, "A")]


def test_exact_multiples_have_no_remainder_chunk():
    assert lengths(chunk_spans(Span(0, 3.0, "A"), CHUNK, MIN_LAST)) == [1.5, 1.5]
    assert lengths(chunk_spans(Span(10.1, 14.6, "A"), CHUNK, MIN_LAST)) == [1.5, 1.5, 1.5]


def test_last_piece_around_min_last():
    # Remainder exactly min_last: a chunk of its own.
    assert lengths(chunk_spans(Span(0, 2.25, "A"), CHUNK, MIN_LAST)) == [1.5, 0.75]
    # Just shorter: it joins the previous chunk.
    assert lengths(chunk_spans(Span(0, 2.25 - 1e-6, "A"), CHUNK, MIN_LAST)) == [2.249999]
    assert lengths(chunk_spans(Span(0, 4.4, "A"), CHUNK, MIN_LAST)) == [1.5, 1.5, 1.4]
    assert lengths(chunk_spans(Span(0, 3.7, "A"), CHUNK, MIN_LAST)) == [1.5, 2.2]
    # min_last 0: any remainder stays; min_last = chunk_s: every remainder joins.
    assert lengths(chunk_spans(Span(0, 3.1, "A"), CHUNK, 0.0)) == [1.5, 1.5, 0.1]
    assert lengths(chunk_spans(Span(0, 4.4, "A"), CHUNK, CHUNK)) == [1.5, 2.9]


def test_configured_chunk_length_and_its_half_default():
    cfg = DiarizationParams(reassign_chunk_s=2.0)
    assert lengths(chunk_spans(Span(0, 4.9, "A"), cfg.reassign_chunk_s, cfg.reassign_min_last_chunk_s)) == [2.0, 2.9]
    assert lengths(chunk_spans(Span(0, 5.0, "A"), cfg.reassign_chunk_s, cfg.reassign_min_last_chunk_s)) == [2.0, 2.0, 1.0]
    cfg = DiarizationParams(reassign_min_last_chunk_s=0.2)
    assert lengths(chunk_spans(Span(0, 3.3, "A"), cfg.reassign_chunk_s, cfg.reassign_min_last_chunk_s)) == [1.5, 1.5, 0.3]
    with pytest.raises(ValueError, match="reassign_min_last_chunk_s must be <= reassign_chunk_s"):
        DiarizationParams(reassign_min_last_chunk_s=2.0)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0, 1000, allow_nan=False),
    st.floats(0, 60, allow_nan=False),
    st.floats(0.1, 5, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
)
def test_chunks_tile_the_segment(start, duration, chunk_s, min_last_frac):
    segment = Span(start, start + duration, "A")
    min_last = min_last_frac * chunk_s
    chunks = chunk_spans(segment, chunk_s, min_last)
    assert chunks[0].start == segment.start and chunks[-1].end == segment.end
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:]))  # no gap, no overlap
    assert math.isclose(sum(c.duration for c in chunks), segment.duration, abs_tol=1e-6)
    assert all(c.speaker == "A" for c in chunks)
    assert all(math.isclose(c.duration, chunk_s, abs_tol=1e-6) for c in chunks[:-1])
    if len(chunks) > 1:
        assert chunks[-1].duration >= min_last - 1e-6
        assert chunks[-1].duration <= chunk_s + min_last + 1e-6
    else:
        assert segment.duration <= chunk_s + min_last + 1e-6


# ---- reassignment ---------------------------------------------------------------------------


def test_cosine_exactly_at_the_threshold_does_not_mark():
    segment = Span(0, 3, "A")
    exact = [A, np.array([0.5, math.sqrt(0.75), 0.0])]  # A @ second == 0.5 exactly
    result = run([segment], [exact])
    assert (result.marked, result.moved) == (0, 0) and result.segments == [segment]


def test_cosine_just_below_the_threshold_marks_both_chunks():
    result = run([Span(0, 3, "A")], [[A, at_cos(0.5 - 1e-6)]])
    # Both chunks are marked; the first is still closest to A, the second to B.
    assert (result.chunks, result.marked, result.moved) == (2, 2, 1)
    assert result.segments == [Span(0, 1.5, "A"), Span(1.5, 3, "B")]
    assert result.moved_s == pytest.approx(1.5)


def test_configured_threshold_overrides_the_default():
    segment, emb = Span(0, 3, "A"), [[A, at_cos(0.4)]]
    low = DiarizationParams(reassign_threshold=0.3).reassignment_threshold()
    high = DiarizationParams(reassign_threshold=0.7).reassignment_threshold()
    assert run([segment], emb, low).moved == 0
    assert run([segment], emb, THRESHOLD).moved == 1
    assert run([Span(0, 3, "A")], [[A, at_cos(0.6)]], high).moved == 1
    assert run([Span(0, 3, "A")], [[A, at_cos(0.6)]], THRESHOLD).moved == 0


def test_a_single_chunk_segment_never_moves():
    # Exactly one chunk long, and one chunk long after its short tail joins: no pair.
    for segment in (Span(0, 1.5, "A"), Span(0, 2.2, "A")):
        result = run([segment], [[B]])
        assert (result.chunks, result.marked, result.moved) == (1, 0, 0)
        assert result.segments == [segment]


def test_a_marked_chunk_may_stay_with_its_own_cluster():
    # The pair's cosine is 0.3, so both chunks are marked; A's representative is still the
    # closest to each of them (0.3 and 1.0, against 0 for B's).
    result = run([Span(0, 3, "A")], [[A, at_cos(0.3)]], reps={"A": at_cos(0.3), "B": C})
    assert (result.marked, result.moved) == (2, 0)
    assert result.segments == [Span(0, 3, "A")]


def test_the_joined_short_tail_moves_with_its_chunk():
    # 3.7 s: chunks [0, 1.5] and [1.5, 3.7] (the 0.7 s tail joined).
    result = run([Span(0, 3.7, "A")], [[A, B]])
    assert result.segments == [Span(0, 1.5, "A"), Span(1.5, 3.7, "B")]


def test_only_chunks_next_to_a_low_pair_move():
    # A A B B: only the pair (1, 2) is low; chunk 2 goes to B, chunk 3 is not next to a
    # low pair and keeps the segment's label. This is the rule as stated, to the letter.
    result = run([Span(0, 6, "A")], [[A, A, B, B]])
    assert (result.marked, result.moved) == (2, 1)
    assert result.segments == [Span(0, 3, "A"), Span(3, 4.5, "B"), Span(4.5, 6, "A")]


def test_runs_of_one_label_join_and_segments_split_where_the_label_changes():
    result = run([Span(0, 7.5, "A"), Span(8, 11, "B")], [[A, C, C, A, A], [B, B]])
    assert result.segments == [Span(0, 1.5, "A"), Span(1.5, 4.5, "C"), Span(4.5, 7.5, "A"), Span(8, 11, "B")]
    assert (result.chunks, result.marked, result.moved) == (7, 4, 2)


def test_overlapping_segments_of_two_speakers_never_give_one_speaker_twice():
    # B's first chunk sounds like A and falls inside A's own segment: united with it.
    result = run([Span(0, 3, "A"), Span(2, 5, "B")], [[A, A], [A, B]])
    assert result.segments == [Span(0, 3.5, "A"), Span(3.5, 5, "B")]


def test_input_errors_are_named():
    with pytest.raises(ValueError, match="label 'D', which is no cluster"):
        run([Span(0, 3, "D")], [[A, A]])
    with pytest.raises(ValueError, match="segment 0 chunk embeddings .* expected shape \\[2, dim\\]"):
        run([Span(0, 3, "A")], [[A]])
    with pytest.raises(ValueError, match="row 1 has norm"):
        run([Span(0, 3, "A")], [[A, 0.5 * B]])
    with pytest.raises(ValueError, match="1 chunk embedding arrays for 2 segments"):
        run([Span(0, 3, "A"), Span(4, 5, "A")], [[A, A]])


def test_cluster_merge_feeds_reassignment():
    # Turns of "x" and "y" sound alike and merge; the representatives then drive reassignment.
    turns = [Span(0, 3, "x"), Span(3, 4.5, "y"), Span(5, 8, "z")]
    merged = merge_clusters(turns, np.stack([A, at_cos(0.9), B]), CFG.merge_threshold())
    assert set(merged.representatives) == {"x", "z"}
    result = reassign(
        merged.turns[:1], [np.stack([A, B])], merged.representatives, THRESHOLD, chunk_s=CHUNK, min_last_s=MIN_LAST
    )
    assert result.segments == [Span(0, 1.5, "x"), Span(1.5, 3, "z")]


# ---- properties -----------------------------------------------------------------------------

unit3 = st.lists(st.floats(-1, 1, allow_nan=False), min_size=3, max_size=3).filter(lambda v: np.linalg.norm(v) > 0.1)


def as_unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


@st.composite
def reassignment_cases(draw, overlapping: bool):
    chunk_s = draw(st.floats(0.5, 3))
    min_last = draw(st.floats(0, 1)) * chunk_s
    labels = draw(st.lists(st.sampled_from("ABCD"), min_size=1, max_size=4, unique=True))
    reps = {c: as_unit(draw(unit3)) for c in labels}
    segments, t = [], draw(st.floats(0, 50))
    for _ in range(draw(st.integers(1, 8))):
        gap = draw(st.floats(-5, 3) if overlapping else st.floats(0, 3))
        start = max(0.0, t + gap)
        seg = Span(start, start + draw(st.floats(0, 12)), draw(st.sampled_from(labels)))
        segments.append(seg)
        t = max(t, seg.end)
    embeddings = [
        np.stack([as_unit(draw(unit3)) for _ in chunk_spans(s, chunk_s, min_last)]) for s in segments
    ]
    threshold = draw(st.floats(-1, 1))
    return segments, embeddings, reps, threshold, chunk_s, min_last


def probe_points(segments: list[Span], chunk_s: float, min_last: float) -> list[float]:
    """Instants strictly inside the chunks (chunk edges are where labels may change)."""
    return [
        c.start + f * c.duration
        for s in segments
        for c in chunk_spans(s, chunk_s, min_last)
        if c.duration > 1e-6
        for f in (0.01, 0.5, 0.99)
    ]


def check_common(segments, out, reps):
    lo, hi = min(s.start for s in segments), max(s.end for s in segments)
    assert all(lo <= s.start <= s.end <= hi for s in out.segments)
    assert {s.speaker for s in out.segments} <= set(reps)
    assert out.moved <= out.marked <= out.chunks
    by_speaker: dict[str, list[Span]] = {}
    for s in out.segments:
        by_speaker.setdefault(s.speaker, []).append(s)
    for spans in by_speaker.values():
        spans.sort()
        assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))


@settings(max_examples=200, deadline=None)
@given(reassignment_cases(overlapping=False))
def test_reassignment_invariants_without_overlap(case):
    segments, embeddings, reps, threshold, chunk_s, min_last = case
    out = reassign(segments, embeddings, reps, threshold, chunk_s=chunk_s, min_last_s=min_last)
    check_common(segments, out, reps)
    assert out.chunks == sum(len(chunk_spans(s, chunk_s, min_last)) for s in segments)
    # Every input instant is covered exactly once, and nothing else is.
    for t in probe_points(segments, chunk_s, min_last):
        assert sum(s.start < t < s.end for s in out.segments) == 1
    assert math.isclose(sum(s.duration for s in out.segments), sum(s.duration for s in segments), abs_tol=1e-6)
    # With a threshold below every possible cosine nothing is marked: output = input.
    untouched = reassign(segments, embeddings, reps, -1.0, chunk_s=chunk_s, min_last_s=min_last)
    assert untouched.marked == 0
    assert untouched.segments == sorted(s for s in segments)


@settings(max_examples=200, deadline=None)
@given(reassignment_cases(overlapping=True))
def test_reassignment_invariants_with_overlapping_speakers(case):
    segments, embeddings, reps, threshold, chunk_s, min_last = case
    out = reassign(segments, embeddings, reps, threshold, chunk_s=chunk_s, min_last_s=min_last)
    check_common(segments, out, reps)
    # Every input instant is still covered by some output segment.
    for t in probe_points(segments, chunk_s, min_last):
        assert any(s.start < t < s.end for s in out.segments)
