"""BSRNN: band layout, model shapes at 16/24/48 kHz, chunked inference, shipped weights, training step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from enhancement_bsrnn.bands import band_edges_hz, band_layout
from audio_io.resample import resample
from enhancement_bsrnn.inference import BsrnnEnhancer, enhance_signals, load_enhancer, load_enhancer_from, plan_chunks
from enhancement_bsrnn.metrics import si_sdr
from enhancement_bsrnn.model import BSRNN, BsrnnConfig, count_parameters, macs_per_second
from enhancement_bsrnn.params import EnhanceParams
from enhancement_bsrnn.weights import SHIPPED, load_weights, save_weights

PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "enhancement" / "dns3_gtcrn_pairs"
TINY = BsrnnConfig(features=8, hidden=8, layers=1)


def test_band_scheme_tiles_the_spectrum_at_every_rate():
    edges = band_edges_hz()
    assert len(edges) == 34 and edges[0] == (0.0, 200.0) and edges[-1] == (21000.0, 24000.0)
    assert [round(h - lo) for lo, h in edges[19:22]] == [200, 500, 500]
    for rate, bands in ((8000, 21), (16000, 27), (24000, 29), (44100, 34), (48000, 34)):
        lay = band_layout(rate)
        assert lay.n_bands == bands, rate
        covered = sorted(b for s, p in zip(lay.starts, lay.present) for b in range(s, s + p))
        assert covered == list(range(lay.n_bins)), f"bins at {rate} Hz are not each in exactly one band"
        assert lay.n_fft == round(0.02 * rate) and lay.hop == round(0.01 * rate)
    with pytest.raises(ValueError, match="22050"):
        band_layout(22050)


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
def test_model_shapes_and_identity_start(rate):
    torch.manual_seed(0)
    model = BSRNN(TINY).eval()
    x = torch.randn(3, int(1.234 * rate)) * 0.1
    with torch.no_grad():
        y = model(x, rate)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    # an untrained model starts as the identity (mask 1, residual 0), so training starts from the input
    assert float(((y - x) ** 2).mean() / (x ** 2).mean()) < 1e-3


def test_lower_rate_uses_fewer_bands_of_the_same_weights():
    model = BSRNN(TINY)
    assert len(model.band_projs) == 34
    macs16, macs48 = macs_per_second(TINY, 16000), macs_per_second(TINY, 48000)
    assert 0 < macs16 < macs48


def test_plan_chunks_covers_the_input_with_weights_summing_to_one():
    plan = plan_chunks(length=37_123, sample_rate=16000, chunk_s=1.0, overlap_s=0.25)
    starts = plan.starts
    assert starts[0] == 0 and starts[-1] + plan.window >= plan.length
    total = np.zeros(starts[-1] + plan.window)
    for i, s in enumerate(starts):
        total[s:s + plan.window] += plan.weight(i, len(starts))
    np.testing.assert_allclose(total[: plan.length], 1.0, atol=1e-9)


def _shipped_or_skip():
    if not SHIPPED.is_file():
        pytest.fail(f"shipped weights missing at {SHIPPED}")
    return load_enhancer(None)


def test_shipped_weights_load_with_their_card():
    model, meta = load_weights()
    card = SHIPPED.parent / "MODEL_CARD.md"
    assert card.is_file() and meta["sha256"][:8] in card.read_text(), "model card must name the weights' digest"
    assert meta["training"]["steps"] > 0 and SHIPPED.stat().st_size < 5 * 1024 * 1024
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_chunked_matches_whole_away_from_edges_and_keeps_length():
    enh = _shipped_or_skip()
    noisy, rate = sf.read(PAIRS / "0016_noisy.wav", dtype="float32")
    long = np.concatenate([noisy, noisy[::-1], noisy])  # 15 s
    whole = enh.model(torch.from_numpy(long)[None], rate)[0].detach().numpy()
    chunked = BsrnnEnhancer(enh.model, enh.name, chunk_s=4.0, overlap_s=1.0, precision="float32",
                            batch_size=3).enhance(long, rate)
    assert len(chunked) == len(long)
    inner = slice(rate, len(long) - rate)
    agreement = si_sdr(chunked[inner], whole[inner])
    assert agreement > 20.0, f"chunked vs whole SI-SDR {agreement:.1f} dB"
    # odd rates are resampled to a supported one and back, length kept
    odd = enh.enhance(long[: 22050 * 2], 22050)
    assert len(odd) == 22050 * 2 and np.isfinite(odd).all()


def test_loader_follows_the_params():
    p = EnhanceParams()
    assert (p.backend, p.model, p.sample_rate, p.chunk_s, p.overlap_s, p.precision) == ("bsrnn", None, 48000, 8.0, 1.0,
                                                                                      "float32")
    enh = load_enhancer_from(EnhanceParams(chunk_s=2.0, overlap_s=0.5, precision="bfloat16"), "cpu", 3)
    assert (enh.chunk_s, enh.overlap_s, enh.precision, enh.batch_size) == (2.0, 0.5, "bfloat16", 3)
    assert enh.name == load_enhancer(None).name and enh.name.startswith("bsrnn:")
    with pytest.raises(ValueError):
        EnhanceParams(sample_rate=4000)


class _HalfGain:
    """An enhancer without enhance_many, as DeepFilterNet3: one signal at a time."""

    name = "half"

    def __init__(self):
        self.rates = []

    def enhance(self, audio, sample_rate):
        self.rates.append(sample_rate)
        return 0.5 * audio


def test_enhance_signals_runs_at_the_work_rate_and_keeps_each_length():
    rng = np.random.default_rng(0)
    signals = [rng.uniform(-0.3, 0.3, n).astype(np.float32) for n in (24_001, 12_345)]
    half = _HalfGain()
    out = enhance_signals(half, signals, 24000, 48000)
    assert half.rates == [48000, 48000]
    assert [len(o) for o in out] == [len(s) for s in signals] and all(o.dtype == np.float32 for o in out)
    for s, o in zip(signals, out):
        expected = resample(0.5 * resample(s, 24000, 48000), 48000, 24000)[: len(s)]
        np.testing.assert_array_equal(o, np.pad(expected, (0, len(s) - len(expected))).astype(np.float32))
    # work_rate None: the signals' own rate, no resampling
    out = enhance_signals(half, signals, 24000, None)
    assert half.rates[2:] == [24000, 24000]
    np.testing.assert_array_equal(out[1], 0.5 * signals[1])
    # an enhancer with enhance_many enhances the signals of one rate together, as one by one
    torch.manual_seed(0)
    tiny = BsrnnEnhancer(BSRNN(TINY), "tiny", chunk_s=0.5, overlap_s=0.1, precision="float32", batch_size=4)
    together = enhance_signals(tiny, signals, 24000, 16000)
    alone = [enhance_signals(tiny, [s], 24000, 16000)[0] for s in signals]
    assert [len(t) for t in together] == [len(s) for s in signals]
    for t, a in zip(together, alone):
        np.testing.assert_allclose(t, a, atol=1e-5)


def test_shipped_model_improves_si_sdr_on_the_real_pairs_by_3_db(capsys):
    from enhancement_bsrnn.deepfilternet import DeepFilterNet3Enhancer
    from evaluation.enhancement import evaluate_pairs, report_text

    result = evaluate_pairs(PAIRS, {"bsrnn": _shipped_or_skip(), "deepfilternet3": DeepFilterNet3Enhancer()})
    with capsys.disabled():
        print("\n" + report_text(result))
    gain = result["mean"]["bsrnn"]["si_sdr_improvement"]
    assert gain >= 3.0, f"mean SI-SDR improvement {gain:.2f} dB < 3 dB"
    assert result["mean"]["bsrnn"]["stoi"] > result["mean"]["noisy"]["stoi"]


def test_training_is_seeded_and_resumable(tmp_path):
    """Two steps then two more from the checkpoint equal four steps straight (same batches, same weights)."""
    from enhancement_bsrnn import train

    common = ["--features", "8", "--hidden", "8", "--layers", "1", "--batch", "2", "--seconds", "0.5",
              "--rates", "16000:1", "--val-every", "1000", "--checkpoint-every", "1", "--real-speech", "--threads", "1",
              "--pool", "2,3,2", "--rirs", "2", "--val-count", "2", "--cache", str(tmp_path / "cache")]
    train.main(["--work", str(tmp_path / "a"), "--steps", "4", *common])
    train.main(["--work", str(tmp_path / "b"), "--steps", "4", "--stop-after", "2", *common])
    train.main(["--work", str(tmp_path / "b"), "--steps", "4", *common])
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert a["state"]["step"] == b["state"]["step"] == 4
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6)
    model = BSRNN(TINY)
    model.load_state_dict(a["model"])
    save_weights(model, tmp_path / "w.pt", {"steps": 4})
    loaded, meta = load_weights(tmp_path / "w.pt")
    assert meta["training"]["steps"] == 4 and loaded.config == TINY
