"""From per-window local speakers to speaker tracks over the whole recording.

Steps, each a pure function of the window activations:

1. ``link_windows``: a local speaker is *present* in a window when its activation
   reaches ``onset`` on at least ``min_present_frames`` frames. Consecutive windows
   overlap (a 10 s window every 1 s shares 9 s); on that overlap, each pair of present
   local speakers is scored by the soft Dice agreement of their activations, the best
   one-to-one assignment is taken (at most 3 x 3, enumerated), and pairs scoring at
   least ``link_threshold`` become links.
2. Links are applied strongest first with union-find, refusing any link that would put
   two present local speakers of one window in the same track: the segmentation model
   has told them apart, so they are different speakers. The same fact gives the
   *cannot-link* pairs of tracks handed to cluster merging.
3. ``reconstruct``: each track's activation per global frame is the mean over the
   windows that cover the frame (0 where the track is absent from a covering window);
   the number of active speakers per frame is the windows' mean count rounded at
   ``count_vote`` (0.5: the rounded mean, as pyannote.audio counts; 0.3: a speaker counts
   where 30% of the covering windows hear one, since segmentation-3.0 often misses
   faint far-field speech that sits early or late in its 10 s window);
   each frame keeps the ``count`` most active tracks. Runs of kept frames become turns;
   gaps shorter than ``min_duration_off`` inside one track are filled, and turns
   shorter than ``min_duration_on`` removed.

This is the aggregation pyannote.audio's pipeline performs, with stitching by overlap
agreement in place of embedding clustering for the *raw* labels; speaker embeddings come
in afterwards, in cluster merging and chunk reassignment (the Kimi steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations

import numpy as np

from diarization.params import DiarizationParams
from diarization.segmentation import FRAME_STEP, SAMPLE_RATE, WindowActivations, frame_center_s
from manifests.span import Span

FRAME_S = FRAME_STEP / SAMPLE_RATE


@dataclass(frozen=True)
class StitchParams:
    """The stitching subset of ``DiarizationParams`` (no defaults here: see ``stitch_params``)."""

    onset: float
    min_present_frames: int
    link_threshold: float
    min_duration_on: float
    min_duration_off: float
    count_vote: float = 0.5


def stitch_params(p: DiarizationParams) -> StitchParams:
    return StitchParams(onset=p.onset, min_present_frames=p.min_present_frames, link_threshold=p.link_threshold,
                        min_duration_on=p.min_duration_on_s, min_duration_off=p.min_duration_off_s,
                        count_vote=p.count_vote)


@dataclass
class Tracks:
    """Speaker tracks of one recording: turns, per-frame activity and constraints."""

    turns: list[Span]  # labelled "T<k>", sorted by start
    cannot_link: set[frozenset[str]] = field(default_factory=set)
    active: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))  # [frames, tracks]
    labels: list[str] = field(default_factory=list)  # column names of ``active``

    def overlap_mask(self) -> np.ndarray:
        """Frames where two or more speakers are active."""
        return self.active.sum(axis=1) >= 2 if self.active.size else np.zeros(0, dtype=bool)


def _soft_dice(x: np.ndarray, y: np.ndarray) -> float:
    denom = float(x.sum() + y.sum())
    return 2.0 * float(np.minimum(x, y).sum()) / denom if denom > 0 else 0.0


def link_windows(wa: WindowActivations, p: StitchParams) -> tuple[list[tuple[float, tuple[int, int], tuple[int, int]]], np.ndarray]:
    """Scored links between local speakers of consecutive windows, and who is present."""
    present = (wa.activations >= p.onset).sum(axis=1) >= p.min_present_frames  # [W, 3]
    links = []
    F = wa.frames_per_window
    for w in range(len(wa.start_frames) - 1):
        shift = int(wa.start_frames[w + 1] - wa.start_frames[w])
        if shift >= F:
            continue
        a = wa.activations[w, shift:, :]  # the overlap, seen from window w
        b = wa.activations[w + 1, : F - shift, :]  # ... and from window w+1
        ks = [k for k in range(3) if present[w, k]]
        js = [j for j in range(3) if present[w + 1, j]]
        if not ks or not js:
            continue
        scores = {(k, j): _soft_dice(a[:, k], b[:, j]) for k in ks for j in js}
        best, best_total = [], -1.0
        for perm in permutations(js, min(len(ks), len(js))):
            for sub in permutations(ks, len(perm)):
                pairs = list(zip(sub, perm))
                total = sum(scores[pr] for pr in pairs)
                if total > best_total:
                    best, best_total = pairs, total
        for k, j in best:
            if scores[(k, j)] >= p.link_threshold:
                links.append((scores[(k, j)], (w, k), (w + 1, j)))
    return links, present


def build_tracks(wa: WindowActivations, p: StitchParams) -> tuple[dict[tuple[int, int], int], set[frozenset[int]]]:
    """Union-find over present local speakers; returns node -> track id and cannot-link pairs."""
    links, present = link_windows(wa, p)
    nodes = [(w, k) for w in range(present.shape[0]) for k in range(3) if present[w, k]]
    parent = {n: n for n in nodes}
    windows_of = {n: {n[0]} for n in nodes}

    def find(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    # Strongest links first; ties broken by position so the result is deterministic.
    for _, u, v in sorted(links, key=lambda t: (-t[0], t[1], t[2])):
        ru, rv = find(u), find(v)
        if ru == rv or windows_of[ru] & windows_of[rv]:
            continue
        parent[rv] = ru
        windows_of[ru] |= windows_of.pop(rv)
    roots = sorted({find(n) for n in nodes})  # ordered by first window, then local index
    track_of_root = {r: i for i, r in enumerate(roots)}
    track = {n: track_of_root[find(n)] for n in nodes}
    cannot: set[frozenset[int]] = set()
    for w in range(present.shape[0]):
        here = sorted({track[(w, k)] for k in range(3) if present[w, k]})
        for i in range(len(here)):
            for j in range(i + 1, len(here)):
                cannot.add(frozenset((here[i], here[j])))
    return track, cannot


def reconstruct(wa: WindowActivations, track: dict[tuple[int, int], int], num_tracks: int, p: StitchParams,
                duration_s: float) -> np.ndarray:
    """Binary activity [frames, tracks] after speaker counting."""
    F = wa.frames_per_window
    total = int(wa.start_frames[-1]) + F
    score = np.zeros((total, num_tracks), dtype=np.float64)
    covered = np.zeros(total, dtype=np.float64)
    count = np.zeros(total, dtype=np.float64)
    for w, start in enumerate(wa.start_frames):
        sl = slice(int(start), int(start) + F)
        covered[sl] += 1
        count[sl] += wa.count[w]
        for k in range(3):
            t = track.get((w, k))
            if t is not None:
                score[sl, t] += wa.activations[w, :, k]
    covered = np.maximum(covered, 1)
    score /= covered[:, None]
    # floor(mean + 1 - vote): vote 0.5 rounds half up (np.rint rounds half to even: the
    # same except at exact halves).
    n_active = np.floor(count / covered + 1.0 - p.count_vote + 1e-9).astype(int)
    keep_frames = int(min(total, np.ceil(duration_s / FRAME_S)))
    score, n_active = score[:keep_frames], n_active[:keep_frames]
    active = np.zeros_like(score, dtype=bool)
    if num_tracks:
        order = np.argsort(-score, axis=1, kind="stable")
        for c in range(1, min(3, num_tracks) + 1):
            rows = np.nonzero(n_active >= c)[0]
            active[rows, order[rows, c - 1]] = True
    return active


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame runs where mask is true."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]))


def turns_from_activity(active: np.ndarray, labels: list[str], p: StitchParams, duration_s: float) -> list[Span]:
    turns = []
    half = FRAME_S / 2
    for t, label in enumerate(labels):
        runs = _runs(active[:, t])
        merged: list[list[int]] = []
        for a, b in runs:  # fill short gaps of the same track
            if merged and (a - merged[-1][1]) * FRAME_S < p.min_duration_off:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        for a, b in merged:
            start = max(0.0, float(frame_center_s(a)) - half)
            end = min(duration_s, float(frame_center_s(b - 1)) + half)
            if end - start >= max(p.min_duration_on, 1e-3):
                turns.append(Span(round(start, 3), round(end, 3), label))
    return sorted(turns)


def stitch(wa: WindowActivations, p: StitchParams, duration_s: float) -> Tracks:
    """Window activations -> speaker tracks of the recording."""
    if len(wa.start_frames) == 0 or wa.num_frames == 0:
        return Tracks(turns=[])
    track, cannot = build_tracks(wa, p)
    num_tracks = max(track.values(), default=-1) + 1
    active = reconstruct(wa, track, num_tracks, p, duration_s)
    labels = [f"T{t:02d}" for t in range(num_tracks)]
    turns = turns_from_activity(active, labels, p, duration_s)
    used = {s.speaker for s in turns}
    keep = [i for i, lab in enumerate(labels) if lab in used]
    labels_kept = [labels[i] for i in keep]
    cannot_labels = {frozenset(labels[i] for i in pair) for pair in cannot if all(labels[i] in used for i in pair)}
    return Tracks(turns=turns, cannot_link=cannot_labels, active=active[:, keep], labels=labels_kept)
