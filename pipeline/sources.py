"""Turning the INPUT arguments of `refinery run` into a list of sources.

INPUT may be a file, a directory (searched recursively for media files), a glob, or
``@list.txt`` naming one URI or path per line (blank lines and ``#`` comments skipped,
relative paths taken from the list's folder). Files named explicitly are taken whatever
their extension, so a mislabelled file gets a clear failure in the ledger instead of
being ignored; directories and globs keep only media extensions.
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

MEDIA_EXTENSIONS = frozenset(
    ".wav .wave .flac .mp3 .m4a .m4b .aac .ogg .oga .opus .webm .weba .mp4 .m4v .mkv .mka .mov .avi "
    ".wma .wmv .aif .aiff .aifc .amr .3gp .ac3 .caf .ts .mpga .mp2 .au .snd .spx .sph .flv".split()
)


class InputError(ValueError):
    """An INPUT argument that names nothing usable."""


@dataclass(frozen=True)
class SourceRef:
    uri: str  # what the user named, normalised (absolute path for local files)
    path: str | None  # local path to read, None for a scheme we cannot read yet
    error: str | None = None  # set when the source cannot be read at all


def _local(path: Path) -> SourceRef:
    return SourceRef(uri=str(path.resolve()), path=str(path.resolve()))


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTENSIONS and not path.name.startswith(".")


def _from_uri(text: str, base: Path) -> SourceRef:
    parsed = urlparse(text)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and text[1:3] in (":\\", ":/")):
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(text)
        if not path.is_absolute():
            path = base / path
        if not path.exists():
            return SourceRef(uri=str(path), path=None, error="file not found")
        return _local(path)
    return SourceRef(uri=text, path=None, error=f"'{parsed.scheme}://' sources are not supported yet (object stores and URLs: see `refinery fetch`)")


def discover(inputs: list[str]) -> list[SourceRef]:
    """Expand INPUT arguments into sources, in a stable order, each once."""
    found: list[SourceRef] = []
    for item in inputs:
        if item.startswith("@"):
            list_path = Path(item[1:])
            try:
                lines = list_path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise InputError(f"cannot read list file {list_path}: {exc.strerror}") from None
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#"):
                    found.append(_from_uri(line, list_path.parent))
            continue
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _is_media(p) and not _hidden(p, path))
            found.extend(_local(p) for p in files)
        elif path.is_file():
            found.append(_local(path))
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            found.extend(_local(p) for p in matches if p.is_file() and _is_media(p))
        elif "://" in item:
            found.append(_from_uri(item, Path.cwd()))
        else:
            raise InputError(f"input {item!r} is not a file, a directory, a glob or an @list file")
    seen: set[str] = set()
    unique = []
    for src in found:
        if src.uri not in seen:
            seen.add(src.uri)
            unique.append(src)
    return unique


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def fingerprint(path: str, chunk: int = 1 << 20) -> tuple[str, int]:
    """SHA-256 of the content and its size in bytes."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size

