"""segmentation: Silero VAD + merge/split/partition on the decoded signal."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.harness import Context, _median_throughput, benchmark, current_rss_mib
from benchmarks.inputs import analysis_row, bench_run


@benchmark(
    "segmentation",
    "stages.vad_segment.VadSegmentStage.segment_row(): Silero VAD + merge/split/partition on the 16 kHz analysis signal",
    needs_decoded=True,
)
def bench_segmentation(ctx: Context) -> dict[str, Any]:
    from pipeline.config import load_config
    from stages.vad_segment import VadSegmentStage

    cfg = load_config(None, [])
    row = analysis_row(ctx)
    duration = row["duration_s"]
    baseline = current_rss_mib()
    t0 = time.perf_counter()
    segmenter = VadSegmentStage(cfg, bench_run(ctx, cfg))
    load_s = time.perf_counter() - t0
    walls: list[float] = []
    out: dict = {}
    for _ in range(ctx.repeats):
        t0 = time.perf_counter()
        out = segmenter.segment_row(row)
        walls.append(time.perf_counter() - t0)
        if out["status"] != "ok":
            raise RuntimeError(out.get("error"))
    decisions = out["segments"]
    kept = [d for d in decisions if d["drop_reason"] is None]
    return {
        "audio_duration_s": duration,
        "vad_model": segmenter.model_id,
        "model_load_s": load_s,
        "repeats": ctx.repeats,
        **_median_throughput(duration, walls),
        "segments": len(decisions),
        "segments_kept": len(kept),
        "kept_audio_s": sum(d["end"] - d["start"] for d in kept),
        "rss_after_load_signal_mib": baseline,
    }
