"""Throughput and memory benchmarks of the pipeline, on a 10-minute input built at run time.

    .venv/bin/python benchmarks/run_benchmarks.py --out bench_out            # all benchmarks
    .venv/bin/python benchmarks/run_benchmarks.py --out bench_out --only decode

The input is real speech (the clips under ../shared/data/real) joined by seeded silences
of 0.5-3 s, with low-level noise over the whole file, 44.1 kHz stereo FLAC, so decoding
it does real work (FLAC decode, resample to the working rate, downmix). It is built in a
temporary folder and removed afterwards; nothing is written into the repository.

Each benchmark is a function registered with ``@benchmark``; it returns a flat dict of
figures whose key suffix names the unit (``_s`` seconds, ``_mib`` MiB,
``_audio_s_per_wall_s`` seconds of audio per second of wall time, none: a count). Each
one runs in a fresh Python process, so its peak RSS (VmHWM of that process, see
``peak_rss_mib``) is its own and not left over from another benchmark. Results are merged
into OUT/bench.json (a benchmark not run this time keeps its earlier entry) with facts
about the machine, and printed as a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = Path(os.environ.get("REFINERY_SHARED_DATA", REPO.parent / "shared" / "data" / "real"))
if str(REPO) not in sys.path:  # run as a script, sys.path[0] is benchmarks/
    sys.path.insert(0, str(REPO))

# Real speech the input is made of (relative to SHARED_REAL).
SPEECH_GLOBS = (
    "asr_en/*.wav",
    "asr_en/*.flac",
    "asr_zh/*.wav",
    "diarization/ami_pyannote_debug/*.wav",
    "diarization/pyannote_sample/*.wav",
)
INPUT_RATE = 44100
INPUT_CHANNELS = 2
CHILD_TIMEOUT_S = 600


# ---- registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a benchmark gets: the generated input and run settings (JSON to the child)."""

    flac_path: str
    audio_duration_s: float
    repeats: int
    work_dir: str
    decoded_path: str | None = None  # mono float32 .npy at decoded_rate, when the benchmark needs it
    decoded_rate: int | None = None


@dataclass(frozen=True)
class Benchmark:
    name: str
    func: Callable[[Context], dict[str, Any]]
    description: str
    needs_decoded: bool = False  # the parent decodes the input once and hands the signal over
    rss_key: str = "peak_rss_mib"  # what the peak RSS of the benchmark's own process is called


BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str, description: str, **kwargs: Any) -> Callable:
    def register(func: Callable[[Context], dict[str, Any]]) -> Callable[[Context], dict[str, Any]]:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = Benchmark(name, func, description, **kwargs)
        return func

    return register


# ---- measuring helpers ------------------------------------------------------------------


