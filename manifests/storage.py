"""Where files live: local paths and object-store URIs, behind one fsspec filesystem.

``filesystem(url, storage)`` gives ``(fs, path)``: a plain path or a ``file://`` URI gives
fsspec's local filesystem and an absolute path; ``s3://bucket/key``, ``gs://...`` give the
store's fsspec implementation (s3fs, gcsfs) and ``bucket/key``. pyarrow reads through the
same object (``pyarrow.dataset(..., filesystem=fs)``), so there is one abstraction for
listing, reading and writing everywhere.

Credentials and endpoints come from the standard environment of each process
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``,
``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``; ``GOOGLE_APPLICATION_CREDENTIALS``), and from
``storage``: the config's ``storage`` section as a plain mapping (endpoint_url, anon,
client_kwargs, options), which wins over the environment.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any, Iterator, Mapping
from urllib.parse import unquote, urlparse

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from pydantic import Field

from manifests.params import Params

Storage = Mapping[str, Any] | None


class StorageError(ValueError):
    """An output location that cannot be used (no access, no such bucket); the message says why."""

# What a driver hands to the Ray workers of a cluster it attaches to (see pipeline.run.ensure_ray).
FORWARDED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION",
                 "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")
_COLLAPSED = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):/(?!/)")  # str(Path("s3://b/k")) == "s3:/b/k"


def scheme(text: str) -> str | None:
    """The URI scheme of ``text`` ('s3', 'file', ...), None for a plain path (or a Windows drive)."""
    m = _SCHEME.match(text)
    return m.group(1).lower() if m else None


def is_remote(text: str | PurePath) -> bool:
    """True for object-store and other non-local URIs, False for paths and ``file://``."""
    if isinstance(text, str) and text.startswith("/") and not text.startswith("//"):
        return False  # an absolute local path, the common case (a million per rerun at scale)
    return scheme(as_url(text)) not in (None, "file", "local")


def as_url(value: str | PurePath) -> str:
    """A path or URI as text; repairs a URI that went through ``pathlib.Path`` (``s3:/b/k``)."""
    text = str(value)
    if isinstance(value, PurePath):
        m = _COLLAPSED.match(text)
        if m and m.group(1).lower() in fsspec.available_protocols():
            proto = m.group(1)
            rest = text[m.end():]
            return f"file:///{rest}" if proto.lower() == "file" else f"{proto}://{rest}"
    return text


def local_path(text: str | PurePath) -> Path:
    """The local path named by a plain path or a ``file://`` URI (not resolved)."""
    text = as_url(text)
    if scheme(text) in ("file", "local"):
        return Path(unquote(urlparse(text).path))
    return Path(text)


def normalise(value: str | PurePath) -> str:
    """The canonical text of an output or input location: absolute local path, or the URI."""
    text = as_url(value)
    if is_remote(text):
        return text.rstrip("/") if not text.endswith("://") else text
    return str(local_path(text).resolve())


def fs_options(protocol: str, storage: Storage) -> dict[str, Any]:
    """fsspec keyword arguments for ``protocol`` from the generic storage settings."""
    if protocol in ("file", "local"):
        return {}
    # Listings must be fresh: the ledger and the recovery decide by what is there now, and
    # workers write from other processes, past any cache of this one.
    opts: dict[str, Any] = {"use_listings_cache": False}
    if not storage:
        return opts
    endpoint, anon = storage.get("endpoint_url"), storage.get("anon")
    if protocol in ("s3", "s3a"):
        if endpoint:
            opts["endpoint_url"] = endpoint
        if anon:
            opts["anon"] = True
        if storage.get("client_kwargs"):
            opts["client_kwargs"] = dict(storage["client_kwargs"])
    elif protocol in ("gs", "gcs"):
        if endpoint:
            opts["endpoint_url"] = endpoint
        if anon:
            opts["token"] = "anon"
    opts.update(storage.get("options") or {})
    return opts


# Set once a remote store is opened in this process (see inspection.cli: exiting after a scan).
REMOTE_OPENED = False


