import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diarization.cluster_merge import MergeStep, merge_clusters, representative
from manifests.span import Span
from diarization.params import KIMI_THRESHOLDS, DiarizationParams

DEFAULT = DiarizationParams(**KIMI_THRESHOLDS).merge_threshold()


def at_cos(c: float, dim: int = 3) -> np.ndarray:
    """A unit vector whose cosine with e1 = (1, 0, ...) is c."""
    v = np.zeros(dim)
    v[0], v[1] = c, math.sqrt(1 - c * c)
    return v


def e(i: int, dim: int = 3) -> np.ndarray:
    v = np.zeros(dim)
    v[i] = 1.0
    return v


def test_default_threshold_is_the_kimi_value():
    assert DEFAULT == 0.6


def test_representative_is_the_duration_weighted_mean_renormalised():
    turns = [Span(0, 3, "a"), Span(4, 5, "a")]
    emb = np.stack([e(0), e(1)])
    result = merge_clusters(turns, emb, DEFAULT)
    expected = np.array([3.0, 1.0, 0.0]) / math.sqrt(10)
    np.testing.assert_allclose(result.representatives["a"], expected)
    # All turns of 0 s: equal weights rather than no direction.
    np.testing.assert_allclose(representative(emb, np.zeros(2)), np.array([1, 1, 0]) / math.sqrt(2))


def test_cosine_exactly_at_the_threshold_does_not_merge():
    # (0.6, 0.8) has norm exactly 1.0 in float64, and durations of 1 s scale nothing:
    # the representatives' cosine is exactly 0.6.
    turns = [Span(0, 1, "a"), Span(2, 3, "b")]
    emb = np.stack([e(0), np.array([0.6, 0.8, 0.0])])
    assert merge_clusters(turns, emb, 0.5).history[0].similarity == 0.6
    result = merge_clusters(turns, emb, DEFAULT)
    assert result.history == [] and [t.speaker for t in result.turns] == ["a", "b"]


def test_cosine_just_above_the_threshold_merges():
    turns = [Span(0, 1, "a"), Span(2, 3, "b")]
    emb = np.stack([e(0), at_cos(0.6 + 1e-6)])
    result = merge_clusters(turns, emb, DEFAULT)
    assert len(result.history) == 1 and result.history[0].similarity > 0.6
    assert {t.speaker for t in result.turns} == {"a"} and set(result.representatives) == {"a"}


def test_configured_threshold_overrides_the_default():
    turns = [Span(0, 1, "a"), Span(2, 3, "b")]
    emb = np.stack([e(0), at_cos(0.75)])
    strict = DiarizationParams(cluster_merge_threshold=0.8)
    loose = DiarizationParams(cluster_merge_threshold=0.7)
    assert merge_clusters(turns, emb, DEFAULT).history  # 0.75 > 0.6
    assert merge_clusters(turns, emb, strict.merge_threshold()).history == []
    assert merge_clusters(turns, emb, loose.merge_threshold()).history


def test_merged_cluster_takes_the_label_of_the_longer_speaker():
    emb = np.stack([e(0), at_cos(0.9), e(0)])
    turns = [Span(0, 1, "a"), Span(1, 4, "b"), Span(5, 7, "a")]  # a: 3 s, b: 3 s
    result = merge_clusters(turns, emb, DEFAULT)
    # Equal durations: the label that sorts first.
    assert result.history == [MergeStep("a", "b", pytest.approx(result.history[0].similarity))]
    turns = [Span(0, 1, "a"), Span(1, 4.5, "b"), Span(5, 7, "a")]  # b longer
    result = merge_clusters(turns, emb, DEFAULT)
    assert (result.history[0].kept, result.history[0].absorbed) == ("b", "a")
    assert [t.speaker for t in result.turns] == ["b", "b", "b"]
    assert result.mapping == {"a": "b", "b": "b"}


def test_the_most_similar_pair_merges_first():
    # a~b 0.9, a~c 0.7; b and c are further apart.
    c = at_cos(0.7)
    b = np.array([0.9, -math.sqrt(1 - 0.81), 0.0])
    turns = [Span(0, 2, "a"), Span(2, 3, "b"), Span(3, 4, "c")]
    result = merge_clusters(turns, np.stack([e(0), b, c]), DEFAULT)
    assert result.history[0].absorbed == "b" and result.history[0].similarity == pytest.approx(0.9)


def test_chain_merge_happens_only_after_recomputing_the_representative():
    # a and b sit 25 degrees either side of x; c is at cos 0.65 from x, but only at
    # cos ~0.589 from a and from b. Only the merged (a+b) representative, which points
    # along x, is close enough to c.
    phi = math.radians(25)
    a = np.array([math.cos(phi), math.sin(phi), 0.0])
    b = np.array([math.cos(phi), -math.sin(phi), 0.0])
    c = np.array([0.65, 0.0, math.sqrt(1 - 0.65**2)])
    assert a @ b > 0.6 and a @ c < 0.6 and b @ c < 0.6
    turns = [Span(0, 2, "a"), Span(2, 4, "b"), Span(4, 5, "c")]
    result = merge_clusters(turns, np.stack([a, b, c]), DEFAULT)
    assert [(s.kept, s.absorbed) for s in result.history] == [("a", "b"), ("a", "c")]
    assert result.history[0].similarity == pytest.approx(math.cos(2 * phi))
    assert result.history[1].similarity == pytest.approx(0.65)
    assert set(result.representatives) == {"a"}
    # Without the merge there is no chain: a and c alone stay apart.
    assert merge_clusters([turns[0], turns[2]], np.stack([a, c]), DEFAULT).history == []


