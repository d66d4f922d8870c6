"""Decode any container/codec to mono float32 at a chosen rate, through ffmpeg.

ffmpeg-python builds the command (never a shell string); the file is probed first so
that a file with no audio stream, an empty file or a non-media file fails with a reason a
person can act on, instead of ffmpeg's last stderr line alone.

Decoding is bounded: a source whose rate is below ``min_source_rate_hz`` (a header that says
1 Hz would turn a few KB into hours at the working rate) or that ffprobe already reports
longer than ``max_duration_s`` is refused before ffmpeg decodes it; ffmpeg itself is told to
stop a little past ``max_duration_s`` (``-t``), in case the header lies, and a decode that
reaches the limit is refused too. Sources with more than 64 channels (more than ffmpeg's
``pan`` filter and resampler take) are read as raw PCM and averaged here, a block at a time.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Literal

import ffmpeg
import numpy as np
from pydantic import Field

from manifests.params import Params


class DecodeError(Exception):
    """The source cannot be turned into audio. The message is written to the ledger."""


# The defaults of DecodeParams.min_source_rate_hz and .max_duration_s, also those of decode().
DEFAULT_MIN_SOURCE_RATE_HZ = 1000
DEFAULT_MAX_DURATION_S = 14400.0  # 4 hours
# ffmpeg is told to stop this far past max_duration_s, so that reaching it shows the source is longer.
_DURATION_MARGIN_S = 1.0


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says of the source's first audio stream."""

    container: str
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None
    sample_format: str = ""  # the decoder's output sample format (ffprobe's sample_fmt: s16, flt, fltp, ...)


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


def probe(
    path: str,
    timeout_s: float = 60.0,
    *,
    min_source_rate_hz: int | None = None,
    max_duration_s: float | None = None,
) -> AudioInfo:
    """ffprobe's view of the first audio stream; with the limits set, a source beyond them
    raises DecodeError here, before anything is decoded."""
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
    info = AudioInfo(
        container=str(meta.get("format", {}).get("format_name", "unknown")),
        codec=str(stream.get("codec_name", "unknown")),
        sample_rate=int(stream.get("sample_rate") or 0),
        channels=int(stream.get("channels") or 0),
        duration_s=float(duration) if duration not in (None, "N/A") else None,
        sample_format=str(stream.get("sample_fmt") or ""),
    )
    # A rate of 0 is "not known" (ffmpeg then decides); a known rate below the minimum is refused.
    if min_source_rate_hz is not None and 0 < info.sample_rate < min_source_rate_hz:
        raise DecodeError(f"source sample rate {info.sample_rate} Hz is below decode.min_source_rate_hz "
                          f"({min_source_rate_hz} Hz)")
    if max_duration_s is not None and info.duration_s is not None and info.duration_s > max_duration_s:
        raise DecodeError(f"too long: ffprobe reports {info.duration_s:.0f} s of audio, the maximum is "
                          f"{max_duration_s:g} s (decode.max_duration_s); not decoded")
    return info


