"""Turning the INPUT arguments of `refinery run` into a list of sources.

INPUT may be a file, a directory (searched recursively for media files), a glob, or
``@list.txt`` naming one URI or path per line (blank lines and ``#`` comments skipped,
relative paths taken from the list's folder). Files named explicitly are taken whatever
their extension, so a mislabelled file gets a clear failure in the ledger instead of
being ignored; directories and globs keep only media extensions.

Each of these may also be a URI: ``file://`` is a local path; ``s3://bucket/key``,
``gs://...`` (any fsspec store) name one object, or a prefix listed like a directory, or a
glob. The list file itself may be an object too. An object-store input that cannot be
listed (missing bucket or prefix, access denied) becomes a failed source with the reason,
not an error of the whole run; objects are read where they are (see ``fingerprint`` and
the decode stage).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import logging
import os
import stat
import posixpath
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from manifests.storage import Storage, describe_error, filesystem, is_remote, local_path, scheme
from sources.fetch import sidecar_path

log = logging.getLogger(__name__)

# What a folder or a glob takes as media (a file named explicitly is taken whatever its name).
# tests/test_discovery.py decodes a file of every extension here that this ffmpeg can write.
MEDIA_EXTENSIONS = frozenset(
    ".wav .wave .w64 .flac .mp3 .m4a .m4b .aac .ogg .oga .opus .webm .weba .mp4 .m4v .mkv .mka .mov .avi "
    ".wma .wmv .aif .aiff .aifc .amr .3gp .ac3 .eac3 .caf .ts .mpga .mp2 .au .snd .spx .sph .flv .wv .tta "
    ".voc .rm .rmvb .ra .ape .mpc .dts .gsm .dsf .tak .ogv .mts .m2ts".split()
)


class InputError(ValueError):
    """An INPUT argument that names nothing usable."""


class SourceRef(NamedTuple):  # a tuple: a million of them per run at scale
    uri: str  # what the user named, normalised (absolute path for local files, else the URI)
    path: str | None  # what to read: a local path or an object URI; None when unreadable
    error: str | None = None  # set when the source cannot be read at all


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_regular(mode: int) -> str | None:
    """Why a file of this ``st_mode`` cannot be a source (reading a FIFO or a device never ends,
    or blocks for ever), None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"not a regular file: {kind}"


def _irregular(path: str, mode: int) -> SourceRef:
    return SourceRef(uri=os.path.abspath(path), path=None, error=not_regular(mode))


def _local(path: Path | str, real_dirs: dict[str, str] | None = None, checked_link: bool = False) -> SourceRef:
    real = _realpath(str(path), real_dirs if real_dirs is not None else {}, checked_link)
    return SourceRef(uri=real, path=real)


def _realpath(path: str, real_dirs: dict[str, str], not_a_link: bool = False) -> str:
    """``os.path.realpath`` with each folder resolved once per discovery (``real_dirs``): a list
    of a million files in a thousand folders costs a thousand folder resolutions, not a million.
    ``not_a_link``: the caller's ``lstat`` showed the file itself is no symlink."""
    folder, name = os.path.split(path if path.startswith("/") else os.path.abspath(path))
    if name in ("", ".", "..") or "/." in folder or "//" in folder:
        return os.path.realpath(path)
    real_folder = real_dirs.get(folder)
    if real_folder is None:
        real_folder = real_dirs[folder] = os.path.realpath(folder)
    full = real_folder + "/" + name if real_folder != "/" else "/" + name
    return full if not_a_link or not os.path.islink(full) else os.path.realpath(full)


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTENSIONS and not path.name.startswith(".")


_URL_SCHEMES = ("http", "https", "ftp", "ytdl")  # fetched first: `refinery fetch`


def _from_uri(text: str, base: Path | str, real_dirs: dict[str, str] | None = None) -> SourceRef:
    """One entry of a list file: a path (relative to the list's folder) or a URI, never expanded."""
    if text.startswith("/") and not isinstance(base, str):  # the common case at scale: an absolute path
        try:
            mode = os.lstat(text).st_mode
            if stat.S_ISLNK(mode):
                mode = os.stat(text).st_mode  # the link's target
                is_link = True
            else:
                is_link = False
        except OSError:
            return SourceRef(uri=os.path.abspath(text), path=None, error="file not found")
        if not stat.S_ISREG(mode):
            return _irregular(text, mode)
        return _local(text, real_dirs, checked_link=not is_link)
    if is_remote(text):
        proto = scheme(text)
        if proto in _URL_SCHEMES:
            return SourceRef(uri=text, path=None,
                             error=f"'{proto}://' sources are downloaded first: see `refinery fetch`")
        return SourceRef(uri=text, path=text)
    if isinstance(base, str) and scheme(text) is None and not Path(text).is_absolute():
        return _from_uri(posixpath.join(base, text), Path.cwd())  # relative entry of a list in an object store
    path = local_path(text)
    if not path.is_absolute():
        path = Path(base) / path
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return SourceRef(uri=str(path), path=None, error="file not found")
    if not stat.S_ISREG(mode):
        return _irregular(str(path), mode)
    return _local(path, real_dirs)


def _read_list(item: str, storage: Storage) -> tuple[list[str], Path | str]:
    target = item[1:]
    try:
        if is_remote(target):
            fs, path = filesystem(target, storage)
            return fs.cat_file(path).decode("utf-8").splitlines(), target.rsplit("/", 1)[0]
        list_path = local_path(target)
        return list_path.read_text(encoding="utf-8").splitlines(), list_path.parent
    except (OSError, UnicodeDecodeError) as exc:
        why = describe_error(exc) if isinstance(exc, OSError) else str(exc)
        raise InputError(f"cannot read list file {target}: {why}") from None


