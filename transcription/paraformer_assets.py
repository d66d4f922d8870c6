"""A Paraformer-zh model directory with seeded random weights, for tests without the hub.

No Paraformer weights can be had offline. ``transcription/paraformer_tiny/`` ships the
rest of a FunASR model directory (config.yaml: SeacoParaformer with SANM encoder,
Paraformer SANM decoders, CifPredictorV3 and WavFrontend, small dimensions; tokens.json:
427 characters; am.mvn: Kaldi-format CMVN). ``build_random_model_dir`` copies them into a
cache directory and writes ``model.pt``: the state_dict of FunASR's own model class built
from that config, initialised under a fixed seed. ``funasr.AutoModel`` then loads the
directory like a downloaded one, so loading, feature extraction, CIF decoding and the
timestamp path all run for real; only the text is meaningless.

Nothing is committed but the config files; the weights are rebuilt on demand (~0.6 M
parameters, well under a second).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from transcription.models import model_cache_dir

ASSETS = Path(__file__).resolve().parent / "paraformer_tiny"
ASSET_FILES = ("config.yaml", "tokens.json", "am.mvn")


def _assets_digest() -> str:
    h = hashlib.sha256()
    for name in ASSET_FILES:
        h.update((ASSETS / name).read_bytes())
    return h.hexdigest()[:12]


def build_random_model_dir(dest: Path | None = None, seed: int = 0) -> Path:
    """The directory (created when missing): the shipped config files + a seeded random model.pt."""
    import torch
    import yaml

    dest = Path(dest) if dest is not None else model_cache_dir() / f"paraformer-tiny-random-{_assets_digest()}-seed{seed}"
    if (dest / "model.pt").is_file() and all((dest / n).is_file() for n in ASSET_FILES):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS / name, dest / name)
    config = yaml.safe_load((ASSETS / "config.yaml").read_text(encoding="utf-8"))
    tokens = json.loads((ASSETS / "tokens.json").read_text(encoding="utf-8"))
    model = build_model_from_config(config, vocab_size=len(tokens), seed=seed)
    tmp = dest / f".model.pt.{os.getpid()}.tmp"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, dest / "model.pt")
    return dest


def build_model_from_config(config: dict, vocab_size: int, seed: int):
    """FunASR's registered model class, built from a model directory's config as AutoModel does."""
    import torch
    from funasr.register import tables

    # Importing these modules registers the classes the config names.
    import funasr.frontends.wav_frontend  # noqa: F401
    import funasr.models.seaco_paraformer.model  # noqa: F401

    frontend = tables.frontend_classes.get(config["frontend"])(**config.get("frontend_conf", {}))
    kwargs = dict(config)
    kwargs.update(vocab_size=vocab_size, input_size=frontend.output_size())
    model_conf = dict(config.get("model_conf", {}))
    model_conf.update(kwargs)
    model_class = tables.model_classes.get(config["model"])
    if model_class is None:
        raise ValueError(f"funasr has no model class {config['model']!r}")
    torch.manual_seed(seed)
    model = model_class(**model_conf)
    model.eval()
    return model
