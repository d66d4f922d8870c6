"""sequential: the pipeline's stages, same models and config, in a plain per-file loop in one process.

No Ray: each file goes through every enabled stage of ``pipeline.stage_order.PIPELINE``
(``process_batch`` on a one-row batch) before the next file starts. Set against the
``pipeline`` benchmark, it shows what the streaming executor buys on the same input.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from typing import Any

from benchmarks.harness import Context, benchmark, busy_figures


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@benchmark(
    "sequential",
    "the pipeline's enabled stages (same models, default config) in a plain per-file loop in one process, no Ray, "
    "on the --files input files",
)
def bench_sequential(ctx: Context) -> dict[str, Any]:
    from manifests.ids import recording_id
    from pipeline.config import load_config
    from pipeline.stage_order import PIPELINE
    from stages.base import RunContext

    cfg = load_config(None, [])  # the default config, as the pipeline run (its ray section is unused here)
    out = tempfile.mkdtemp(prefix="sequential_out-", dir=ctx.work_dir)  # the writer stages shards under it
    try:
        run = RunContext(out_dir=os.path.abspath(out), corpus="bench", run_id="sequential",
                         config_hash=cfg.config_hash())
        t0 = time.perf_counter()
        stages = [S(cfg, run) for S in PIPELINE if S.enabled(cfg)]
        load_s = time.perf_counter() - t0
        busy: dict[str, float] = {"fingerprint": 0.0, **{st.name: 0.0 for st in stages}}
        finished: list[dict] = []
        for path in ctx.input_paths:
            t = time.perf_counter()
            sha = _sha256(path)
            rows: list[dict] = [{"source_uri": path, "path": path, "sha256": sha, "size_bytes": os.path.getsize(path),
                                 "recording_id": recording_id(path, sha)}]
            busy["fingerprint"] += time.perf_counter() - t
            for st in stages:
                t = time.perf_counter()
                rows = st.process_batch(rows)
                busy[st.name] += time.perf_counter() - t
            finished.extend(rows)  # the writer's rows: one per source, the ledger fields and counts
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    bad = [(r.get("source_uri"), r.get("status"), r.get("error")) for r in finished if r.get("status") != "done"]
    if bad or len(finished) != len(ctx.input_paths):
        raise RuntimeError(f"sequential run: {len(finished)} row(s) for {len(ctx.input_paths)} source(s); "
                           f"not done: {bad}")
    audio_s = sum(r.get("duration_s") or 0.0 for r in finished)
    return {
        "audio_duration_s": audio_s,
        "input_files": len(ctx.input_paths),
        "wall_s": wall,
        "load_s": load_s,
        "throughput_audio_s_per_wall_s": audio_s / wall,
        "throughput_after_load_audio_s_per_wall_s": audio_s / (wall - load_s),
        "segments": sum(r.get("segment_count") or 0 for r in finished),
        "segments_kept": sum(r.get("segments_kept") or 0 for r in finished),
        "kept_audio_s": sum(r.get("kept_seconds") or 0.0 for r in finished),
        **busy_figures(busy, audio_s, ["fingerprint"] + [S.name for S in PIPELINE]),
        "note": ("stages " + " -> ".join(st.name for st in stages) + "; wall includes constructing every stage "
                 "once (load_s; a stage that loads its model on first use counts it in its busy time), as the "
                 "pipeline's wall includes its Ray and actor start; busy_* are the seconds each stage's "
                 "process_batch took, summed over the files (fingerprint: hashing the file); peak RSS is the one "
                 "process's own (VmHWM)"),
    }
