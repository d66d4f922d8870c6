"""One run per corpus at a time.

Local output: an advisory ``flock`` on ``OUT/<corpus>/.lock``: the kernel drops it when the
holding process dies, even by ``kill -9``, so a crashed run never leaves a stale lock behind.
The file holds who took it, for the refusal message.

Object store (``LeaseLock``): no kernel to drop a lock for a dead holder, so the lock is a
lease object ``OUT/<corpus>/.lock`` holding run id, host, pid and an expiry time:

- taking it is a conditional create (S3 ``If-None-Match: *``): of two runs starting at once
  exactly one PUT succeeds, the other is refused with the holder's details;
- the holder renews it every ``ttl/3`` seconds from a background thread, each renewal a
  PUT conditional on the ETag of its own last write (``If-Match``);
- a lease past its expiry belongs to a dead (or cut-off) run and may be taken over: the
  new run replaces it with a PUT conditional on the expired lease's ETag, so of two
  runs taking over at once exactly one wins;
- a holder whose renewal is refused (taken over) or that did not renew in time has lost the
  lease: ``check()`` then raises, and the ledger calls it before every commit, so the old
  run stops instead of committing beside the new one;
- release deletes the lease if it is still the one this run wrote.

Expiry compares the holder's clock with the taker's: keep the TTL well above clock skew.
Stores without ETag-conditional writes (fsspec backends other than s3fs) replace the lease
by check-then-write and read it back to verify the owner, with a small window where two
takers could both believe they won.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path, PurePath

import fsspec

from manifests.layout import CorpusLayout
from manifests.storage import StorageError, describe_error, put_bytes

log = logging.getLogger(__name__)


class CorpusLocked(RuntimeError):
    """Another run holds the corpus."""


class CorpusLock:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> "CorpusLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise CorpusLocked(
                f"corpus {self.path.parent.name!r} is being written by another run "
                f"({holder}); wait for it to finish or use another --corpus"
            ) from None
        os.ftruncate(fd, 0)
        info = {"run_id": self.run_id, "pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def check(self) -> None:
        """A flock is held until released or the process dies: nothing can take it away."""

    def __enter__(self) -> "CorpusLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
        return f"run {info.get('run_id')}, pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"
    except (OSError, ValueError):
        return "holder unknown"


class LeaseLock:
    """The corpus lock on an object store: a lease object with an expiry (see the module docstring)."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: PurePath | str, run_id: str, *,
                 ttl_s: float = 300.0, renew: bool = True) -> None:
        self.fs, self.path, self.run_id = fs, str(path), run_id
        self.ttl_s, self.renew = float(ttl_s), renew
        self.token = secrets.token_hex(8)  # tells this holder's lease from any other
        self.etag: str | None = None
        self.expires_at = 0.0
        self.lost: str | None = None
        self._since = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- taking and giving back ----------------------------------------------------------
    def acquire(self) -> "LeaseLock":
        self._since = time.time()
        body = self._body()
        try:
            self._written(put_bytes(self.fs, self.path, body, exclusive=True))
        except FileExistsError:
            holder, etag = self._read()
            if holder is not None and holder.get("expires_at", 0) > time.time():
                raise CorpusLocked(
                    f"corpus {PurePath(self.path).parent.name!r} is being written by another run "
                    f"({_describe(holder)}); wait for it to finish or use another --corpus"
                ) from None
            self._take_over(etag, holder)
        except OSError as exc:
            raise StorageError(f"cannot take the corpus lock {self.fs.unstrip_protocol(self.path)}: "
                               f"{describe_error(exc)}") from None
        self.lost = None
        if self.renew:
            self._stop.clear()
            self._thread = threading.Thread(target=self._renew_loop, name="corpus-lease", daemon=True)
            self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.etag is None:
            return
        try:
            holder, etag = self._read()
            if holder is not None and holder.get("token") == self.token and etag == self.etag:
                self.fs.rm_file(self.path)
        except OSError as exc:  # the lease expires by itself; a failed delete only delays the next run
            log.warning("could not delete the corpus lease %s: %s", self.path, exc)
        self.etag = None

    def check(self) -> None:
        """Raise CorpusLocked if this run may no longer write the corpus."""
        if self.lost is None and time.time() >= self.expires_at:
            self.lost = f"the lease expired at {_iso(self.expires_at)} without renewal"
        if self.lost is not None:
            raise CorpusLocked(f"this run lost the lock on corpus {PurePath(self.path).parent.name!r}: {self.lost}; "
                               f"stopping before the next commit")

    def __enter__(self) -> "LeaseLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- the lease object ----------------------------------------------------------------
    def _body(self) -> bytes:
        now = time.time()
        self._next_expiry = now + self.ttl_s
        info = {"run_id": self.run_id, "pid": os.getpid(), "host": socket.gethostname(), "token": self.token,
                "since": _iso(self._since), "renewed": _iso(now), "expires_at": self._next_expiry,
                "expires": _iso(self._next_expiry),
                "ttl_s": self.ttl_s}
        return json.dumps(info).encode()

    def _written(self, answer: dict | None) -> None:
        etag = (answer or {}).get("ETag")
        if etag is None:
            holder, etag = self._read()
            if holder is None or holder.get("token") != self.token:
                raise CorpusLocked(f"another run took the lease {self.path} at the same moment")
        self.etag = etag
        self.expires_at = self._next_expiry

    def _read(self) -> tuple[dict | None, str | None]:
        try:
            info = self.fs.info(self.path)
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None, None
        try:
            holder = json.loads(data.decode() or "{}")
        except ValueError:
            holder = {}
        return holder, info.get("ETag")

    def _take_over(self, etag: str | None, holder: dict | None) -> None:
        body = self._body()
        if etag is None:  # released in the meantime
            try:
                self._written(put_bytes(self.fs, self.path, body, exclusive=True))
            except FileExistsError:
                raise CorpusLocked(f"another run took the lease {self.path} at the same moment") from None
            return
        log.warning("taking over the expired corpus lease of %s", _describe(holder or {}))
        self._written(self._replace(body, etag))

    def _replace(self, body: bytes, etag: str) -> dict | None:
        """Overwrite the lease only if it is still the version ``etag`` (atomic on S3)."""
        if hasattr(self.fs, "call_s3") and hasattr(self.fs, "split_path"):
            bucket, key, _ = self.fs.split_path(self.path)
            try:
                return self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, IfMatch=etag)
            except OSError as exc:
                text = str(exc).lower()
                if "pre-condition" in text or "precondition" in text or "conditional" in text:  # 412, or 409 on a race
                    raise CorpusLocked(f"another run took the lease {self.path} at the same moment") from None
                raise
        # No conditional overwrite on this store: overwrite if still unchanged, then read back
        # (``_written`` checks that the lease now holds this run's token).
        if self._read()[1] != etag:
            raise CorpusLocked(f"another run took the lease {self.path} at the same moment")
        put_bytes(self.fs, self.path, body)
        return None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            body = self._body()
            try:
                self._written(self._replace(body, self.etag or ""))
            except CorpusLocked:
                self.lost = "the lease was taken over by another run"
                log.error("corpus lease %s: %s", self.path, self.lost)
                return
            except Exception as exc:  # noqa: BLE001 - a network hiccup: try again next round
                log.warning("could not renew the corpus lease %s: %s", self.path, exc)


def lock_corpus(layout: CorpusLayout, run_id: str, *, ttl_s: float = 300.0) -> CorpusLock | LeaseLock:
    """The corpus lock for ``layout``: a flock locally, a lease on an object store (not yet taken)."""
    if layout.is_local:
        return CorpusLock(Path(layout.lock_path), run_id)
    return LeaseLock(layout.fs, layout.lock_path, run_id, ttl_s=ttl_s)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _describe(info: dict) -> str:
    expires = f", lease expires {info.get('expires')}" if info.get("expires") else ""
    return f"run {info.get('run_id')}, pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}{expires}"
