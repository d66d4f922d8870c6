"""Retiring superseded content: the segments of a file's old content, once the file was replaced.

Sources are matched by content hash, so a file replaced at its path is new content: the next
run processes it, and the old content's segments stay visible under the same ``source_uri``
(``stats`` counts both) until they are retired. Which done rows are superseded:

- the *current* content of a source URI is the sha256 of its newest ledger row (by
  ``finished_at``, then ``run_id``) that names a hash, whatever its status (done, skipped as
  done elsewhere, failed) and leaving ``retired`` rows aside;
- a live done row (one no ``retired`` row names) is superseded when its sha256 is not the
  current content of its URI, nor of any other URI (content that moved or was copied to
  another path, and was skipped there as done, stays live).

A file deleted from the inputs leaves no newer row, so its content is not retired.

Retiring commits one ``retired`` row per superseded done row (``Ledger.commit_retired``: one
commit file, all rows or none), copying its source_uri, sha256, recording_id, run_id and
config_hash, with the reason in ``error`` and no counts (the segments are no longer counted).
From then on readers leave out that recording's segments of that run (``Ledger.live_filter``),
and ``Ledger.index`` no longer counts the content as done: put back at a path, it is processed
again, in a new run whose segments are live, while the old run's copies stay hidden. Retiring
again finds nothing new to retire. Hold the corpus lock (``inspection.retire``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from manifests.ledger import Ledger
from manifests.schema import LEDGER_SCHEMA, RETIRED

_COLUMNS = ["source_uri", "sha256", "size_bytes", "recording_id", "corpus", "run_id", "config_hash", "status",
            "duration_s", "segments", "segments_kept", "kept_seconds", "finished_at"]


def superseded(ledger: pa.Table) -> pa.Table:
    """The live done rows of ``ledger`` whose content was replaced (see the module docstring),
    with ``by_sha256``, ``by_run_id`` and ``by_status``: the URI's current row. Arrow throughout."""
    status = ledger.column("status")
    retired = ledger.filter(pc.equal(status, RETIRED))
    rows = ledger.filter(pc.and_(pc.not_equal(status, RETIRED), pc.is_valid(ledger.column("sha256"))))
    # a row without a time counts as the oldest
    rows = rows.sort_by([("source_uri", "ascending"), ("finished_at", "ascending", "at_start"), ("run_id", "ascending")])
    uri = rows.column("source_uri")
    last = pa.concat_arrays([pc.not_equal(uri.slice(0, len(uri) - 1), uri.slice(1)).combine_chunks(),
                             pa.array([True] * min(len(uri), 1))]) if len(uri) else pa.array([], pa.bool_())
    current = rows.filter(last).select(["source_uri", "sha256", "run_id", "status"]) \
        .rename_columns(["source_uri", "by_sha256", "by_run_id", "by_status"])
    done = rows.filter(pc.equal(rows.column("status"), "done"))
    if retired.num_rows:
        done = done.filter(pc.invert(pc.is_in(_recording_run(done), value_set=_recording_run(retired))))
    joined = done.join(current, "source_uri")
    out = joined.filter(pc.and_(pc.not_equal(joined.column("sha256"), joined.column("by_sha256")),
                                pc.invert(pc.is_in(joined.column("sha256"), value_set=current.column("by_sha256")))))
    return out.sort_by([("source_uri", "ascending"), ("finished_at", "ascending"), ("run_id", "ascending")])


