"""language_id: Whisper language ID over the VAD segments of the input, batched across segments."""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.harness import Context, benchmark
from benchmarks.inputs import _segmented_row, bench_run


@benchmark(
    "language_id",
    "stages.language_id.LanguageIdStage on the VAD segments of the input: Whisper language ID, batched across segments",
    needs_decoded=True,
)
def bench_language_id(ctx: Context) -> dict[str, Any]:
    from collections import Counter

    from manifests import planned_segment
    from pipeline.config import load_config
    from stages.language_id import LanguageIdStage

    cfg = load_config(None, [])
    row = _segmented_row(ctx, cfg)
    duration = row["duration_s"]
    segments = [s for s in planned_segment.from_rows(row["segments"]) if s.kept]  # the ones language ID hears
    segment_s = sum(s.duration for s in segments)
    t0 = time.perf_counter()
    stage = LanguageIdStage(cfg, bench_run(ctx, cfg))
    load_s = time.perf_counter() - t0
    walls: list[float] = []
    out: dict = {}
    for _ in range(ctx.repeats):
        t0 = time.perf_counter()
        out = stage.process_batch([row])[0]
        walls.append(time.perf_counter() - t0)
        if out["status"] != "ok":
            raise RuntimeError(out.get("error"))
    decided = [s for s in planned_segment.from_rows(out["segments"]) if s.language]
    med = statistics.median(walls)
    return {
        "audio_duration_s": duration,
        "lid_model": cfg.language_id.model,
        "batch_size": cfg.language_id.segments_per_batch(),
        "model_load_s": load_s,
        "segments": len(segments),
        "segment_audio_s": segment_s,
        "repeats": ctx.repeats,
        "wall_runs_s": [round(w, 3) for w in walls],
        "wall_median_s": med,
        "lid_time_per_input_audio_hour_s": med / (duration / 3600),
        "lid_time_per_segment_audio_hour_s": med / (segment_s / 3600),
        "lid_time_per_segment_s": med / max(1, len(segments)),
        "languages": ", ".join(f"{k or '?'}={v}" for k, v in sorted(Counter(s.language for s in decided).items(),
                                                                      key=lambda kv: str(kv[0]))),
        "segments_dropped_by_lid": sum(1 for s in decided if s.drop_reason and s.drop_reason.startswith("language_id")),
    }