def filesystem(url: str | PurePath, storage: Storage = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem holding ``url`` and the path of ``url`` on it (instances are cached by fsspec)."""
    text = as_url(url)
    if not is_remote(text):
        return LocalFileSystem(), str(local_path(text).absolute())
    proto = scheme(text) or ""
    global REMOTE_OPENED
    REMOTE_OPENED = True
    try:
        return url_to_fs(text, **fs_options(proto, storage))
    except ImportError as exc:
        raise ValueError(f"cannot open {text}: the fsspec backend for '{proto}://' is not installed ({exc})") from None


def is_local_fs(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed object-store (or file) access, for the ledger."""
    if isinstance(exc, FileNotFoundError):
        detail = str(exc.args[0]) if exc.args else ""
        return "not found (no such bucket)" if "bucket does not exist" in detail.lower() else "not found"
    if isinstance(exc, PermissionError):
        return f"access denied ({exc}); check the credentials (AWS_* environment or the storage config section)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def os_error_line(exc: OSError, *, redo: str = "run the same command again (nothing committed is lost)") -> str:
    """One line for an OSError met on the output (a full disk, a read-only or forbidden folder):
    what happened, where, and what to do; ``redo``: how to go on once it is fixed."""
    path = exc.filename
    if exc.errno in _NO_SPACE:
        at = f" while writing {path}" if path else ""
        return f"no space left on device{at}: free space and {redo}"
    if exc.errno == errno.EROFS:
        at = f": cannot write {path}" if path else ""
        return f"read-only file system{at}: the output must be writable (remount it, or use another), then {redo}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        at = f": {path}" if path else ""
        return f"permission denied{at}: fix the permissions (or use another output), then {redo}"
    if exc.errno == errno.ENAMETOOLONG:
        return f"file name too long: {path}" if path else "file name too long"
    text = " ".join((exc.strerror or str(exc) or type(exc).__name__).split())
    return f"{text}: {path}" if path else text


def put_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes, *, exclusive: bool = False) -> dict | None:
    """Write one object in a single request (a multipart upload above ~100 MB, equally all-or-nothing on S3).

    ``exclusive`` makes it a conditional create (``If-None-Match: *`` on S3): FileExistsError
    when the object is already there. Returns the store's answer where it gives one (S3: the ETag).
    """
    out = fs.pipe_file(path, data, mode="create" if exclusive else "overwrite")
    return out if isinstance(out, dict) else None


@contextmanager
def local_copy(url: str, storage: Storage = None, temp_dir: str | None = None) -> Iterator[str]:
    """A local file holding the object at ``url`` for the duration of the block, then removed.

    A local path is yielded as is. The copy keeps the object's extension, which helps
    ffmpeg's format guess for headerless formats.
    """
    if not is_remote(url):
        yield str(local_path(url))
        return
    fs, path = filesystem(url, storage)
    suffix = PurePath(path).suffix if len(PurePath(path).suffix) <= 8 else ""
    fd, local = tempfile.mkstemp(prefix="refinery-", suffix=suffix, dir=temp_dir)
    os.close(fd)
    try:
        fs.get_file(path, local)
        yield local
    finally:
        try:
            os.unlink(local)
        except FileNotFoundError:
            pass


def forwarded_env() -> dict[str, str]:
    """The storage variables of this process's environment that workers should see too."""
    return {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}


class StorageConfig(Params):
    """Object stores (s3://, gs://, any fsspec store) for INPUT arguments and --out.

    Credentials and endpoint come from the standard environment of every process
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE,
    AWS_ENDPOINT_URL, AWS_DEFAULT_REGION; GOOGLE_APPLICATION_CREDENTIALS); a run attaching
    to a Ray cluster forwards the AWS ones to its workers. What is set here wins over the
    environment and travels to the workers with the stage arguments. This section is saved
    in each run's config.yaml: keep secrets in the environment. Out of ``config_hash``:
    where the data lives never changes what is written.
    """

    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph, R2, moto); "
                                     "None: AWS_ENDPOINT_URL, else AWS itself")
    anon: bool = Field(False, description="unsigned requests, for public buckets")
    client_kwargs: dict[str, Any] = Field(default_factory=dict, description="botocore client arguments, e.g. region_name")
    options: dict[str, Any] = Field(default_factory=dict, description="further fsspec storage options, passed as is")
    lease_ttl_s: float = Field(300.0, gt=0, description="corpus lock lease on an object store: renewed every third "
                               "of this; a lease this old without renewal may be taken over by another run")
    temp_dir: str | None = Field(None, description="where decode workers copy an object before ffmpeg reads it; "
                                 "None: the system temp directory")
