"""The generated input: real speech joined by seeded silences, as one FLAC and cut into N files.

The input is real speech (the clips under ../shared/data/real) joined by seeded silences
of 0.5-3 s, with low-level noise over the whole file, 44.1 kHz stereo FLAC, so decoding
it does real work (FLAC decode, resample to the working rate, downmix).
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, Context

SHARED_REAL = Path(os.environ.get("REFINERY_SHARED_DATA", REPO.parent / "shared" / "data" / "real"))

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


def split_input(path: Path, n_files: int, work_dir: Path) -> list[Path]:
    """``path`` cut into ``n_files`` FLACs of equal length at samples ``i * total // n``.

    Same rate, channels and sample format (the 16-bit samples are read back and cut, not
    re-quantised), so the pieces joined are the whole file sample for sample. One file:
    ``path`` itself.
    """
    if n_files < 1:
        raise ValueError(f"n_files must be >= 1, not {n_files}")
    if n_files == 1:
        return [path]
    import soundfile as sf

    info = sf.info(str(path))
    pcm, rate = sf.read(str(path), dtype="int16", always_2d=True)
    total = len(pcm)
    if total < n_files:
        raise SystemExit(f"cannot cut {total} samples into {n_files} files")
    width = len(str(n_files))
    paths: list[Path] = []
    for i in range(n_files):
        piece = work_dir / f"{path.stem}_part{i + 1:0{width}d}of{n_files}.flac"
        sf.write(str(piece), pcm[i * total // n_files : (i + 1) * total // n_files], rate, format="FLAC",
                 subtype=info.subtype)
        paths.append(piece)
    return paths


def decode_for_children(ctx: Context) -> Context:
    """Decode the input once (in the parent) for benchmarks that start from the signal."""
    import numpy as np

    from audio_io.decode import decode
    from pipeline.config import load_config

    rate = load_config(None, []).decode.sample_rate
    npy = Path(ctx.work_dir) / f"decoded_{rate}.npy"
    np.save(npy, decode(ctx.flac_path, rate).samples)
    return Context(**{**ctx.__dict__, "decoded_path": str(npy), "decoded_rate": rate})


def bench_run(ctx: Context, cfg: Any) -> Any:
    from stages.base import RunContext

    return RunContext(out_dir=ctx.work_dir, corpus="bench", run_id="bench", config_hash=cfg.config_hash())


def analysis_row(ctx: Context) -> dict:
    """A recording row of the decoded input: its 16 kHz analysis signal, as decode makes it."""
    import numpy as np

    from audio_io.signals import ANALYSIS_RATE, analysis_signal

    analysis = analysis_signal(np.load(ctx.decoded_path), ctx.decoded_rate)
    return {"status": "ok", "analysis": analysis, "analysis_rate": ANALYSIS_RATE, "recording_id": "bench",
            "models": [], "duration_s": len(analysis) / ANALYSIS_RATE}


def _segmented_row(ctx: Context, cfg: Any) -> dict:
    """The decoded input as a pipeline row (its 16 kHz analysis signal), segmented by the pipeline's VAD stage."""
    from stages.vad_segment import VadSegmentStage

    row = analysis_row(ctx)
    row = VadSegmentStage(cfg, bench_run(ctx, cfg)).segment_row(row)
    if row["status"] != "ok":
        raise RuntimeError(row.get("error"))
    return row
