"""SQL over what runs wrote: DuckDB views on the segment shards, the ledger and the runs.

    segments   visible shards of every (or one) segment corpus, less the segments of retired
               recordings (``Ledger.live_filter``); audio columns only when asked for
    dialogues  visible shards of every (or one) dialogue corpus (``refinery synth run``): one
               row per turn; ``audio`` only when asked for
    ledger     every committed ledger row
    runs       one row per run: its summary.json, completed from the ledger for runs
               that have none (killed, or still running)

The segment and ledger views are pyarrow datasets registered with DuckDB: DuckDB scans
them batch by batch, with column projection and filter pushdown, so a corpus larger
than memory works (nothing is read until a query runs, and then only what it needs).

User SQL (``refinery manifest query``, ``export --where``) sees these views and nothing else:
once they are registered the connection is locked down (no file access, no extensions, no
SET), and a ``--where`` must be one SQL expression (``check_where``).
"""

from __future__ import annotations

import base64
import csv
import json
import math
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path, PurePath
from typing import IO, Iterable, Iterator

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from manifests.layout import CorpusLayout, corpora
from manifests.ledger import Ledger
from manifests.schema import AUDIO_COLUMNS, DIALOGUE_SCHEMA, LEDGER_SCHEMA, RETIRED, SEGMENT_SCHEMA

RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("corpus", pa.string()),
        ("config_hash", pa.string()),
        ("started_at", pa.timestamp("ms", tz="UTC")),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
        ("complete", pa.bool_()),  # summary.json written: the run finished
        ("sources", pa.int64()),
        ("done", pa.int64()),
        ("failed", pa.int64()),
        ("skipped", pa.int64()),
        ("segments", pa.int64()),
        ("segments_kept", pa.int64()),
        ("audio_seconds", pa.float64()),
        ("kept_seconds", pa.float64()),
        ("wall_seconds", pa.float64()),
        ("throughput", pa.float64()),  # seconds of audio per second of wall time
    ]
)


class ManifestError(ValueError):
    """Nothing to read where the caller pointed (no such corpus, empty output directory)."""


class RefusedSQL(ValueError):
    """User SQL refused before it runs: a --where that is not one SQL expression."""


def select_corpora(out_dir: str | Path, corpus: str | None = None) -> list[str]:
    """The corpora to read: all under OUT, or the one named. Raises ManifestError if none."""
    found = corpora(out_dir)
    if corpus is not None:
        if corpus not in found:
            raise ManifestError(f"no corpus {corpus!r} under {out_dir} (found: {', '.join(found) or 'none'})")
        return [corpus]
    if not found:
        raise ManifestError(f"no corpus under {out_dir}: no <corpus>/ledger directory there (has a run committed anything?)")
    return found


def locked_corpora(out_dir: str | Path, corpus: str | None, purpose: str):
    """(name, layout, lock) of each corpus ``select_corpora`` names, each held under its corpus lock
    (holder ``<purpose>-<time>``) while the caller works on it. Raises ``CorpusLocked`` when a run holds one."""
    from datetime import datetime, timezone

    from manifests.lock import lock_corpus

    for name in select_corpora(out_dir, corpus):
        layout = CorpusLayout(out_dir, name)
        with lock_corpus(layout, f"{purpose}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}") as lock:
            yield name, layout, lock


def shard_files(layout: CorpusLayout) -> list[PurePath]:
    """Visible segment shards of one corpus, in order (paths on ``layout.fs``)."""
    return Ledger(layout).shard_files()


def segment_schema(include_audio: bool = False) -> pa.Schema:
    if include_audio:
        return SEGMENT_SCHEMA
    return pa.schema([f for f in SEGMENT_SCHEMA if f.name not in AUDIO_COLUMNS])


def _dataset(layouts: list[CorpusLayout], files: list[str], schema: pa.Schema, live=None) -> pads.Dataset:
    if not files:
        return pads.dataset(schema.empty_table())
    # a dataset schema without some file columns reads only the others (the audio stays on disk)
    dataset = pads.dataset(files, schema=schema, format="parquet", filesystem=layouts[0].arrow_filesystem)
    # a filtered dataset stays lazy: DuckDB's scans get this filter and their own pushed down
    return dataset if live is None else dataset.filter(live)


