"""Content hash and size of each source, computed where the data is (a Ray task)."""

from __future__ import annotations

from pipeline.sources import fingerprint


def fingerprint_row(row: dict) -> dict:
    out = dict(row, sha256=None, size_bytes=None)
    if row.get("error") or not row.get("path"):
        return out
    try:
        out["sha256"], out["size_bytes"] = fingerprint(row["path"])
    except OSError as exc:
        out["error"] = f"cannot read the file: {exc.strerror or exc}"
    return out
