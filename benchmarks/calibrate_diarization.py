"""Calibrate the Kimi thresholds for a speaker embedder on the shared diarization clips.

    python -m benchmarks.calibrate_diarization [--embedder campplus] [--backend segmentation] [--out bench_out]

For each file, raw diarization runs once; then cluster merging (cosine > merge threshold)
and chunk reassignment (adjacent 1.5 s chunks with cosine < reassignment threshold; "off"
= no reassignment) are swept, reusing each span's embedding. Each cell is the DER
(collar 0, overlap scored, whole file) of the FINAL kept segments, as `refinery run`
ships them (segment merging included): total over the 4 AMI clips and the pyannote
sample. The table is printed and written to OUT/diarization_calibration_<embedder>_<backend>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.inputs import SHARED_REAL

MERGE = (0.4, 0.5, 0.6, 0.7, 0.8)
REASSIGN = (None, 0.1, 0.2, 0.3, 0.4, 0.5)


class CachedEmbedder:
    """The embedder, remembering each span's embedding across the sweep."""

    def __init__(self, embedder) -> None:
        self.inner, self.sample_rate, self.dim, self.model_id = embedder, embedder.sample_rate, embedder.dim, embedder.model_id
        self.cache: dict[tuple[int, int, int], np.ndarray] = {}
        self.key = 0

    def embed(self, waves):
        keys = [(self.key, len(w), hash(w[:: max(1, len(w) // 64)].tobytes())) for w in waves]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            for i, e in zip(todo, self.inner.embed([waves[i] for i in todo])):
                self.cache[keys[i]] = e
        return np.stack([self.cache[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)


def main() -> None:
    from audio_io.decode import decode
    from evaluation.diarization import diarizer_of, load_rttm, to_annotation
    from manifests.span import Span
    from pipeline.config import load_config
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", default="campplus")
    ap.add_argument("--backend", default="segmentation")
    ap.add_argument("--out", type=Path, default=Path("bench_out"))
    args = ap.parse_args()
    cfg = load_config(None, [f"diarization.embedding_model={args.embedder}", f"diarization.backend={args.backend}"])
    diarizer = diarizer_of(cfg)
    diarizer.embedder = CachedEmbedder(diarizer.embedder)
    root = SHARED_REAL / "diarization"
    clips = sorted((root / "ami_pyannote_debug").glob("*.wav")) + [root / "pyannote_sample" / "sample.wav"]
    audio = {p.stem: decode(str(p), 16000).samples for p in clips}
    refs = {p.stem: load_rttm(p.with_suffix(".rttm")) for p in clips}
    tracks = {}
    for stem, a in audio.items():
        print(f"raw diarization of {stem}", flush=True)
        tracks[stem] = diarizer.raw_diarization(a)
    base = diarizer.params
    table: dict[str, dict[str, float]] = {}
    for merge in MERGE:
        for reassign in REASSIGN:
            der = DiarizationErrorRate(collar=0.0, skip_overlap=False)
            for k, (stem, a) in enumerate(audio.items()):
                diarizer.embedder.key = k
                diarizer.params = base.model_copy(update={"cluster_merge_threshold": merge,
                                                          "reassign_threshold": -1.0 if reassign is None else reassign})
                diarizer.raw_diarization = lambda _a, t=tracks[stem]: t
                result = diarizer.diarize(a)
                kept = [Span(s.start, s.end, s.speaker) for s in result.segments if s.kept]
                uem = Timeline([Segment(0, len(a) / 16000)])
                der(refs[stem], to_annotation(kept), uem=uem)
            table.setdefault(f"merge {merge}", {})[f"reassign {'off' if reassign is None else reassign}"] = round(abs(der), 4)
            print(f"merge > {merge}, reassign < {reassign}: DER {abs(der):.4f}", flush=True)
    cols = list(next(iter(table.values())))
    print(f"\n{args.embedder}, {args.backend} backend: DER of the final kept segments (4 AMI clips + sample)")
    print(f"{'':<12}" + "".join(f"{c:>14}" for c in cols))
    for row, cells in table.items():
        print(f"{row:<12}" + "".join(f"{cells[c]:>14.3f}" for c in cols))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"diarization_calibration_{args.embedder.replace('/', '_')}_{args.backend}.json"
    path.write_text(json.dumps(table, indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
