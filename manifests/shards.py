"""Writing segment rows into size-bounded Parquet shards that are not visible yet.

A write never makes anything visible. On a local output shards land under ``_staging``
(complete files only: written to a ``.tmp`` name, flushed, then renamed) and are moved to
``segments/`` by the ledger commit that names them. On an object store each shard is one
object written in one request straight under ``segments/run=<run_id>/part-<uuid>.parquet``
(an object is never seen half-written), visible once a committed ledger row names it (see
``manifests.ledger``).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Callable, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.layout import CorpusLayout
from manifests.schema import DIALOGUE_SCHEMA, SEGMENT_SCHEMA, segment_schema_with_hf_metadata, with_hf_metadata
from manifests.storage import put_bytes


@dataclass(frozen=True)
class ShardLimits:
    max_rows: int
    max_bytes: int


def _row_bytes(row: dict) -> int:
    size = 256  # ids, times and text, roughly
    for col in ("audio", "audio_enhanced"):
        cell = row.get(col)
        if cell and cell.get("bytes"):
            size += len(cell["bytes"])
    return size


def plan_shards(rows: Sequence[dict], limits: ShardLimits) -> list[list[int]]:
    """Split row indices into consecutive groups within the row and byte limits.

    A single row larger than ``max_bytes`` still gets a shard of its own.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for i, row in enumerate(rows):
        b = _row_bytes(row)
        if current and (len(current) >= limits.max_rows or current_bytes + b > limits.max_bytes):
            groups.append(current)
            current, current_bytes = [], 0
        current.append(i)
        current_bytes += b
    if current:
        groups.append(current)
    return groups


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that ``path`` is either absent or complete.

    On failure (a full disk, say) the temporary file is removed and the OSError names ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            _write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno is None or exc.filename == str(path):
            raise
        # a write that fails mid-file (ENOSPC) names no file: say which one it was
        raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc


def _write_table(table: pa.Table, sink) -> None:
    # Audio bytes are FLAC already; zstd pays off on ids, text and word lists.
    pq.write_table(table, sink, compression="zstd", row_group_size=256)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = pa.BufferOutputStream()
    _write_table(table, buf)
    return buf.getvalue().to_pybytes()


def write_parquet(layout: CorpusLayout, table: pa.Table, path, *, exclusive: bool = False) -> None:
    """Write ``table`` at ``path`` of ``layout``: atomically by rename locally, as one object on a store."""
    if layout.is_local:
        write_parquet_atomic(table, Path(path))
    else:
        put_bytes(layout.fs, str(path), parquet_bytes(table), exclusive=exclusive)


def segments_table(rows: Iterable[dict]) -> pa.Table:
    table = pa.Table.from_pylist(list(rows), schema=SEGMENT_SCHEMA)
    return table.replace_schema_metadata(segment_schema_with_hf_metadata().metadata)


def dialogues_table(rows: Iterable[dict]) -> pa.Table:
    """Dialogue-turn rows (``DIALOGUE_SCHEMA``), with `datasets` features so ``audio`` loads as Audio."""
    table = pa.Table.from_pylist(list(rows), schema=DIALOGUE_SCHEMA)
    return table.replace_schema_metadata(with_hf_metadata(DIALOGUE_SCHEMA).metadata)


def write_staged_shards(rows: Sequence[dict], staging_dir: Path, limits: ShardLimits,
                        table_of: Callable[[Iterable[dict]], pa.Table] = segments_table) -> list[tuple[Path, list[int]]]:
    """Write ``rows`` into staged shards; return each shard's path and the row indices in it."""
    out: list[tuple[Path, list[int]]] = []
    try:
        for group in plan_shards(rows, limits):
            path = Path(staging_dir) / f"{uuid.uuid4().hex}.parquet"
            write_parquet_atomic(table_of(rows[i] for i in group), path)
            out.append((path, group))
    except OSError:
        for path, _ in out:  # uncommitted, of no use now: give the space back
            path.unlink(missing_ok=True)
        raise
    return out


