"""Zero-shot TTS prompted by a reference voice: CosyVoice2 (``cosyvoice2``) and F5-TTS (``f5-tts``).

Both speak a text in the voice of a ``VoiceReference`` (its speech and the transcript of
that speech). Neither has weights that can be had offline here (shared notes: nothing
zero-shot ships inside a PyPI wheel), so this module is the real loading code with
explicit failures, tested on what can be tested without weights.

Where the weights come from: ``model`` is a Hugging Face hub id or a local directory.

- A hub id (``FunAudioLLM/CosyVoice2-0.5B``, ``SWivid/F5-TTS``) is looked up in the local
  Hugging Face cache only (``snapshot_download(..., local_files_only=True)``): no network
  wait; when it is not there, TtsError says so and how to fetch it.
- A local directory is checked for the files the model reads, and TtsError lists the ones
  missing.

Then the model's own package is imported, lazily (it is not a dependency of this project):

- CosyVoice2 needs ``cosyvoice`` from github.com/FunAudioLLM/CosyVoice (not on PyPI: clone
  it, install its requirements, put the repository and its ``third_party/Matcha-TTS`` on
  PYTHONPATH). Loaded as ``CosyVoice2(model_dir, load_jit=False, load_trt=False,
  fp16=False)``; speech from ``inference_zero_shot(text, prompt_text, prompt, stream=False)``,
  whose items hold ``tts_speech`` [1, T] at ``model.sample_rate`` (24 kHz). The prompt is a
  16 kHz tensor in the releases of 2024-25 (``prompt_speech_16k``) and a wav path in later
  ones (``prompt_wav``): the frontend's signature decides which is passed. CosyVoice picks
  CUDA itself when it sees a GPU.
- F5-TTS needs ``f5-tts`` (PyPI, >= 1.0). Loaded as ``F5TTS(model="F5TTS_v1_Base",
  ckpt_file=..., vocab_file=..., vocoder_local_path=..., device=...)`` with the checkpoint
  and the Vocos vocoder (``charactr/vocos-mel-24khz``: ``config.yaml`` + ``pytorch_model.bin``)
  both resolved as above, so F5 itself never reaches for the hub; speech from
  ``infer(ref_file, ref_text, gen_text, speed=..., seed=...)`` -> (wave, 24000, spectrogram).

Determinism: both sample (CosyVoice's LLM draws speech tokens; F5's flow starts from
noise). The call's seed seeds Python's, NumPy's and torch's generators right before
inference (F5's ``infer(seed=)`` does the same), so a run on one machine repeats; across
devices or library versions it need not.

Style is a rate (``synthesis.tts.style``) passed as ``speed``. Voices: the prompt is the
voice; ``voice_for`` returns ``<name>:prompt`` and ``synthesize`` without a prompt is a
TtsError.
"""

from __future__ import annotations

import inspect
import random
import re
import tempfile
from pathlib import Path

import numpy as np

from audio_io.resample import resample
from synthesis.speech import Speech, VoiceReference
from synthesis.tts.base import TtsError
from synthesis.tts.style import style_rate

COSYVOICE2_FILES = ("cosyvoice2.yaml", "llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v2.onnx",
                    "CosyVoice-BlankEN/")
VOCOS_FILES = ("config.yaml", "pytorch_model.bin")
F5_VARIANT = "F5TTS_v1_Base"
MAX_PROMPT_S = 30.0  # CosyVoice's speech tokenizer refuses longer prompts; F5 clips to ~12-18 s itself

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")


def _looks_like_hub_id(model: str) -> bool:
    return bool(_HUB_ID.fullmatch(model)) and not model.startswith((".", "~"))


