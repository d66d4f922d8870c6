"""The enhance stage and the raw/enhanced audio columns, without Ray (the pipeline test covers Ray)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audio_io.decode import decode
from audio_io.flac import decode_flac
from enhancement_bsrnn.model import BSRNN, BsrnnConfig
from enhancement_bsrnn.weights import save_weights
from manifests.planned_segment import PlannedSegment
from manifests.segment_rows import RecordingContext, build_segment_rows
from pipeline.config import EnhanceConfig
from stages.enhance import EnhanceStage, raw_and_enhanced
from tests.conftest import real_clip

CTX = RecordingContext("rec", "file:///x.wav", "c", "run", "hash")
SEGS = [PlannedSegment(start=0.5, end=1.5, speaker="rec/S0"), PlannedSegment(start=2.0, end=2.75)]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Random weights of a tiny model: the stage's plumbing, not the model's quality, is under test here."""
    torch.manual_seed(0)
    model = BSRNN(BsrnnConfig(features=8, hidden=8, layers=1))
    for p in model.parameters():  # move away from the identity start so the output differs from the input
        p.data.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_weights(model, path, {"steps": 0})
    return str(path)


@pytest.fixture(scope="module")
def clip_row():
    audio = decode(str(real_clip("asr_en", "jfk.flac")), 24000)
    return {"status": "ok", "samples": audio.samples[: 24000 * 3], "sample_rate": 24000, "recording_id": "rec",
            "models_json": json.dumps([["decode", "ffmpeg"]])}


def _signal(n=24000 * 3, seed=0):
    return np.random.default_rng(seed).uniform(-0.3, 0.3, n).astype(np.float32)


@pytest.mark.parametrize("variants,has_raw,has_enh", [("both", True, True), ("raw", True, False), ("enhanced", False, True)])
def test_variants_choose_the_audio_columns(variants, has_raw, has_enh):
    raw, enh = _signal(), _signal(seed=1)
    rows = build_segment_rows(CTX, raw, 24000, SEGS, 16000, enhanced=enh, variants=variants)
    assert len(rows) == 2
    for r in rows:
        assert (r["audio"] is not None) == has_raw and (r["audio_enhanced"] is not None) == has_enh
        decoded = [decode_flac(r[c]["bytes"]) for c in ("audio", "audio_enhanced") if r[c] is not None]
        for samples, rate in decoded:
            assert rate == 16000 and abs(len(samples) / 16000 - r["duration"]) < 1e-3
        if len(decoded) == 2:
            assert not np.allclose(decoded[0][0], decoded[1][0]), "the two columns must hold the two signals"


def test_enhanced_variant_without_enhanced_signal_is_an_error():
    with pytest.raises(ValueError, match="no enhanced signal"):
        build_segment_rows(CTX, _signal(), 24000, SEGS, 16000, enhanced=None, variants="enhanced")
    with pytest.raises(ValueError, match="samples"):
        build_segment_rows(CTX, _signal(), 24000, SEGS, 16000, enhanced=_signal(100), variants="both")


@pytest.mark.parametrize("analyse", ["enhanced", "raw"])
def test_stage_keeps_raw_beside_enhanced_at_the_same_rate_and_length(tiny_weights, clip_row, analyse):
    stage = EnhanceStage(EnhanceConfig(model=tiny_weights, analyse=analyse, sample_rate=48000, chunk_s=1.0, overlap_s=0.25))
    failed = {"status": "failed", "samples": np.zeros(0, np.float32), "sample_rate": 24000, "error": "decode failed"}
    out_ok, out_failed = stage([clip_row, failed])
    raw, enhanced = raw_and_enhanced(out_ok)
    np.testing.assert_array_equal(raw, clip_row["samples"])
    assert enhanced.shape == raw.shape and enhanced.dtype == np.float32
    assert not np.allclose(enhanced, raw, atol=1e-3)
    assert out_ok["analysed_variant"] == analyse
    assert out_ok["samples"] is (enhanced if analyse == "enhanced" else raw)
    stages = [m[0] for m in json.loads(out_ok["models_json"])]
    assert stages == ["decode", "enhance"] and json.loads(out_ok["models_json"])[1][1].startswith("bsrnn:tiny.pt@")
    assert out_failed["status"] == "failed" and out_failed["error"] == "decode failed"
    assert raw_and_enhanced(out_failed)[1] is None


def test_stage_with_deepfilternet3_backend(clip_row):
    stage = EnhanceStage(EnhanceConfig(backend="deepfilternet3"))
    (out,) = stage([clip_row])
    raw, enhanced = raw_and_enhanced(out)
    assert enhanced.shape == raw.shape and json.loads(out["models_json"])[-1][1].startswith("deepfilternet3:")
