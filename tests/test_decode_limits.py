"""Decode limits (issue 14, items 4 and 7a): no source decodes to more than the limits allow,
every refusal is a failed row with its reason, and any channel count decodes to the mean.

* a header claiming an absurd rate (1 Hz: 7 KB would become two hours at the working rate;
  40 samples at 40 Hz would pass as 1 s) is refused at the probe (decode.min_source_rate_hz);
* a source ffprobe reports longer than decode.max_duration_s is refused before decoding;
  when ffprobe cannot tell, ffmpeg stops just past the limit (-t) and the decode is refused;
* more than 64 channels (beyond ffmpeg's pan filter and resampler) average like fewer do;
* a plain 16 kHz stereo clip decodes exactly as before.

Every file is generated here, in tmp_path.
"""

from __future__ import annotations

import struct
import subprocess
import time
from pathlib import Path

import ffmpeg
import numpy as np
import pytest
import soundfile as sf

import audio_io.decode as decode_mod
from audio_io.decode import DecodeError, DecodeParams, decode, probe
from pipeline.config import load_config
from stages.base import RunContext
from stages.decode import DecodeStage

RATE = 24000  # the default working rate


def _wav(path: Path, rate: int, data: bytes, *, channels: int = 1, bits: int = 16,
         claimed_bytes: int | None = None) -> Path:
    """A canonical 44-byte-header PCM WAV; ``claimed_bytes`` sets the data size the header declares."""
    size = len(data) if claimed_bytes is None else claimed_bytes
    block = channels * bits // 8
    header = (b"RIFF" + struct.pack("<I", min(36 + size, 0xFFFFFFFF)) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
              + b"data" + struct.pack("<I", size))
    path.write_bytes(header + data)
    return path


def _stage(tmp_path: Path, *overrides: str) -> DecodeStage:
    cfg = load_config(None, ["enhance.enabled=false", *overrides])
    run = RunContext(out_dir=str(tmp_path / "out"), corpus="c", run_id="run", config_hash=cfg.config_hash())
    return DecodeStage(cfg, run)


def _row(stage: DecodeStage, path: Path) -> dict:
    return stage.decode_row({"path": str(path), "source_uri": str(path), "recording_id": path.stem,
                             "size_bytes": path.stat().st_size})


@pytest.fixture
def ffmpeg_runs(monkeypatch) -> list[dict]:
    """Every decoding ffmpeg run (not ffprobe): its command and how many bytes it wrote."""
    runs: list[dict] = []
    real_run, real_popen = decode_mod._run_ffmpeg, decode_mod.subprocess.Popen

    inside_run = []

    def run(cmd, timeout_s, stdin=None):
        inside_run.append(1)
        try:
            proc = real_run(cmd, timeout_s, stdin)
        finally:
            inside_run.pop()
        runs.append({"cmd": cmd, "stdout_bytes": len(proc.stdout), "stdin": stdin is not None})
        return proc

    # The > 64-channel path streams ffmpeg's output through Popen (ffmpeg.probe runs ffprobe
    # through Popen, and subprocess.run uses it: those are let through unrecorded).
    def popen(cmd, *args, **kwargs):
        if Path(cmd[0]).name == "ffmpeg" and not inside_run:
            runs.append({"cmd": cmd, "stdout_bytes": None, "stdin": False})
        return real_popen(cmd, *args, **kwargs)

    monkeypatch.setattr(decode_mod, "_run_ffmpeg", run)
    monkeypatch.setattr(decode_mod.subprocess, "Popen", popen)
    return runs


@pytest.fixture
def no_probed_duration(monkeypatch):
    """ffprobe tells no duration (as for a stream whose header lies or says nothing)."""
    real = ffmpeg.probe

    def probe_without_duration(*args, **kwargs):
        meta = real(*args, **kwargs)
        for stream in meta.get("streams", []):
            stream.pop("duration", None)
        meta.get("format", {}).pop("duration", None)
        return meta

    monkeypatch.setattr(decode_mod.ffmpeg, "probe", probe_without_duration)


# ---- the defaults ---------------------------------------------------------------------------

def test_defaults_bound_every_decode():
    params = DecodeParams()
    assert params.min_source_rate_hz == 1000 and params.max_duration_s == 14400.0
    with pytest.raises(ValueError):
        DecodeParams(max_duration_s=None)  # a hard limit: raise it, there is no "unlimited"
    cfg = load_config(None, ["decode.max_duration_s=36000", "decode.min_source_rate_hz=8000"])
    assert (cfg.decode.max_duration_s, cfg.decode.min_source_rate_hz) == (36000.0, 8000)