def resolve_model(model: str, backend: str) -> tuple[Path, str]:
    """(directory, revision) of ``model``: an existing directory (revision "local"), or a hub id found in
    the local Hugging Face cache (revision: the snapshot's commit). TtsError otherwise, in one line."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TtsError(f"{backend}: {model} is a file; give the model's directory or a hub id")
        return path, "local"
    if not _looks_like_hub_id(model):
        raise TtsError(f"{backend}: no such model directory: {model}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(repo_id=model, local_files_only=True))
    except LocalEntryNotFoundError:
        raise TtsError(f"{backend}: weights of {model} are not present (not a local directory, not in the Hugging "
                       f"Face cache); fetch them where there is network with `huggingface-cli download {model}` "
                       "(or copy the model directory here and pass its path)") from None
    return snapshot, snapshot.name


def missing_files(directory: Path, required: tuple[str, ...]) -> list[str]:
    """The entries of ``required`` absent from ``directory`` (a trailing '/' names a folder)."""
    out = []
    for name in required:
        target = directory / name.rstrip("/")
        if not (target.is_dir() if name.endswith("/") else target.is_file()):
            out.append(name)
    return out


def _require(directory: Path, required: tuple[str, ...], backend: str) -> None:
    missing = missing_files(directory, required)
    if missing:
        raise TtsError(f"{backend}: {directory} lacks {', '.join(missing)}")


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _check_prompt(prompt: VoiceReference | None, backend: str) -> VoiceReference:
    if prompt is None:
        raise TtsError(f"{backend} is zero-shot: it needs a prompt (VoiceReference with speech and its transcript)")
    if not prompt.text.strip():
        raise TtsError(f"{backend}: the prompt {prompt.voice_id!r} has no transcript")
    if prompt.speech.audio.size == 0:
        raise TtsError(f"{backend}: the prompt {prompt.voice_id!r} has no audio")
    if prompt.speech.duration > MAX_PROMPT_S:
        raise TtsError(f"{backend}: the prompt {prompt.voice_id!r} is {prompt.speech.duration:.1f} s; at most "
                       f"{MAX_PROMPT_S:.0f} s")
    return prompt


def _set_threads(device: str, threads: int) -> None:
    if device == "cpu" and threads > 0:
        import torch

        torch.set_num_threads(threads)  # process-wide: a TTS worker runs one backend


class CosyVoice2Tts:
    """``CosyVoice2Tts(model="FunAudioLLM/CosyVoice2-0.5B", device="cpu", threads=1)``."""

    name = "cosyvoice2"
    sample_rate = 24000
    languages = frozenset({"zh", "en"})

    def __init__(self, model: str = "FunAudioLLM/CosyVoice2-0.5B", device: str = "cpu", threads: int = 1) -> None:
        self.model_name = model
        self.model_dir, self.revision = resolve_model(model, self.name)
        _require(self.model_dir, COSYVOICE2_FILES, self.name)
        try:
            from cosyvoice.cli.cosyvoice import CosyVoice2
        except ImportError as e:
            raise TtsError(f"cosyvoice2 needs the `cosyvoice` package (github.com/FunAudioLLM/CosyVoice with "
                           f"third_party/Matcha-TTS on PYTHONPATH; not on PyPI): {e}") from None
        _set_threads(device, threads)
        self.model = CosyVoice2(str(self.model_dir), load_jit=False, load_trt=False, fp16=False)
        self.sample_rate = int(getattr(self.model, "sample_rate", self.sample_rate))
        params = inspect.signature(self.model.frontend.frontend_zero_shot).parameters
        self._prompt_as_path = "prompt_wav" in params
        self._speed_arg = "speed" in inspect.signature(self.model.inference_zero_shot).parameters

    def model_id(self) -> str:
        return f"cosyvoice2:{self.model_name}@{self.revision}"

    def voice_for(self, seed: int) -> str:
        return f"{self.name}:prompt"

    def synthesize(self, text: str, language: str, *, voice: str | None = None, style: str | None = None,
                   seed: int = 0, prompt: VoiceReference | None = None) -> Speech:
        import torch

        if language not in self.languages:
            raise TtsError(f"cosyvoice2 here speaks {sorted(self.languages)}, not {language!r}")
        prompt = _check_prompt(prompt, self.name)
        speed = style_rate(style, self.name)
        kwargs = {"stream": False, **({"speed": speed} if self._speed_arg else {})}
        if not self._speed_arg and speed != 1.0:
            raise TtsError("this cosyvoice release has no speed control; use the neutral style")
        audio16 = resample(prompt.speech.audio, prompt.speech.sample_rate, 16000)
        with tempfile.TemporaryDirectory(prefix="cosyvoice-") as tmp:
            if self._prompt_as_path:
                import soundfile as sf

                wav = Path(tmp) / "prompt.wav"
                sf.write(wav, audio16, 16000, subtype="FLOAT")
                prompt_arg = str(wav)
            else:
                prompt_arg = torch.from_numpy(audio16).unsqueeze(0)
            _seed_all(seed)
            pieces = [out["tts_speech"].squeeze(0).float().cpu().numpy()
                      for out in self.model.inference_zero_shot(text, prompt.text, prompt_arg, **kwargs)]
        if not pieces or sum(p.size for p in pieces) == 0:
            raise TtsError(f"cosyvoice2: no audio for {text!r}")
        return Speech(np.concatenate(pieces).astype(np.float32), self.sample_rate)


def f5_checkpoint(directory: Path, variant: str = F5_VARIANT) -> Path | None:
    """The newest ``model_<step>.safetensors`` (else ``.pt``) in ``directory/variant`` or ``directory``."""
    for folder in (directory / variant, directory):
        for ext in ("safetensors", "pt"):
            found = sorted(folder.glob(f"model_*.{ext}"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
            if found:
                return found[-1]
    return None


class F5Tts:
    """``F5Tts(model="SWivid/F5-TTS", vocoder="charactr/vocos-mel-24khz", device="cpu", threads=1)``."""

    name = "f5-tts"
    sample_rate = 24000
    languages = frozenset({"zh", "en"})

    def __init__(self, model: str = "SWivid/F5-TTS", vocoder: str = "charactr/vocos-mel-24khz", device: str = "cpu",
                 threads: int = 1, variant: str = F5_VARIANT) -> None:
        self.model_name = model
        self.model_dir, self.revision = resolve_model(model, self.name)
        ckpt = f5_checkpoint(self.model_dir, variant)
        if ckpt is None:
            raise TtsError(f"f5-tts: {self.model_dir} lacks {variant}/model_<step>.safetensors (or .pt)")
        vocab = ckpt.parent / "vocab.txt"
        self.vocoder_dir, _ = resolve_model(vocoder, self.name)
        _require(self.vocoder_dir, VOCOS_FILES, self.name)
        try:
            from f5_tts.api import F5TTS
        except ImportError as e:
            raise TtsError(f"f5-tts needs the `f5-tts` package (pip install f5-tts): {e}") from None
        _set_threads(device, threads)
        self.checkpoint = ckpt
        self.model = F5TTS(model=variant, ckpt_file=str(ckpt), vocab_file=str(vocab) if vocab.is_file() else "",
                           vocoder_local_path=str(self.vocoder_dir), device=device)
        self.sample_rate = int(getattr(self.model, "target_sample_rate", self.sample_rate))

    def model_id(self) -> str:
        return f"f5-tts:{self.model_name}/{self.checkpoint.parent.name}/{self.checkpoint.name}@{self.revision}"

    def voice_for(self, seed: int) -> str:
        return f"{self.name}:prompt"

    def synthesize(self, text: str, language: str, *, voice: str | None = None, style: str | None = None,
                   seed: int = 0, prompt: VoiceReference | None = None) -> Speech:
        import soundfile as sf

        if language not in self.languages:
            raise TtsError(f"f5-tts here speaks {sorted(self.languages)}, not {language!r}")
        prompt = _check_prompt(prompt, self.name)
        speed = style_rate(style, self.name)
        with tempfile.TemporaryDirectory(prefix="f5-") as tmp:
            wav = Path(tmp) / "prompt.wav"
            sf.write(wav, prompt.speech.audio, prompt.speech.sample_rate, subtype="FLOAT")
            _seed_all(seed)
            audio, rate, _ = self.model.infer(str(wav), prompt.text, text, speed=speed, seed=seed,
                                              show_info=lambda *a, **k: None)
        audio = np.asarray(audio, dtype=np.float32).ravel()
        if audio.size == 0:
            raise TtsError(f"f5-tts: no audio for {text!r}")
        if int(rate) != self.sample_rate:
            audio = resample(audio, int(rate), self.sample_rate)
        return Speech(audio, self.sample_rate)