def _remote(item: str, storage: Storage) -> list[SourceRef]:
    """An object, a prefix (listed like a directory, media extensions only) or a glob in a store."""
    proto = scheme(item)
    if proto in _URL_SCHEMES:
        return [_from_uri(item, Path.cwd())]
    try:
        fs, path = filesystem(item, storage)
        if glob.has_magic(path):
            found = fs.glob(path, detail=True)
            keys = [k for k, info in found.items() if info.get("type") == "file" and _is_media(PurePosixPath(k))]
        else:
            path = path.rstrip("/")
            try:
                info = fs.info(path)
            except FileNotFoundError:
                return [SourceRef(uri=item, path=None,
                                  error="not found: no such object, and no objects under this prefix")]
            if info.get("type") != "directory":
                return [SourceRef(uri=fs.unstrip_protocol(path), path=fs.unstrip_protocol(path))]
            keys = [k for k in fs.find(path)
                    if _is_media(PurePosixPath(k)) and not _hidden(PurePosixPath(k), PurePosixPath(path))]
    except ValueError as exc:  # no backend for the scheme
        return [SourceRef(uri=item, path=None, error=str(exc))]
    except Exception as exc:  # noqa: BLE001 - listing failed: the input fails, the run goes on
        return [SourceRef(uri=item, path=None, error=f"cannot list {item}: {describe_error(exc)}")]
    return [SourceRef(uri=fs.unstrip_protocol(k), path=fs.unstrip_protocol(k)) for k in sorted(keys)]


def discover(inputs: list[str], storage: Storage = None) -> list[SourceRef]:
    """Expand INPUT arguments into sources, in a stable order, each once."""
    found: list[SourceRef] = []
    real_dirs: dict[str, str] = {}
    for item in inputs:
        if item.startswith("@"):
            lines, base = _read_list(item, storage)
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#"):
                    found.append(_from_uri(line, base, real_dirs))
            continue
        if is_remote(item):
            found.extend(_remote(item, storage))
            continue
        if scheme(item) is not None:  # file://
            item = str(local_path(item))
        path = Path(item)
        if path.is_dir():
            found.extend(_scan(path, sorted(path.rglob("*")), real_dirs, root=path))
        elif path.is_file():
            found.append(_local(path, real_dirs))
        elif os.path.lexists(path) and not glob.has_magic(item):
            found.append(_from_uri(str(path.absolute()), Path.cwd(), real_dirs))  # a FIFO, a device: a failed row
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if not matches:
                raise InputError(f"input {item!r} matched no files")
            found.extend(_scan(Path(item), matches, real_dirs, root=None))
        else:
            raise InputError(f"input {item!r} is not a file, a directory, a glob or an @list file")
    seen: set[str] = set()
    unique = []
    for src in found:
        if src.uri not in seen:
            seen.add(src.uri)
            unique.append(src)
    return unique


def _scan(item: Path, entries: list[Path], real_dirs: dict[str, str], root: Path | None) -> list[SourceRef]:
    """The media files among a folder's (``root``) or a glob's entries: regular files with a media
    extension, not hidden under ``root``. A media-named FIFO or device becomes a failed source;
    what else was left out is logged, by reason, so that nothing is skipped without a word."""
    taken: list[SourceRef] = []
    skipped: Counter[str] = Counter()
    for p in entries:
        try:
            mode = os.stat(p).st_mode
        except OSError:
            skipped["unreadable or a broken link"] += 1
            continue
        if stat.S_ISDIR(mode):
            continue
        if root is not None and _hidden(p, root) and not _fetched(p, root):
            skipped["hidden (a name starting with '.')"] += 1
        elif p.suffix.lower() not in MEDIA_EXTENSIONS:
            skipped[f"extension {p.suffix.lower() or '(none)'} not taken as media"] += 1
        elif not stat.S_ISREG(mode):
            taken.append(_irregular(str(p), mode))
        else:
            taken.append(_local(p, real_dirs))
    if skipped:
        log.info("%s: left out %d file(s): %s (name a file, or list it in an @list file, to take it anyway)",
                 item, sum(skipped.values()), "; ".join(f"{n} {why}" for why, n in sorted(skipped.items())))
    return taken


def _hidden(path: PurePosixPath | Path, root: PurePosixPath | Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _fetched(path: Path, root: Path) -> bool:
    """A file `refinery fetch` saved (its sidecar is beside it) whose only hidden part is its own
    name: a video id may start with '.', and such a download is media like any other."""
    return not any(part.startswith(".") for part in path.relative_to(root).parent.parts) \
        and sidecar_path(path).is_file()


def fingerprint(path: str, chunk: int = 1 << 20, storage: Storage = None) -> tuple[str, int]:
    """SHA-256 of the content and its size in bytes; an object URI is streamed, never stored."""
    h = hashlib.sha256()
    size = 0
    if is_remote(path):
        fs, key = filesystem(path, storage)
        opener = fs.open(key, "rb", block_size=8 << 20, cache_type="readahead")
        chunk = 8 << 20
    else:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer for ever (the file may have
        # been swapped for one since discovery); the descriptor's own fstat says what it is.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        why = not_regular(os.fstat(fd).st_mode)
        if why:
            os.close(fd)
            raise OSError(errno.EINVAL, why)
        opener = os.fdopen(fd, "rb")
    with opener as fh:
        while block := fh.read(chunk):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size

