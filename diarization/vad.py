"""Voice activity with the Silero VAD model that ships inside the silero-vad wheel.

``SileroVad.speech_spans`` returns speech regions in seconds of the given signal; the
signal is resampled to the model's rate (8 or 16 kHz) here, not by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audio_io.resample import resample
from manifests.span import Span


@dataclass(frozen=True)
class VadParams:
    threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.1
    speech_pad_s: float = 0.03
    max_speech_s: float = float("inf")


class SileroVad:
    """Loads the model once; ``model`` is 'silero-vad:onnx', 'silero-vad:jit' or a file path."""

    def __init__(self, model: str = "silero-vad:onnx", sample_rate: int = 16000, device: str = "cpu") -> None:
        import silero_vad
        from silero_vad.utils_vad import OnnxWrapper, init_jit_model

        self.sample_rate = sample_rate
        self.model_id = model
        if model == "silero-vad:onnx":
            self.model = silero_vad.load_silero_vad(onnx=True)
        elif model == "silero-vad:jit":
            self.model = silero_vad.load_silero_vad(onnx=False)
        else:
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"VAD model file not found: {model}")
            self.model = OnnxWrapper(str(path), force_onnx_cpu=True) if path.suffix == ".onnx" else init_jit_model(str(path))
        # The ONNX model runs on CPU (it is ~2 MB and RTF ~0.005 there); the JIT model can
        # follow the configured device.
        self.device = device
        if device != "cpu":
            if isinstance(self.model, OnnxWrapper):
                raise ValueError(f"vad.device={device!r} needs the JIT model: set vad.model=silero-vad:jit")
            self.model = self.model.to(device)
        self._get_speech_timestamps = silero_vad.get_speech_timestamps

    def speech_spans(self, samples: np.ndarray, sample_rate: int, params: VadParams) -> list[Span]:
        audio = resample(samples, sample_rate, self.sample_rate)
        if len(audio) < 512:
            return []
        stamps = self._get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio)).to(self.device),
            self.model,
            threshold=params.threshold,
            sampling_rate=self.sample_rate,
            min_speech_duration_ms=int(params.min_speech_s * 1000),
            max_speech_duration_s=params.max_speech_s,
            min_silence_duration_ms=int(params.min_silence_s * 1000),
            speech_pad_ms=int(params.speech_pad_s * 1000),
        )
        total = len(samples) / sample_rate
        spans = []
        for st in stamps:
            start = min(st["start"] / self.sample_rate, total)
            end = min(st["end"] / self.sample_rate, total)
            if end > start:
                spans.append(Span(start, end))
        return spans
