"""pipeline: pipeline.run.run_pipeline() end to end on the input files (a local Ray)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Context, DescendantSampler, benchmark, busy_figures


@benchmark(
    "pipeline",
    "pipeline.run.run_pipeline() end to end on the --files input files: local Ray start, fingerprint, decode, "
    "segment, ..., write, commit",
    rss_key="driver_peak_rss_mib",
)
def bench_pipeline(ctx: Context) -> dict[str, Any]:
    import pipeline.run as run_mod
    from pipeline.config import load_config
    from pipeline.progress import RunProgress
    from pipeline.stage_order import PIPELINE

    cfg = load_config(None, ["ray.num_cpus=2"])
    out_dir = Path(ctx.work_dir) / "pipeline_out"
    ray_start: list[float] = []
    original_ensure_ray = run_mod.ensure_ray

    def timed_ensure_ray(ray_cfg):  # run_pipeline starts Ray itself; time that part apart
        t = time.perf_counter()
        original_ensure_ray(ray_cfg)
        ray_start.append(time.perf_counter() - t)

    run_mod.ensure_ray = timed_ensure_ray
    try:
        with DescendantSampler() as sampler:
            t0 = time.perf_counter()
            summary = run_mod.run_pipeline(list(ctx.input_paths), "bench", out_dir, cfg, progress=RunProgress(live=False))
            wall = time.perf_counter() - t0
    finally:
        run_mod.ensure_ray = original_ensure_ray
        import ray

        ray.shutdown()
    if summary.done != len(ctx.input_paths):
        raise RuntimeError(f"pipeline finished {summary.done} of {len(ctx.input_paths)} sources: "
                           f"{summary.describe()} {summary.failures}")
    ray_s = ray_start[0] if ray_start else 0.0
    stage_seconds = getattr(summary, "stage_seconds", None) or {}
    return {
        "audio_duration_s": summary.audio_seconds,
        "input_files": len(ctx.input_paths),
        "ray_num_cpus": cfg.ray.num_cpus,
        "wall_s": wall,
        "throughput_end_to_end_audio_s_per_wall_s": summary.audio_seconds / wall,
        "ray_start_s": ray_s,
        "throughput_after_ray_start_audio_s_per_wall_s": summary.audio_seconds / (wall - ray_s),
        "segments": summary.segments,
        "segments_kept": summary.segments_kept,
        "kept_audio_s": summary.kept_seconds,
        **busy_figures(stage_seconds, summary.audio_seconds, [s.name for s in PIPELINE]),
        "ray_workers_peak_rss_sum_mib": sampler.peak_workers_mib,
        "ray_worker_peak_rss_largest_mib": sampler.peak_single_worker_mib,
        "ray_all_processes_peak_rss_sum_mib": sampler.peak_all_mib,
        "ray_workers_max_seen": sampler.max_workers,
        "note": (f"driver peak RSS is the driver process's own (VmHWM); ray_* RSS figures are sums over "
                 f"descendant processes sampled every {sampler.interval_s} s ({sampler.samples} samples; "
                 f"'all' includes raylet and GCS) and count shared pages once per process; busy_* are a "
                 f"stage's busy seconds summed over all sources (workers run in parallel, so they can add up "
                 f"to more than the wall time)"),
    }
