"""Deterministic identifiers: the same source and times always give the same ids."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, max_len: int = 40) -> str:
    ascii_text = text if text.isascii() else unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("_", ascii_text).strip("._-")
    return cleaned[:max_len] or "audio"


def recording_id(source_uri: str, content_sha256: str) -> str:
    """``<readable stem>-<12 hex of the content hash>``: stable when a file moves."""
    return f"{slug(_stem(source_uri))}-{content_sha256[:12]}"


def _stem(uri: str) -> str:
    """``PurePosixPath(uri.rstrip("/")).stem``, without building a path object (a million per rerun)."""
    text = uri.rstrip("/")
    name = text.rsplit("/", 1)[-1]
    if name in ("", ".", ".."):
        return PurePosixPath(text).stem
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def segment_id(recording: str, start: float, end: float) -> str:
    """``<recording_id>-<start ms>-<end ms>``; times are rounded to the millisecond."""
    return f"{recording}-{round(start * 1000):09d}-{round(end * 1000):09d}"


def file_sha256(path) -> str:
    """SHA-256 of a local file's bytes, streamed (model weights, caches)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def short_hash(text: str, n: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]
