"""Check an output directory against its ledgers, shard by shard.

For each corpus:

- every shard a committed ledger row names exists, and every visible shard is readable
  with the segment columns;
- every audio cell (``audio``, and ``audio_enhanced`` where set) decodes as FLAC at the
  row's ``sample_rate``, to a length matching ``duration`` within one frame (plus half a
  millisecond: times are stored rounded to 1 ms), and to the MD5 signature the encoder
  put in the FLAC header (so a damaged byte is found even where the decoder goes on);
- the rows of each source across its shards add up to the ledger's segment count, and
  no shard holds rows of a source whose ledger row does not name it;
- (segment_id, config_hash) is unique among the live segments: the same content ingested under
  another config hash repeats segment ids legitimately, a repeat within one config hash is an
  error; the segments of retired recordings (``manifests.retire``: content replaced at its path,
  which may come back and be processed again) are checked as files but left out of this check;
- no orphans: no file under segments/ that no committed ledger row names, and, while no
  run holds the corpus lock, nothing left in _staging or as a temporary file.

Shards stream in small batches, one audio cell decoded at a time; the uniqueness check
is one DuckDB aggregate over the id columns (DuckDB spills to disk when it must).

Dialogue corpora (``refinery synth run``) are checked by ``inspection.dialogue_verify``,
which reuses the report, the FLAC check and the file checks here.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import soundfile as sf

from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from inspection.query import segment_schema, select_corpora
from manifests.schema import RETIRED, SEGMENT_SCHEMA

BATCH_ROWS = 32  # rows per read batch: bounds memory to a few dozen audio cells
MAX_LISTED = 1000  # problems kept in the report; the count goes on
_READ_COLUMNS = ["segment_id", "source_uri", "run_id", "corpus", "duration", "sample_rate", "audio", "audio_enhanced"]


@dataclass
class VerifyReport:
    corpora: list[str] = field(default_factory=list)
    shards: int = 0
    segments: int = 0
    audio_cells: int = 0
    sources: int = 0
    problem_count: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # dialogue corpora (inspection.dialogue_verify): turn rows and ledger lines checked
    dialogue_corpora: list[str] = field(default_factory=list)
    turns: int = 0
    dialogues: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(text)

    def _counts(self) -> str:
        segments = len(self.corpora) > len(self.dialogue_corpora) or not self.dialogue_corpora
        parts = [f"{self.shards} shards"]
        parts += [f"{self.segments} segments"] if segments else []
        parts += [f"{self.turns} turns"] if self.dialogue_corpora else []
        parts.append(f"{self.audio_cells} audio cells")
        parts += [f"{self.sources} sources"] if segments else []
        parts += [f"{self.dialogues} dialogue lines"] if self.dialogue_corpora else []
        return f"{', '.join(parts)} in {len(self.corpora)} corpus(es)"

    def describe(self) -> str:
        counts = self._counts()
        if self.ok:
            return f"ok: {counts}"
        lines = [f"{self.problem_count} problem(s) in {counts}:"]
        lines += [f"  - {p}" for p in self.problems]
        if self.problem_count > len(self.problems):
            lines.append(f"  ... and {self.problem_count - len(self.problems)} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "corpora": self.corpora, "shards": self.shards, "segments": self.segments,
                "audio_cells": self.audio_cells, "sources": self.sources, "problem_count": self.problem_count,
                "problems": self.problems, "notes": self.notes,
                **({"dialogue_corpora": self.dialogue_corpora, "turns": self.turns, "dialogues": self.dialogues}
                   if self.dialogue_corpora else {})}


# ---- audio cells ---------------------------------------------------------------------------
def _streaminfo(data: bytes) -> dict | None:
    """The FLAC STREAMINFO block (always the first metadata block), or None if absent."""
    if len(data) < 42 or data[:4] != b"fLaC" or data[4] & 0x7F != 0:
        return None
    si = data[8:42]
    return {
        "sample_rate": int.from_bytes(si[10:13], "big") >> 4,
        "channels": ((si[12] >> 1) & 0x7) + 1,
        "bits": (((si[12] & 0x1) << 4) | (si[13] >> 4)) + 1,
        "frames": ((si[13] & 0xF) << 32) | int.from_bytes(si[14:18], "big"),
        "md5": si[18:34],
    }


def _pcm_md5(samples: np.ndarray, bits: int) -> bytes:
    """MD5 of interleaved little-endian signed samples at `bits` (what FLAC signs); samples are int32 MSB-aligned."""
    width = (bits + 7) // 8
    shifted = (samples.astype(np.int64) >> (32 - 8 * width)).astype("<i4")
    return hashlib.md5(shifted.reshape(-1, 1).view(np.uint8).reshape(-1, 4)[:, :width].tobytes()).digest()


def check_flac(data: bytes | None, sample_rate: int | None, duration: float | None,
               tolerance_s: float | None = None) -> str | None:
    """Why an audio cell is bad, or None when it decodes to the row's rate and length (within one
    frame plus 0.5 ms, or within ``tolerance_s`` seconds when given)."""
    if data is None:
        return "has no bytes"
    info = _streaminfo(data)
    if info is None:
        return "is not FLAC (no fLaC/STREAMINFO header)"
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="int32", always_2d=True)
    except Exception as exc:  # libsndfile reports damage as assorted errors
        return f"does not decode as FLAC: {str(exc).strip() or type(exc).__name__}"
    if sample_rate is not None and rate != sample_rate:
        return f"is at {rate} Hz, the row's sample_rate is {sample_rate}"
    frames = samples.shape[0]
    if info["frames"] and frames != info["frames"]:
        return f"decodes to {frames} frames, its header says {info['frames']}"
    if duration is not None:
        tolerance = 1 + 0.0005 * rate if tolerance_s is None else tolerance_s * rate
        if abs(frames - duration * rate) > tolerance:
            return f"holds {frames / rate:.4f} s ({frames} frames), the row's duration is {duration:.3f} s"
    if any(info["md5"]) and _pcm_md5(samples, info["bits"]) != info["md5"]:
        return "does not match the MD5 signature in its FLAC header (damaged data)"
    return None


# ---- files -----------------------------------------------------------------------------------
def lock_holder(layout: CorpusLayout) -> str | None:
    """Who holds the corpus lock (a run is writing), or None.

    Local: try a shared flock (a run holds an exclusive one). Object store: a lease
    object that has not expired.
    """
    if not layout.is_local:
        try:
            info = json.loads(layout.fs.cat_file(str(layout.lock_path)).decode() or "{}")
        except FileNotFoundError:
            return None
        except ValueError:
            return "an unknown run"
        if info.get("expires_at", 0) <= time.time():
            return None
        return f"run {info.get('run_id')} (pid {info.get('pid')} on {info.get('host')}, lease until {info.get('expires')})"
    path = Path(layout.lock_path)
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info = json.loads(os.read(fd, 4096).decode() or "{}")
                return f"run {info.get('run_id')} (pid {info.get('pid')} on {info.get('host')})"
            except (OSError, ValueError):
                return "an unknown run"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _schema_problem(schema, want: pa.Schema | None = None) -> str | None:
    """What ``schema`` lacks of ``want`` (the segment columns by default)."""
    wrong = []
    for f in want if want is not None else segment_schema(include_audio=True):
        i = schema.get_field_index(f.name)
        if i < 0:
            wrong.append(f"{f.name} missing")
        elif not schema.field(i).type.equals(f.type):
            wrong.append(f"{f.name} is {schema.field(i).type}, not {f.type}")
    return "; ".join(wrong) or None


def verify(out_dir: str | Path, corpus: str | None = None, decode_audio: bool = True) -> VerifyReport:
    """Check every segment corpus under OUT (or the one named); ManifestError when there is none.
    Dialogue corpora are left out: ``inspection.dialogue_verify.verify_all`` checks both kinds."""
    names = select_corpora(out_dir, corpus)
    report = VerifyReport(corpora=[n for n in names if CorpusLayout(out_dir, n).kind != "dialogues"])
    for name in report.corpora:
        verify_corpus(out_dir, name, report, decode_audio)
    return report


# ---- one corpus ------------------------------------------------------------------------------
def verify_corpus(out_dir: str | Path, corpus: str, report: VerifyReport, decode_audio: bool = True) -> None:
    layout = CorpusLayout(out_dir, corpus)
    ledger, damaged = read_ledger(layout, ["source_uri", "run_id", "status", "segments", "shard_paths", "staged_paths",
                                           "recording_id"], report)
    holder = lock_holder(layout)
    if holder:
        report.notes.append(f"corpus {corpus!r} is being written by {holder}: staging and temporary files not checked")

    expected: dict[tuple[str, str], int] = {}  # (run_id, source_uri) -> segments
    named: dict[str, set[tuple[str, str]]] = defaultdict(set)  # shard rel path -> sources naming it
    staged_committed: dict[str, str] = {}  # staged rel path -> final rel path
    for r in ledger:
        key = (r["run_id"], r["source_uri"])
        if r["status"] == "done":
            expected[key] = expected.get(key, 0) + (r["segments"] or 0)
            if (r["segments"] or 0) > 0 and not r["shard_paths"]:
                report.problem(f"{corpus}: ledger row of {r['source_uri']} (run {r['run_id']}) counts "
                               f"{r['segments']} segment(s) but names no shard")
        for p in r["shard_paths"] or []:
            named[p].add(key)
        staged_committed.update(zip(r["staged_paths"] or [], r["shard_paths"] or []))
    report.sources += len({r["source_uri"] for r in ledger})

    present = check_files(layout, report, holder, named, staged_committed)

    # shards, one at a time
    found: Counter = Counter()  # (run_id, source_uri) -> rows
    readable: list[PurePath] = []
    for path in sorted(layout.abs(rel) for rel in named):  # Ledger.shard_files, of the readable commits
        rel = layout.rel(path)
        if rel not in present:
            continue  # named by the ledger but missing: reported above
        report.shards += 1
        try:
            with layout.fs.open(str(path), "rb") as fh:
                ok = _check_shard(fh, f"{corpus}: shard {rel}", PurePath(path).parent.name.removeprefix("run="),
                                  corpus, named.get(rel, set()), found, report, decode_audio)
        except OSError as exc:
            report.problem(f"{corpus}: shard {rel} cannot be opened: {exc}")
            continue
        if ok:
            readable.append(path)

    for key in sorted(set(expected) | set(found), key=lambda k: (k[0] or "", k[1] or "")):
        want, got = expected.get(key, 0), found.get(key, 0)
        if want != got:
            report.problem(f"{corpus}: source {key[1]} (run {key[0]}): the ledger counts {want} segment(s), "
                           f"the shards hold {got}")

    if not damaged:  # the check reads the whole ledger again (the live filter)
        _check_unique_ids(layout, readable, report)
    _note_retired(corpus, ledger, report)


def read_ledger(layout: CorpusLayout, columns: list[str], report: VerifyReport) -> tuple[list[dict], bool]:
    """The rows of the readable commit files; each unreadable one is a problem (with the repair
    to run). True as the second value when there was such a file."""
    table, bad = Ledger(layout).read_readable(columns)
    for b in bad:
        report.problem(f"{layout.corpus}: ledger commit {layout.rel(b.path)} cannot be read ({b.reason}); "
                       f"`refinery manifest repair {layout.url} --corpus {layout.corpus}` moves it to quarantine "
                       f"(its sources are processed again by the next run)")
    return table.to_pylist(), bool(bad)


def _note_retired(corpus: str, ledger: list[dict], report: VerifyReport) -> None:
    retired = {(r["recording_id"], r["run_id"]) for r in ledger if r["status"] == RETIRED}
    if retired:
        n = sum(r["segments"] or 0 for r in ledger if r["status"] == "done" and (r["recording_id"], r["run_id"]) in retired)
        report.notes.append(f"{corpus}: {len(retired)} retired recording(s) (content replaced at its path): their "
                            f"{n} segment(s) were checked as files; readers leave them out")


def check_files(layout: CorpusLayout, report: VerifyReport, holder: str | None, named: dict[str, set],
                staged_committed: dict[str, str]) -> set[str]:
    """Shards the ledger names but that are missing, orphans under the data directory
    (``segments/`` or ``dialogues/``), leftovers in _staging and temporary files; the shards present
    (relative paths). ``named``: shard -> the (run_id, source_uri) rows naming it."""
    present = {layout.rel(p) for p in layout.files(layout.data_dir)}
    for rel in sorted(named):
        if rel not in present:
            staged = next((s for s, f in staged_committed.items() if f == rel), None)
            if holder and staged and layout.exists(layout.abs(staged)):
                report.notes.append(f"{layout.corpus}: shard {rel} is being moved into place by the running run")
                continue
            srcs = ", ".join(sorted(u for _, u in named[rel])[:3])
            report.problem(f"{layout.corpus}: shard {rel} is missing; the ledger names it for {len(named[rel])} source(s) ({srcs})")
    for rel in sorted(present - set(named)):
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(".") and name.endswith(".tmp"):
            if not holder:
                report.problem(f"{layout.corpus}: temporary file {rel} left by an interrupted run (the next run removes it)")
        elif holder and not layout.is_local:
            continue  # written in place by the running run, not committed yet
        else:
            report.problem(f"{layout.corpus}: orphan file {rel}: no committed ledger row names it")
    if not holder:
        for path in layout.files(layout.staging_dir):
            rel = layout.rel(path)
            if rel in staged_committed:
                report.problem(f"{layout.corpus}: committed shard {rel} is still in _staging (an interrupted run; "
                               f"the next run moves it to {staged_committed[rel]})")
            else:
                report.problem(f"{layout.corpus}: uncommitted file {rel} left in _staging by an interrupted run "
                               f"(the next run removes it)")
        for path in layout.files(layout.ledger_dir):
            if PurePath(path).name.startswith(".") and PurePath(path).name.endswith(".tmp"):
                report.problem(f"{layout.corpus}: temporary ledger file {layout.rel(path)} left by an interrupted run")
    return present


def _check_shard(fh, where: str, run_id: str, corpus: str, naming: set[tuple[str, str]], found: Counter,
                 report: VerifyReport, decode_audio: bool) -> bool:
    """Read one shard batch by batch; False when it could not be read to the end."""
    try:
        pf = pq.ParquetFile(fh)
    except Exception as exc:
        report.problem(f"{where} is not readable: {exc}")
        return False
    wrong = _schema_problem(pf.schema_arrow)
    if wrong:
        report.problem(f"{where} does not have the segment columns: {wrong}")
        return False
    stray: Counter = Counter()
    bad_rows = row_no = 0
    columns = _READ_COLUMNS if decode_audio else _READ_COLUMNS[:6]
    try:
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
            for row in batch.to_pylist():
                key = (row["run_id"], row["source_uri"])
                found[key] += 1
                if key not in naming:
                    stray[row["source_uri"]] += 1
                if row["run_id"] != run_id or row["corpus"] != corpus:
                    bad_rows += 1
                for col in ("audio", "audio_enhanced") if decode_audio else ():
                    cell = row[col]
                    if cell is None:
                        if col == "audio":
                            report.problem(f"{where} row {row_no} ({row['segment_id']}): no audio")
                        continue
                    report.audio_cells += 1
                    why = check_flac(cell["bytes"], row["sample_rate"], row["duration"])
                    if why:
                        report.problem(f"{where} row {row_no} ({row['segment_id']}): {col} {why}")
                row_no += 1
    except Exception as exc:
        report.problem(f"{where} is not readable at row {row_no}: {exc}")
        report.segments += row_no
        return False
    report.segments += row_no
    if row_no != pf.metadata.num_rows:
        report.problem(f"{where}: read {row_no} rows, its footer says {pf.metadata.num_rows}")
    if bad_rows:
        report.problem(f"{where}: {bad_rows} row(s) name another run or corpus than run={run_id} of {corpus}")
    for uri, n in sorted(stray.items()):
        report.problem(f"{where} holds {n} row(s) of {uri}, whose ledger row does not name this shard")
    return True


def _check_unique_ids(layout: CorpusLayout, files: list[PurePath], report: VerifyReport) -> None:
    """A repeat of (segment_id, config_hash) among the live rows of the readable shards: one DuckDB aggregate."""
    if not files:
        return
    corpus = layout.corpus
    ids = pa.schema([SEGMENT_SCHEMA.field(c) for c in ("segment_id", "config_hash", "run_id", "recording_id")])
    con = duckdb.connect(":memory:")
    dataset = pads.dataset([str(f) for f in files], schema=ids, format="parquet", filesystem=layout.arrow_filesystem)
    live = Ledger(layout).live_filter()
    con.register("ids", dataset if live is None else dataset.filter(live))
    try:
        dups = con.sql(
            "SELECT segment_id, config_hash, count(*) AS n, string_agg(DISTINCT run_id, ', ') AS runs "
            "FROM ids GROUP BY segment_id, config_hash HAVING count(*) > 1 ORDER BY n DESC, segment_id"
        ).fetchall()
    except duckdb.Error as exc:
        report.problem(f"{corpus}: could not check segment id uniqueness: {exc}")
        return
    for seg_id, config_hash, n, runs in dups:
        report.problem(f"{corpus}: segment_id {seg_id} appears {n} times under config {config_hash} (runs {runs})")
