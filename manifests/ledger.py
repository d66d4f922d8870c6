"""The ledger: one row per source per run, and the atomic commit that makes shards visible.

Commit protocol on a local output (the ledger commit file is the single commit point):

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

Commit protocol on an object store (``s3://``, ``gs://``: no rename, no directory fsync;
the ledger commit object is again the single commit point):

1. Workers write each shard as one object straight under its final key
   ``segments/run=<run_id>/part-<uuid>.parquet`` (one PUT, or a multipart upload for
   large ones: either way the object exists complete or not at all) and report the key
   only after the write returned. ``staged_paths`` equals ``shard_paths`` in these rows.
2. ``Ledger.commit``, called only once every shard of the batch was reported, writes
   ``ledger/run=<run_id>/commit-NNNNN.parquet`` as one object in one PUT, conditional on
   its absence (``If-None-Match: *``). S3 is strongly read-after-write consistent, so a
   reader lists either the whole commit or none of it. From that PUT on, the sources in
   it are done.
3. There is nothing to move. Visibility is defined by the ledger: a shard object is
   visible only when a committed ledger row names it, and readers of an object-store
   output take the shard list from the ledger (``Ledger.shard_files``,
   ``inspection.stats.read_segments``), never by listing ``segments/``.

A run killed before step 2 leaves shard objects no committed row names: invisible by the
rule above, and deleted by ``recover`` (under the corpus lease) at the start of the next
run. So again no source is done twice and the next run does exactly what is missing.
Before each commit the ledger calls its ``fence`` (the corpus lock's ``check``), so a run
that lost its lease (expired and taken over) stops instead of committing next to the new
holder.

Retiring (``manifests.retire``, ``refinery manifest retire``) adds ``retired`` rows in one more
commit file, ``ledger/run=_retired/commit-<time>-<id>.parquet`` (the commit point, as above),
each naming a done row by its ``recording_id`` and ``run_id``. That row's segments stay in
their shards but readers leave them out (``Ledger.live_filter``), and its content no longer
counts as done (``Ledger.index``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from manifests.layout import CorpusLayout
from manifests.schema import LEDGER_SCHEMA, RETIRED
from manifests.shards import parquet_bytes, parquet_problem, write_parquet_atomic
from manifests.storage import put_bytes

log = logging.getLogger(__name__)

# `refinery manifest compact` writes ledger/run=_compacted/commit-<time>-<id>.parquet; its footer
# lists (under this key) the commit files whose rows it holds, which readers then skip.
COMPACTED_DIR = "run=_compacted"
REPLACES_KEY = b"refinery.replaces"
# `refinery manifest retire` writes its rows to ledger/run=_retired/commit-<time>-<id>.parquet.
RETIRED_DIR = "run=_retired"


@dataclass(frozen=True)
class BadCommit:
    """A ledger commit file whose content cannot be read, and why."""

    path: PurePath
    reason: str


class UnreadableLedger(ValueError):
    """Commit files of the ledger cannot be read (damaged on disk): nothing can tell which sources
    they committed. ``refinery manifest repair`` moves them to quarantine (``Ledger.repair``)."""

    def __init__(self, layout: CorpusLayout, bad: list[BadCommit]) -> None:
        self.layout, self.bad = layout, list(bad)
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        super().__init__(f"ledger commit {layout.uri(bad[0].path)}{more} of corpus {layout.corpus!r} cannot be read "
                         f"({bad[0].reason}): run `refinery manifest repair {layout.url} --corpus {layout.corpus}` "
                         f"to move it to quarantine; the next run then processes its sources again")


@dataclass
class RecoveryReport:
    rolled_forward: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)  # where each unnamed shard file went
    quarantine_dir: str | None = None

    def describe(self) -> str:
        parts = []
        if self.quarantined:
            parts.append(f"moved {len(self.quarantined)} file(s) under the shard folder that no ledger row names "
                         f"to {self.quarantine_dir} (not part of the corpus)")
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
    def __init__(self, layout: CorpusLayout, fence: Callable[[], None] | None = None) -> None:
        self.layout = layout
        self.fence = fence  # raises when this process may no longer commit (lost corpus lease)

    # ---- reading -----------------------------------------------------------------------
    def commit_files(self) -> list[PurePath]:
        """The live commit files: every ``run=*/commit-*.parquet`` that no compaction replaced."""
        return self._commit_files()[0]

    def _commit_files(self, skip: frozenset[PurePath] = frozenset()) -> tuple[list[PurePath], list[PurePath]]:
        """(live, replaced-but-still-there) commit files, from one listing of the ledger (less ``skip``)."""
        files = [f for f in self.layout.files(self.layout.ledger_dir, "run=*/commit-*.parquet") if f not in skip]
        compactions = [f for f in files if PurePath(f).parent.name == COMPACTED_DIR]
        if not compactions:
            return files, []
        replaced = {r for f in compactions for r in self._replaced_by(f)}
        return ([f for f in files if self.layout.rel(f) not in replaced],
                [f for f in files if self.layout.rel(f) in replaced])

    def _replaced_by(self, compaction: PurePath) -> list[str]:
        """The commit files (relative paths) a compaction file holds the rows of, from its footer."""
        if self.layout.is_local:
            meta = pq.read_schema(str(compaction)).metadata or {}
        else:
            with self.layout.fs.open(str(compaction), "rb") as fh:
                meta = pq.read_schema(fh).metadata or {}
        return json.loads(meta.get(REPLACES_KEY, b"[]"))

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """Every committed row. UnreadableLedger when a commit file is damaged (a file that cannot
        be fetched, for want of access or network, raises as it is)."""
        try:
            return self._read(self.commit_files(), columns)
        except (pa.ArrowException, OSError) as exc:
            bad = self.unreadable_commits()
            if bad:
                raise UnreadableLedger(self.layout, bad) from exc
            raise

    def read_readable(self, columns: list[str] | None = None) -> tuple[pa.Table, list[BadCommit]]:
        """The rows of every commit file that can be read, and the files that cannot (for ``verify``)."""
        try:
            return self.read(columns), []
        except UnreadableLedger as exc:
            return self._read(self._commit_files(frozenset(b.path for b in exc.bad))[0], columns), exc.bad

    def unreadable_commits(self) -> list[BadCommit]:
        """Every commit file under ``ledger/`` (live, compacted, replaced) whose content is damaged."""
        out = []
        for f in self.layout.files(self.layout.ledger_dir, "run=*/commit-*.parquet"):
            why = parquet_problem(self.layout.fs, f, LEDGER_SCHEMA)
            if why is not None:
                out.append(BadCommit(f, why))
        return out

    def _read(self, files: list[PurePath], columns: list[str] | None) -> pa.Table:
        if not files:
            schema = LEDGER_SCHEMA if columns is None else pa.schema([LEDGER_SCHEMA.field(c) for c in columns])
            return schema.empty_table()
        if not self.layout.is_local:
            return _read_objects(self.layout, files, columns)
        dataset = pads.dataset([str(f) for f in files], schema=LEDGER_SCHEMA, format="parquet")
        return dataset.to_table(columns=columns)

    def shard_files(self) -> list[PurePath]:
        """The visible shards: those committed ledger rows name, on a local output as on an object
        store. Never a listing of ``segments/``: a copied file, or the shard of a commit that was
        lost, is no data (recovery moves such files to ``quarantine/``)."""
        named = pc.list_flatten(self.read(["shard_paths"]).column("shard_paths")).unique().to_pylist()
        return sorted(self.layout.abs(p) for p in named)

    def retired(self) -> pa.Table:
        """The (recording_id, run_id) of every done row that was retired (``manifests.retire``):
        the segments readers leave out."""
        table = self.read(["recording_id", "run_id", "status"])
        return table.filter(pc.equal(table.column("status"), RETIRED)).select(["recording_id", "run_id"])

    def live_filter(self) -> pc.Expression | None:
        """A dataset filter that keeps the live segments of ``shard_files()``: it leaves out the
        segments of retired recordings (their rows stay in the shards). None when nothing is retired.

            pyarrow.dataset.dataset(shards).to_table(filter=ledger.live_filter())
            datasets.load_dataset("parquet", data_files=shards, filters=ledger.live_filter())
        """
        retired = self.retired()
        if not retired.num_rows:
            return None
        by_run: dict[str, list[str]] = {}
        for rec, run in zip(retired.column("recording_id").to_pylist(), retired.column("run_id").to_pylist()):
            by_run.setdefault(run, []).append(rec)
        # is_in, not ==: false (never null) on a null cell, so the negation keeps such rows
        hidden = [pc.field("run_id").isin([run]) & pc.field("recording_id").isin(recs) for run, recs in by_run.items()]
        out = hidden[0]
        for h in hidden[1:]:
            out = out | h
        return ~out

    def index(self, config_hash: str) -> "LedgerIndex":
        """What earlier runs under ``config_hash`` did: five columns read, filtered in Arrow, kept
        as Arrow (a million-row ledger never becomes a million Python dicts or strings)."""
        table = self.read(["sha256", "config_hash", "status", "run_id", "error"])
        table = table.filter(pc.equal(table.column("config_hash"), config_hash))
        done = table.filter(pc.equal(table.column("status"), "done")).select(["sha256", "run_id"])
        retired = table.filter(pc.equal(table.column("status"), RETIRED))
        if retired.num_rows:  # a retired done row is no longer done: that content, back at a path, runs again
            done = done.filter(pc.invert(pc.is_in(_pair(done), value_set=_pair(retired))))
        failed = table.filter(pc.and_(pc.equal(table.column("status"), "failed"),
                                      pc.invert(pc.is_in(table.column("sha256"), value_set=done.column("sha256")))))
        failed = failed.select(["sha256", "error"]).set_column(
            1, "error", pc.fill_null(failed.column("error"), "failed"))
        return LedgerIndex.from_tables(done, failed)

    # ---- compaction --------------------------------------------------------------------
    def compact(self) -> "CompactionReport":
        """Fold every live commit file into one (hold the corpus lock). The new file names the files
        it replaces in its footer and becomes the commit point: readers skip a replaced file from the
        moment the compaction file exists, so a kill at any moment leaves the same rows, once each.
        The replaced files are deleted after (by this call, or by the next one if it was killed)."""
        t0 = time.monotonic()
        files, stale = self._commit_files()
        if len(files) <= 1:
            self._delete(stale)
            return CompactionReport(len(files), self.read(["status"]).num_rows if files else 0, 0,
                                    time.monotonic() - t0, len(stale))
        table = self.read()
        replaces = [self.layout.rel(f) for f in files]
        table = table.replace_schema_metadata({REPLACES_KEY: json.dumps(replaces)})
        target = self.layout.ledger_dir / COMPACTED_DIR / _timed_commit_name()
        if self.fence is not None:
            self.fence()
        self._write_at(target, table)
        _after_compaction_written()  # a test's fault hook: a kill right after the commit point
        self._delete([f for f in files if f != target] + stale)
        return CompactionReport(len(files), table.num_rows, 1, time.monotonic() - t0, len(stale))

    def _delete(self, files: list[PurePath]) -> None:
        if not files:
            return
        if self.layout.is_local:
            for f in files:
                Path(f).unlink(missing_ok=True)
            for d in {Path(f).parent for f in files}:
                if d.name != COMPACTED_DIR and d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
        else:
            self.layout.fs.rm([str(f) for f in files])

    # ---- writing -----------------------------------------------------------------------
    def commit(self, run_id: str, index: int, rows: list[dict]) -> Path:
        """Commit ledger rows, then make their shards visible. See the module docstring."""
        if self.fence is not None:
            self.fence()
        path = self._write_commit(run_id, index, pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA))
        if self.layout.is_local:
            self._move_shards(rows)
        return path

    def commit_table(self, run_id: str, index: int, table: pa.Table) -> Path:
        """Commit rows that name no shards (skipped and unreadable sources), built column-wise:
        a rerun over a million sources never holds a million row dicts."""
        if pc.sum(pc.list_value_length(table.column("staged_paths"))).as_py():
            raise ValueError("commit_table is for rows that name no shards; use commit")
        if self.fence is not None:
            self.fence()
        return self._write_commit(run_id, index, table.cast(LEDGER_SCHEMA))

    def commit_retired(self, table: pa.Table) -> PurePath:
        """Commit the ``retired`` rows ``manifests.retire`` built, all in one new commit file under
        ``ledger/run=_retired/`` (the commit point: a kill leaves all of them or none)."""
        wrong = pc.any(pc.not_equal(table.column("status"), RETIRED)).as_py()
        if wrong or pc.sum(pc.list_value_length(table.column("shard_paths"))).as_py():
            raise ValueError("commit_retired is for retired rows that name no shards")
        target = self.layout.ledger_dir / RETIRED_DIR / _timed_commit_name()
        if self.fence is not None:
            self.fence()
        self._write_at(target, table.cast(LEDGER_SCHEMA))
        return target

    def _write_commit(self, run_id: str, index: int, table: pa.Table) -> Path:
        path = self.layout.ledger_commit_path(run_id, index)
        self._write_at(path, table)
        return path

    def _write_at(self, path: PurePath, table: pa.Table) -> None:
        """Write one ledger file whole: a local rename (then the directory synced), or one conditional PUT."""
        if self.layout.is_local:
            write_parquet_atomic(table, Path(path))
            _fsync_dir(Path(path).parent)
        else:
            _put_commit(self.layout, path, parquet_bytes(table))

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

    def repair(self) -> tuple[list[BadCommit], list[str], RecoveryReport]:
        """Move every damaged commit file to ``quarantine/<time>/ledger/...``, then recover: the shards
        only those files named are now named by no row, and go to the same quarantine folder; their
        sources are not done any more, so the next run processes them again (once). Hold the corpus
        lock. The damaged files, where each went (relative paths), and the recovery report."""
        stamp = _stamp()
        bad = self.unreadable_commits()
        moved = []
        for b in bad:
            dst = self.layout.quarantine_dir / stamp / self.layout.rel(b.path)
            if self.layout.is_local:
                Path(dst).parent.mkdir(parents=True, exist_ok=True)
                os.replace(b.path, dst)
                _fsync_dir(Path(b.path).parent)
            else:
                self.layout.fs.mv(str(b.path), str(dst))
            moved.append(self.layout.rel(dst))
            log.info("repair: unreadable ledger commit %s (%s) moved to %s", self.layout.rel(b.path), b.reason,
                        self.layout.rel(dst))
        return bad, moved, self.recover(stamp)

    def recover(self, stamp: str | None = None) -> RecoveryReport:
        """Roll committed moves forward, discard everything uncommitted. Hold the corpus lock.
        ``stamp``: the name of the quarantine folder for unnamed shards (default: now)."""
        if not self.layout.is_local:
            return self._recover_in_place()
        report = RecoveryReport()
        committed = []
        if self.commit_files():
            table = self.read(["staged_paths", "shard_paths"])
            # Only rows that name shards (a skipped or failed row names none): at a million rows
            # per rerun, most rows of a big ledger are such rows.
            table = table.filter(pc.fill_null(pc.greater(pc.list_value_length(table.column("staged_paths")), 0), False))
            committed = table.to_pylist()
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
        self._clear_shard_folder({p for row in committed for p in (row["shard_paths"] or [])}, report, stamp)
        if report.rolled_forward or report.discarded or report.quarantined:
            log.info("recovery: %s", report.describe())
        return report

    def _clear_shard_folder(self, named: set[str], report: RecoveryReport, stamp: str | None = None) -> None:
        """One listing of the shard folder: a writer's temporary file is deleted; every other file
        no committed row names (a copied shard, one of a lost commit) is moved out, so that
        nothing reads it as data; it is kept, not deleted."""
        stray = []
        for path in self.layout.files(self.layout.data_dir):
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                Path(path).unlink()
                report.discarded.append(self.layout.rel(path))
            elif self.layout.rel(path) not in named:
                stray.append(path)
        if not stray:
            return
        target = Path(self.layout.quarantine_dir) / (stamp or _stamp())
        for path in stray:
            dst = target / self.layout.rel(path)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dst)
            report.quarantined.append(self.layout.rel(path))
        report.quarantine_dir = self.layout.rel(target)
        log.warning("recovery: %d file(s) under %s named by no ledger row moved to %s", len(stray),
                    self.layout.rel(self.layout.data_dir), report.quarantine_dir)

    def _recover_in_place(self) -> RecoveryReport:
        """Object store: delete every shard object that no committed ledger row names."""
        report = RecoveryReport()
        named = {p for row in self.read(["shard_paths"]).to_pylist() for p in row["shard_paths"] or []}
        orphans = [p for d in (self.layout.segments_dir, self.layout.staging_dir)
                   for p in self.layout.files(d) if self.layout.rel(p) not in named]
        if self.layout.kind == "dialogues":
            orphans += [p for p in self.layout.files(self.layout.dialogues_dir) if self.layout.rel(p) not in named]
        if orphans:
            self.layout.fs.rm([str(p) for p in orphans])
            report.discarded = [self.layout.rel(p) for p in orphans]
            log.info("recovery: %s", report.describe())
        return report


def _stamp() -> str:
    """A quarantine folder's name: the time (UTC, microseconds)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def _timed_commit_name() -> str:
    """The name of a commit file written outside a run (compaction, retire): time, then a random id."""
    return f"commit-{_stamp()}-{uuid.uuid4().hex[:6]}.parquet"


