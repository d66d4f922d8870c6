"""The ledger: one row per source per run, and the atomic commit that makes shards visible.

Commit protocol (the ledger commit file is the single commit point):

1. Workers write shards into ``_staging`` (complete files, never visible).
2. ``Ledger.commit`` writes the ledger rows, which name each shard's staged path and its
   final path, to a temporary file and renames it to ``commit-NNNNN.parquet``.
   From that rename on, the sources in it are done.
3. The staged shards are renamed to their final, visible paths.

A run killed before step 2 leaves only staged files and a temporary file: invisible, and
deleted by ``recover`` at the start of the next run, whose sources are then processed
again. A run killed during step 3 leaves committed shards in staging: ``recover`` moves
them to where the ledger says (roll forward). So a visible shard is always named by a
committed ledger row, no source is ever done twice, and the next run does exactly what
is missing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from manifests.layout import CorpusLayout
from manifests.schema import LEDGER_SCHEMA
from manifests.shards import write_parquet_atomic

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    rolled_forward: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = []
        if self.rolled_forward:
            parts.append(f"finished moving {len(self.rolled_forward)} committed shard(s) of an interrupted run")
        if self.discarded:
            parts.append(f"removed {len(self.discarded)} uncommitted file(s) left by an interrupted run")
        return "; ".join(parts) or "nothing to recover"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Ledger:
    def __init__(self, layout: CorpusLayout) -> None:
        self.layout = layout

    # ---- reading -----------------------------------------------------------------------
    def commit_files(self) -> list[Path]:
        if not self.layout.ledger_dir.is_dir():
            return []
        return sorted(p for p in self.layout.ledger_dir.glob("run=*/commit-*.parquet"))

    def read(self, columns: list[str] | None = None) -> pa.Table:
        files = self.commit_files()
        if not files:
            schema = LEDGER_SCHEMA if columns is None else pa.schema([LEDGER_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        dataset = pads.dataset([str(f) for f in files], schema=LEDGER_SCHEMA, format="parquet")
        return dataset.to_table(columns=columns)

    def index(self, config_hash: str) -> "LedgerIndex":
        table = self.read(["sha256", "config_hash", "status", "run_id", "source_uri", "error"])
        idx = LedgerIndex()
        for row in table.to_pylist():
            if row["config_hash"] != config_hash:
                continue
            if row["status"] == "done":
                idx.done[row["sha256"]] = row["run_id"]
            elif row["status"] == "failed":
                idx.failed[row["sha256"]] = row["error"] or "failed"
        for sha in idx.done:
            idx.failed.pop(sha, None)
        return idx

    # ---- writing -----------------------------------------------------------------------
    def commit(self, run_id: str, index: int, rows: list[dict]) -> Path:
        """Commit ledger rows, then make their shards visible. See the module docstring."""
        table = pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
        path = self.layout.ledger_commit_path(run_id, index)
        write_parquet_atomic(table, path)
        _fsync_dir(path.parent)
        self._move_shards(rows)
        return path

    def _move_shards(self, rows: list[dict]) -> list[str]:
        moved = []
        dirs = set()
        for row in rows:
            for staged, final in zip(row.get("staged_paths") or [], row.get("shard_paths") or []):
                src, dst = self.layout.abs(staged), self.layout.abs(final)
                if src.exists() and not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
                    dirs.add(dst.parent)
                    moved.append(final)
        for d in dirs:
            _fsync_dir(d)
        return moved

    def recover(self) -> RecoveryReport:
        """Roll committed moves forward, discard everything uncommitted. Hold the corpus lock."""
        report = RecoveryReport()
        committed = self.read(["staged_paths", "shard_paths"]).to_pylist() if self.commit_files() else []
        report.rolled_forward = self._move_shards(committed)
        referenced = {p for row in committed for p in (row["staged_paths"] or [])}
        staging = self.layout.staging_dir
        if staging.is_dir():
            for path in sorted(staging.rglob("*")):
                if path.is_file() and self.layout.rel(path) not in referenced:
                    path.unlink()
                    report.discarded.append(self.layout.rel(path))
        for tmp in list(self.layout.ledger_dir.glob("run=*/.*.tmp")) if self.layout.ledger_dir.is_dir() else []:
            tmp.unlink()
            report.discarded.append(self.layout.rel(tmp))
        for tmp in list(self.layout.segments_dir.glob("run=*/.*.tmp")) if self.layout.segments_dir.is_dir() else []:
            tmp.unlink()
            report.discarded.append(self.layout.rel(tmp))
        if report.rolled_forward or report.discarded:
            log.info("recovery: %s", report.describe())
        return report


@dataclass
class LedgerIndex:
    """What earlier runs under one config hash did, by content hash."""

    done: dict[str, str] = field(default_factory=dict)  # sha256 -> run_id
    failed: dict[str, str] = field(default_factory=dict)  # sha256 -> error
