"""The enhance stage and the raw/enhanced audio columns, without Ray (the pipeline test covers Ray).

Decode makes the raw variant (``audio_raw``) and, unless enhancement will, the 16 kHz
``analysis`` signal; enhance makes the enhanced variant (``audio_enhanced``) and, with
``analysis_variant=enhanced``, replaces ``analysis``; the writer cuts the variants it is asked for.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_io.decode import decode
from audio_io.flac import decode_flac
from audio_io.signals import ANALYSIS_RATE, analysis_signal, encode_variant
from enhancement_bsrnn.model import BSRNN, BsrnnConfig
from enhancement_bsrnn.weights import save_weights
from manifests.planned_segment import PlannedSegment, to_rows
from manifests.segment_rows import RecordingContext, build_segment_rows
from pipeline.config import load_config
from stages.base import RunContext
from stages.decode import DecodeStage
from stages.enhance import EnhanceStage
from stages.write import WriteStage
from tests.conftest import real_clip

CTX = RecordingContext("rec", "file:///x.wav", "c", "run", "hash")
SEGS = [PlannedSegment(start=0.5, end=1.5, speaker="rec/S0"), PlannedSegment(start=2.0, end=2.75)]
PRIOR_MODELS = [{"stage": "decode", "model": "ffmpeg"}]
CLIP_S = 3.0


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
def clip_files(tmp_path_factory):
    """3 s of real speech as a source file, and a zero-byte source (decode fails it)."""
    directory = tmp_path_factory.mktemp("src")
    audio = decode(str(real_clip("asr_en", "jfk.flac")), 24000)
    good, empty = directory / "jfk3.wav", directory / "empty.wav"
    sf.write(str(good), audio.samples[: int(24000 * CLIP_S)], 24000, subtype="FLOAT")
    empty.write_bytes(b"")
    return good, empty


def _cfg(*overrides: str):
    return load_config(None, list(overrides))


def _run(cfg, tmp_path) -> RunContext:
    return RunContext(out_dir=str(tmp_path), corpus="c", run_id="run", config_hash=cfg.config_hash())


def _source_row(path) -> dict:
    return {"path": str(path), "source_uri": str(path), "recording_id": path.stem, "size_bytes": path.stat().st_size}


def _decoded(cfg, run, clip_files) -> tuple[dict, dict]:
    """The decode stage's rows for the good and the zero-byte source, with an earlier model recorded."""
    decode_stage = DecodeStage(cfg, run)
    ok, failed = (dict(decode_stage.decode_row(_source_row(p)), models=list(PRIOR_MODELS)) for p in clip_files)
    assert ok["status"] == "ok", ok["error"]
    assert failed["status"] == "failed"
    return ok, failed


def _signal(n=24000 * 3, seed=0):
    return np.random.default_rng(seed).uniform(-0.3, 0.3, n).astype(np.float32)


def _recording_row(audio_raw, audio_enhanced) -> dict:
    return {"status": "ok", "recording_id": "rec", "source_uri": "file:///x.wav", "segments": to_rows(SEGS),
            "models": list(PRIOR_MODELS), "audio_raw": audio_raw, "audio_enhanced": audio_enhanced}


def _check_columns(rows, has_raw, has_enh, rate):
    assert len(rows) == len(SEGS)
    for r in rows:
        assert (r["audio"] is not None) == has_raw and (r["audio_enhanced"] is not None) == has_enh
        assert r["sample_rate"] == rate
        decoded = [decode_flac(r[c]["bytes"]) for c in ("audio", "audio_enhanced") if r[c] is not None]
        for samples, got_rate in decoded:
            assert got_rate == rate and abs(len(samples) / rate - r["duration"]) < 1e-3
        if len(decoded) == 2:
            assert not np.allclose(decoded[0][0], decoded[1][0]), "the two columns must hold the two signals"


# ---- the writer's choice of variants -----------------------------------------------------

@pytest.mark.parametrize("variants,has_raw,has_enh", [("both", True, True), ("raw", True, False), ("enhanced", False, True)])
def test_variants_choose_the_audio_columns(tmp_path, variants, has_raw, has_enh):
    """Both signals present: ``enhance.variants`` alone decides which columns the segment rows carry."""
    cfg = _cfg(f"enhance.variants={variants}", "output.sample_rate=16000")
    raw, enh = encode_variant(_signal(), 24000, 16000), encode_variant(_signal(seed=1), 24000, 16000)
    rows = WriteStage(cfg, _run(cfg, tmp_path)).segment_rows(_recording_row(raw, enh))
    _check_columns(rows, has_raw, has_enh, 16000)
    assert [r["models"] for r in rows] == [PRIOR_MODELS] * len(SEGS)


def test_enhancement_off_writes_the_raw_column_only(tmp_path):
    cfg = _cfg("enhance.enabled=false", "enhance.variants=enhanced", "output.sample_rate=16000")
    rows = WriteStage(cfg, _run(cfg, tmp_path)).segment_rows(_recording_row(encode_variant(_signal(), 24000, 16000), None))
    _check_columns(rows, True, False, 16000)


