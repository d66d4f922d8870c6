"""Issue 14, item 8: bytes that are not PCM, read as PCM, never reach the shards as speech.

A real clip encoded as mu-law and given a PCM WAV header (8-bit unsigned or 16-bit) decodes
to full-scale noise; Whisper still wrote fluent, repeated sentences on it, and the segment was
kept. The quality stage's noise floor (``quality.max_noise_floor_dbfs``) drops it. The files
are made here at test time from the shared real clips (into tmp_path), with ffmpeg and
``wave``, exactly as a mislabelled file would be.
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest

from audio_io.decode import decode
from audio_io.quality import QualityParams, score_segments, segment_figures
from manifests.planned_segment import PlannedSegment
from pipeline.config import load_config
from tests.conftest import SHARED_REAL, real_clip

RATE = 16000
LIBRI = ("asr_en", "librispeech-1995-1837-0001.wav")
JFK = ("asr_en", "jfk.flac")
FLOOR_REASON = "quality: noise_floor_dbfs > -12.0, full-scale noise (quality.max_noise_floor_dbfs)"
NO_DNSMOS = QualityParams(dnsmos=False)


def mulaw_as_pcm(src: Path, dst: Path, sample_width: int) -> Path:
    """``src`` as 8 kHz mu-law bytes (ffmpeg) behind a PCM WAV header of ``sample_width`` bytes."""
    ulaw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(src), "-ar", "8000", "-ac", "1",
                           "-f", "mulaw", "-"], check=True, capture_output=True).stdout
    assert len(ulaw) > 8000
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(sample_width)  # 1: unsigned 8-bit PCM, 2: signed 16-bit PCM
        w.setframerate(8000)
        w.writeframes(ulaw[: len(ulaw) // sample_width * sample_width])
    return dst


@pytest.fixture(scope="module")
def garbage(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("garbage")
    files = {}
    for name, parts in (("libri", LIBRI), ("jfk", JFK)):
        for width in (1, 2):
            key = f"{name}_pcm{8 * width}"
            files[key] = mulaw_as_pcm(real_clip(*parts), out / f"{key}.wav", width)
    return files


def _signal(path: Path) -> np.ndarray:
    return np.clip(decode(str(path), RATE).samples, -1.0, 1.0)


def _spans(duration: float, length: float = 2.0) -> list[tuple[float, float]]:
    """Every ``length`` s of a recording (and the whole), as segments the pipeline could cut."""
    starts = np.arange(0.0, max(duration - length, 0.0) + 1e-9, length)
    return [(float(s), float(min(s + length, duration))) for s in starts] + [(0.0, duration)]


def _floors(x: np.ndarray) -> list[float]:
    return [f["noise_floor_dbfs"] for f in segment_figures(x, RATE, _spans(len(x) / RATE), NO_DNSMOS, None)]


# ---- the check on real and generated signals ---------------------------------------------------

@pytest.mark.parametrize("key", ["libri_pcm8", "libri_pcm16", "jfk_pcm8", "jfk_pcm16"])
def test_mulaw_read_as_pcm_is_full_scale_noise_and_dropped(garbage, key) -> None:
    x = _signal(garbage[key])
    floors = _floors(x)
    assert all(-7.5 < f < -5.0 for f in floors), floors  # measured -6.1 to -6.6 dBFS
    segs = [PlannedSegment(a, b, "S0") for a, b in _spans(len(x) / RATE)]
    score_segments(x, RATE, segs, NO_DNSMOS, None)
    assert segs and all(s.drop_reason == FLOOR_REASON for s in segs)
    assert all(s.snr_db == 0.0 for s in segs)  # no frame above the floor: nothing like speech


def _real_recordings() -> list[Path]:
    """Every real clip shared with the tests: clean, noisy (0 dB), meetings, telephone, broadcast."""
    files = sorted(p for ext in ("wav", "flac") for p in SHARED_REAL.rglob(f"*.{ext}"))
    assert len(files) >= 20, files
    return files


def test_real_recordings_keep_a_floor_far_below_the_threshold() -> None:
    worst = {}
    for path in _real_recordings():
        x = _signal(path)
        worst[path.name] = max(_floors(x))
        segs = [PlannedSegment(a, b, "S0") for a, b in _spans(len(x) / RATE)]
        score_segments(x, RATE, segs, NO_DNSMOS, None)
        assert all(s.kept for s in segs), path
    # The loudest floor (TEST_NET_..._S00000.wav, a broadcast over music) is 7 dB below the threshold.
    assert max(worst.values()) < -18.0, worst


def test_generated_signals() -> None:
    rng = np.random.default_rng(8)
    white = rng.uniform(-1.0, 1.0, 10 * RATE).astype(np.float32)  # any byte stream read as PCM
    speech = _signal(real_clip(*LIBRI))
    speech = speech / np.max(np.abs(speech))  # normalised to a 0 dBFS peak: as loud as speech gets
    noisy = speech + 0.5 * rng.standard_normal(len(speech)).astype(np.float32) * np.std(speech)
    cases = {
        "full-scale white noise": (white, False),
        "white noise 20 dB down": (white * 0.1, True),  # a noise floor, not garbage: other checks' business
        "speech peaking at 0 dBFS": (speech, True),
        "the same speech in noise at 6 dB SNR, clipped": (np.clip(noisy / np.max(np.abs(noisy)) * 1.5, -1, 1), True),
        "digital silence": (np.zeros(3 * RATE, dtype=np.float32), True),
    }
    for name, (x, kept) in cases.items():
        seg = PlannedSegment(0.0, len(x) / RATE, "S0")
        score_segments(x, RATE, [seg], NO_DNSMOS, None)
        assert seg.kept == kept, (name, seg.noise_floor_dbfs)
        assert seg.noise_floor_dbfs is not None
    silent = PlannedSegment(0.0, 3.0, "S0")
    score_segments(np.zeros(3 * RATE, dtype=np.float32), RATE, [silent], NO_DNSMOS, None)
    assert silent.noise_floor_dbfs == -100.0


def test_the_floor_is_on_by_default_measured_without_snr_and_can_be_turned_off() -> None:
    cfg = load_config()
    assert cfg.quality.max_noise_floor_dbfs == -12.0
    off = load_config(None, ["quality.max_noise_floor_dbfs=null"])
    assert off.quality.max_noise_floor_dbfs is None and off.config_hash() != cfg.config_hash()
    white = np.random.default_rng(0).uniform(-1.0, 1.0, 4 * RATE).astype(np.float32)
    only_floor = PlannedSegment(0.0, 4.0, "S0")
    score_segments(white, RATE, [only_floor], QualityParams(snr=False, dnsmos=False), None)
    assert only_floor.snr_db is None and only_floor.noise_floor_dbfs > -6.0 and only_floor.drop_reason == FLOOR_REASON
    unchecked = PlannedSegment(0.0, 4.0, "S0")
    score_segments(white, RATE, [unchecked], QualityParams(dnsmos=False, max_noise_floor_dbfs=None), None)
    assert unchecked.kept and unchecked.noise_floor_dbfs > -6.0  # measured with the SNR estimate all the same
    neither = PlannedSegment(0.0, 4.0, "S0")
    score_segments(white, RATE, [neither], QualityParams(snr=False, dnsmos=False, max_noise_floor_dbfs=None), None)
    assert neither.kept and neither.noise_floor_dbfs is None


# ---- the shipped output ------------------------------------------------------------------------

@pytest.mark.slow
def test_the_pipeline_drops_the_garbage_and_keeps_the_clip_it_was_made_from(ray_session, garbage, tmp_path) -> None:
    """One run of the real pipeline over the garbage (libri as 8-bit PCM: Whisper wrote "It was
    essentially fun over the night, ... It was fun over the night, and it was fun over the
    night." on it, and the segment was kept) and the clip itself."""
    from pipeline.run import run_pipeline

    clip = real_clip(*LIBRI)
    summary = run_pipeline([str(garbage["libri_pcm8"]), str(clip)], "g", tmp_path, load_config())
    assert summary.done == 2 and summary.failed == 0
    files = sorted(str(p) for p in (tmp_path / "g" / "segments").glob("run=*/part-*.parquet"))
    rows = pads.dataset(files, format="parquet").to_table(
        columns=["source_uri", "kept", "drop_reason", "text", "noise_floor_dbfs", "snr_db"]).to_pylist()
    # Sources are named by their resolved path (../shared may be a link to the clips).
    bad = [r for r in rows if r["source_uri"] == str(Path(garbage["libri_pcm8"]).resolve())]
    good = [r for r in rows if r["source_uri"] == str(clip.resolve())]
    assert bad, "the garbage must reach the quality stage as a transcribed segment, or this tests nothing"
    assert not any(r["kept"] for r in bad)
    assert all(r["text"] and r["drop_reason"] == FLOOR_REASON and r["noise_floor_dbfs"] > -12.0 for r in bad), bad
    kept = [r for r in good if r["kept"]]
    assert kept and all(r["noise_floor_dbfs"] < -40.0 for r in kept)
    text = " ".join(r["text"] for r in kept).lower()
    assert "the first great sorrow of his life" in text and "the loss of the cotton itself" in text