def test_ffmpeg_is_told_to_stop_just_past_the_limit(tmp_path, ffmpeg_runs):
    path = tmp_path / "tone.wav"
    sf.write(str(path), 0.1 * np.sin(np.linspace(0, 200, 16000)).astype(np.float32), 16000, subtype="PCM_16")
    decode(str(path), RATE)
    decode(str(path), RATE, max_duration_s=30)
    (first, second) = [r["cmd"] for r in ffmpeg_runs]
    assert first[first.index("-t") + 1] == "14401"
    assert second[second.index("-t") + 1] == "31"


# ---- absurd source rates: refused at the probe ------------------------------------------------

def test_1_hz_wav_is_refused_at_the_probe(tmp_path, ffmpeg_runs):
    path = _wav(tmp_path / "one_hz.wav", 1, bytes(range(256)) * 28, bits=8)  # 7 KB, "7168 s"
    reason = "source sample rate 1 Hz is below decode.min_source_rate_hz (1000 Hz)"
    with pytest.raises(DecodeError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        probe(str(path), min_source_rate_hz=1000)
    assert probe(str(path)).sample_rate == 1  # without the limit, probe only describes
    with pytest.raises(DecodeError) as err:
        decode(str(path), RATE)
    assert str(err.value) == reason
    row = _row(_stage(tmp_path), path)
    assert row["status"] == "failed" and row["error"] == reason
    assert row["samples"].size == 0 and row["audio_raw"] is None
    assert ffmpeg_runs == []  # nothing was decoded


def test_40_samples_at_40_hz_is_refused(tmp_path, ffmpeg_runs):
    path = _wav(tmp_path / "forty.wav", 40, np.arange(40, dtype=np.int16).tobytes())
    row = _row(_stage(tmp_path), path)
    assert row["status"] == "failed"
    assert row["error"] == "source sample rate 40 Hz is below decode.min_source_rate_hz (1000 Hz)"
    assert row["duration_s"] is None
    assert ffmpeg_runs == []


def test_the_minimum_rate_is_configurable(tmp_path):
    path = tmp_path / "eight_k.wav"
    sf.write(str(path), 0.1 * np.sin(np.linspace(0, 500, 8000)).astype(np.float32), 8000, subtype="PCM_16")
    assert _row(_stage(tmp_path), path)["status"] == "ok"
    row = _row(_stage(tmp_path, "decode.min_source_rate_hz=16000"), path)
    assert row["status"] == "failed"
    assert row["error"] == "source sample rate 8000 Hz is below decode.min_source_rate_hz (16000 Hz)"


# ---- duration: refused at the probe, and ffmpeg's output bounded ------------------------------

def test_a_header_claiming_hours_decodes_to_the_data_present(tmp_path):
    """The header says 0xF0000000 bytes (~21 h at 16 kHz); 1 s is there, 1 s is decoded."""
    data = (0.1 * 32767 * np.sin(np.linspace(0, 300, 16000))).astype(np.int16).tobytes()
    path = _wav(tmp_path / "claims_hours.wav", 16000, data, claimed_bytes=0xF0000000)
    audio = decode(str(path), RATE)
    assert audio.duration_s == pytest.approx(1.0, abs=0.01)


def test_a_source_longer_than_the_limit_is_refused_before_decoding(tmp_path, ffmpeg_runs):
    path = tmp_path / "a_minute_of_silence.flac"
    sf.write(str(path), np.zeros(60 * 16000, dtype=np.float32), 16000, format="FLAC", subtype="PCM_16")
    stage = _stage(tmp_path, "decode.max_duration_s=10")
    started = time.monotonic()
    row = _row(stage, path)
    assert row["status"] == "failed"
    assert row["error"] == ("too long: ffprobe reports 60 s of audio, the maximum is 10 s (decode.max_duration_s); "
                            "not decoded")
    assert ffmpeg_runs == []  # refused by the probe: ffmpeg never decoded it
    assert time.monotonic() - started < 10
    # The same file under the default limit (4 h) decodes.
    assert _row(_stage(tmp_path), path)["status"] == "ok"


def test_when_ffprobe_tells_no_duration_ffmpeg_stops_at_the_limit(tmp_path, ffmpeg_runs, no_probed_duration):
    path = tmp_path / "a_minute_of_silence.flac"
    sf.write(str(path), np.zeros(60 * 16000, dtype=np.float32), 16000, format="FLAC", subtype="PCM_16")
    assert probe(str(path)).duration_s is None
    row = _row(_stage(tmp_path, "decode.max_duration_s=10"), path)
    assert row["status"] == "failed"
    assert row["error"] == ("too long: more than 10 s of audio (decoding stopped there), the maximum is 10 s "
                            "(decode.max_duration_s)")
    (run,) = ffmpeg_runs
    assert run["stdout_bytes"] <= (10 + 1) * RATE * 4  # ffmpeg wrote no more than the limit + 1 s, not 60 s


def test_a_many_channel_source_is_bounded_too(tmp_path, ffmpeg_runs, no_probed_duration):
    path = tmp_path / "seventy_long.wav"
    sf.write(str(path), np.zeros((5 * 8000, 70), dtype=np.int16), 8000, subtype="PCM_16")
    with pytest.raises(DecodeError, match=r"more than 2 s of audio \(decoding stopped there\)"):
        decode(str(path), RATE, max_duration_s=2)
    streamed = [r for r in ffmpeg_runs if r["stdout_bytes"] is None]
    assert len(streamed) == 1 and streamed[0]["cmd"][streamed[0]["cmd"].index("-t") + 1] == "3"


# ---- more than 64 channels ------------------------------------------------------------------

def _seventy_channels(n: int, rate: int) -> np.ndarray:
    """70 channels: constants from -0.35 to 0.34, and sines of different frequencies and gains."""
    t = np.arange(n) / rate
    chans = [np.full(n, (i - 35) / 100.0) if i % 2 == 0 else (0.2 + i / 200) * np.sin(2 * np.pi * (50 + 7 * i) * t)
             for i in range(70)]
    return np.stack(chans, axis=1).astype(np.float32)


@pytest.mark.parametrize("subtype, atol", [("FLOAT", 1e-6), ("PCM_16", 1e-4), ("PCM_24", 1e-6)])
def test_70_channels_decode_to_their_mean(tmp_path, subtype, atol):
    data = _seventy_channels(16000, 16000)
    path = tmp_path / f"seventy_{subtype}.wav"
    sf.write(str(path), data, 16000, subtype=subtype)
    stored, _ = sf.read(str(path), dtype="float32")
    want = stored.astype(np.float64).mean(axis=1)
    assert np.abs(want - data.mean(axis=1)).max() < 1e-4
    audio = decode(str(path), 16000)  # at the source rate: nothing resampled
    assert audio.info.channels == 70 and audio.samples.dtype == np.float32
    assert audio.samples.shape == want.shape
    np.testing.assert_allclose(audio.samples, want, atol=atol)


def test_70_channels_at_the_working_rate_match_the_mean_decoded_as_mono(tmp_path):
    """Resampled, the 70-channel mean equals the <= 64-channel path's decode of that mean."""
    data = _seventy_channels(16000, 16000)
    path = tmp_path / "seventy.wav"
    sf.write(str(path), data, 16000, subtype="FLOAT")
    mono = tmp_path / "mean.wav"
    sf.write(str(mono), data.astype(np.float64).mean(axis=1).astype(np.float32), 16000, subtype="FLOAT")
    row = _row(_stage(tmp_path), path)
    assert row["status"] == "ok", row["error"]
    assert row["source_channels"] == 70 and row["source_sample_rate"] == 16000 and row["sample_rate"] == RATE
    want = decode(str(mono), RATE).samples
    assert row["samples"].shape == want.shape
    np.testing.assert_allclose(row["samples"], want, atol=1e-4)


# ---- the <= 64-channel path is unchanged -------------------------------------------------------

@pytest.mark.parametrize("rate", [16000, RATE])
def test_16k_stereo_decodes_exactly_as_before(tmp_path, rate):
    rng = np.random.default_rng(7)
    t = np.arange(3 * 16000) / 16000
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    right = 0.2 * np.sin(2 * np.pi * 660 * t) + 0.05 * rng.standard_normal(t.size)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1).astype(np.float32), 16000, subtype="PCM_16")
    # The command decode() ran before the limits: pan average, no -t.
    before = (ffmpeg.input(str(path))
              .output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=rate, map="0:a:0",
                      af="pan=mono|c0=0.5*c0+0.5*c1")
              .global_args("-nostdin", "-hide_banner", "-loglevel", "error").compile())
    want = np.frombuffer(subprocess.run(before, capture_output=True, check=True).stdout, dtype="<f4")
    audio = decode(str(path), rate)
    assert audio.info.channels == 2 and audio.info.sample_rate == 16000
    assert np.array_equal(audio.samples, want)