def test_equal_similarities_break_ties_by_label_order():
    # The middle vector has cosine exactly 0.8 with both outer ones (all norms exactly 1):
    # whichever outer vector is labelled "a" merges first.
    left, middle, right = np.array([0.8, 0.6, 0.0]), e(0), np.array([0.8, -0.6, 0.0])
    turns = [Span(0, 1, "a"), Span(1, 2, "b"), Span(2, 3, "c")]
    for outer in ([left, middle, right], [right, middle, left]):
        first = merge_clusters(turns, np.stack(outer), 0.7).history[0]
        assert (first.kept, first.absorbed, first.similarity) == ("a", "b", 0.8)


def test_cannot_link_keeps_two_clusters_apart_and_follows_merges():
    # b and c lie on either side of a (cosines 0.9 and 0.8 with a, 0.46 with each other).
    a, b, c = e(0), at_cos(0.9), np.array([0.8, -0.6, 0.0])
    turns = [Span(0, 2, "a"), Span(2, 3, "b"), Span(3, 4, "c")]
    emb = np.stack([a, b, c])
    free = merge_clusters(turns, emb, DEFAULT)
    assert (free.history[0].kept, free.history[0].absorbed) == ("a", "b") and len(free.representatives) == 1
    # a and b may not merge: the most similar allowed pair (a, c) merges instead, and
    # then b may not join the cluster that now holds a.
    apart = merge_clusters(turns, emb, DEFAULT, cannot_link={frozenset(("a", "b"))})
    assert [(s.kept, s.absorbed) for s in apart.history] == [("a", "c")]
    assert set(apart.representatives) == {"a", "b"}
    # Constraint on b and c: a absorbs b first, and then c may not join a.
    apart = merge_clusters(turns, emb, DEFAULT, cannot_link={frozenset(("b", "c"))})
    assert [(s.kept, s.absorbed) for s in apart.history] == [("a", "b")]
    assert set(apart.representatives) == {"a", "c"}


def test_input_errors_are_named():
    with pytest.raises(ValueError, match="turn 1 .* has no speaker label"):
        merge_clusters([Span(0, 1, "a"), Span(1, 2)], np.stack([e(0), e(1)]), DEFAULT)
    with pytest.raises(ValueError, match="row 1 has norm 2"):
        merge_clusters([Span(0, 1, "a"), Span(1, 2, "b")], np.stack([e(0), 2 * e(1)]), DEFAULT)
    with pytest.raises(ValueError, match="expected shape"):
        merge_clusters([Span(0, 1, "a")], np.stack([e(0), e(1)]), DEFAULT)


def test_no_turns_no_clusters():
    result = merge_clusters([], np.zeros((0, 3)), DEFAULT)
    assert result.turns == [] and result.representatives == {} and result.history == []


# ---- properties -----------------------------------------------------------------------------

unit_vectors = st.lists(st.floats(-1, 1, allow_nan=False), min_size=3, max_size=3).filter(
    lambda v: np.linalg.norm(v) > 0.1
)
turn_lists = st.lists(
    st.tuples(st.floats(0, 100, allow_nan=False), st.floats(0, 10, allow_nan=False), st.sampled_from("abcde"), unit_vectors),
    min_size=1,
    max_size=25,
)


label_pairs = st.sets(st.frozensets(st.sampled_from("abcde"), min_size=2, max_size=2), max_size=4)


@settings(max_examples=200, deadline=None)
@given(turn_lists, st.floats(-0.5, 0.99, allow_nan=False), label_pairs)
def test_merge_invariants(raw, threshold, cannot_link):
    turns = [Span(start, start + dur, label) for start, dur, label, _ in raw]
    emb = np.array([np.array(v) / np.linalg.norm(v) for *_, v in raw])
    result = merge_clusters(turns, emb, threshold, cannot_link=cannot_link)
    labels_in = {t.speaker for t in turns}

    # Same turns, same times, in input order; only labels change, to input labels.
    assert [(t.start, t.end) for t in result.turns] == [(t.start, t.end) for t in turns]
    assert set(result.representatives) <= labels_in
    assert [t.speaker for t in result.turns] == [result.mapping[t.speaker] for t in turns]
    assert {t.speaker for t in result.turns} == set(result.representatives)
    assert len(result.history) == len(labels_in) - len(result.representatives)
    assert all(step.similarity > threshold for step in result.history)

    # No cluster holds a cannot-link pair.
    holds = {final: {c for c, f in result.mapping.items() if f == final} for final in result.representatives}
    assert not any(pair <= labels for labels in holds.values() for pair in cannot_link)

    # Stopping rule: no two remaining clusters that may merge are more similar than the threshold.
    names = sorted(result.representatives)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if not any(frozenset((x, y)) in cannot_link for x in holds[a] for y in holds[b]):
                assert result.representatives[a] @ result.representatives[b] <= threshold

    # Each representative is the one its final members give.
    for label, rep in result.representatives.items():
        idx = [i for i, t in enumerate(result.turns) if t.speaker == label]
        durations = np.array([turns[i].duration for i in idx])
        np.testing.assert_allclose(rep, representative(emb[idx], durations), atol=1e-12)
        assert abs(np.linalg.norm(rep) - 1) < 1e-9 or np.linalg.norm(rep) == 0
