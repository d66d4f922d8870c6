"""Cluster merging (DESIGN stage 4): speaker clusters that sound alike become one.

Input: diarized turns (``Span`` with a speaker label) and one L2-normalised embedding per
turn. The rule, a pure function of that input and the threshold:

* The representative of a cluster is the duration-weighted mean of its turns' embeddings,
  re-normalised to unit length. Longer turns weigh more because their embeddings are
  more reliable. A cluster whose turns all last 0 s uses equal weights; a cluster whose
  weighted sum is the zero vector has a zero representative (cosine 0 with every other).
* Repeatedly take the pair of clusters whose representatives have the highest cosine
  similarity; merge them while that similarity is strictly greater than ``threshold``
  (default 0.6, ``diarization.cluster_merge_threshold``). After each merge the new
  cluster's representative is recomputed from all its turns (not averaged from the two
  old representatives), so a merge can make a third cluster close enough to merge next.
* The merged cluster keeps the label of the cluster that speaks longer (total duration
  of its turns): the dominant voice names the result. Equal durations: the label that
  sorts first.
* Ties in similarity go to the pair whose (sorted) labels sort first, so the result
  depends on nothing but the input.
* Optional ``cannot_link``: pairs of input labels known to be different speakers (e.g.
  two tracks active at the same time). Two clusters holding such a pair between them
  are never merged, whatever their similarity; the constraint follows the labels into
  merged clusters. The most similar allowed pair is merged instead.

When it stops, every allowed pair of remaining representatives has cosine <= ``threshold``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from manifests.span import Span

# How far an input embedding's norm may be from 1 before it is refused as not normalised
# (float32 model outputs sit within ~1e-6 of 1).
_UNIT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class MergeStep:
    """One merge: ``absorbed`` joined ``kept`` at cosine ``similarity``."""

    kept: str
    absorbed: str
    similarity: float


@dataclass(frozen=True)
class ClusterMergeResult:
    turns: list[Span]  # the input turns in input order, relabelled
    representatives: dict[str, np.ndarray]  # final label -> unit vector (float64)
    history: list[MergeStep]  # in the order the merges happened
    mapping: dict[str, str]  # every input label -> its final label


def representative(embeddings: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Duration-weighted mean of unit rows, re-normalised (see the module docstring)."""
    weights = durations if durations.sum() > 0 else np.ones_like(durations)
    total = weights @ embeddings
    norm = np.linalg.norm(total)
    return total / norm if norm > 0 else total


def merge_clusters(
    turns: list[Span],
    embeddings: np.ndarray,
    threshold: float,
    cannot_link: Collection[frozenset[str]] = (),
) -> ClusterMergeResult:
    emb = check_unit_rows(embeddings, len(turns), "turn embeddings")
    labels = [_label_of(t, i) for i, t in enumerate(turns)]
    durations = np.array([t.duration for t in turns], dtype=np.float64)

    members: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    reps = {c: representative(emb[idx], durations[idx]) for c, idx in members.items()}
    spoken = {c: float(durations[idx].sum()) for c, idx in members.items()}
    holds = {c: {c} for c in members}  # input labels inside each cluster

    def allowed(a: str, b: str) -> bool:
        return not any(frozenset((x, y)) in cannot_link for x in holds[a] for y in holds[b])

    history: list[MergeStep] = []
    while len(reps) > 1:
        best = _most_similar_pair(reps, allowed)
        if best is None or not best[0] > threshold:
            break
        sim, a, b = best
        # a sorts before b, so on equal durations a keeps its label.
        kept, absorbed = (b, a) if spoken[b] > spoken[a] else (a, b)
        members[kept] += members.pop(absorbed)
        spoken[kept] += spoken.pop(absorbed)
        holds[kept] |= holds.pop(absorbed)
        del reps[absorbed]
        idx = sorted(members[kept])
        reps[kept] = representative(emb[idx], durations[idx])
        history.append(MergeStep(kept=kept, absorbed=absorbed, similarity=sim))

    mapping = {c: c for c in dict.fromkeys(labels)}
    for step in history:
        for c, final in mapping.items():
            if final == step.absorbed:
                mapping[c] = step.kept
    relabelled = [Span(t.start, t.end, mapping[label]) for t, label in zip(turns, labels)]
    return ClusterMergeResult(relabelled, reps, history, mapping)


def _most_similar_pair(
    reps: dict[str, np.ndarray], allowed: Callable[[str, str], bool]
) -> tuple[float, str, str] | None:
    """(cosine, a, b) with a < b; highest cosine among allowed pairs, ties to the first
    (a, b) in label order; None when no pair is allowed."""
    names = sorted(reps)
    best: tuple[float, str, str] | None = None
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if not allowed(a, b):
                continue
            sim = float(reps[a] @ reps[b])
            # Strictly greater: an equal similarity keeps the earlier pair in label order.
            if best is None or sim > best[0]:
                best = (sim, a, b)
    return best


def _label_of(turn: Span, index: int) -> str:
    if turn.speaker is None:
        raise ValueError(f"turn {index} [{turn.start}, {turn.end}] has no speaker label")
    return turn.speaker


def check_unit_rows(embeddings: np.ndarray, n_rows: int, what: str) -> np.ndarray:
    """``embeddings`` as float64 ``[n_rows, dim]``; refuses rows that are not unit length.

    Rows are checked, not re-normalised: re-normalising unit vectors can move a cosine
    by one ulp, across a threshold that the input sits exactly on.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != n_rows:
        raise ValueError(f"{what}: expected shape [{n_rows}, dim], got {emb.shape}")
    norms = np.linalg.norm(emb, axis=1)
    bad = np.flatnonzero(~(np.abs(norms - 1) <= _UNIT_TOLERANCE))
    if bad.size:
        raise ValueError(f"{what}: row {int(bad[0])} has norm {norms[bad[0]]:.6g}, expected an L2-normalised row")
    return emb
