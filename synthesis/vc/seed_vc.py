"""Seed-VC (Plachtaa/seed-vc, zero-shot diffusion VC): the neural backend, opt-in.

What it needs, all checked before anything heavy loads, each missing piece refused with a
``VcError`` that names it:

* **Weights**: ``model`` is a Hugging Face hub id (``Plachta/Seed-VC``), resolved from the local
  cache only (``snapshot_download(..., local_files_only=True)``: a data pipeline never downloads
  mid-run), or a local directory. It must hold ``CHECKPOINT`` and ``CONFIG`` (the offline
  whisper-small / BigVGAN 22 kHz release, the one that converts speech, not singing).
* **Companion models** the config names: the Whisper encoder (``openai/whisper-small``), the
  BigVGAN vocoder (``nvidia/bigvgan_v2_22khz_80band_256x``) and Seed-VC's CAM++ style encoder
  (``funasr/campplus``), resolved the same way (cache only).
* **Code**: Seed-VC is not a package; its ``modules`` tree comes from a checkout of
  github.com/Plachtaa/seed-vc, given as ``code_dir`` (or already importable), with its
  requirements and ``transformers`` installed.

Conversion follows Seed-VC's own inference for this release: Whisper-small encoder features of
the source and of the reference (16 kHz), the length regulator, the DiT flow-matching decoder
conditioned on the reference mel (22.05 kHz, hop 256) and its CAM++ style vector, BigVGAN to a
waveform; resampled back to the source's rate and peak-normalised. One pass covers what the
model's 30 s context holds (reference + source); longer inputs are refused, not chunked (the
dialogue turns this serves are short). The diffusion noise comes from a generator seeded with
``seed``, so the same input gives the same output on the same device.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from audio_io.resample import resample
from synthesis.speech import Speech, VoiceReference
from synthesis.vc.base import VcError

DEFAULT_MODEL = "Plachta/Seed-VC"
CHECKPOINT = "DiT_seed_v2_uvit_whisper_small_wavenet_bigvgan_pruned.pth"
CONFIG = "config_dit_mel_seed_uvit_whisper_small_wavenet.yml"
CAMPPLUS_REPO = "funasr/campplus"
CAMPPLUS_FILE = "campplus_cn_common.bin"
CODE_URL = "https://github.com/Plachtaa/seed-vc"
CONTEXT_S = 30.0  # the DiT's context (reference + source), as Seed-VC's inference sizes it
MAX_REFERENCE_S = 25.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_snapshot(repo_or_dir: str, what: str) -> Path:
    """A local directory as is; a hub id from the local Hugging Face cache only."""
    path = Path(repo_or_dir).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise VcError(f"seed-vc: {what} {repo_or_dir} is a file, not a model directory")
    if not _HUB_ID.match(repo_or_dir):
        raise VcError(f"seed-vc: {what} {repo_or_dir!r} is neither an existing directory nor a hub id 'owner/name'")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise VcError("seed-vc: huggingface_hub is not installed (pip install huggingface_hub)") from None
    try:
        return Path(snapshot_download(repo_or_dir, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError offline, or a cache without this repo
        raise VcError(f"seed-vc: the {what} weights {repo_or_dir} are absent from the local Hugging Face cache "
                      f"(offline); fetch them once with `huggingface-cli download {repo_or_dir}` or give a "
                      f"local directory") from None


def check_files(directory: Path, names: tuple[str, ...], what: str) -> dict[str, Path]:
    """``names`` inside ``directory``, or a VcError naming every missing one."""
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise VcError(f"seed-vc: {what} directory {directory} lacks {', '.join(missing)}")
    return {n: directory / n for n in names}


def import_seed_vc_code(code_dir: str | None) -> dict[str, Any]:
    """Seed-VC's modules (``modules.commons``, ``modules.audio``, ``modules.campplus``,
    ``modules.bigvgan``) from ``code_dir`` or the import path."""
    if code_dir is not None:
        root = Path(code_dir).expanduser().resolve()
        if not (root / "modules" / "commons.py").is_file():
            raise VcError(f"seed-vc: {root} is no Seed-VC checkout (no modules/commons.py); clone {CODE_URL}")
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    if importlib.util.find_spec("modules") is None or importlib.util.find_spec("modules.commons") is None:
        raise VcError(f"seed-vc: its code is not importable; clone {CODE_URL} and set seed_vc_code to the "
                      "checkout (then pip install -r <checkout>/requirements.txt)")
    try:
        return {
            "commons": importlib.import_module("modules.commons"),
            "audio": importlib.import_module("modules.audio"),
            "campplus": importlib.import_module("modules.campplus.DTDNN"),
            "bigvgan": importlib.import_module("modules.bigvgan.bigvgan"),
            "transformers": importlib.import_module("transformers"),
        }
    except ImportError as exc:
        raise VcError(f"seed-vc: its code needs {exc.name or exc}, which is not installed; "
                      "pip install -r <seed-vc checkout>/requirements.txt (and transformers)") from None


class SeedVcConverter:
    """Seed-VC zero-shot conversion (see the module docstring). Loads everything in the constructor."""

    name = "seed-vc"

    def __init__(self, model: str = DEFAULT_MODEL, *, code_dir: str | None = None, device: str = "cpu",
                 diffusion_steps: int = 10, cfg_rate: float = 0.7, seed: int = 0) -> None:
        if diffusion_steps < 1:
            raise ValueError(f"seed-vc: diffusion_steps must be >= 1, got {diffusion_steps}")
        self.model = model
        self.device = device
        self.diffusion_steps = diffusion_steps
        self.cfg_rate = cfg_rate
        self.seed = seed
        weights = resolve_snapshot(model, "Seed-VC model")
        files = check_files(weights, (CHECKPOINT, CONFIG), "Seed-VC model")
        code = import_seed_vc_code(code_dir)
        self._load(code, files[CHECKPOINT], files[CONFIG])

    def model_id(self) -> str:
        return f"seed-vc:{self.model}/{Path(CHECKPOINT).stem}@steps{self.diffusion_steps}-cfg{self.cfg_rate:g}"

    # ---- loading -------------------------------------------------------------------------
    def _load(self, code: dict[str, Any], checkpoint: Path, config_path: Path) -> None:
        import torch
        import yaml

        self._torch = torch
        config = yaml.safe_load(config_path.read_text())
        commons = code["commons"]
        params = commons.recursive_munch(config["model_params"])
        params.dit_type = "DiT"
        spect = config["preprocess_params"]["spect_params"]
        self.sample_rate = int(config["preprocess_params"]["sr"])
        self.hop = int(spect["hop_length"])
        tokenizer, vocoder = params.speech_tokenizer, params.vocoder
        if tokenizer.type != "whisper" or vocoder.type != "bigvgan":
            raise VcError(f"seed-vc: {config_path.name} uses {tokenizer.type}/{vocoder.type}; this wrapper runs the "
                          "whisper + bigvgan release only")
        # Companions first: a missing one fails before the DiT takes memory.
        whisper_dir = resolve_snapshot(tokenizer.name, "Whisper encoder")
        bigvgan_dir = resolve_snapshot(vocoder.name, "BigVGAN vocoder")
        campplus = check_files(resolve_snapshot(CAMPPLUS_REPO, "CAM++ style encoder"), (CAMPPLUS_FILE,),
                               "CAM++ style encoder")[CAMPPLUS_FILE]
        dev = torch.device(self.device)

        model = commons.build_model(params, stage="DiT")
        model, *_ = commons.load_checkpoint(model, None, str(checkpoint), load_only_params=True,
                                            ignore_modules=[], is_distributed=False)
        for key in model:
            model[key].eval().to(dev)
        model.cfm.estimator.setup_caches(max_batch_size=1, max_seq_length=8192)
        self._dit = model

        style = code["campplus"].CAMPPlus(feat_dim=80, embedding_size=192)
        style.load_state_dict(torch.load(campplus, map_location="cpu", weights_only=True))
        self._style = style.eval().to(dev)

        voc = code["bigvgan"].BigVGAN.from_pretrained(str(bigvgan_dir), use_cuda_kernel=False)
        voc.remove_weight_norm()
        self._vocoder = voc.eval().to(dev)

        transformers = code["transformers"]
        whisper = transformers.WhisperModel.from_pretrained(str(whisper_dir)).to(dev)
        del whisper.decoder  # only the encoder's features are used
        self._whisper = whisper.eval()
        self._features = transformers.AutoFeatureExtractor.from_pretrained(str(whisper_dir))

        mel_args = {"n_fft": spect["n_fft"], "win_size": spect["win_length"], "hop_size": self.hop,
                    "num_mels": spect["n_mels"], "sampling_rate": self.sample_rate, "fmin": spect.get("fmin", 0),
                    "fmax": None if spect.get("fmax", "None") == "None" else 8000, "center": False}
        mel_spectrogram = code["audio"].mel_spectrogram
        self._mel = lambda wave: mel_spectrogram(wave, **mel_args)

    # ---- conversion ----------------------------------------------------------------------
    def _semantic(self, wave_16k):
        """Whisper-encoder features at 50 frames/s, cut to the input's length."""
        torch = self._torch
        inputs = self._features([wave_16k.squeeze(0).cpu().numpy()], return_tensors="pt",
                                return_attention_mask=True, sampling_rate=16000)
        feats = self._whisper._mask_input_features(inputs.input_features, attention_mask=inputs.attention_mask)
        with torch.inference_mode():
            out = self._whisper.encoder(feats.to(self.device, self._whisper.encoder.dtype), return_dict=True)
        return out.last_hidden_state.float()[:, : wave_16k.size(-1) // 320 + 1]

    def convert(self, source: Speech, target: VoiceReference) -> Speech:
        torch = self._torch
        src = np.asarray(source.audio, dtype=np.float32)
        if src.ndim != 1 or len(src) == 0:
            raise VcError("seed-vc: the source must be a non-empty mono waveform")
        ref = resample(np.asarray(target.speech.audio, dtype=np.float32), target.speech.sample_rate,
                       self.sample_rate)[: int(MAX_REFERENCE_S * self.sample_rate)]
        if len(ref) == 0 or not np.any(ref):
            raise VcError(f"seed-vc: target voice {target.voice_id} has an empty or silent reference")
        x = resample(src, source.sample_rate, self.sample_rate)
        if (len(x) + len(ref)) / self.sample_rate > CONTEXT_S:
            raise VcError(f"seed-vc: source ({len(x) / self.sample_rate:.1f} s) plus reference "
                          f"({len(ref) / self.sample_rate:.1f} s) exceed the model's {CONTEXT_S:.0f} s context")
        dev = torch.device(self.device)
        import torchaudio

        with torch.inference_mode():
            wave = torch.from_numpy(x)[None].to(dev)
            ref_wave = torch.from_numpy(ref)[None].to(dev)
            wave_16k = torchaudio.functional.resample(wave, self.sample_rate, 16000)
            ref_16k = torchaudio.functional.resample(ref_wave, self.sample_rate, 16000)
            mel, ref_mel = self._mel(wave), self._mel(ref_wave)
            fbank = torchaudio.compliance.kaldi.fbank(ref_16k, num_mel_bins=80, dither=0, sample_frequency=16000)
            style = self._style((fbank - fbank.mean(dim=0, keepdim=True))[None])
            lengths = torch.LongTensor([mel.size(2)]).to(dev)
            ref_lengths = torch.LongTensor([ref_mel.size(2)]).to(dev)
            cond = self._dit.length_regulator(self._semantic(wave_16k), ylens=lengths, n_quantizers=3, f0=None)[0]
            prompt = self._dit.length_regulator(self._semantic(ref_16k), ylens=ref_lengths, n_quantizers=3,
                                                f0=None)[0]
            both = torch.cat([prompt, cond], dim=1)
            # The flow-matching start noise is drawn from the global generator: seed it, locally.
            devices = [dev] if dev.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                mel_out = self._dit.cfm.inference(both, torch.LongTensor([both.size(1)]).to(dev), ref_mel, style,
                                                  None, self.diffusion_steps, inference_cfg_rate=self.cfg_rate)
            y = self._vocoder(mel_out[:, :, ref_mel.size(-1):].float()).squeeze().cpu().numpy()
        y = resample(y.astype(np.float32), self.sample_rate, source.sample_rate)
        y = y[: len(src)] if len(y) >= len(src) else np.pad(y, (0, len(src) - len(y)))
        top = float(np.abs(y).max())
        return Speech((y * (0.9 / top)).astype(np.float32) if top > 0 else y, source.sample_rate)