def write_shards(rows: Sequence[dict], layout: CorpusLayout, run_id: str, limits: ShardLimits,
                 table_of: Callable[[Iterable[dict]], pa.Table] = segments_table) -> list[tuple[PurePath, list[int]]]:
    """Write ``rows`` into not-yet-visible shards of ``run_id``: staged locally, in place on an object store.
    ``table_of`` builds a shard's table (segment rows by default; ``dialogues_table`` for turns)."""
    if not layout.writes_in_place:
        return write_staged_shards(rows, Path(layout.staging_run_dir(run_id)), limits, table_of)
    out: list[tuple[PurePath, list[int]]] = []
    try:
        for group in plan_shards(rows, limits):
            path = layout.data_dir / f"run={run_id}" / f"part-{uuid.uuid4().hex}.parquet"
            write_parquet(layout, table_of(rows[i] for i in group), path)
            out.append((path, group))
    except OSError:
        try:  # named by no commit: invisible either way, and recovery would delete them
            if out:
                layout.fs.rm([str(p) for p, _ in out])
        except OSError:
            pass
        raise
    return out


# ---- a shard write that failed for want of space or access -----------------------------------
# A failed write of a batch's shards is the output's fault, not its sources': the writer puts
# these fields on the batch's rows (nothing is raised on the worker), and the driver, which
# commits, stops the run with the error (``raise_write_error``) instead of failing the sources.
WRITE_ERROR_FIELDS = ("write_errno", "write_error", "write_path")


def write_error_fields(exc: OSError) -> dict:
    """The fields a writer puts on each row of a batch whose shards could not be written."""
    return {"write_errno": exc.errno, "write_error": exc.strerror or str(exc),
            "write_path": None if exc.filename is None else str(exc.filename)}


def raise_write_error(row: dict) -> None:
    """Raise the OSError a writer reported on ``row`` (``write_error_fields``); nothing if none."""
    if row.get("write_error"):
        raise OSError(row.get("write_errno"), row["write_error"], row.get("write_path"))


# ---- reading ---------------------------------------------------------------------------------
def parquet_problem(fs, path: PurePath | str, schema: pa.Schema | None = None,
                    columns: list[str] | None = None) -> str | None:
    """Why the Parquet file at ``path`` (on fsspec ``fs``) cannot be read, or None when it can.

    Only damage counts: the bytes are fetched first, and an error doing so (permission, network,
    a vanished file) is raised, not reported. ``schema``: the columns of it the file has must
    cast to their types there; ``columns``: read only these (default: all)."""
    data = fs.cat_file(str(path))
    try:
        table = pq.read_table(pa.BufferReader(data), columns=columns)
        for f in schema or []:
            if f.name in table.column_names:
                table.column(f.name).cast(f.type)
    except Exception as exc:  # noqa: BLE001 - pyarrow reports damage as ArrowInvalid, OSError, ...
        return arrow_reason(exc)
    return None


def arrow_reason(exc: BaseException) -> str:
    """A pyarrow read error on one short line, without the path it repeats."""
    text = " ".join(str(exc).split())
    if text.startswith("Could not open Parquet input source"):
        text = text.split("': ", 1)[-1]
    text = text.split(". ", 1)[0].rstrip(".")  # the first sentence says it
    return (text[:197] + "...") if len(text) > 200 else text or type(exc).__name__


def raise_unreadable_shard(layout: CorpusLayout, files: Iterable[PurePath | str], columns: list[str] | None = None) -> None:
    """After a read of ``files`` failed: UnreadableShard for the first of them that is damaged,
    missing or not readable; nothing when each reads on its own (the caller raises its error)."""
    for f in files:
        try:
            why = parquet_problem(layout.fs, f, columns=columns)
        except FileNotFoundError:
            why = "it is missing"
        except OSError as exc:
            why = " ".join((exc.strerror or str(exc)).split())
        if why is not None:
            raise UnreadableShard(layout, f, why)


class UnreadableShard(ValueError):
    """A shard that a committed ledger row names cannot be read (damaged on disk)."""

    def __init__(self, layout: CorpusLayout, path: PurePath | str, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"shard {layout.uri(path)} of corpus {layout.corpus!r} cannot be read ({reason}): "
                         f"`refinery manifest verify {layout.url} --corpus {layout.corpus}` lists every damaged file")