def decode(
    path: str,
    sample_rate: int,
    *,
    non_finite: str = "fail",
    timeout_s: float = 3600.0,
    min_source_rate_hz: int | None = DEFAULT_MIN_SOURCE_RATE_HZ,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> DecodedAudio:
    """Decode ``path`` to mono float32 at ``sample_rate``; the channels are averaged.

    ``min_source_rate_hz`` and ``max_duration_s`` (None: no limit) bound what a source may
    decode to; a source beyond them raises DecodeError, at the probe when ffprobe already
    shows it, and ffmpeg never writes much more than ``max_duration_s`` of audio.
    """
    start = time.monotonic()
    info = probe(path, timeout_s=min(timeout_s, 120.0), min_source_rate_hz=min_source_rate_hz,
                 max_duration_s=max_duration_s)
    limit = {} if max_duration_s is None else {"t": f"{max_duration_s + _DURATION_MARGIN_S:g}"}
    left_s = max(1.0, timeout_s - (time.monotonic() - start))
    if info.channels > _PAN_MAX_CHANNELS:
        samples, stderr = _decode_many_channels(path, info, sample_rate, limit, left_s)
    else:
        out_args: dict = {"format": "f32le", "acodec": "pcm_f32le", "ac": 1, "ar": sample_rate, "map": "0:a:0",
                          **limit}
        if 1 < info.channels:
            out_args["af"] = _average_channels(info.channels)
        proc = _run_ffmpeg(ffmpeg.input(path).output("pipe:", **out_args).compile(), left_s)
        samples = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32, copy=True)
        stderr = proc.stderr
    if samples.size == 0:
        raise DecodeError("the audio stream decodes to no samples")
    if max_duration_s is not None and samples.size / sample_rate > max_duration_s:
        # ffprobe gave no duration, or less than the audio holds; ffmpeg stopped at the limit + margin.
        capped = samples.size >= int((max_duration_s + _DURATION_MARGIN_S) * sample_rate) - 1
        got = f"more than {max_duration_s:g} s of audio (decoding stopped there)" if capped else \
            f"{samples.size / sample_rate:.0f} s of audio"
        raise DecodeError(f"too long: {got}, the maximum is {max_duration_s:g} s (decode.max_duration_s)")
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        if non_finite == "fail":
            raise DecodeError(
                f"audio contains {bad} non-finite samples (NaN/inf), {100 * bad / samples.size:.2f}% of the file"
            )
        samples[~np.isfinite(samples)] = 0.0
    warning = _last_line(stderr) if stderr.strip() else None
    return DecodedAudio(samples=samples, sample_rate=sample_rate, info=info, non_finite_replaced=bad, warning=warning)


_QUIET = ("-hide_banner", "-loglevel", "error")


