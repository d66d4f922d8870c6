"""Voice activity with the Silero VAD model that ships inside the silero-vad wheel.

``SileroVad.speech_spans`` returns speech regions in seconds of the 16 kHz analysis
signal; with an 8 kHz model the signal is resampled to the model's rate here.
``segment_by_voice`` is segmentation by voice activity (used until diarization replaces
it): speech regions split at ``max_duration_s``, then ``finalize_segments``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from audio_io.resample import resample
from diarization.segment_merge import SegmentMergeParams, finalize_segments
from diarization.segmentation import SAMPLE_RATE
from manifests.params import Params
from manifests.planned_segment import PlannedSegment
from manifests.span import Span


class VadParams(Params):
    """Voice-activity segmentation (Silero VAD). Used until diarization replaces it."""

    model: str = Field("silero-vad:onnx", description="'silero-vad:onnx', 'silero-vad:jit' or a path to an .onnx/.jit file")
    sample_rate: Literal[8000, 16000] = 16000
    threshold: float = Field(0.5, gt=0, lt=1, description="speech probability threshold")
    min_speech_s: float = Field(0.25, ge=0)
    min_silence_s: float = Field(0.1, ge=0, description="silence that ends a speech region")
    speech_pad_s: float = Field(0.03, ge=0)


class SileroVad:
    """Loads the model once; ``model`` is 'silero-vad:onnx', 'silero-vad:jit' or a file path.

    Built from parameters as ``SileroVad(params.model, params.sample_rate, device)``.
    """

    def __init__(self, model: str, sample_rate: int, device: str = "cpu") -> None:
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

    def speech_spans(self, audio16k: np.ndarray, params: VadParams, max_speech_s: float = float("inf")) -> list[Span]:
        """Speech regions of the 16 kHz signal, none longer than ``max_speech_s`` (Silero splits them)."""
        audio = resample(audio16k, SAMPLE_RATE, self.sample_rate)
        if len(audio) < 512:
            return []
        import torch  # here, not at module level: the driver imports this module's config, not the model

        stamps = self._get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio)).to(self.device),
            self.model,
            threshold=params.threshold,
            sampling_rate=self.sample_rate,
            min_speech_duration_ms=int(params.min_speech_s * 1000),
            max_speech_duration_s=max_speech_s,
            min_silence_duration_ms=int(params.min_silence_s * 1000),
            speech_pad_ms=int(params.speech_pad_s * 1000),
        )
        total = len(audio16k) / SAMPLE_RATE
        spans = []
        for st in stamps:
            start = min(st["start"] / self.sample_rate, total)
            end = min(st["end"] / self.sample_rate, total)
            if end > start:
                spans.append(Span(start, end))
        return spans


def segment_by_voice(vad: SileroVad, audio16k: np.ndarray, vad_params: VadParams,
                     merge_params: SegmentMergeParams) -> list[PlannedSegment]:
    """Segments of one recording by voice activity (speaker None, overlap_ratio None).

    Order: the kept segments in time order, then the dropped ones in time order (as the VAD
    segmenter has always listed them; the writer sorts rows by time in any case).
    """
    spans = vad.speech_spans(audio16k, vad_params, merge_params.max_duration_s)
    segments = finalize_segments(spans, merge_params, audio16k)
    segments.sort(key=lambda s: not s.kept)  # stable: time order within each group
    return segments