def dialogue_schema(include_audio: bool = False) -> pa.Schema:
    if include_audio:
        return DIALOGUE_SCHEMA
    return pa.schema([f for f in DIALOGUE_SCHEMA if f.name not in AUDIO_COLUMNS])


def _layouts(out_dir: str | Path, names: list[str], kind: str) -> list[CorpusLayout]:
    layouts = [CorpusLayout(out_dir, name) for name in names]
    return [layout for layout in layouts if layout.kind == kind]


def segments_dataset(out_dir: str | Path, names: list[str], include_audio: bool = False) -> pads.Dataset:
    """A lazy dataset over the visible shards of the named segment corpora (empty if there are none),
    less the segments of retired recordings; dialogue corpora among ``names`` are left out (see
    ``dialogues_dataset``)."""
    layouts = _layouts(out_dir, names, "segments")
    files = [str(p) for layout in layouts for p in shard_files(layout)]
    return _dataset(layouts, files, segment_schema(include_audio), live_filter(layouts))


def live_filter(layouts: list[CorpusLayout]):
    """One filter for the segments of several corpora: each corpus's ``Ledger.live_filter``, None
    when nothing is retired (a retired recording's run belongs to one corpus, hence the corpus test)."""
    import pyarrow.compute as pc

    parts = [(layout.corpus, Ledger(layout).live_filter()) for layout in layouts]
    parts = [(name, f) for name, f in parts if f is not None]
    if not parts:
        return None
    out = None
    for name, f in parts:
        hidden = pc.field("corpus").isin([name]) & ~f
        out = hidden if out is None else out | hidden
    return ~out


def dialogues_dataset(out_dir: str | Path, names: list[str], include_audio: bool = False) -> pads.Dataset:
    """A lazy dataset over the visible turn shards of the named dialogue corpora (empty if there are none)."""
    layouts = _layouts(out_dir, names, "dialogues")
    files = [str(p) for layout in layouts for p in shard_files(layout)]
    return _dataset(layouts, files, dialogue_schema(include_audio))


def ledger_dataset(out_dir: str | Path, names: list[str]) -> pads.Dataset:
    """A lazy dataset over the committed ledger rows of the named corpora."""
    layouts = [CorpusLayout(out_dir, name) for name in names]
    files = [str(p) for layout in layouts for p in Ledger(layout).commit_files()]
    return _dataset(layouts, files, LEDGER_SCHEMA)


def _ts(value) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)