def test_a_missing_variant_signal_is_an_error(tmp_path):
    raw = encode_variant(_signal(), 24000, 16000)
    cfg = _cfg("enhance.variants=enhanced", "output.sample_rate=16000")
    write = WriteStage(cfg, _run(cfg, tmp_path))
    with pytest.raises(ValueError, match="variants=enhanced but the recording has no audio_enhanced signal"):
        write.segment_rows(_recording_row(raw, None))
    cfg_both = _cfg("output.sample_rate=16000")
    with pytest.raises(ValueError, match="variants=both but the recording has no audio_raw signal"):
        WriteStage(cfg_both, _run(cfg_both, tmp_path)).segment_rows(_recording_row(None, raw))
    # The cells must be one per segment.
    with pytest.raises(ValueError):
        build_segment_rows(CTX, SEGS, 16000, [b"x"], [None, None])

    # In a batch, the error fails that source's ledger row; the batch is still written.
    (res,) = write.process_batch([_recording_row(raw, None)])
    assert res["status"] == "failed" and res["segment_count"] == 0 and res["staged_paths"] == []
    assert res["error"] == ("writing segments failed: ValueError: variants=enhanced but the recording has no "
                            "audio_enhanced signal")


# ---- the enhance stage --------------------------------------------------------------------

@pytest.mark.parametrize("analyse", ["enhanced", "raw"])
def test_stage_keeps_raw_beside_enhanced_at_the_same_rate_and_length(tiny_weights, clip_files, tmp_path, analyse):
    cfg = _cfg(f"enhance.model={tiny_weights}", f"enhance.analysis_variant={analyse}", "enhance.sample_rate=48000",
               "enhance.chunk_s=1.0", "enhance.overlap_s=0.25")
    run = _run(cfg, tmp_path)
    decoded, failed = _decoded(cfg, run, clip_files)
    # Decode leaves the analysis signal to enhancement when it will be the enhanced one.
    assert len(decoded["analysis"]) == (0 if analyse == "enhanced" else round(CLIP_S * ANALYSIS_RATE))
    out_ok, out_failed = EnhanceStage(cfg, run).process_batch([decoded, failed])

    assert out_ok["status"] == "ok"
    assert out_ok["audio_raw"] == decoded["audio_raw"], "the raw variant is decode's, untouched"
    raw, raw_rate = decode_flac(out_ok["audio_raw"])
    enhanced, enh_rate = decode_flac(out_ok["audio_enhanced"])
    assert raw_rate == enh_rate == cfg.output.sample_rate
    assert enhanced.shape == raw.shape and abs(len(raw) - CLIP_S * raw_rate) <= 1
    assert not np.allclose(enhanced, raw, atol=1e-3)

    analysis = out_ok["analysis"]
    assert out_ok["analysis_rate"] == ANALYSIS_RATE and analysis.dtype == np.float32 and analysis.ndim == 1
    assert abs(len(analysis) - out_ok["duration_s"] * ANALYSIS_RATE) <= 1
    raw_analysis = analysis_signal(decoded["samples"], decoded["sample_rate"])
    if analyse == "raw":
        np.testing.assert_array_equal(analysis, decoded["analysis"])
        np.testing.assert_array_equal(analysis, raw_analysis)
    else:  # the 16 kHz version of the enhanced signal (here read back from its 16-bit FLAC)
        assert not np.allclose(analysis, raw_analysis, atol=1e-3)
        np.testing.assert_allclose(analysis, analysis_signal(enhanced, enh_rate), atol=2e-3)

    assert [m["stage"] for m in out_ok["models"]] == ["decode", "enhance"]
    assert out_ok["models"][1]["model"].startswith("bsrnn:tiny.pt@")

    assert out_failed["status"] == "failed" and out_failed["error"] == failed["error"]
    assert out_failed["audio_enhanced"] is None and out_failed["audio_raw"] is None
    assert len(out_failed["analysis"]) == 0


@pytest.mark.parametrize("variants,has_raw,has_enh", [("both", True, True), ("raw", True, False), ("enhanced", False, True)])
def test_stage_variants_reach_the_segment_rows(tiny_weights, clip_files, tmp_path, variants, has_raw, has_enh):
    """decode -> enhance -> write: only the variants asked for are encoded, and they are what the writer cuts."""
    # quality off: when on, decode keeps audio_raw for it and the quality stage drops it (tests/test_quality.py)
    cfg = _cfg(f"enhance.model={tiny_weights}", f"enhance.variants={variants}", "enhance.chunk_s=1.0",
               "enhance.overlap_s=0.25", "quality.enabled=false")
    run = _run(cfg, tmp_path)
    decoded, _ = _decoded(cfg, run, clip_files)
    (row,) = EnhanceStage(cfg, run).process_batch([decoded])
    assert (row["audio_raw"] is not None) == has_raw and (row["audio_enhanced"] is not None) == has_enh
    rows = WriteStage(cfg, run).segment_rows(dict(row, segments=to_rows(SEGS)))
    _check_columns(rows, has_raw, has_enh, cfg.output.sample_rate)
    assert [m["stage"] for m in rows[0]["models"]] == ["decode", "enhance"]


def test_stage_with_deepfilternet3_backend(clip_files, tmp_path):
    cfg = _cfg("enhance.backend=deepfilternet3")
    run = _run(cfg, tmp_path)
    decoded, _ = _decoded(cfg, run, clip_files)
    (out,) = EnhanceStage(cfg, run).process_batch([decoded])
    assert out["status"] == "ok", out.get("error")
    raw, _ = decode_flac(out["audio_raw"])
    enhanced, _ = decode_flac(out["audio_enhanced"])
    assert enhanced.shape == raw.shape
    assert abs(len(out["analysis"]) - out["duration_s"] * ANALYSIS_RATE) <= 1
    assert out["models"][-1]["stage"] == "enhance" and out["models"][-1]["model"].startswith("deepfilternet3:")
