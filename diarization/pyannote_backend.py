"""The full pyannote.audio diarization pipeline as a raw-diarization backend.

``pyannote/speaker-diarization-community-1`` (a hub id, which needs network access and a
token on first use) or a local directory holding the pipeline's ``config.yaml`` and
its models. Its output turns become ``Tracks`` (labels "T00".. in order of first
appearance); speakers it found active at the same time are cannot-link pairs for
cluster merging, as in the segmentation backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diarization.segmentation import SAMPLE_RATE, frame_center_s, frames_in
from diarization.stitching import Tracks
from manifests.span import Span


def load_pyannote_pipeline(model: str, device: str = "cpu"):
    import torch
    from pyannote.audio import Pipeline

    looks_local = model.startswith((".", "/", "~")) or Path(model).expanduser().exists()
    if looks_local and not Path(model).expanduser().exists():
        raise FileNotFoundError(f"pyannote pipeline directory not found: {model}")
    pipeline = Pipeline.from_pretrained(str(Path(model).expanduser()) if looks_local else model)
    if pipeline is None:
        raise RuntimeError(f"pyannote could not load the pipeline {model!r} (gated hub model without a token?)")
    pipeline.to(torch.device(device))
    return pipeline


def annotation_to_tracks(annotation, duration_s: float) -> Tracks:
    """A pyannote ``Annotation`` -> ``Tracks`` with per-frame activity and cannot-link pairs."""
    raw = sorted((seg.start, seg.end, label) for seg, _, label in annotation.itertracks(yield_label=True))
    names: dict[str, str] = {}
    for _, _, label in raw:
        names.setdefault(label, f"T{len(names):02d}")
    turns = [Span(round(max(0.0, s), 3), round(min(e, duration_s), 3), names[lab]) for s, e, lab in raw if e > s]
    labels = list(names.values())
    n_frames = frames_in(int(duration_s * SAMPLE_RATE))
    centers = frame_center_s(np.arange(n_frames))
    active = np.zeros((n_frames, len(labels)), dtype=bool)
    for t in turns:
        active[(centers >= t.start) & (centers < t.end), labels.index(t.speaker)] = True
    cannot = set()
    both = active.T.astype(np.int32) @ active.astype(np.int32)
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            if both[i, j] > 0:
                cannot.add(frozenset((labels[i], labels[j])))
    return Tracks(turns=sorted(turns), cannot_link=cannot, active=active, labels=labels)


def run_pyannote_pipeline(pipeline, audio16k: np.ndarray) -> Tracks:
    import torch

    output = pipeline({"waveform": torch.from_numpy(audio16k)[None, :], "sample_rate": SAMPLE_RATE})
    annotation = getattr(output, "speaker_diarization", output)  # pyannote 4 returns DiarizeOutput
    return annotation_to_tracks(annotation, len(audio16k) / SAMPLE_RATE)