def _read_objects(layout: CorpusLayout, files: list[PurePath], columns: list[str] | None) -> pa.Table:
    """Commit objects fetched in concurrent batches (one GET each, where a dataset would also
    send a HEAD per object in turn), each brought to the current ledger schema."""
    blobs = layout.fs.cat([str(f) for f in files])
    fields = [LEDGER_SCHEMA.field(c) for c in columns] if columns else list(LEDGER_SCHEMA)
    tables = []
    for f in files:
        part = pq.read_table(pa.BufferReader(blobs[str(f)]))
        tables.append(pa.table({fl.name: part.column(fl.name).cast(fl.type) if fl.name in part.column_names
                                else pa.nulls(part.num_rows, fl.type) for fl in fields}, schema=pa.schema(fields)))
    return pa.concat_tables(tables)


def _put_commit(layout: CorpusLayout, path: PurePath, data: bytes) -> None:
    """The commit point on an object store: one conditional PUT of the whole commit object."""
    try:
        put_bytes(layout.fs, str(path), data, exclusive=True)
    except FileExistsError:
        # A retried PUT whose first attempt did land reads back the same bytes: committed.
        # Anything else means two writers used one commit name, which the corpus lock excludes.
        if layout.fs.cat_file(str(path)) != data:
            raise RuntimeError(f"ledger commit {layout.uri(path)} exists already with other content; "
                               f"is another run writing this corpus?") from None


