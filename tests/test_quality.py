"""Quality figures per segment (SNR estimate, DNSMOS P.835) on the raw audio, their thresholds,
the stage, and one run of the real pipeline that fills the shard columns."""

from __future__ import annotations

import time

import numpy as np
import pyarrow.dataset as pads
import pytest
import soundfile as sf
from pydantic import ValidationError

from audio_io.quality import DnsmosP835, QualityParams, dnsmos, score_segments, segment_figures, snr_db
from manifests.planned_segment import PlannedSegment, from_rows, to_rows
from pipeline.config import load_config
from stages.base import RunContext
from stages.decode import DecodeStage
from stages.quality import QualityStage
from tests.conftest import real_clip

PAIR = ("enhancement", "dns3_gtcrn_pairs")


@pytest.fixture(scope="module")
def scorer() -> DnsmosP835:
    return DnsmosP835()


@pytest.fixture(scope="module")
def pair_0015() -> tuple[np.ndarray, np.ndarray]:
    clean, sr = sf.read(real_clip(*PAIR, "0015_clean.wav"), dtype="float32")
    noisy, sr_noisy = sf.read(real_clip(*PAIR, "0015_noisy.wav"), dtype="float32")
    assert sr == sr_noisy == 16000 and clean.ndim == noisy.ndim == 1
    return clean, noisy


def test_clean_scores_above_noisy_and_dnsmos_is_speechmos(scorer, pair_0015) -> None:
    from speechmos import dnsmos as speechmos_dnsmos

    clean, noisy = pair_0015
    figs = {}
    for name, x in (("clean", clean), ("noisy", noisy)):
        figs[name] = segment_figures(x, 16000, [(0.0, len(x) / 16000)], QualityParams(), scorer)[0]
        ref = speechmos_dnsmos.run(x, sr=16000)  # the same samples, straight through speechmos
        for key in ("ovrl", "sig", "bak"):
            assert figs[name][f"dnsmos_{key}"] == pytest.approx(float(ref[f"{key}_mos"]), abs=1e-6), (name, key)
    print(f"\n0015 clean {figs['clean']}\n0015 noisy {figs['noisy']}")
    assert figs["clean"]["dnsmos_ovrl"] > figs["noisy"]["dnsmos_ovrl"] + 1.0
    assert figs["clean"]["snr_db"] > figs["noisy"]["snr_db"] + 10.0
    assert all(1.0 <= figs[n][f"dnsmos_{k}"] <= 5.0 for n in figs for k in ("ovrl", "sig", "bak"))
    # one DNSMOS: the enhancement metrics' function is this one, at any rate
    assert dnsmos(clean, 16000)["ovrl"] == pytest.approx(figs["clean"]["dnsmos_ovrl"], abs=1e-6)
    from enhancement_bsrnn import metrics

    assert metrics.dnsmos is dnsmos


def test_short_segments_are_tiled_as_speechmos_tiles_them(scorer, pair_0015) -> None:
    from speechmos import dnsmos as speechmos_dnsmos

    clean, _ = pair_0015
    piece = clean[8000: 8000 + 3 * 16000]  # 3 s: tiled to 12 s, 3 windows
    assert scorer.windows(len(piece)) == 3
    ref = speechmos_dnsmos.run(piece, sr=16000)
    assert scorer(piece)["ovrl"] == pytest.approx(float(ref["ovrl_mos"]), abs=1e-6)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        scorer(piece * (1.5 / np.abs(piece).max()))


def test_snr_estimate_is_deterministic_and_tracks_added_noise(pair_0015) -> None:
    clean, _ = pair_0015
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(clean)) * np.sqrt(np.mean(clean.astype(np.float64) ** 2))
    snrs = [snr_db(clean + noise * 10 ** (-level / 20), 16000) for level in (0, 10, 20, 30)]
    assert snrs == sorted(snrs) and snrs[-1] - snrs[0] > 20  # more noise, lower figure
    assert snr_db(clean, 16000) == snr_db(clean.copy(), 16000)
    assert snr_db(np.zeros(16000), 16000) == 0.0  # no frame above the floor
    assert snr_db(np.zeros(10), 16000) is None  # no whole frame


def _recording(pair) -> tuple[np.ndarray, list[PlannedSegment]]:
    """Noisy then clean 0015 as one 10 s recording; a third segment dropped upstream."""
    clean, noisy = pair
    audio = np.concatenate([noisy, clean])
    segs = [PlannedSegment(0.0, 5.0, "S0"), PlannedSegment(5.0, 10.0, "S1"),
            PlannedSegment(1.0, 1.5, "S2", drop_reason="segment_length: shorter than 1.0 s (segment.min_duration_s)")]
    return audio, segs


