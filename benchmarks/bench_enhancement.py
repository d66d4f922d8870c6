"""enhancement: BSRNN chunked inference at 16 and 48 kHz and DeepFilterNet3 at 48 kHz, on 60 s of the input."""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.harness import Context, benchmark


@benchmark(
    "enhancement",
    "BSRNN (shipped weights) chunked inference on 60 s of the input at 16 and 48 kHz, DeepFilterNet3 at 48 kHz; "
    "model parameters and MACs per second of audio",
    needs_decoded=True,
)
def bench_enhancement(ctx: Context) -> dict[str, Any]:
    import numpy as np
    import torch

    from audio_io.resample import resample
    from enhancement_bsrnn.deepfilternet import DeepFilterNet3Enhancer
    from enhancement_bsrnn.inference import load_enhancer
    from enhancement_bsrnn.model import count_parameters, macs_per_second

    signal = np.load(ctx.decoded_path)[: 60 * ctx.decoded_rate]
    seconds = len(signal) / ctx.decoded_rate
    enhancer = load_enhancer(None)
    out: dict[str, Any] = {"audio_duration_s": seconds, "model": enhancer.name, "torch_threads": torch.get_num_threads(),
                           "parameters": count_parameters(enhancer.model), "chunk_s": enhancer.chunk_s,
                           "overlap_s": enhancer.overlap_s, "batch_windows": enhancer.batch_size}
    for rate in (16000, 48000):
        x = resample(signal, ctx.decoded_rate, rate)
        enhancer.enhance(x[:rate], rate)  # warm-up
        walls = []
        for _ in range(ctx.repeats):
            t0 = time.perf_counter()
            enhancer.enhance(x, rate)
            walls.append(time.perf_counter() - t0)
        out[f"bsrnn_{rate // 1000}k_rtf"] = statistics.median(walls) / seconds
        out[f"bsrnn_{rate // 1000}k_gmac_per_second_of_audio"] = macs_per_second(enhancer.model.config, rate) / 1e9
    x48 = resample(signal, ctx.decoded_rate, 48000)
    dfn = DeepFilterNet3Enhancer()
    walls = []
    for _ in range(ctx.repeats):
        t0 = time.perf_counter()
        dfn.enhance(x48, 48000)
        walls.append(time.perf_counter() - t0)
    out["deepfilternet3_48k_rtf"] = statistics.median(walls) / seconds
    out["bsrnn_48k_vs_deepfilternet3_speed_ratio"] = out["deepfilternet3_48k_rtf"] / out["bsrnn_48k_rtf"]
    out["note"] = ("RTF = wall seconds per audio second on this CPU (lower is faster); MACs counted from layer "
                   "shapes (linear and LSTM products), see enhancement_bsrnn.model.macs_per_second")
    return out
