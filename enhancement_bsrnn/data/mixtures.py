"""Noisy/clean training pairs, made on the fly and reproducibly from (seed, step, item).

A mixture: clean utterances laid out with random pauses over the segment (so the model
also sees speech-free stretches), optionally reverberated by a simulated room
(pyroomacoustics; the target keeps the direct path and the first 50 ms of reflections),
plus one to three noises at an SNR drawn from -5 to 20 dB, at a random level. Half the
utterances get a mild random EQ first (microphone colouring), which the target keeps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import fftconvolve

from enhancement_bsrnn.data.noise import SYNTHETIC, NoiseFn, babble_from, recordings, shape_spectrum
from enhancement_bsrnn.data.speech import SpeechPool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MixtureSpec:
    seconds: float = 2.0
    snr_db: tuple[float, float] = (-5.0, 20.0)
    level_dbfs: tuple[float, float] = (-38.0, -18.0)
    reverb_prob: float = 0.25
    early_ms: float = 50.0
    max_noises: int = 3
    speech_eq_prob: float = 0.5
    # relative draw weights of the noise types (others: 1); steady tones and narrow bands are
    # common in real recordings and hard for a mask model, babble of the same voices is rare there
    noise_weights: tuple[tuple[str, float], ...] = (("steady_tones", 2.5), ("narrowband", 1.5), ("babble", 0.5))


def room_impulse_responses(rate: int, count: int, seed: int) -> list[np.ndarray]:
    """Shoebox rooms with RT60 0.15-0.8 s, image-source method, order capped for speed."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    rirs = []
    while len(rirs) < count:
        dims = rng.uniform([3, 3, 2.4], [10, 8, 4])
        rt60 = rng.uniform(0.15, 0.8)
        try:
            absorption, max_order = pra.inverse_sabine(rt60, dims)
        except ValueError:
            continue
        room = pra.ShoeBox(dims, fs=rate, materials=pra.Material(absorption), max_order=min(max_order, 10))
        room.add_source(rng.uniform([0.5, 0.5, 1.0], dims - [0.5, 0.5, 0.6]))
        room.add_microphone(rng.uniform([0.5, 0.5, 0.8], dims - [0.5, 0.5, 0.8]))
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float64)
        rirs.append(rir / (np.abs(rir).max() + 1e-12))
    return rirs


@dataclass
class MixtureMaker:
    pools: dict[int, SpeechPool]
    noise_clips: dict[int, list[np.ndarray]] = field(default_factory=dict)
    spec: MixtureSpec = MixtureSpec()
    rir_count: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        self.rirs = {r: room_impulse_responses(r, self.rir_count, self.seed + 7) for r in self.pools}
        self.noises: dict[int, dict[str, NoiseFn]] = {}
        for r, pool in self.pools.items():
            fns = dict(SYNTHETIC)
            fns["babble"] = babble_from(pool.utterances)
            if self.noise_clips.get(r):
                fns["recorded"] = recordings(self.noise_clips[r])
            self.noises[r] = fns

    def _speech(self, rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
        pool = self.pools[rate].utterances
        out = np.zeros(n)
        pos = int(rng.uniform(0, 0.4) * rate) if rng.random() < 0.5 else 0
        while pos < n:
            u = pool[int(rng.integers(len(pool)))]
            start = int(rng.integers(0, max(1, len(u) - n // 2)))
            piece = u[start:start + n - pos]
            out[pos:pos + len(piece)] = piece / (np.std(piece) + 1e-8)
            pos += len(piece) + int(rng.uniform(0.05, 0.8) * rate)
        return out

    def make(self, rng: np.random.Generator, rate: int) -> tuple[np.ndarray, np.ndarray]:
        """One (noisy, clean) pair at `rate`, float32, same length."""
        n = int(self.spec.seconds * rate)
        dry = self._speech(rng, n, rate)
        if rng.random() < self.spec.speech_eq_prob:  # microphone and channel colouring, kept in the target
            dry = shape_spectrum(dry, rng, rate, float(rng.uniform(-2.0, 2.0)), spread_db=3.0)
        clean = dry
        reverberant = dry
        if rng.random() < self.spec.reverb_prob:
            rir = self.rirs[rate][int(rng.integers(len(self.rirs[rate])))]
            peak = int(np.argmax(np.abs(rir)))
            early = rir[: peak + int(self.spec.early_ms / 1000 * rate)]
            reverberant = fftconvolve(dry, rir)[peak: peak + n]
            clean = fftconvolve(dry, early)[peak: peak + n]
        fns = self.noises[rate]
        names = sorted(fns)
        weights = dict(self.spec.noise_weights)
        p = np.array([weights.get(name, 1.0) for name in names])
        noise = np.zeros(n)
        for _ in range(int(rng.integers(1, self.spec.max_noises + 1))):
            part = fns[names[int(rng.choice(len(names), p=p / p.sum()))]](rng, n, rate)
            noise += rng.uniform(0.3, 1.0) * part / (np.std(part) + 1e-8)
        snr = rng.uniform(*self.spec.snr_db)
        p_speech = np.mean(reverberant ** 2) + 1e-12
        noise *= np.sqrt(p_speech / (np.mean(noise ** 2) + 1e-12) / 10 ** (snr / 10))
        noisy = reverberant + noise
        gain = 10 ** (rng.uniform(*self.spec.level_dbfs) / 20) / (np.sqrt(np.mean(noisy ** 2)) + 1e-12)
        noisy, clean = noisy * gain, clean * gain
        peak = np.abs(noisy).max()
        if peak > 0.99:  # keep within [-1, 1] like real recordings
            noisy, clean = noisy * 0.99 / peak, clean * 0.99 / peak
        return noisy.astype(np.float32), clean.astype(np.float32)

    def batch(self, seed: int, step: int, size: int, rate: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.make(np.random.default_rng([seed, step, i]), rate) for i in range(size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
