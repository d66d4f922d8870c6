"""Diarization benchmarks: per-backend RTF on the AMI clips, one hour, speaker embedding, post-processing."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from evaluation.diarization import diarizer_of
from benchmarks.harness import Context, benchmark, current_rss_mib
from benchmarks.inputs import SHARED_REAL


def _diarization_clips() -> list[Path]:
    root = SHARED_REAL / "diarization"
    return sorted((root / "ami_pyannote_debug").glob("*.wav")) + [root / "pyannote_sample" / "sample.wav"]


@benchmark("diarization_ami", "Diarizer.diarize() per backend on the 4 AMI clips: real-time factor")
def bench_diarization_ami(ctx: Context) -> dict[str, Any]:
    from audio_io.decode import decode
    from pipeline.config import load_config

    clips = [p for p in _diarization_clips() if p.parent.name == "ami_pyannote_debug"]
    audio = [decode(str(p), 16000).samples for p in clips]
    total = sum(len(a) for a in audio) / 16000
    out: dict[str, Any] = {"clips": len(clips), "audio_duration_s": total}
    for backend in ("segmentation", "pyannote_pipeline"):
        cfg = load_config(None, [f"diarization.backend={backend}"])
        try:
            t0 = time.perf_counter()
            diarizer = diarizer_of(cfg)
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
    diarizer = diarizer_of(cfg)
    before = current_rss_mib()
    t0 = time.perf_counter()
    res = diarizer.diarize(audio)
    wall = time.perf_counter() - t0
    return {"audio_duration_s": len(audio) / 16000, "wall_s": wall, "rtf": wall / (len(audio) / 16000),
            "rss_before_mib": before, "segments": len(res.segments), "speakers": res.speakers,
            "raw_tracks": res.figures.get("tracks", 0)}


@benchmark("speaker_embedding", "offline speaker embedders (CAM++, the default, and resemblyzer) on 1.5 s chunks of real speech, batched")
def bench_speaker_embedding(ctx: Context) -> dict[str, Any]:
    from audio_io.decode import decode
    from diarization.embedding import load_embedder

    out: dict[str, Any] = {}
    for name in ("campplus", "resemblyzer"):
        embedder = load_embedder(name, "cpu", 32)
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
        out.update({f"{name}_model": embedder.model_id, f"{name}_chunks": len(chunks),
                    f"{name}_chunks_per_s": len(chunks) / wall,
                    f"{name}_throughput_audio_s_per_wall_s": 1.5 * len(chunks) / wall})
    return out


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