def _run_ffmpeg(cmd: list[str], timeout_s: float, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a compiled ffmpeg command (reading ``stdin``, or with -nostdin), its output captured."""
    cmd = [cmd[0], *(_QUIET if stdin is not None else ("-nostdin", *_QUIET)), *cmd[1:]]
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"ffmpeg did not finish within {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        raise DecodeError(f"ffmpeg failed to decode the audio ({_last_line(proc.stderr)})")
    return proc


# ffmpeg's pan filter and its resampler (swresample) take at most 64 channels; a source with
# more is read as raw PCM in the decoder's own sample format (no conversion, so no resampler)
# and averaged by _decode_many_channels.
_PAN_MAX_CHANNELS = 64

# Packed sample formats ffmpeg can write as raw PCM unconverted: encoder, numpy dtype, offset, scale
# (float = (x - offset) / scale, as ffmpeg converts them to float).
_RAW_PCM = {
    "u8": ("pcm_u8", "u8", "u1", 128.0, 128.0),
    "s16": ("pcm_s16le", "s16le", "<i2", 0.0, 32768.0),
    "s32": ("pcm_s32le", "s32le", "<i4", 0.0, 2147483648.0),
    "s64": ("pcm_s64le", "s64le", "<i8", 0.0, 9223372036854775808.0),
    "flt": ("pcm_f32le", "f32le", "<f4", 0.0, 1.0),
    "dbl": ("pcm_f64le", "f64le", "<f8", 0.0, 1.0),
}
_BLOCK_FRAMES = 1 << 16


def _decode_many_channels(path: str, info: AudioInfo, sample_rate: int, limit: dict,
                          timeout_s: float) -> tuple[np.ndarray, bytes]:
    """Mono float32 at ``sample_rate`` and ffmpeg's stderr, for a source of more than 64 channels.

    ffmpeg writes every channel as raw PCM in the decoder's sample format; each block of
    frames is averaged as it arrives (the whole multichannel signal is never held), then the
    mono signal is resampled by ffmpeg as the <= 64-channel path does.
    """
    start = time.monotonic()
    raw = _RAW_PCM.get(info.sample_format)
    if raw is None:
        raise DecodeError(f"{info.channels} channels in sample format {info.sample_format or 'unknown'}: "
                          f"more than {_PAN_MAX_CHANNELS} channels decode only from PCM "
                          f"({', '.join(_RAW_PCM)})")
    if info.sample_rate <= 0:
        raise DecodeError(f"{info.channels} channels at an unknown sample rate: cannot resample the average")
    codec, fmt, dtype, offset, scale = raw
    cmd = ffmpeg.input(path).output("pipe:", format=fmt, acodec=codec, map="0:a:0", **limit).compile()
    cmd = [cmd[0], "-nostdin", *_QUIET, *cmd[1:]]
    frame_bytes = np.dtype(dtype).itemsize * info.channels
    parts: list[np.ndarray] = []
    timed_out = threading.Event()
    with tempfile.TemporaryFile() as err, subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                           stderr=err) as proc:
        def _kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout_s, _kill)
        timer.start()
        try:
            pending = b""
            while chunk := proc.stdout.read(frame_bytes * _BLOCK_FRAMES):
                data = pending + chunk
                whole = len(data) - len(data) % frame_bytes
                pending = data[whole:]
                frames = np.frombuffer(data, dtype=dtype, count=whole // np.dtype(dtype).itemsize)
                mean = frames.reshape(-1, info.channels).mean(axis=1, dtype=np.float64)
                parts.append(((mean - offset) / scale).astype(np.float32))
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:  # an exception while reading: leave no ffmpeg behind
                proc.kill()
        err.seek(0)
        stderr = err.read()
    if timed_out.is_set() and proc.returncode != 0:
        raise DecodeError(f"ffmpeg did not finish within {timeout_s:.0f} s")
    if proc.returncode != 0:
        raise DecodeError(f"ffmpeg failed to decode the audio ({_last_line(stderr)})")
    mono = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if mono.size == 0 or info.sample_rate == sample_rate:
        return mono, stderr
    left_s = max(1.0, timeout_s - (time.monotonic() - start))
    resample = ffmpeg.input("pipe:", format="f32le", ar=info.sample_rate, ac=1).output(
        "pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate).compile()
    proc2 = _run_ffmpeg(resample, left_s, stdin=mono.tobytes())
    return np.frombuffer(proc2.stdout, dtype="<f4").astype(np.float32, copy=True), stderr


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
    max_duration_s: float = Field(
        DEFAULT_MAX_DURATION_S, gt=0,
        description="longer sources fail: refused at the probe when ffprobe reports more, and ffmpeg stops "
                    "decoding 1 s past it (a header can lie), so no source decodes to more than this; "
                    "default 4 h, raise it for longer recordings")
    min_source_rate_hz: int = Field(
        DEFAULT_MIN_SOURCE_RATE_HZ, gt=0,
        description="sources whose sample rate is lower fail at the probe (a header claiming 1 Hz would "
                    "decode a few KB to hours of audio at the working rate)")
    non_finite: Literal["fail", "zero"] = Field(
        "fail", description="NaN/inf samples: fail the source, or replace them by zero"
    )
    timeout_s: float = Field(3600.0, gt=0, description="ffmpeg wall-clock limit per source")


def check_duration(audio: DecodedAudio, params: DecodeParams) -> None:
    """The duration bounds of ``params``; DecodeError names the key to change."""
    if audio.duration_s < params.min_duration_s:
        raise DecodeError(f"too short: {audio.duration_s:.2f} s of audio, the minimum is {params.min_duration_s} s "
                          f"(decode.min_duration_s)")
    if audio.duration_s > params.max_duration_s:
        raise DecodeError(f"too long: {audio.duration_s:.0f} s of audio, the maximum is {params.max_duration_s} s "
                          f"(decode.max_duration_s)")
