"""Content hash and size of each source, computed where the data is (a Ray task).

Objects in a store are streamed through fsspec and hashed on the way, never stored.
"""

from __future__ import annotations

from manifests.storage import Storage, describe_error, is_remote
from pipeline.sources import fingerprint


def fingerprint_row(row: dict, storage: Storage = None) -> dict:
    out = dict(row, sha256=None, size_bytes=None)
    if row.get("error") or not row.get("path"):
        return out
    try:
        out["sha256"], out["size_bytes"] = fingerprint(row["path"], storage=storage)
    except OSError as exc:
        if is_remote(row["path"]):
            out["error"] = f"cannot read the object: {describe_error(exc)}"
        else:
            out["error"] = f"cannot read the file: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - e.g. an unreachable endpoint: the source fails, the run goes on
        out["error"] = f"cannot read the object: {describe_error(exc)}"
    return out
