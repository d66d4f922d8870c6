"""Noise for training mixtures: synthetic generators plus real noise recordings.

Generators cover the families real recordings bring (DNS-style): coloured and spectrally
shaped stationary noise, mains hum and buzz, steady machine tones and resonant narrow
bands, music-like notes, babble, transient clicks and knocks, and amplitude-modulated
broadband noise (fans, water, traffic).
Every generator takes a numpy Generator, so a mixture is a pure function of its seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.signal import lfilter, sosfilt, butter

NoiseFn = Callable[[np.random.Generator, int, int], np.ndarray]


def shape_spectrum(x: np.ndarray, rng: np.random.Generator, rate: int, tilt_db_per_oct: float,
                   spread_db: float = 6.0) -> np.ndarray:
    """Random smooth EQ (8 knots, gains ~ N(0, spread_db)) plus a spectral tilt, in the frequency domain."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / rate)
    octaves = np.log2(np.maximum(f, 20.0) / 1000.0)
    knots = np.linspace(np.log2(20 / 1000), np.log2(rate / 2 / 1000), 8)
    gains_db = rng.normal(0, spread_db, size=len(knots))
    eq_db = np.interp(octaves, knots, gains_db) + tilt_db_per_oct * octaves
    return np.fft.irfft(spec * 10 ** (eq_db / 20), n=len(x))


def coloured(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    tilt = rng.choice([0.0, -3.0, -6.0, 3.0, rng.uniform(-8, 4)])
    return shape_spectrum(rng.standard_normal(n), rng, rate, float(tilt))


def hum(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
    t = np.arange(n) / rate
    y = np.zeros(n)
    for h in range(1, int(rng.integers(3, 25))):
        if f0 * h >= rate / 2:
            break
        y += rng.uniform(0, 1) / h ** rng.uniform(0.3, 1.5) * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
    return y + 0.05 * rng.standard_normal(n) * rng.uniform(0, 1)


def steady_tones(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Machine whine, alarms, feedback, fan blade tones: a few steady partials at fixed pitch,
    some with their harmonics, slow vibrato and tremolo, over a little broadband floor."""
    t = np.arange(n) / rate
    y = np.zeros(n)
    for _ in range(int(rng.integers(1, 8))):
        f = float(np.exp(rng.uniform(np.log(150.0), np.log(min(12000.0, rate * 0.48)))))
        vibrato = 1 + rng.uniform(0, 0.004) * np.sin(2 * np.pi * rng.uniform(0.1, 6) * t)
        phase = 2 * np.pi * np.cumsum(f * vibrato) / rate + rng.uniform(0, 2 * np.pi)
        tremolo = 1 + rng.uniform(0, 0.5) * np.sin(2 * np.pi * rng.uniform(0.1, 8) * t)
        harmonics = int(rng.integers(1, 5)) if rng.random() < 0.5 else 1
        for h in range(1, harmonics + 1):
            if f * h < rate / 2 * 0.95:
                y += rng.uniform(0.2, 1.0) / h * tremolo * np.sin(h * phase)
    return y + rng.uniform(0, 0.05) * rng.standard_normal(n)


def narrowband(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Resonant noise: one to three bands a few tens to hundreds of Hz wide (engines, vents, buzz)."""
    y = np.zeros(n)
    for _ in range(int(rng.integers(1, 4))):
        centre = float(np.exp(rng.uniform(np.log(100.0), np.log(rate * 0.4))))
        width = centre * rng.uniform(0.02, 0.25)
        lo, hi = max(20.0, centre - width / 2), min(rate / 2 * 0.98, centre + width / 2)
        band = sosfilt(butter(2, [lo, hi], btype="band", fs=rate, output="sos"), rng.standard_normal(n))
        y += rng.uniform(0.3, 1.0) * band / (np.std(band) + 1e-8)
    return y


def tonal(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Music-like: a sequence of harmonic notes with envelopes, some chords, some glides."""
    y = np.zeros(n)
    pos = 0
    while pos < n:
        dur = int(rate * rng.uniform(0.08, 1.2))
        seg = min(dur, n - pos)
        t = np.arange(seg) / rate
        for _ in range(int(rng.integers(1, 4))):
            f0 = 55.0 * 2 ** (rng.integers(0, 60) / 12)
            glide = 2 ** (rng.uniform(-0.3, 0.3) * t) if rng.random() < 0.2 else 1.0
            phase = 2 * np.pi * np.cumsum(f0 * glide) / rate
            for h in range(1, int(rng.integers(1, 10))):
                if f0 * h * 1.3 >= rate / 2:
                    break
                y[pos:pos + seg] += rng.uniform(0.1, 1) / h * np.sin(h * phase)
        env = np.exp(-t * rng.uniform(0, 6))
        attack = min(seg, int(0.01 * rate))
        env[:attack] *= np.linspace(0, 1, attack)
        y[pos:pos + seg] *= env
        pos += dur if rng.random() < 0.8 else dur + int(rate * rng.uniform(0, 0.5))
    return y


def transients(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Clicks, keyboard taps and knocks: short filtered bursts with fast decay."""
    y = np.zeros(n)
    count = int(rng.integers(2, 12) * n / rate) + 1
    for _ in range(count):
        at = int(rng.integers(0, n))
        length = int(rate * rng.uniform(0.005, 0.15))
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length * rng.uniform(0.05, 0.4)))
        lo = rng.uniform(100, 2000)
        hi = min(rate / 2 * 0.95, lo * rng.uniform(2, 10))
        burst = sosfilt(butter(2, [lo, hi], btype="band", fs=rate, output="sos"), burst)
        end = min(n, at + length)
        y[at:end] += rng.uniform(0.2, 1) * burst[: end - at]
    return y


def modulated(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Broadband noise under a slow random envelope: fans, water, traffic, wind."""
    base = coloured(rng, n, rate)
    k = max(2, int(n / rate * rng.uniform(1, 8)))
    env = np.interp(np.arange(n), np.linspace(0, n, k), rng.uniform(0.1, 1.0, size=k))
    return base * env


def babble_from(pool: Sequence[np.ndarray]) -> NoiseFn:
    """Several talkers from the speech pool at once (never the talker of the target)."""

    def babble(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
        y = np.zeros(n)
        for _ in range(int(rng.integers(3, 8))):
            u = pool[int(rng.integers(len(pool)))]
            u = np.tile(u, int(np.ceil(n / len(u))) + 1)
            start = int(rng.integers(0, len(u) - n + 1))
            y += u[start:start + n] / (np.std(u) + 1e-8)
        return y

    return babble


def recordings(clips: Sequence[np.ndarray]) -> NoiseFn:
    """Random crops of real noise recordings, looped, with a random EQ."""

    def recorded(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
        clip = clips[int(rng.integers(len(clips)))]
        looped = np.tile(clip, int(np.ceil(n / len(clip))) + 1)
        start = int(rng.integers(0, len(looped) - n + 1))
        return shape_spectrum(looped[start:start + n], rng, rate, 0.0)

    return recorded


def pink_ar(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Voss-McCartney-like pink noise via a standard 3-pole filter (cheap, stationary)."""
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1, -2.494956002, 2.017265875, -0.522189400]
    return lfilter(b, a, rng.standard_normal(n))


SYNTHETIC: dict[str, NoiseFn] = {
    "coloured": coloured,
    "pink": pink_ar,
    "hum": hum,
    "tonal": tonal,
    "steady_tones": steady_tones,
    "narrowband": narrowband,
    "transients": transients,
    "modulated": modulated,
}
