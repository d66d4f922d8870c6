"""Stage 1, decode: a source row in, the same row with mono float samples out (a CPU task).

A source that cannot be decoded keeps flowing with ``status='failed'`` and the reason, so
the ledger records it and the run goes on.

An object in a store (``s3://...``) is first streamed to a local temporary file, removed
when the decode is over whatever happens. Not piped into ffmpeg: probing and decoding
read the input twice, and containers such as MP4/M4A with the index at the end need a
seekable input; the copy costs one source's size of local disk per decode worker
(``storage.temp_dir`` says where).
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from typing import Iterator

import numpy as np

from audio_io.decode import DecodeError, decode
from manifests.storage import Storage, describe_error, local_copy
from pipeline.config import DecodeConfig


def decode_row(row: dict, cfg: DecodeConfig, storage: Storage = None) -> dict:
    out = dict(row)
    out.update(
        started_at=time.time(), status="ok", error=None, duration_s=None,
        container=None, codec=None, source_sample_rate=None, source_channels=None, warning=None,
        sample_rate=cfg.sample_rate, samples=np.zeros(0, dtype=np.float32),
    )
    try:
        if row.get("size_bytes") == 0:
            raise DecodeError("empty file (0 bytes)")
        with _readable(row["path"], storage) as path:
            audio = decode(path, cfg.sample_rate, non_finite=cfg.non_finite, timeout_s=cfg.timeout_s)
        out.update(
            container=audio.info.container, codec=audio.info.codec,
            source_sample_rate=audio.info.sample_rate, source_channels=audio.info.channels,
            duration_s=audio.duration_s, warning=audio.warning and audio.warning.replace(path, row["path"]),
        )
        if audio.non_finite_replaced:
            out["warning"] = f"{audio.non_finite_replaced} non-finite samples replaced by zero"
        if audio.duration_s < cfg.min_duration_s:
            raise DecodeError(f"too short: {audio.duration_s:.2f} s of audio, the minimum is {cfg.min_duration_s} s (decode.min_duration_s)")
        if cfg.max_duration_s is not None and audio.duration_s > cfg.max_duration_s:
            raise DecodeError(f"too long: {audio.duration_s:.0f} s of audio, the maximum is {cfg.max_duration_s} s (decode.max_duration_s)")
        out["samples"] = audio.samples
    except DecodeError as exc:
        out.update(status="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - any surprise becomes a failed row, not a dead job
        out.update(status="failed", error=f"unexpected decode error: {type(exc).__name__}: {exc}")
    return out


@contextmanager
def _readable(path: str, storage: Storage) -> Iterator[str]:
    """A local path for ``path``; an object is copied to a temporary file for the block."""
    with ExitStack() as stack:
        try:
            local = stack.enter_context(local_copy(path, storage, temp_dir=(storage or {}).get("temp_dir")))
        except Exception as exc:  # noqa: BLE001 - missing object, access denied, network
            raise DecodeError(f"cannot read the object: {describe_error(exc)}") from None
        try:
            yield local
        except DecodeError as exc:  # name the object, not the temporary copy
            raise DecodeError(str(exc).replace(local, path)) from None
