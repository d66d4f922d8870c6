"""Chunked BSRNN inference for audio of any length.

A file is cut into windows of ``chunk_s`` that overlap by ``overlap_s``; windows of many
files are enhanced together in batches of ``batch_size``; the outputs are cross-faded with
raised-cosine ramps over the overlaps and normalised by the summed weights, so the result
is smooth and exactly as long as the input. Model memory depends on the window and batch,
never on the file length. On CUDA, float16/bfloat16 autocast follows ``precision``.

``load_enhancer_from(params, device, batch_size)`` builds the enhancer of an
``EnhanceParams``; ``enhance_signals`` runs it over signals of one rate (resampled to the
working rate and back, each returned at its input's length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from audio_io.resample import resample
from enhancement_bsrnn.bands import supported
from enhancement_bsrnn.enhancer import Enhancer
from enhancement_bsrnn.model import BSRNN
from enhancement_bsrnn.params import EnhanceParams
from enhancement_bsrnn.weights import load_weights


@dataclass(frozen=True)
class ChunkPlan:
    """Window starts for a signal of `length` samples."""

    length: int
    window: int
    hop: int
    overlap: int

    @property
    def starts(self) -> list[int]:
        if self.length <= self.window:
            return [0]
        n = math.ceil((self.length - self.window) / self.hop) + 1
        return [i * self.hop for i in range(n)]

    def weight(self, index: int, count: int) -> np.ndarray:
        """Cross-fade weight of one window: flat, with raised-cosine ramps where it overlaps a neighbour."""
        w = np.ones(self.window, dtype=np.float64)
        if self.overlap > 0:
            ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(self.overlap) + 0.5) / self.overlap)
            if index > 0:
                w[: self.overlap] = ramp
            if index < count - 1:
                w[-self.overlap:] = ramp[::-1]
        return w


def plan_chunks(length: int, sample_rate: int, chunk_s: float, overlap_s: float) -> ChunkPlan:
    window = int(round(chunk_s * sample_rate))
    overlap = int(round(overlap_s * sample_rate))
    if overlap * 2 > window:
        raise ValueError(f"overlap {overlap_s} s must be at most half the chunk {chunk_s} s")
    window = min(window, length)
    overlap = min(overlap, window // 2)
    return ChunkPlan(length=length, window=window, hop=window - overlap, overlap=overlap)


def _working_rate(sample_rate: int) -> int:
    """The rate the model runs at: the input's, or the next supported one above it."""
    if supported(sample_rate):
        return sample_rate
    for rate in (8000, 16000, 24000, 32000, 44100, 48000):
        if rate >= sample_rate:
            return rate
    return 48000


class BsrnnEnhancer(Enhancer):
    def __init__(self, model: BSRNN, name: str, *, chunk_s: float, overlap_s: float, precision: str,
                 device: str = "cpu", batch_size: int = 8) -> None:
        self.model = model.to(device).eval()
        self.name = name
        self.device = torch.device(device)
        self.precision = precision
        self.chunk_s, self.overlap_s, self.batch_size = chunk_s, overlap_s, batch_size

    def _forward(self, windows: np.ndarray, rate: int) -> np.ndarray:
        x = torch.from_numpy(windows).to(self.device)
        dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(self.precision)
        with torch.inference_mode():
            if dtype is not None and self.device.type == "cuda":
                with torch.autocast("cuda", dtype=dtype):
                    y = self.model(x, rate)
            else:
                y = self.model(x, rate)
        return y.float().cpu().numpy()

    def enhance(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.enhance_many([audio], sample_rate)[0]

    def enhance_many(self, signals: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Enhance several signals of one rate, batching windows across them."""
        rate = _working_rate(sample_rate)
        work = [np.asarray(s, dtype=np.float32) if rate == sample_rate else
                resample(np.asarray(s, dtype=np.float32), sample_rate, rate) for s in signals]
        outputs = [np.zeros(len(s), dtype=np.float64) for s in work]
        norms = [np.zeros(len(s), dtype=np.float64) for s in work]
        # windows grouped by length (the last window of a short file may be shorter), in batches
        jobs: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        for f, s in enumerate(work):
            if len(s) == 0:
                continue
            plan = plan_chunks(len(s), rate, self.chunk_s, self.overlap_s)
            starts = plan.starts
            for i, start in enumerate(starts):
                jobs.setdefault(plan.window, []).append((f, start, plan.weight(i, len(starts))))
        for window, items in jobs.items():
            for b in range(0, len(items), self.batch_size):
                batch = items[b:b + self.batch_size]
                # the last window of a file may run past its end: zero-padded
                x = np.stack([np.pad(work[f][st:st + window], (0, max(0, st + window - len(work[f])))) for f, st, _ in batch])
                y = self._forward(x, rate)
                for (f, st, w), out in zip(batch, y):
                    end = min(st + window, len(work[f]))
                    outputs[f][st:end] += out[: end - st] * w[: end - st]
                    norms[f][st:end] += w[: end - st]
        results = []
        for s, out, norm, orig in zip(work, outputs, norms, signals):
            y = out / np.maximum(norm, 1e-8)
            if rate != sample_rate:
                y = resample(y, rate, sample_rate)[: len(orig)]
                y = np.pad(y, (0, len(orig) - len(y)))
            results.append(np.clip(y, -1.0, 1.0).astype(np.float32))
        return results


def load_enhancer_from(params: EnhanceParams, device: str, batch_size: int) -> Enhancer:
    """The enhancer of ``params``: ``bsrnn`` (weights path; None = the shipped small model) or ``deepfilternet3``.

    ``device`` and ``batch_size`` (windows per forward pass, across recordings) are placement.
    """
    if params.backend == "deepfilternet3":
        from enhancement_bsrnn.deepfilternet import DeepFilterNet3Enhancer

        return DeepFilterNet3Enhancer()
    if params.backend != "bsrnn":
        raise ValueError(f"unknown enhancement backend {params.backend!r} (bsrnn, deepfilternet3)")
    net, meta = load_weights(params.model, device="cpu")
    name = f"bsrnn:{meta['path'].rsplit('/', 1)[-1]}@{meta['sha256'][:8]}"
    return BsrnnEnhancer(net, name, device=device, precision=params.precision, chunk_s=params.chunk_s,
                         overlap_s=params.overlap_s, batch_size=batch_size)


def load_enhancer(model: str | None = None, *, device: str = "cpu", batch_size: int = 8, **params) -> Enhancer:
    """Shorthand for tools and tests: ``load_enhancer_from(EnhanceParams(model=model, **params), device, batch_size)``."""
    return load_enhancer_from(EnhanceParams(model=model, **params), device, batch_size)


def enhance_signals(enhancer: Enhancer, signals: list[np.ndarray], rate: int, work_rate: int | None) -> list[np.ndarray]:
    """Enhance signals of one ``rate`` at ``work_rate`` (None: at ``rate``); float32 out, each as long as its input.

    Signals are resampled to the working rate, enhanced together where the enhancer can
    (``enhance_many``, windows share forward passes), resampled back and trimmed or
    zero-padded to the input's length.
    """
    work_rate = work_rate or rate
    work = [resample(np.asarray(s, dtype=np.float32), rate, work_rate) for s in signals]
    if hasattr(enhancer, "enhance_many"):
        done = enhancer.enhance_many(work, work_rate)
    else:
        done = [enhancer.enhance(w, work_rate) for w in work]
    result = []
    for original, signal in zip(signals, done):
        back = resample(signal, work_rate, rate)[: len(original)]
        result.append(np.pad(back, (0, len(original) - len(back))).astype(np.float32))
    return result