def _run_start_from_id(run_id: str) -> datetime | None:
    try:
        return datetime.strptime(run_id.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def read_text(layout: CorpusLayout, path: PurePath) -> str | None:
    """A small file of the layout (run config, summary) as text, None if absent."""
    try:
        return layout.fs.cat_file(str(path)).decode()
    except FileNotFoundError:
        return None


def run_ids(layout: CorpusLayout) -> set[str]:
    """Runs that left a config.yaml or summary.json under runs/."""
    return {layout.rel(p).split("/")[1] for p in layout.files(layout.runs_dir, "*/*")
            if PurePath(p).name in ("config.yaml", "summary.json")}


def run_rows(out_dir: str | Path, corpus: str) -> list[dict]:
    """One dict per run of a corpus (RUNS_SCHEMA keys), oldest first."""
    layout = CorpusLayout(out_dir, corpus)
    cols = ["run_id", "config_hash", "status", "duration_s", "segments", "segments_kept", "kept_seconds",
            "started_at", "finished_at"]
    by_run: dict[str, list[dict]] = defaultdict(list)
    for r in Ledger(layout).read(cols).to_pylist():
        if r["status"] != RETIRED:  # a retired row names the run of the row it retires; it is no work of that run
            by_run[r["run_id"]].append(r)
    out = []
    for run_id in set(by_run) | run_ids(layout):
        rows = by_run.get(run_id, [])
        summary = json.loads(read_text(layout, layout.run_dir(run_id) / "summary.json") or "{}")
        config_hash = summary.get("config_hash") or next((r["config_hash"] for r in rows), None)
        if not config_hash:
            first = (read_text(layout, layout.run_dir(run_id) / "config.yaml") or "").split("\n", 1)[0]
            if first.startswith("# config_hash:"):
                config_hash = first.split(":", 1)[1].strip()
        starts = [_ts(r["started_at"]) for r in rows if r["started_at"] is not None]
        ends = [_ts(r["finished_at"]) for r in rows if r["finished_at"] is not None]
        started = _run_start_from_id(run_id) or (min(starts) if starts else None)
        if starts and started and min(starts) < started:
            started = min(starts)
        processed = [r for r in rows if r["status"] != "skipped"]
        row = {
            "run_id": run_id,
            "corpus": corpus,
            "config_hash": config_hash,
            "started_at": started,
            "finished_at": max(ends) if ends else None,
            "complete": bool(summary),
            "sources": summary.get("sources", len(rows)),
            "done": summary.get("done", sum(r["status"] == "done" for r in rows)),
            "failed": summary.get("failed", sum(r["status"] == "failed" for r in rows)),
            "skipped": summary.get("skipped", sum(r["status"] == "skipped" for r in rows)),
            "segments": summary.get("segments", sum(r["segments"] or 0 for r in rows)),
            "segments_kept": summary.get("segments_kept", sum(r["segments_kept"] or 0 for r in rows)),
            "audio_seconds": summary.get("audio_seconds", sum(r["duration_s"] or 0.0 for r in processed)),
            "kept_seconds": summary.get("kept_seconds", sum(r["kept_seconds"] or 0.0 for r in rows)),
            "wall_seconds": summary.get("wall_seconds"),
        }
        if row["wall_seconds"] is None and started and row["finished_at"]:
            row["wall_seconds"] = (row["finished_at"] - started).total_seconds()
        wall = row["wall_seconds"]
        row["throughput"] = row["audio_seconds"] / wall if wall else None
        out.append(row)
    return sorted(out, key=lambda r: (r["started_at"] is None, r["started_at"] or datetime.min.replace(tzinfo=timezone.utc), r["run_id"]))


def runs_table(out_dir: str | Path, names: list[str]) -> pa.Table:
    rows = [r for name in names for r in run_rows(out_dir, name)]
    return pa.Table.from_pylist(rows, schema=RUNS_SCHEMA)


def open_views(out_dir: str | Path, corpus: str | None = None, include_audio: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views `segments`, `dialogues`, `ledger` and `runs`.

    `segments` leaves out `audio` and `audio_enhanced`, `dialogues` its `audio`, unless include_audio. Raises
    ManifestError when OUT holds no corpus, or not the one named.
    """
    names = select_corpora(out_dir, corpus)
    con = duckdb.connect(":memory:")
    # register() keeps a reference to each object for the connection's lifetime; scans stay lazy
    con.register("segments", segments_dataset(out_dir, names, include_audio))
    con.register("dialogues", dialogues_dataset(out_dir, names, include_audio))
    con.register("ledger", ledger_dataset(out_dir, names))
    con.register("runs", runs_table(out_dir, names))
    _lock_down(con)
    return con


def _lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Keep user SQL inside the views: no reading or writing files (read_*, COPY, ATTACH, EXPORT),
    no INSTALL or LOAD of extensions, and no SET or RESET that would undo this.

    Called once the views are registered. They still work afterwards: they are pyarrow datasets,
    read by pyarrow rather than through DuckDB's file system, which is what external access gates
    (DuckDB still spills to its temp directory when a query outgrows memory).
    """
    have = {name for (name,) in con.execute("SELECT name FROM duckdb_settings()").fetchall()}
    for name in ("autoinstall_known_extensions", "autoload_known_extensions"):  # not in every DuckDB version
        if name in have:
            con.execute(f"SET {name} = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")  # last: from here on no setting can change


def check_where(where: str | None) -> None:
    """Refuse (RefusedSQL) a --where that is not one SQL expression.

    The exports splice it into their own SELECTs (``WHERE (<where>) ...``), so a `;` would start
    a statement of its own and a `)` could close the condition early (``TRUE) UNION SELECT ...``).
    """
    if not where or not where.strip():
        return
    if _semicolon_outside_strings(where):
        raise RefusedSQL(f"refused --where {where!r}: it holds a ';' outside a string literal "
                         "(--where takes one SQL condition, not statements)")
    try:
        duckdb.SQLExpression(where)  # exactly one expression: no second statement, FROM, UNION, ORDER BY
        # ... and it stays inside the parentheses it is spliced into (a `--` comment would swallow them)
        statements = duckdb.extract_statements(f"SELECT 1 WHERE ({where})")
    except duckdb.Error as exc:
        raise RefusedSQL(f"refused --where {where!r}: not one SQL condition ({one_line(str(exc))})") from None
    if len(statements) != 1:
        raise RefusedSQL(f"refused --where {where!r}: not one SQL condition")


def _semicolon_outside_strings(sql: str) -> bool:
    tokens = duckdb.tokenize(sql)  # (start offset, kind) per token
    ends = [start for start, _ in tokens[1:]] + [len(sql)]
    return any(";" in sql[start:end] for (start, kind), end in zip(tokens, ends)
               if kind != duckdb.token_type.string_const)


def one_line(text: str) -> str:
    """A DuckDB error on one line, without the echo of the query (its LINE n: / ^ lines)."""
    lines = [line.strip() for line in text.splitlines()]
    return " ".join(line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"})


# ---- results ----------------------------------------------------------------------------------
def result_batches(con: duckdb.DuckDBPyConnection, sql: str, limit: int | None = None,
                   batch_rows: int = 1024) -> tuple[list[str], Iterator[list[dict]]]:
    """Column names and the rows of `sql` in batches, streamed (at most `limit` rows).

    Raises duckdb.Error (or pyarrow's error, when execution fails mid-stream) on bad SQL.
    """
    rel = con.sql(sql)
    if rel is None:  # a statement without a result (CREATE VIEW ...)
        return [], iter(())
    reader = rel.to_arrow_reader(batch_rows)

    def batches() -> Iterator[list[dict]]:
        left = limit
        for batch in reader:
            rows = batch.to_pylist()
            if left is not None:
                rows = rows[:left]
                left -= len(rows)
            if rows:
                yield rows
            if left is not None and left <= 0:
                return

    return list(reader.schema.names), batches()


def plain(value):
    """A value for CSV/JSON: times as ISO text, bytes as base64, NaN/inf as null."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _brief(value):
    """A value for a table cell: bytes summarised as their length."""
    if isinstance(value, dict):
        return {k: _brief(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_brief(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    return plain(value)


def csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    value = plain(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def table_cell(value) -> str:
    if value is None:
        return "NULL"
    value = _brief(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def write_csv(columns: list[str], batches: Iterable[list[dict]], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    n = 0
    for rows in batches:
        for row in rows:
            writer.writerow([csv_cell(row[c]) for c in columns])
            n += 1
    return n


def write_json(columns: list[str], batches: Iterable[list[dict]], out: IO[str]) -> int:
    """One JSON array of objects, written row by row."""
    n = 0
    out.write("[")
    for rows in batches:
        for row in rows:
            out.write(",\n" if n else "\n")
            out.write(json.dumps({c: plain(row[c]) for c in columns}, ensure_ascii=False, default=str))
            n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def write_table(columns: list[str], batches: Iterable[list[dict]], out: IO[str], width: int | None = None) -> int:
    """An aligned text table (rich, no colour); holds the rows it prints in memory."""
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    n = 0
    for rows in batches:
        for row in rows:
            table.add_row(*[table_cell(row[c]) for c in columns])
            n += 1
    Console(file=out, width=width or 200, color_system=None, soft_wrap=False).print(table)
    return n
