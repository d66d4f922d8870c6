"""Check a dialogue corpus (``refinery synth run``) against its ledger, shard by shard.

The report, the FLAC check and the file checks are those of ``inspection.verify``; for each
dialogue corpus:

- every shard a committed ledger row names exists, and every visible shard under
  ``dialogues/`` is readable with the ``DIALOGUE_SCHEMA`` columns; no file there that no
  committed ledger row names, and (while no run holds the corpus lock) nothing left in
  _staging or as a temporary file;
- each done dialogue (a ledger row: one JSONL line) has as many turn rows as the ledger's
  ``segments``, and no shard holds turns of a line whose ledger row does not name it;
- the turns of a dialogue are numbered 0..n-1 without gaps or repeats, a ``dialogue_id``
  belongs to one ledger line per run, and the rows carry the ledger's ``dialogue_id``
  (its ``recording_id``) and ``config_hash``;
- every kept spoken turn that carries audio in its dialogue's form (user turns; assistant
  turns unless the dialogue is audio_to_text) has an audio cell, and every audio cell decodes
  as FLAC at the row's ``sample_rate`` to the row's ``duration`` within 0.05 s (unless
  ``decode_audio`` is off);
- those kept turns carry their gate figures (``GATE_FIGURES``); ``dnsmos_ovrl`` is optional
  (DNSMOS can be turned off) but then absent from every kept turn of the run.

The per-dialogue checks are DuckDB aggregates over the id columns; audio cells are decoded
one at a time from small batches.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path, PurePath

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from manifests.layout import CorpusLayout
from manifests.schema import DIALOGUE_SCHEMA
from inspection.query import select_corpora
from inspection.verify import (BATCH_ROWS, VerifyReport, _schema_problem, check_files, check_flac, lock_holder,
                               read_ledger, verify_corpus)

DURATION_TOLERANCE_S = 0.05
GATE_FIGURES = ("asr_error", "speaker_similarity", "speaker_similarity_before_vc", "chars_per_second",
                "clipping_ratio")
OPTIONAL_FIGURES = ("dnsmos_ovrl",)  # required of a run's kept turns once any of them has it
_READ_COLUMNS = ["dialogue_id", "turn_index", "role", "source_uri", "run_id", "corpus", "kept", "dialogue_form",
                 "duration", "sample_rate", *GATE_FIGURES, *OPTIONAL_FIGURES, "audio"]
_ID_COLUMNS = ("dialogue_id", "turn_index", "source_uri", "run_id", "config_hash")
MAX_INDICES_SHOWN = 20


def verify_all(out_dir: str | Path, corpus: str | None = None, decode_audio: bool = True) -> VerifyReport:
    """Check every corpus under OUT (or the one named), each by its kind; ManifestError when there is none."""
    names = select_corpora(out_dir, corpus)
    report = VerifyReport(corpora=names)
    for name in names:
        if CorpusLayout(out_dir, name).kind == "dialogues":
            report.dialogue_corpora.append(name)
            verify_dialogue_corpus(out_dir, name, report, decode_audio)
        else:
            verify_corpus(out_dir, name, report, decode_audio)
    return report


def carries_audio(row: dict) -> bool:
    """A kept turn whose audio its dialogue ships: user turns, and assistant turns of the speech form."""
    if not row["kept"] or row["role"] in (None, "system"):
        return False
    return not (row["role"] == "assistant" and row["dialogue_form"] == "audio_to_text")


class _Figures:
    """Per run: kept turns with and without each optional figure."""

    def __init__(self) -> None:
        self.have: Counter = Counter()  # (run_id, figure) -> turns
        self.missing: dict[tuple[str, str], list[str]] = defaultdict(list)

    def add(self, row: dict, where: str) -> None:
        for name in OPTIONAL_FIGURES:
            if row[name] is None:
                self.missing[(row["run_id"], name)].append(where)
            else:
                self.have[(row["run_id"], name)] += 1

    def report(self, corpus: str, report: VerifyReport) -> None:
        for (run, name), where in sorted(self.missing.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
            have = self.have.get((run, name), 0)
            if have:
                report.problem(f"{corpus}: run {run}: {len(where)} kept turn(s) lack {name}, which {have} other kept "
                               f"turn(s) of the run have (first: {where[0]})")
            else:
                report.notes.append(f"{corpus}: run {run}: no kept turn has {name} (measured off in that run?)")


def verify_dialogue_corpus(out_dir: str | Path, corpus: str, report: VerifyReport, decode_audio: bool = True) -> None:
    layout = CorpusLayout(out_dir, corpus)
    ledger, _ = read_ledger(layout, ["source_uri", "recording_id", "run_id", "config_hash", "status", "segments",
                                     "shard_paths", "staged_paths"], report)
    holder = lock_holder(layout)
    if holder:
        report.notes.append(f"corpus {corpus!r} is being written by {holder}: staging and temporary files not checked")

    expected: dict[tuple[str, str], int] = {}  # (run_id, source_uri) -> turns
    named: dict[str, set[tuple[str, str]]] = defaultdict(set)
    staged_committed: dict[str, str] = {}
    for r in ledger:
        key = (r["run_id"], r["source_uri"])
        if r["status"] == "done":
            expected[key] = expected.get(key, 0) + (r["segments"] or 0)
            if (r["segments"] or 0) > 0 and not r["shard_paths"]:
                report.problem(f"{corpus}: ledger row of {r['source_uri']} (run {r['run_id']}) counts "
                               f"{r['segments']} turn(s) but names no shard")
        for p in r["shard_paths"] or []:
            named[p].add(key)
        staged_committed.update(zip(r["staged_paths"] or [], r["shard_paths"] or []))
    report.dialogues += len({r["source_uri"] for r in ledger})

    present = check_files(layout, report, holder, named, staged_committed)

    found: Counter = Counter()  # (run_id, source_uri) -> turn rows
    figures = _Figures()
    readable: list[PurePath] = []
    for path in sorted(layout.abs(rel) for rel in named):  # Ledger.shard_files, of the readable commits
        rel = layout.rel(path)
        if rel not in present:
            continue  # named by the ledger but missing: reported above
        report.shards += 1
        try:
            with layout.fs.open(str(path), "rb") as fh:
                ok = _check_shard(fh, f"{corpus}: shard {rel}", PurePath(path).parent.name.removeprefix("run="),
                                  corpus, named.get(rel, set()), found, figures, report, decode_audio)
        except OSError as exc:
            report.problem(f"{corpus}: shard {rel} cannot be opened: {exc}")
            continue
        if ok:
            readable.append(path)

    ids = {(r["run_id"], r["source_uri"]): r["recording_id"] for r in ledger if r["status"] == "done"}
    for key in sorted(set(expected) | set(found), key=lambda k: (k[0] or "", k[1] or "")):
        want, got = expected.get(key, 0), found.get(key, 0)
        if want != got:
            report.problem(f"{corpus}: dialogue line {key[1]} ({ids.get(key) or 'no done ledger row'}, run {key[0]}): "
                           f"the ledger counts {want} turn(s), the shards hold {got}")
    figures.report(corpus, report)
    _check_dialogues(layout, readable, [r for r in ledger if r["status"] == "done"], report)


def _check_shard(fh, where: str, run_id: str, corpus: str, naming: set[tuple[str, str]], found: Counter,
                 figures: _Figures, report: VerifyReport, decode_audio: bool) -> bool:
    """Read one turn shard batch by batch; False when it could not be read to the end."""
    try:
        pf = pq.ParquetFile(fh)
    except Exception as exc:
        report.problem(f"{where} is not readable: {exc}")
        return False
    wrong = _schema_problem(pf.schema_arrow, DIALOGUE_SCHEMA)
    if wrong:
        report.problem(f"{where} does not have the dialogue columns: {wrong}")
        return False
    stray: Counter = Counter()
    bad_rows = row_no = 0
    columns = _READ_COLUMNS if decode_audio else _READ_COLUMNS[:-1]
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            for row in batch.to_pylist():
                key = (row["run_id"], row["source_uri"])
                found[key] += 1
                if key not in naming:
                    stray[row["source_uri"]] += 1
                if row["run_id"] != run_id or row["corpus"] != corpus:
                    bad_rows += 1
                turn = f"{where} row {row_no} ({row['dialogue_id']} turn {row['turn_index']}, {row['role']})"
                if carries_audio(row):
                    lacking = [name for name in GATE_FIGURES if row[name] is None]
                    if lacking:
                        report.problem(f"{turn}: kept turn without gate figure(s) {', '.join(lacking)}")
                    figures.add(row, turn)
                if decode_audio:
                    cell = row["audio"]
                    if cell is None or cell["bytes"] is None:
                        if carries_audio(row):
                            report.problem(f"{turn}: kept turn has no audio")
                    else:
                        report.audio_cells += 1
                        why = check_flac(cell["bytes"], row["sample_rate"], row["duration"], DURATION_TOLERANCE_S)
                        if why:
                            report.problem(f"{turn}: audio {why}")
                row_no += 1
    except Exception as exc:
        report.problem(f"{where} is not readable at row {row_no}: {exc}")
        report.turns += row_no
        return False
    report.turns += row_no
    if row_no != pf.metadata.num_rows:
        report.problem(f"{where}: read {row_no} rows, its footer says {pf.metadata.num_rows}")
    if bad_rows:
        report.problem(f"{where}: {bad_rows} row(s) name another run or corpus than run={run_id} of {corpus}")
    for uri, n in sorted(stray.items()):
        report.problem(f"{where} holds {n} turn row(s) of {uri}, whose ledger row does not name this shard")
    return True


def _check_dialogues(layout: CorpusLayout, files: list[PurePath], done: list[dict], report: VerifyReport) -> None:
    """Turn numbering, dialogue_id per run, and the ledger's ids and config hash: DuckDB aggregates."""
    if not files:
        return
    corpus = layout.corpus
    ids = pa.schema([DIALOGUE_SCHEMA.field(c) for c in _ID_COLUMNS])
    con = duckdb.connect(":memory:")
    con.register("turns", pads.dataset([str(f) for f in files], schema=ids, format="parquet",
                                       filesystem=layout.arrow_filesystem))
    rows = {(r["run_id"], r["source_uri"]): r for r in done}
    con.register("ledger", pa.Table.from_pylist(
        [{k: r[k] for k in ("run_id", "source_uri", "recording_id", "config_hash")} for r in rows.values()],
        schema=pa.schema([("run_id", pa.string()), ("source_uri", pa.string()), ("recording_id", pa.string()),
                          ("config_hash", pa.string())])))
    try:
        numbering = con.sql(
            "SELECT run_id, dialogue_id, count(*) AS n, count(DISTINCT source_uri) AS lines, "
            "string_agg(DISTINCT source_uri, ', ') AS uris, list(turn_index ORDER BY turn_index) AS idx "
            "FROM turns GROUP BY run_id, dialogue_id "
            "HAVING count(DISTINCT source_uri) > 1 OR count(turn_index) <> count(*) "
            "OR count(DISTINCT turn_index) <> count(*) OR min(turn_index) <> 0 OR max(turn_index) <> count(*) - 1 "
            "ORDER BY run_id, dialogue_id"
        ).fetchall()
        against_ledger = con.sql(
            "SELECT t.run_id, t.source_uri, t.dialogue_id, t.config_hash, l.recording_id, l.config_hash, count(*) "
            "FROM turns t JOIN ledger l ON t.run_id = l.run_id AND t.source_uri = l.source_uri "
            "WHERE t.config_hash IS DISTINCT FROM l.config_hash OR t.dialogue_id IS DISTINCT FROM l.recording_id "
            "GROUP BY ALL ORDER BY 1, 2, 3, 4"
        ).fetchall()
    except duckdb.Error as exc:
        report.problem(f"{corpus}: could not check the dialogues' turns: {exc}")
        return
    for run, dialogue, n, lines, uris, idx in numbering:
        if lines > 1:
            report.problem(f"{corpus}: dialogue_id {dialogue} is used by {lines} ledger lines in run {run} ({uris}); "
                           "a dialogue_id must be unique per run")
            continue
        shown = ", ".join("null" if i is None else str(i) for i in idx[:MAX_INDICES_SHOWN])
        more = ", ..." if len(idx) > MAX_INDICES_SHOWN else ""
        report.problem(f"{corpus}: dialogue {dialogue} (run {run}): its {n} turn row(s) are numbered [{shown}{more}], "
                       f"not 0..{n - 1}")
    for run, uri, dialogue, config_hash, ledger_id, ledger_hash, n in against_ledger:
        if dialogue != ledger_id:
            report.problem(f"{corpus}: {n} turn row(s) of {uri} (run {run}) carry dialogue_id {dialogue}, "
                           f"the ledger's is {ledger_id}")
        if config_hash != ledger_hash:
            report.problem(f"{corpus}: {n} turn row(s) of {uri} (run {run}) carry config_hash {config_hash}, "
                           f"the ledger's is {ledger_hash}")