def _after_compaction_written() -> None:
    """Nothing: tests replace it to kill a compaction between its commit point and its cleanup."""


@dataclass
class CompactionReport:
    files_before: int
    rows: int
    files_written: int
    seconds: float
    leftovers_removed: int = 0

    def describe(self) -> str:
        if not self.files_written:
            extra = f"; removed {self.leftovers_removed} file(s) an interrupted compaction replaced" \
                if self.leftovers_removed else ""
            return f"nothing to compact: {self.files_before} commit file(s), {self.rows} row(s){extra}"
        return (f"compacted {self.files_before} commit files ({self.rows} ledger rows) into 1 "
                f"in {self.seconds:.1f} s")


class LedgerIndex:
    """What earlier runs under one config hash did, by content hash: the done (sha256, run_id)
    and failed (sha256, error) rows as Arrow columns, looked up many sources at a time."""

    def __init__(self, done: dict[str, str] | None = None, failed: dict[str, str] | None = None) -> None:
        done, failed = done or {}, failed or {}
        self._done = pa.table({"sha256": pa.array(list(done), pa.string()),
                               "run_id": pa.array(list(done.values()), pa.string())})
        self._failed = pa.table({"sha256": pa.array(list(failed), pa.string()),
                                 "error": pa.array(list(failed.values()), pa.string())})

    @classmethod
    def from_tables(cls, done: pa.Table, failed: pa.Table) -> "LedgerIndex":
        idx = cls()
        # A hash done (or failed) by several runs: the last row read wins, as in a dict.
        idx._done, idx._failed = _last_per_sha(done), _last_per_sha(failed)
        return idx

    @property
    def done(self) -> dict[str, str]:
        """sha256 -> run_id (small ledgers, tests)."""
        return dict(zip(self._done.column("sha256").to_pylist(), self._done.column("run_id").to_pylist()))

    @property
    def failed(self) -> dict[str, str]:
        """sha256 -> error of hashes that failed and were never done."""
        return dict(zip(self._failed.column("sha256").to_pylist(), self._failed.column("error").to_pylist()))

    def lookup(self, shas: list[str | None]) -> tuple[list[str | None], list[str | None]]:
        """For each hash: the run that did it, and the error it failed with (None where neither)."""
        query = pa.array(shas, pa.string())
        done = pc.take(self._done.column("run_id"), pc.index_in(query, value_set=self._done.column("sha256")))
        failed = pc.take(self._failed.column("error"), pc.index_in(query, value_set=self._failed.column("sha256")))
        return done.to_pylist(), failed.to_pylist()


def _pair(table: pa.Table) -> pa.Array:
    """One key per row of its ``sha256`` and ``run_id`` (a done row and the retired row naming it)."""
    return pc.binary_join_element_wise(table.column("sha256"), table.column("run_id"), "\x1f")


def _last_per_sha(table: pa.Table) -> pa.Table:
    if table.num_rows < 2:
        return table
    reversed_ = table.take(pa.array(range(table.num_rows - 1, -1, -1)))  # index_in finds the first
    first = pc.index_in(reversed_.column("sha256"), value_set=reversed_.column("sha256"))
    return reversed_.filter(pc.equal(first, pa.array(range(table.num_rows))))
