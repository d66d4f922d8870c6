"""Content hash and size of each source, computed where the data is (a task, before the graph).

Objects in a store are streamed through fsspec and hashed on the way, never stored. A row
that carries its stat-cache entry (``cached_stamp``, ``cached_sha256``, ``cached_size``) and
whose object is unchanged (same stamp, ``manifests.stat_cache``) is not read at all.
"""

from __future__ import annotations

from typing import Any

from manifests.stat_cache import source_stamp
from manifests.storage import StorageConfig, describe_error, is_remote
from sources.discovery import fingerprint
from stages.base import Placement, RunContext, Stage
from stages.decode import DecodeSection


class FingerprintStage(Stage):
    name = "fingerprint"
    sections = {"decode": DecodeSection, "storage": StorageConfig}

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        self.storage = cfg.storage.model_dump()

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return Placement(cfg.decode.resources)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("path", "error", "cached_stamp", "cached_sha256", "cached_size")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("sha256", "size_bytes", "error", "stamp")

    def process_batch(self, rows: list[dict]) -> list[dict]:
        return [self.fingerprint_row(r) for r in rows]

    def fingerprint_row(self, row: dict) -> dict:
        out = dict(row, sha256=None, size_bytes=None, stamp=None)
        if row.get("error") or not row.get("path"):
            return out
        # Taken before the read: a file written while it is hashed gets a stamp that no longer
        # matches it, so the next run hashes it again.
        out["stamp"] = source_stamp(row["path"], self.storage)
        if out["stamp"] is not None and out["stamp"] == row.get("cached_stamp"):
            out["sha256"], out["size_bytes"] = row["cached_sha256"], row["cached_size"]
            return out
        try:
            out["sha256"], out["size_bytes"] = fingerprint(row["path"], storage=self.storage)
        except OSError as exc:
            if is_remote(row["path"]):
                out["error"] = f"cannot read the object: {describe_error(exc)}"
            else:
                out["error"] = f"cannot read the file: {exc.strerror or exc}"
        except Exception as exc:  # noqa: BLE001 - e.g. an unreachable endpoint: the source fails, the run goes on
            out["error"] = f"cannot read the object: {describe_error(exc)}"
        return out
