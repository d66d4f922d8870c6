"""One run per corpus at a time.

An advisory ``flock`` on ``OUT/<corpus>/.lock``: the kernel drops it when the holding
process dies, even by ``kill -9``, so a crashed run never leaves a stale lock behind.
The file holds who took it, for the refusal message.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path


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
