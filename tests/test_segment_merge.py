import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from diarization.segment_merge import (
    SegmentMergeParams,
    finalize_segments,
    merge_adjacent,
    overlap_ratio,
    partition_by_length,
    split_long,
)
from diarization.segmentation import frame_center_s
from diarization.vad import VadParams, segment_by_voice
from manifests.span import Span

SR = 16000


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


# ---- the shared tail of both segmenters --------------------------------------------------


def test_params_defaults_and_checks():
    p = SegmentMergeParams()
    assert (p.max_duration_s, p.max_gap_s, p.min_duration_s) == (27.0, 2.0, 1.0)
    with pytest.raises(ValidationError):
        SegmentMergeParams(max_duration_s=0)
    with pytest.raises(ValidationError):
        SegmentMergeParams(unknown=1)


def test_finalize_merges_splits_clamps_and_drops_short_ones_in_time_order():
    audio = np.ones(40 * SR, dtype=np.float32)
    audio[25 * SR: 25 * SR + 1600] = 0.0  # a 0.1 s pause at 25 s: where the 28.5 s span is cut
    spans = [Span(39.2, 41.0, "c"), Span(6, 10, "a"), Span(11, 39.5, "b"), Span(0, 5, "a"), Span(40.5, 42, "c")]
    segs = finalize_segments(spans, SegmentMergeParams(), audio)
    cut = segs[1].end
    assert 25.0 <= cut <= 25.1
    assert [(s.start, s.end, s.speaker) for s in segs] == [(0, 10, "a"), (11, cut, "b"), (cut, 39.5, "b"), (39.2, 40.0, "c")]
    assert [s.drop_reason for s in segs] == [None, None, None, "segment_length: shorter than 1.0 s (segment.min_duration_s)"]
    assert all(s.overlap_ratio is None for s in segs)  # no overlap mask, no ratio


def test_finalize_sorts_ties_by_speaker_and_measures_overlap():
    audio = np.zeros(10 * SR, dtype=np.float32)
    mask = np.zeros(600, dtype=bool)
    centers = frame_center_s(np.arange(600))
    mask[(centers >= 2.0) & (centers < 3.0)] = True
    # S00's short piece at 8 s is 4 s from its turn: too far to join it, so it is dropped.
    spans = [Span(2, 4, "S01"), Span(2, 4, "S00"), Span(8, 8.5, "S00")]
    segs = finalize_segments(spans, SegmentMergeParams(), audio, mask)
    assert [(s.start, s.end, s.speaker, s.kept) for s in segs] == [(2, 4, "S00", True), (2, 4, "S01", True),
                                                                    (8, 8.5, "S00", False)]
    assert segs[0].overlap_ratio == overlap_ratio(Span(2, 4), mask) == pytest.approx(0.5, abs=0.02)
    assert segs[2].overlap_ratio == 0.0
    assert all(s.overlap_ratio == 0.0 for s in finalize_segments(spans, SegmentMergeParams(), audio, np.zeros(0, bool)))


class _FakeVad:
    def __init__(self, spans):
        self.spans, self.calls = spans, []

    def speech_spans(self, audio16k, params, max_speech_s):
        self.calls.append((len(audio16k), params, max_speech_s))
        return list(self.spans)


def test_segment_by_voice_lists_kept_segments_then_dropped_ones():
    vad = _FakeVad([Span(0.0, 0.4), Span(3.0, 5.0), Span(8.0, 8.5), Span(9.0, 12.0)])
    merge = SegmentMergeParams(max_gap_s=0.3)
    segs = segment_by_voice(vad, np.zeros(13 * SR, dtype=np.float32), VadParams(), merge)
    assert vad.calls == [(13 * SR, VadParams(), 27.0)]  # speech regions split at max_duration_s
    assert [(s.start, s.end, s.kept) for s in segs] == [(3.0, 5.0, True), (9.0, 12.0, True), (0.0, 0.4, False),
                                                        (8.0, 8.5, False)]
    assert all(s.speaker is None and s.overlap_ratio is None for s in segs)


def test_a_short_piece_after_an_interjection_joins_its_speakers_turn():
    from diarization.segment_merge import absorb_short

    spans = [Span(0.0, 5.0, "A"), Span(3.0, 4.0, "B"), Span(5.2, 5.8, "A")]
    out = absorb_short(spans, min_duration_s=1.0, max_gap_s=2.0, max_duration_s=27.0)
    assert Span(0.0, 5.8, "A") in out and Span(3.0, 4.0, "B") in out and len(out) == 2


def test_a_short_piece_does_not_bridge_another_speakers_whole_turn_or_a_long_gap():
    from diarization.segment_merge import absorb_short

    across_turn = [Span(0.0, 5.0, "A"), Span(5.3, 6.5, "B"), Span(6.8, 7.4, "A")]
    assert absorb_short(across_turn, 1.0, 2.0, 27.0) == sorted(across_turn)
    far = [Span(0.0, 5.0, "A"), Span(7.5, 8.0, "A")]
    assert absorb_short(far, 1.0, 2.0, 27.0) == far
    too_long = [Span(0.0, 26.8, "A"), Span(27.0, 27.5, "A")]
    assert absorb_short(too_long, 1.0, 2.0, 27.0) == too_long