def _recording_run(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(table.column("recording_id"), table.column("run_id"), "\x1f")


def retired_rows(found: pa.Table, now: datetime | None = None) -> pa.Table:
    """The ``retired`` ledger rows for the done rows ``superseded`` found, built column-wise."""
    n = found.num_rows
    stamp = pa.scalar(now or datetime.now(timezone.utc), LEDGER_SCHEMA.field("finished_at").type)
    reasons = [f"superseded by {sha[:12]} ({status} in run {run})" for sha, status, run in
               zip(*(found.column(c).to_pylist() for c in ("by_sha256", "by_status", "by_run_id")))]
    columns = {name: found.column(name) for name in
               ("source_uri", "sha256", "size_bytes", "recording_id", "corpus", "run_id", "config_hash")}
    columns.update(status=pa.repeat(RETIRED, n), error=pa.array(reasons, pa.string()),
                   shard_paths=pa.array([[]] * n, pa.list_(pa.string())),
                   staged_paths=pa.array([[]] * n, pa.list_(pa.string())),
                   started_at=pa.repeat(stamp, n), finished_at=pa.repeat(stamp, n))
    arrays = [columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in LEDGER_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=LEDGER_SCHEMA)


@dataclass
class RetireReport:
    corpus: str
    dry_run: bool
    retired: list[dict] = field(default_factory=list)  # the done rows retired (dry run: to retire), with by_*
    retired_before: int = 0  # retired rows the ledger held already
    commit_file: str | None = None

    @property
    def sources(self) -> int:
        return len({r["source_uri"] for r in self.retired})

    @property
    def segments(self) -> int:
        return sum(r["segments"] or 0 for r in self.retired)

    @property
    def segments_kept(self) -> int:
        return sum(r["segments_kept"] or 0 for r in self.retired)

    @property
    def kept_hours(self) -> float:
        return sum(r["kept_seconds"] or 0.0 for r in self.retired) / 3600

    @property
    def source_hours(self) -> float:
        return sum(r["duration_s"] or 0.0 for r in self.retired) / 3600

    def to_dict(self) -> dict:
        keep = ("source_uri", "sha256", "recording_id", "run_id", "segments", "segments_kept", "kept_seconds",
                "by_sha256", "by_run_id", "by_status")
        return {"corpus": self.corpus, "dry_run": self.dry_run, "recordings": len(self.retired),
                "sources": self.sources, "segments": self.segments, "segments_kept": self.segments_kept,
                "kept_hours": self.kept_hours, "source_hours": self.source_hours,
                "retired_before": self.retired_before, "commit_file": self.commit_file,
                "retired": [{k: r[k] for k in keep} for r in self.retired]}

    def describe(self) -> list[str]:
        before = f" ({self.retired_before} recording(s) retired before)" if self.retired_before else ""
        if not self.retired:
            return [f"{self.corpus}: nothing to retire: no source's content was replaced by newer content{before}"]
        verb = "would retire" if self.dry_run else "retired"
        lines = [f"{self.corpus}: {verb} the old content of {self.sources} replaced source(s): {len(self.retired)} "
                 f"recording(s), {self.segments} segment(s) ({self.segments_kept} kept, {self.kept_hours:.3f} h kept) "
                 f"from {self.source_hours:.3f} h of audio{before}"]
        for r in self.retired:
            lines.append(f"  {r['source_uri']}: {r['recording_id']} of run {r['run_id']} ({r['segments'] or 0} "
                         f"segment(s)), superseded by {r['by_sha256'][:12]} ({r['by_status']} in run {r['by_run_id']})")
        lines.append("  dry run: nothing changed" if self.dry_run
                     else "  readers (stats, query, show, export, verify) leave these segments out from now on")
        return lines


def retire(ledger: Ledger, dry_run: bool = False) -> RetireReport:
    """Find the superseded done rows and, unless ``dry_run``, commit one ``retired`` row for each.
    The caller holds the corpus lock (and gives the ledger its fence)."""
    table = ledger.read(_COLUMNS)
    found = superseded(table)
    report = RetireReport(ledger.layout.corpus, dry_run, found.to_pylist(),
                          pc.sum(pc.equal(table.column("status"), RETIRED)).as_py() or 0)
    if found.num_rows and not dry_run:
        report.commit_file = ledger.layout.rel(ledger.commit_retired(retired_rows(found)))
    return report
