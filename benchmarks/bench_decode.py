"""decode: audio_io.decode.decode() of the generated FLAC."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.harness import Context, DescendantSampler, _median_throughput, benchmark, current_rss_mib


@benchmark("decode", "audio_io.decode.decode() of the 44.1 kHz stereo FLAC to mono float32 at the working rate")
def bench_decode(ctx: Context) -> dict[str, Any]:
    from audio_io.decode import decode
    from pipeline.config import load_config

    rate = load_config(None, []).decode.sample_rate
    baseline = current_rss_mib()
    walls: list[float] = []
    duration = 0.0
    with DescendantSampler(0.02, lambda name, cmd: name.startswith("ff")) as sampler:  # ffprobe, ffmpeg
        for _ in range(ctx.repeats):
            t0 = time.perf_counter()
            audio = decode(ctx.flac_path, rate)
            walls.append(time.perf_counter() - t0)
            duration = audio.duration_s
            del audio
    return {
        "audio_duration_s": duration,
        "sample_rate_out_hz": rate,
        "repeats": ctx.repeats,
        **_median_throughput(duration, walls),
        "rss_after_imports_mib": baseline,
        "ffmpeg_peak_rss_sampled_mib": sampler.peak_single_worker_mib,
        "note": ("peak RSS is the decoding Python process's own (VmHWM); ffmpeg's RSS is sampled every "
                 f"{sampler.interval_s} s while it runs, as a separate process"),
    }