def test_thresholds_drop_with_the_reason_and_keep_the_rest(scorer, pair_0015) -> None:
    audio, segs = _recording(pair_0015)
    score_segments(audio, 16000, segs, QualityParams(min_dnsmos_ovrl=2.0), scorer)
    noisy, clean, dropped = segs
    assert noisy.dnsmos_ovrl < 2.0 < clean.dnsmos_ovrl
    assert noisy.drop_reason == "quality: dnsmos_ovrl < 2.0 (quality.min_dnsmos_ovrl)" and not noisy.kept
    assert clean.kept and clean.snr_db is not None and clean.dnsmos_sig is not None
    # scored only while kept: the segment dropped upstream has no figures and keeps its reason
    assert dropped.snr_db is None and dropped.dnsmos_ovrl is None and dropped.drop_reason.startswith("segment_length:")

    audio, segs = _recording(pair_0015)  # SNR threshold, floors from each segment alone
    score_segments(audio, 16000, segs, QualityParams(dnsmos=False, snr_context_s=0.0, min_snr_db=20.0), None)
    noisy, clean, _ = segs
    assert noisy.snr_db < 20.0 < clean.snr_db and clean.kept and noisy.dnsmos_ovrl is None
    assert noisy.drop_reason == "quality: snr_db < 20.0 (quality.min_snr_db)"


def test_config_keys_and_a_threshold_needs_its_figure() -> None:
    cfg = load_config()
    assert cfg.quality.enabled and cfg.quality.min_dnsmos_ovrl is None and cfg.quality.min_snr_db is None
    strict = load_config(None, ["quality.min_dnsmos_ovrl=3.0"])
    assert strict.config_hash() != cfg.config_hash()
    assert load_config(None, ["quality.cpu_threads=2"]).config_hash() == cfg.config_hash()  # placement
    with pytest.raises(ValidationError, match="needs dnsmos"):
        QualityParams(dnsmos=False, min_dnsmos_ovrl=3.0)
    with pytest.raises(ValidationError):
        QualityParams(min_dnsmos_ovrl=6.0)


@pytest.mark.parametrize("variants", ["both", "enhanced"])
def test_stage_scores_the_raw_variant_and_passes_on_what_the_writer_wants(tmp_path, variants) -> None:
    cfg = load_config(None, [f"enhance.variants={variants}"])
    run = RunContext(out_dir=str(tmp_path), corpus="c", run_id="r", config_hash=cfg.config_hash())
    path = real_clip(*PAIR, "0015_noisy.wav")
    row = DecodeStage(cfg, run).decode_row({"path": str(path), "size_bytes": path.stat().st_size})
    assert row["status"] == "ok" and row["audio_raw"] is not None  # decode keeps raw for this stage
    row["segments"] = to_rows([PlannedSegment(0.2, 4.8, "S0"), PlannedSegment(4.8, 4.9, "S0", drop_reason="x")])
    stage = QualityStage(cfg, run)
    [out] = stage.process_batch([row])  # 4.6 s: tiled to 9.2 s, one DNSMOS window
    kept, dropped = from_rows(out["segments"])
    direct = segment_figures(sf.read(path, dtype="float32")[0], 16000, [(0.2, 4.8)], cfg.quality, stage.scorer)[0]
    assert kept.dnsmos_ovrl == pytest.approx(direct["dnsmos_ovrl"], abs=0.05)  # via 24 kHz PCM_16 and back
    assert 1.0 <= kept.dnsmos_ovrl <= 5.0 and kept.snr_db is not None and dropped.dnsmos_ovrl is None
    assert {"stage": "quality", "model": "dnsmos-p835:sig_bak_ovr.onnx@speechmos==0.0.1.1"} in out["models"]
    assert (out["audio_raw"] is None) == (variants == "enhanced")
    failed = stage.process_batch([dict(row, audio_raw=None)])[0]
    assert failed["status"] == "failed" and "no audio_raw" in failed["error"]


def test_pipeline_fills_the_quality_columns_of_every_kept_segment(ray_session, tmp_path) -> None:
    from pipeline.run import run_pipeline

    clip = real_clip("asr_en", "jfk.flac")
    t0 = time.perf_counter()
    summary = run_pipeline([str(clip)], "q", tmp_path, load_config())
    wall = time.perf_counter() - t0
    assert summary.done == 1 and summary.failed == 0
    files = sorted(str(p) for p in (tmp_path / "q" / "segments").glob("run=*/part-*.parquet"))
    rows = pads.dataset(files, format="parquet").to_table(
        columns=["kept", "duration", "snr_db", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "models"]).to_pylist()
    kept = [r for r in rows if r["kept"]]
    assert kept
    for r in kept:
        assert r["snr_db"] is not None and 0.0 <= r["snr_db"] <= 60.0
        for key in ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"):
            assert r[key] is not None and 1.0 <= r[key] <= 5.0, (key, r[key])
        assert any(m["stage"] == "quality" for m in r["models"])
    print(f"\npipeline on jfk.flac: {wall:.1f} s; quality stage {summary.stage_seconds.get('quality')} s; kept "
          + ", ".join(f"{r['duration']:.2f} s: OVRL {r['dnsmos_ovrl']:.2f} SNR {r['snr_db']:.1f}" for r in kept))
