import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from diarization.segment_merge import merge_adjacent, partition_by_length, split_long
from manifests.span import Span


def test_merge_joins_same_speaker_within_gap_and_length():
    spans = [Span(0, 5, "a"), Span(6.9, 10, "a"), Span(12.1, 14, "a")]
    assert merge_adjacent(spans, 27, 2.0) == [Span(0, 10, "a"), Span(12.1, 14, "a")]


def test_gap_exactly_at_the_limit_merges():
    assert merge_adjacent([Span(0, 5), Span(7, 9)], 27, 2.0) == [Span(0, 9)]
    assert merge_adjacent([Span(0, 5), Span(7.01, 9)], 27, 2.0) == [Span(0, 5), Span(7.01, 9)]


def test_length_exactly_at_the_limit_merges():
    assert merge_adjacent([Span(0, 20), Span(21, 27)], 27, 2.0) == [Span(0, 27)]
    assert merge_adjacent([Span(0, 20), Span(21, 27.01)], 27, 2.0) == [Span(0, 20), Span(21, 27.01)]


def test_other_speaker_in_between_breaks_the_chain():
    spans = [Span(0, 2, "a"), Span(2.5, 3, "b"), Span(3.5, 5, "a")]
    assert merge_adjacent(spans, 27, 2.0) == spans


def test_split_long_without_signal_gives_equal_pieces():
    pieces = split_long([Span(0, 60)], 27)
    assert len(pieces) == 3 and all(abs(p.duration - 20) < 1e-9 for p in pieces)


def test_split_long_cuts_at_the_quietest_point():
    sr = 1000
    x = np.ones(40 * sr, dtype=np.float32)
    x[20 * sr : 20 * sr + 100] = 0.0  # a 0.1 s pause at 20 s, inside the search window [13.5, 27]
    pieces = split_long([Span(0, 40)], 27, x, sr)
    assert len(pieces) == 2
    assert 20.0 <= pieces[0].end <= 20.1


def test_partition_by_length_keeps_the_boundary():
    kept, short = partition_by_length([Span(0, 1.0), Span(2, 2.99)], 1.0)
    assert kept == [Span(0, 1.0)] and short == [Span(2, 2.99)]


span_lists = st.lists(
    st.tuples(st.floats(0, 500, allow_nan=False), st.floats(0.05, 60, allow_nan=False)), min_size=0, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(span_lists, st.floats(5, 30), st.floats(0, 3))
def test_merge_then_split_invariants(raw, max_d, max_gap):
    # Non-overlapping speech regions of one speaker, as VAD gives them.
    spans, t = [], 0.0
    for gap, dur in sorted(raw):
        start = t + gap % 5
        spans.append(Span(start, start + dur))
        t = start + dur
    recording_end = t + 1
    out = split_long(merge_adjacent(spans, max_d, max_gap), max_d)
    assert all(0 <= s.start <= s.end <= recording_end for s in out)
    assert all(s.duration <= max_d + 1e-6 for s in out)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(out, out[1:]))
    # every speech instant is covered by exactly one output span
    for s in spans:
        mid = (s.start + s.end) / 2
        assert sum(o.start <= mid <= o.end for o in out) >= 1
    covered = sum(o.duration for o in out)
    assert covered >= sum(s.duration for s in spans) - 1e-6
