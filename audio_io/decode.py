"""Decode any container/codec to mono float32 at a chosen rate, through ffmpeg.

ffmpeg-python builds the command (never a shell string); the file is probed first so
that a file with no audio stream, an empty file or a non-media file fails with a reason a
person can act on, instead of ffmpeg's last stderr line alone.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Literal

import ffmpeg
import numpy as np
from pydantic import Field

from manifests.params import Params


class DecodeError(Exception):
    """The source cannot be turned into audio. The message is written to the ledger."""


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says of the source's first audio stream."""

    container: str
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, shape (n,)
    sample_rate: int
    info: AudioInfo
    non_finite_replaced: int = 0
    # ffmpeg exits 0 on many damaged files (a truncated one, say) after concealing what it
    # could not read; its complaint is kept here so the ledger can show it.
    warning: str | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def probe(path: str, timeout_s: float = 60.0) -> AudioInfo:
    try:
        meta = ffmpeg.probe(path, timeout=timeout_s)
    except ffmpeg.Error as exc:
        raise DecodeError(f"not a readable media file ({_last_line(exc.stderr)})") from None
    except subprocess.TimeoutExpired:
        raise DecodeError(f"ffprobe gave no answer within {timeout_s:.0f} s") from None
    audio = [s for s in meta.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        kinds = sorted({s.get("codec_type", "?") for s in meta.get("streams", [])})
        found = ", ".join(kinds) if kinds else "no streams"
        raise DecodeError(f"no audio stream in the file (found: {found})")
    stream = audio[0]
    duration = stream.get("duration") or meta.get("format", {}).get("duration")
    return AudioInfo(
        container=str(meta.get("format", {}).get("format_name", "unknown")),
        codec=str(stream.get("codec_name", "unknown")),
        sample_rate=int(stream.get("sample_rate") or 0),
        channels=int(stream.get("channels") or 0),
        duration_s=float(duration) if duration not in (None, "N/A") else None,
    )


def decode(
    path: str,
    sample_rate: int,
    *,
    non_finite: str = "fail",
    timeout_s: float = 3600.0,
) -> DecodedAudio:
    """Decode ``path`` to mono float32 at ``sample_rate``; the channels are averaged."""
    info = probe(path, timeout_s=min(timeout_s, 120.0))
    out_args: dict = {"format": "f32le", "acodec": "pcm_f32le", "ac": 1, "ar": sample_rate, "map": "0:a:0"}
    if 1 < info.channels <= _PAN_MAX_CHANNELS:
        out_args["af"] = _average_channels(info.channels)
    cmd = (
        ffmpeg.input(path)
        .output("pipe:", **out_args)
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
        .compile()
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"ffmpeg did not finish within {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        raise DecodeError(f"ffmpeg failed to decode the audio ({_last_line(proc.stderr)})")
    samples = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32, copy=True)
    if samples.size == 0:
        raise DecodeError("the audio stream decodes to no samples")
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        if non_finite == "fail":
            raise DecodeError(
                f"audio contains {bad} non-finite samples (NaN/inf), {100 * bad / samples.size:.2f}% of the file"
            )
        samples[~np.isfinite(samples)] = 0.0
    warning = _last_line(proc.stderr) if proc.stderr.strip() else None
    return DecodedAudio(samples=samples, sample_rate=sample_rate, info=info, non_finite_replaced=bad, warning=warning)


# ffmpeg's pan filter takes at most 64 channels; beyond that ffmpeg's own downmix is used.
_PAN_MAX_CHANNELS = 64


def _average_channels(channels: int) -> str:
    """An ffmpeg ``pan`` filter that gives every channel the same weight, 1/channels.

    ffmpeg's own ``-ac 1`` downmix is no average: with float output it does not normalise,
    so stereo becomes 0.707 * (L + R) (over full scale for loud in-phase stereo), and more
    than two channels with no channel mask are taken for a surround layout (8: 7.1) whose
    4th channel is dropped as LFE and whose other channels are summed at surround gains.
    """
    gain = f"{1.0 / channels:.10g}"
    return "pan=mono|c0=" + "+".join(f"{gain}*c{i}" for i in range(channels))


def _last_line(stderr: bytes | None) -> str:
    text = (stderr or b"").decode("utf-8", "replace").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no message"


# ---- the decode stage's parameters and checks ----------------------------------------------


class DecodeParams(Params):
    """Stage 1: ffmpeg decode of any container/codec to mono float32."""

    sample_rate: int = Field(24000, ge=8000, le=192000, description="working rate of the decoded signal")
    min_duration_s: float = Field(0.5, ge=0, description="shorter sources fail as too short")
    max_duration_s: float | None = Field(None, gt=0, description="longer sources fail; None: no limit")
    non_finite: Literal["fail", "zero"] = Field(
        "fail", description="NaN/inf samples: fail the source, or replace them by zero"
    )
    timeout_s: float = Field(3600.0, gt=0, description="ffmpeg wall-clock limit per source")


def check_duration(audio: DecodedAudio, params: DecodeParams) -> None:
    """The duration bounds of ``params``; DecodeError names the key to change."""
    if audio.duration_s < params.min_duration_s:
        raise DecodeError(f"too short: {audio.duration_s:.2f} s of audio, the minimum is {params.min_duration_s} s "
                          f"(decode.min_duration_s)")
    if params.max_duration_s is not None and audio.duration_s > params.max_duration_s:
        raise DecodeError(f"too long: {audio.duration_s:.0f} s of audio, the maximum is {params.max_duration_s} s "
                          f"(decode.max_duration_s)")