def peak_rss_mib() -> float:
    """Peak RSS of this process since it started (its own, not inherited).

    ``getrusage(RUSAGE_SELF).ru_maxrss`` survives fork and execve on Linux, so a process
    started from a big parent reports the parent's peak; VmHWM in /proc/self/status is
    the high-water mark of this process's own address space. ru_maxrss where there is no
    /proc.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def current_rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _median_throughput(audio_s: float, walls: list[float]) -> dict[str, Any]:
    med = statistics.median(walls)
    return {
        "wall_runs_s": [round(w, 3) for w in walls],
        "wall_median_s": med,
        "throughput_median_audio_s_per_wall_s": audio_s / med,
        "throughput_best_audio_s_per_wall_s": audio_s / min(walls),
    }


def _is_ray_worker(name: str, cmdline: str) -> bool:
    return "default_worker.py" in cmdline or name.startswith("ray::")


class DescendantSampler:
    """Samples the RSS of this process's descendants in a thread, while the block runs.

    ``workers`` are the descendants ``is_worker(name, cmdline)`` picks (for a local Ray:
    the workers, children of the raylet that the driver starts; for decode: ffmpeg); ``all``
    is every descendant. Sampling can miss a short peak. RSS sums count pages shared
    between processes (the object store mapping, shared libraries) once per process, so
    they overstate the memory really used.
    """

    def __init__(self, interval_s: float = 0.25, is_worker: Callable[[str, str], bool] = _is_ray_worker) -> None:
        self.interval_s = interval_s
        self.is_worker = is_worker
        self.peak_workers_mib = 0.0
        self.peak_all_mib = 0.0
        self.peak_single_worker_mib = 0.0
        self.max_workers = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "DescendantSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            workers = total = 0.0
            n_workers = 0
            for proc in me.children(recursive=True):
                try:
                    rss = proc.memory_info().rss / 2**20
                    cmd = " ".join(proc.cmdline())
                    name = proc.name()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                total += rss
                if self.is_worker(name, cmd):
                    workers += rss
                    n_workers += 1
                    self.peak_single_worker_mib = max(self.peak_single_worker_mib, rss)
            self.peak_workers_mib = max(self.peak_workers_mib, workers)
            self.peak_all_mib = max(self.peak_all_mib, total)
            self.max_workers = max(self.max_workers, n_workers)
            self.samples += 1
            self._stop.wait(self.interval_s)


# ---- benchmarks -------------------------------------------------------------------------


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


@benchmark(
    "segmentation",
    "stages.vad_segment.VadSegmenter.segment_row(): Silero VAD + merge/split/partition on the decoded signal",
    needs_decoded=True,
)
def bench_segmentation(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from pipeline.config import load_config
    from stages.vad_segment import VadSegmenter

    cfg = load_config(None, [])
    samples = np.load(ctx.decoded_path)
    duration = len(samples) / ctx.decoded_rate
    baseline = current_rss_mib()
    t0 = time.perf_counter()
    segmenter = VadSegmenter(cfg.vad, cfg.segment)
    load_s = time.perf_counter() - t0
    row = {"status": "ok", "samples": samples, "sample_rate": ctx.decoded_rate}
    walls: list[float] = []
    out: dict = {}
    for _ in range(ctx.repeats):
        t0 = time.perf_counter()
        out = segmenter.segment_row(row)
        walls.append(time.perf_counter() - t0)
        if out["status"] != "ok":
            raise RuntimeError(out.get("error"))
    decisions = json.loads(out["segments_json"])
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


@benchmark(
    "pipeline",
    "pipeline.run.run_pipeline() end to end on the one file: local Ray start, fingerprint, decode, segment, write, commit",
    rss_key="driver_peak_rss_mib",
)
def bench_pipeline(ctx: Context) -> dict[str, Any]:
    import pipeline.run as run_mod
    from pipeline.config import load_config
    from pipeline.progress import RunProgress

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
            summary = run_mod.run_pipeline([ctx.flac_path], "bench", out_dir, cfg, progress=RunProgress(live=False))
            wall = time.perf_counter() - t0
    finally:
        run_mod.ensure_ray = original_ensure_ray
        import ray

        ray.shutdown()
    if summary.done != 1:
        raise RuntimeError(f"pipeline did not finish the source: {summary.describe()} {summary.failures}")
    ray_s = ray_start[0] if ray_start else 0.0
    return {
        "audio_duration_s": summary.audio_seconds,
        "ray_num_cpus": cfg.ray.num_cpus,
        "wall_s": wall,
        "throughput_end_to_end_audio_s_per_wall_s": summary.audio_seconds / wall,
        "ray_start_s": ray_s,
        "throughput_after_ray_start_audio_s_per_wall_s": summary.audio_seconds / (wall - ray_s),
        "segments": summary.segments,
        "segments_kept": summary.segments_kept,
        "kept_audio_s": summary.kept_seconds,
        "ray_workers_peak_rss_sum_mib": sampler.peak_workers_mib,
        "ray_worker_peak_rss_largest_mib": sampler.peak_single_worker_mib,
        "ray_all_processes_peak_rss_sum_mib": sampler.peak_all_mib,
        "ray_workers_max_seen": sampler.max_workers,
        "note": (f"driver peak RSS is the driver process's own (VmHWM); ray_* RSS figures are sums over "
                 f"descendant processes sampled every {sampler.interval_s} s ({sampler.samples} samples; "
                 f"'all' includes raylet and GCS) and count shared pages once per process"),
    }


def _segmented_row(ctx: Context, cfg: Any) -> dict:
    """The decoded input as a pipeline row, segmented by the pipeline's VAD stage."""
    import numpy as np

    from stages.vad_segment import VadSegmenter

    row = {"status": "ok", "samples": np.load(ctx.decoded_path), "sample_rate": ctx.decoded_rate,
           "recording_id": "bench", "models_json": "[]"}
    row = VadSegmenter(cfg.vad, cfg.segment).segment_row(row)
    if row["status"] != "ok":
        raise RuntimeError(row.get("error"))
    return row


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
    duration = len(row["samples"]) / ctx.decoded_rate
    segments = planned_segment.loads(row["segments_json"])
    segment_s = sum(s.duration for s in segments)
    t0 = time.perf_counter()
    stage = LanguageIdStage(cfg.language_id)
    load_s = time.perf_counter() - t0
    walls: list[float] = []
    out: dict = {}
    for _ in range(ctx.repeats):
        t0 = time.perf_counter()
        out = stage([row])[0]
        walls.append(time.perf_counter() - t0)
        if out["status"] != "ok":
            raise RuntimeError(out.get("error"))
    decided = planned_segment.loads(out["segments_json"])
    med = statistics.median(walls)
    return {
        "audio_duration_s": duration,
        "lid_model": cfg.language_id.model,
        "batch_size": cfg.language_id.batch_size,
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


@benchmark(
    "asr_batching",
    "Whisper (transcribe.en_model) on the input's English segments: batched across segments vs one segment at a time",
    needs_decoded=True,
)
def bench_asr_batching(ctx: Context) -> dict[str, Any]:
    from manifests import planned_segment
    from pipeline.config import load_config
    from stages.language_id import LanguageIdStage
    from transcription.asr import whisper_policy
    from transcription.models import load_whisper
    from transcription.rows import open_rows
    from transcription.whisper_asr import WhisperTranscriber

    cfg = load_config(None, [])
    row = LanguageIdStage(cfg.language_id)([_segmented_row(ctx, cfg)])[0]
    rec = open_rows([row])[0]
    assert rec is not None
    english = [s for s in planned_segment.loads(row["segments_json"]) if s.kept and s.language == "en"]
    audios = [rec.cut(s, cfg.transcribe.context_pad_s) for s in english]
    audio_s = sum(len(a) for a in audios) / 16000
    tc = cfg.transcribe
    t0 = time.perf_counter()
    transcriber = WhisperTranscriber(load_whisper(tc.en_model, tc.device, tc.precision, tc.cpu_threads), whisper_policy(tc))
    load_s = time.perf_counter() - t0
    transcriber.transcribe(audios[:1], "en", batch_size=1)  # warm-up
    t0 = time.perf_counter()
    batched = transcriber.transcribe(audios, "en", batch_size=tc.batch_size)
    batched_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = transcriber.transcribe(audios, "en", batch_size=1)
    single_s = time.perf_counter() - t0
    return {
        "asr_model": tc.en_model,
        "device": tc.device,
        "precision": tc.precision,
        "segments": len(audios),
        "segment_audio_s": audio_s,
        "model_load_s": load_s,
        "batch_size": tc.batch_size,
        "batched_wall_s": batched_s,
        "one_at_a_time_wall_s": single_s,
        "rtf_batched": batched_s / audio_s,
        "rtf_one_at_a_time": single_s / audio_s,
        "batched_speedup": single_s / batched_s,
        "retried_segments": sum(1 for r in batched if r.extra.get("retried")),
        "identical_text": all(a.text == b.text for a, b in zip(batched, single)),
        "note": ("RTF = wall time / audio time (lower is faster); batched_speedup = one-at-a-time wall / batched wall. "
                 "Each segment is one 30 s Whisper window either way; on CPU the encoder already keeps the cores busy, "
                 "so batching pays off mainly on a GPU"),
    }


def _diarization_clips() -> list[Path]:
    root = SHARED_REAL / "diarization"
    return sorted((root / "ami_pyannote_debug").glob("*.wav")) + [root / "pyannote_sample" / "sample.wav"]


@benchmark("diarization_ami", "Diarizer.diarize() per backend on the 4 AMI clips: real-time factor")
def bench_diarization_ami(ctx: Context) -> dict[str, Any]:
    from audio_io.decode import decode
    from diarization.diarizer import Diarizer
    from pipeline.config import load_config

    clips = [p for p in _diarization_clips() if p.parent.name == "ami_pyannote_debug"]
    audio = [decode(str(p), 16000).samples for p in clips]
    total = sum(len(a) for a in audio) / 16000
    out: dict[str, Any] = {"clips": len(clips), "audio_duration_s": total}
    for backend in ("segmentation", "pyannote_pipeline"):
        cfg = load_config(None, [f"diarization.backend={backend}"])
        try:
            t0 = time.perf_counter()
            diarizer = Diarizer(cfg.diarization, cfg.segment)
            out[f"{backend}_load_s"] = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - the hub pipeline cannot load offline
            out[f"{backend}_unavailable"] = f"{type(exc).__name__} (no hub access)"
            continue
        walls = []
        for _ in range(ctx.repeats):
            t0 = time.perf_counter()
            for a in audio:
                diarizer.diarize(a)
            walls.append(time.perf_counter() - t0)
        out[f"{backend}_rtf"] = statistics.median(walls) / total
    return out


@benchmark("diarization_1h", "Diarizer.diarize() on one hour made of the real clips and silences: time and peak RSS")
def bench_diarization_1h(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from audio_io.decode import decode
    from diarization.diarizer import Diarizer
    from pipeline.config import load_config

    rng = np.random.default_rng(11)
    clips = [decode(str(p), 16000).samples for p in _diarization_clips()]
    clips += [decode(str(p), 16000).samples for p in sorted((SHARED_REAL / "asr_en").glob("*.*")) if p.suffix != ".txt"]
    parts, n = [], 0
    while n < 3600 * 16000:
        clip = clips[int(rng.integers(len(clips)))]
        gap = np.zeros(int(rng.uniform(0.5, 3.0) * 16000), dtype=np.float32)
        parts += [clip, gap]
        n += len(clip) + len(gap)
    audio = np.concatenate(parts)[: 3600 * 16000]
    cfg = load_config(None, [])
    diarizer = Diarizer(cfg.diarization, cfg.segment)
    before = current_rss_mib()
    t0 = time.perf_counter()
    res = diarizer.diarize(audio)
    wall = time.perf_counter() - t0
    return {"audio_duration_s": len(audio) / 16000, "wall_s": wall, "rtf": wall / (len(audio) / 16000),
            "rss_before_mib": before, "segments": len(res.segments), "speakers": res.speakers,
            "raw_tracks": res.figures.get("tracks", 0)}


@benchmark("speaker_embedding", "offline speaker embedder (resemblyzer) on 1.5 s chunks of real speech, batched")
def bench_speaker_embedding(ctx: Context) -> dict[str, Any]:
    from audio_io.decode import decode
    from diarization.embedding import load_embedder

    embedder = load_embedder("resemblyzer", "cpu", 32)
    rate = embedder.sample_rate
    chunks = []
    for p in _diarization_clips():
        a = decode(str(p), rate).samples
        chunks += [a[i : i + int(1.5 * rate)] for i in range(0, len(a) - int(1.5 * rate), int(1.5 * rate))]
    walls = []
    for _ in range(ctx.repeats):
        t0 = time.perf_counter()
        embedder.embed(chunks)
        walls.append(time.perf_counter() - t0)
    wall = statistics.median(walls)
    return {"model": embedder.model_id, "chunks": len(chunks), "chunks_per_s": len(chunks) / wall,
            "throughput_audio_s_per_wall_s": 1.5 * len(chunks) / wall}


@benchmark("post_processing", "cluster merging + chunk reassignment + segment merging on a synthetic 10-hour turn list")
def bench_post_processing(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from diarization.chunk_reassign import chunk_spans, reassign
    from diarization.cluster_merge import merge_clusters
    from diarization.segment_merge import merge_adjacent, split_long
    from manifests.span import Span

    rng = np.random.default_rng(5)
    hours, dim, speakers = 10.0, 256, 40
    centers = rng.normal(size=(speakers, dim))
    turns, t = [], 0.0
    while t < hours * 3600:
        d = float(rng.uniform(0.5, 12.0))
        turns.append(Span(t, t + d, f"T{int(rng.integers(speakers * 2)):03d}"))  # 2 raw clusters per voice
        t += d + float(rng.uniform(0.0, 1.5))

    def noisy(label: str, n: int) -> np.ndarray:
        v = centers[int(label[1:]) % speakers] + 0.8 * rng.normal(size=(n, dim))
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    turn_emb = np.concatenate([noisy(tr.speaker, 1) for tr in turns])
    t0 = time.perf_counter()
    merged = merge_clusters(turns, turn_emb, 0.6)
    t_merge = time.perf_counter() - t0
    chunk_emb = [noisy(tr.speaker, len(chunk_spans(tr, 1.5, 0.75))) for tr in merged.turns]
    t0 = time.perf_counter()
    re = reassign(merged.turns, chunk_emb, merged.representatives, 0.5, chunk_s=1.5, min_last_s=0.75)
    t_reassign = time.perf_counter() - t0
    t0 = time.perf_counter()
    final = split_long(merge_adjacent(re.segments, 27.0, 2.0), 27.0)
    t_merge_seg = time.perf_counter() - t0
    total = t_merge + t_reassign + t_merge_seg
    return {"audio_hours": hours, "turns": len(turns), "raw_clusters": len({tr.speaker for tr in turns}),
            "clusters_after_merge": len(merged.representatives), "chunks": re.chunks,
            "cluster_merge_s": t_merge, "chunk_reassign_s": t_reassign, "segment_merge_s": t_merge_seg,
            "total_per_audio_hour_s": total / hours, "final_segments": len(final)}


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


# ---- the input --------------------------------------------------------------------------


def _read_clip(path: Path) -> "Any":
    """Decode a clip to float32 (n, 2) at INPUT_RATE with ffmpeg (independent of audio_io)."""
    import numpy as np

    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
           "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(INPUT_CHANNELS), "-ar", str(INPUT_RATE), "pipe:"]
    proc = subprocess.run(cmd, capture_output=True, check=True)
    return np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, INPUT_CHANNELS).copy()


def build_input(path: Path, duration_s: float, seed: int) -> dict[str, Any]:
    """Speech clips in seeded order, each after 0.5-3 s of silence, noise under all of it."""
    import numpy as np
    import soundfile as sf

    if not SHARED_REAL.is_dir():
        raise SystemExit(f"shared speech clips not found at {SHARED_REAL} (set REFINERY_SHARED_DATA to override)")
    clip_paths = sorted({p for pattern in SPEECH_GLOBS for p in SHARED_REAL.glob(pattern)})
    if not clip_paths:
        raise SystemExit(f"no speech clips under {SHARED_REAL} matching {', '.join(SPEECH_GLOBS)}")
    clips = [_read_clip(p) for p in clip_paths]
    rng = random.Random(seed)
    total = int(round(duration_s * INPUT_RATE))
    signal = np.zeros((total, INPUT_CHANNELS), dtype=np.float32)
    pos = speech = placed = 0
    order: list[int] = []
    while pos < total:
        if not order:
            order = list(range(len(clips)))
            rng.shuffle(order)
        clip = clips[order.pop()]
        pos += int(rng.uniform(0.5, 3.0) * INPUT_RATE)
        if pos >= total:
            break
        gain = 10 ** (rng.uniform(-6.0, 0.0) / 20)
        pan = rng.uniform(-0.3, 0.3)  # left and right differ, so the downmix is not a copy
        piece = clip[: total - pos] * np.array([gain * (1 + pan), gain * (1 - pan)], dtype=np.float32)
        signal[pos : pos + len(piece)] += piece
        pos += len(piece)
        speech += len(piece)
        placed += 1
    noise_rng = np.random.default_rng(seed)
    signal += noise_rng.normal(0.0, 10 ** (-60 / 20), size=signal.shape).astype(np.float32)  # about -60 dBFS
    np.clip(signal, -1.0, 1.0, out=signal)
    sf.write(str(path), signal, INPUT_RATE, format="FLAC", subtype="PCM_16")
    return {
        "duration_s": total / INPUT_RATE,
        "sample_rate_hz": INPUT_RATE,
        "channels": INPUT_CHANNELS,
        "format": "FLAC PCM_16",
        "size_bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "speech_clips_available": len(clips),
        "speech_clips_placed": placed,
        "speech_s": speech / INPUT_RATE,
        "seed": seed,
        "clips_from": str(SHARED_REAL),
    }


def decode_for_children(ctx: Context) -> Context:
    """Decode the input once (in the parent) for benchmarks that start from the signal."""
    import numpy as np

    from audio_io.decode import decode
    from pipeline.config import load_config

    rate = load_config(None, []).decode.sample_rate
    npy = Path(ctx.work_dir) / f"decoded_{rate}.npy"
    np.save(npy, decode(ctx.flac_path, rate).samples)
    return Context(**{**ctx.__dict__, "decoded_path": str(npy), "decoded_rate": rate})


# ---- machine facts, output --------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    import psutil

    try:
        ffmpeg_line = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        ffmpeg_line = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = "", False
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "ray": _version("ray"),
        "numpy": _version("numpy"),
        "onnxruntime": _version("onnxruntime"),
        "silero_vad": _version("silero-vad"),
        "ffmpeg": ffmpeg_line,
        "git_commit": commit or None,
        "git_dirty": dirty,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


UNITS = (  # key suffix -> unit shown in the table, longest first
    ("_audio_s_per_wall_s", "audio s / wall s"),
    ("_mib", "MiB"),
    ("_hz", "Hz"),
    ("_s", "s"),
)


def _label_unit(key: str) -> tuple[str, str]:
    for suffix, unit in UNITS:
        if key.endswith(suffix):
            return key[: -len(suffix)].replace("_", " "), unit
    return key.replace("_", " "), ""


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def print_table(results: dict[str, Any], names: list[str]) -> None:
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    for name in names:
        entry = results.get(name, {})
        if "error" in entry:
            rows.append((name, "FAILED", "see below", ""))
            notes.append(f"{name} failed: {entry['error']}")
            continue
        for key, value in entry.get("figures", {}).items():
            if key == "note":
                notes.append(f"{name}: {value}")
                continue
            label, unit = _label_unit(key)
            rows.append((name, label, _fmt(value), unit))
    widths = [max(len(r[i]) for r in rows + [("benchmark", "figure", "value", "unit")]) for i in range(4)]
    header = ("benchmark", "figure", "value", "unit")
    line = f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:>{widths[2]}}  {header[3]}"
    print(line)
    print("-" * len(line))
    previous = None
    for bench, label, value, unit in rows:
        shown = bench if bench != previous else ""
        if previous is not None and bench != previous:
            print()
        print(f"{shown:<{widths[0]}}  {label:<{widths[1]}}  {value:>{widths[2]}}  {unit}")
        previous = bench
    for note in notes:
        print(f"\nnote, {note}")


# ---- running ----------------------------------------------------------------------------


def run_child(name: str, ctx_path: Path, result_path: Path) -> int:
    """In the fresh process: run one benchmark, add its peak RSS, write the result."""
    bench = BENCHMARKS[name]
    ctx = Context(**json.loads(ctx_path.read_text()))
    t0 = time.perf_counter()
    figures = bench.func(ctx)
    figures[bench.rss_key] = peak_rss_mib()
    result = {"description": bench.description, "figures": figures, "benchmark_wall_s": time.perf_counter() - t0}
    result_path.write_text(json.dumps(result, indent=1))
    return 0


def run_in_fresh_process(name: str, ctx: Context, out: Path) -> dict[str, Any]:
    work = Path(ctx.work_dir)
    ctx_path, result_path = work / f"{name}.ctx.json", work / f"{name}.result.json"
    ctx_path.write_text(json.dumps(ctx.__dict__))
    log_path = out / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--ctx", str(ctx_path),
           "--result", str(result_path)]
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=CHILD_TIMEOUT_S)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    wall = time.perf_counter() - t0
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if rc == 0 and result_path.exists():
        return {**json.loads(result_path.read_text()), "date": date, "log": str(log_path)}
    tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
    why = f"timed out after {CHILD_TIMEOUT_S} s" if rc is None else f"exit status {rc}"
    return {"error": f"{why} after {wall:.0f} s; see {log_path}\n" + "\n".join(tail), "date": date, "log": str(log_path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_out", help="folder for bench.json and the logs (default: bench_out)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions where a benchmark repeats (default 3)")
    parser.add_argument("--duration", type=float, default=600.0, help="length of the generated input in s (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated input (default 0)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ctx", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        return run_child(args.child, Path(args.ctx), Path(args.result))
    if args.list:
        for b in BENCHMARKS.values():
            print(f"{b.name:<14} {b.description}")
        return 0
    if args.repeats < 1 or args.duration <= 0:
        parser.error("--repeats must be >= 1 and --duration > 0")

    names = list(dict.fromkeys(args.only)) if args.only else list(BENCHMARKS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench_json = out / "bench.json"
    report: dict[str, Any] = {}
    if bench_json.exists():
        try:
            report = json.loads(bench_json.read_text())
        except json.JSONDecodeError:
            report = {}
    results: dict[str, Any] = report.get("benchmarks", {})
    machine = machine_info()
    same = ("cpu_count", "cpu_model", "memory_gib", "python", "torch", "ray")
    if results and any(report.get("machine", {}).get(k) != machine[k] for k in same):
        print(f"{bench_json} holds results from another machine or setup; they are replaced, not merged", flush=True)
        results = {}

    work = Path(tempfile.mkdtemp(prefix="refinery-bench-"))
    t_start = time.perf_counter()
    try:
        flac = work / f"bench_{int(args.duration)}s_{INPUT_RATE}hz_stereo.flac"
        print(f"building a {args.duration:.0f} s input from the clips in {SHARED_REAL} ...", flush=True)
        t0 = time.perf_counter()
        input_info = build_input(flac, args.duration, args.seed)
        print(f"  {input_info['speech_clips_placed']} speech clips, {input_info['speech_s']:.0f} s of speech, "
              f"{input_info['size_bytes'] / 2**20:.1f} MiB FLAC, built in {time.perf_counter() - t0:.1f} s", flush=True)
        ctx = Context(flac_path=str(flac), audio_duration_s=input_info["duration_s"], repeats=args.repeats,
                      work_dir=str(work))
        if any(BENCHMARKS[n].needs_decoded for n in names):
            ctx = decode_for_children(ctx)
        for name in names:
            print(f"running {name} ...", flush=True)
            t0 = time.perf_counter()
            results[name] = {**run_in_fresh_process(name, ctx, out), "input": input_info}
            state = "failed" if "error" in results[name] else "done"
            print(f"  {state} in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = {"machine": {**machine, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")},
              "benchmarks": results}
    bench_json.write_text(json.dumps(report, indent=1) + "\n")
    print()
    m = report["machine"]
    print(f"{m['cpu_count']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, "
          f"torch {m['torch']}, ray {m['ray']}; {m['date']}")
    print(f"input: {input_info['duration_s']:.0f} s, {INPUT_RATE} Hz stereo FLAC, "
          f"{input_info['speech_s']:.0f} s of speech from {input_info['speech_clips_available']} real clips\n")
    print_table(results, names)
    print(f"\nwrote {bench_json} (total {time.perf_counter() - t_start:.0f} s)")
    return 1 if any("error" in results[n] for n in names) else 0


if __name__ == "__main__":
    sys.exit(main())
