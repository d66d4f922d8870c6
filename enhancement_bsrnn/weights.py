"""Saving and loading BSRNN weights: one file holding the model size, the weights and how they were trained."""

from __future__ import annotations

from pathlib import Path

import torch

from enhancement_bsrnn.model import BSRNN, BsrnnConfig
from manifests.ids import file_sha256

FORMAT = "audio-refinery-bsrnn/1"
SHIPPED = Path(__file__).resolve().parent / "weights" / "bsrnn_small.pt"


def save_weights(model: BSRNN, path: Path, training: dict) -> None:
    """Weights in float16 (half the size; the loader casts back to float32)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT, "config": model.config.to_dict(), "state_dict": state, "training": training}, tmp)
    tmp.replace(path)


def file_digest(path: Path) -> str:
    return file_sha256(path)


def load_weights(path: str | Path | None = None, device: str = "cpu") -> tuple[BSRNN, dict]:
    """Build the model a weights file describes and load it; returns (model in eval mode, file metadata)."""
    path = Path(path) if path else SHIPPED
    if not path.is_file():
        raise FileNotFoundError(f"BSRNN weights not found at {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a BSRNN weights file of this project (format {blob.get('format')!r}, expected {FORMAT!r})")
    model = BSRNN(BsrnnConfig.from_dict(blob["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    model.eval().to(device)
    return model, {"path": str(path), "sha256": file_digest(path), "config": blob["config"], "training": blob.get("training", {})}
