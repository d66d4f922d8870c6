"""Export segments to the formats training frameworks read: hf, lhotse, nemo, webdataset.

Rows come from the `segments` view of ``inspection.query.open_views`` (kept rows unless
``include_dropped``; optionally narrowed by a SQL ``where``), each recording from its
latest run only (an earlier run's copy of a reprocessed source is left out and counted),
streamed from DuckDB in record batches: nothing holds more than one batch of audio in
memory. The FLAC bytes in the shards are written out as they are, never re-encoded.

Layouts under ``dest``:

    hf          data-NNNNN-of-NNNNN.arrow, state.json, dataset_info.json
                (``datasets.load_from_disk``; ``audio`` is an Audio feature over the FLAC
                bytes, every other segment column alongside)
    lhotse      cuts.jsonl.gz, recordings.jsonl.gz, supervisions.jsonl.gz and
                audio/<recording_id>/<segment_id>.flac; one Recording, SupervisionSegment
                and MonoCut per segment (``lhotse.CutSet.from_file``). Recordings name their
                FLAC by absolute path, as lhotse resolves paths from the working directory.
    nemo        manifest.json (JSON lines: audio_filepath, duration, offset 0, text, lang,
                speaker, ...) and audio/<recording_id>/<segment_id>.flac; audio_filepath is
                relative to the manifest's directory, which NeMo resolves.
    webdataset  shard-NNNNNN.tar, each sample ``<key>.flac`` + ``<key>.json``; the key is
                the segment id ('.' replaced by '_': webdataset splits key and extension
                at the first dot). A shard closes once it holds ``shard_mb`` MB.

Each export also holds ``export.json`` (what was selected, counts, hours, files). It is
written into a hidden sibling directory and renamed into place when complete, so a failed
export leaves nothing at ``dest``.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from manifests.schema import AUDIO_COLUMNS, SEGMENT_SCHEMA, segment_schema_with_hf_metadata

FORMATS = ("hf", "lhotse", "nemo", "webdataset")
VARIANTS = {"raw": "audio", "enhanced": "audio_enhanced"}
MANIFEST_FILE = "export.json"
META_COLUMNS = tuple(f.name for f in SEGMENT_SCHEMA if f.name not in AUDIO_COLUMNS)


class ExportError(ValueError):
    """An export that cannot be made as asked; the message says why."""


@dataclass
class ExportResult:
    format: str
    variant: str
    path: str
    segments: int = 0
    seconds: float = 0.0
    seconds_by_language: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # shard/manifest files, relative to path
    superseded: int = 0  # matching rows left out: an earlier run's copy of a recording exported from a later run

    @property
    def hours(self) -> float:
        return self.seconds / 3600


# ---- selection ---------------------------------------------------------------------------
def _predicate(where: str | None, include_dropped: bool) -> str:
    parts = [] if include_dropped else ["kept"]
    if where and where.strip():
        parts.append(f"({where})")
    return " AND ".join(parts) or "TRUE"


def _scalar_rows(con, sql: str, where: str | None) -> list[tuple]:
    import duckdb

    try:
        return con.sql(sql).fetchall()
    except duckdb.Error as exc:
        hint = f" (in --where {where!r})" if where else ""
        raise ExportError(f"cannot select segments{hint}: {exc}") from None


@dataclass
class _Selection:
    """Which rows go out: those matching ``pred``, less earlier runs' copies of a recording.

    A source processed again (a changed config, --retry-failed) leaves the earlier run's
    shards visible; exporting both copies would repeat the audio (and the ids). Of the
    rows ``where`` selects, each recording keeps its latest run (run ids start with their
    UTC start time). Found from one aggregate over metadata columns; the audio stream is
    then filtered batch by batch in Python, so DuckDB never joins (or buffers) audio.
    """

    pred: str
    superseded_runs: set[tuple[str, str, str]]  # (corpus, recording_id, run_id) left out
    count: int  # rows to export
    superseded: int  # matching rows left out

    @classmethod
    def find(cls, con, where: str | None, include_dropped: bool) -> "_Selection":
        sel = f"({where})" if where and where.strip() else "TRUE"
        counted = "TRUE" if include_dropped else "kept"
        groups = _scalar_rows(con, f"SELECT corpus, recording_id, run_id, count(*) FILTER (WHERE {counted}) "
                                   f"FROM segments WHERE {sel} GROUP BY ALL", where)
        latest: dict[tuple[str, str], str] = {}
        for corpus, rid, run, _ in groups:
            if run is not None and (latest.get((corpus, rid)) is None or run > latest[(corpus, rid)]):
                latest[(corpus, rid)] = run
        old = {(c, r, run) for c, r, run, _ in groups if run != latest.get((c, r))}
        count = sum(n for c, r, run, n in groups if (c, r, run) not in old)
        superseded = sum(n for c, r, run, n in groups if (c, r, run) in old)
        return cls(_predicate(where, include_dropped), old, count, superseded)

    def keep_mask(self, batch: pa.RecordBatch) -> pa.Array | None:
        """Rows of ``batch`` to export; None: all of them."""
        if not self.superseded_runs:
            return None
        keys = zip(*(batch.column(c).to_pylist() for c in ("corpus", "recording_id", "run_id")))
        return pa.array([k not in self.superseded_runs for k in keys], pa.bool_())

    def filter(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        mask = self.keep_mask(batch)
        return batch if mask is None else batch.filter(mask)


def _refuse_without_enhanced(con, selection: _Selection, where: str | None, batch_rows: int) -> None:
    """Before writing anything: every selected row must have audio_enhanced (an extra read of that column)."""
    import duckdb

    sql = (f"SELECT segment_id, corpus, recording_id, run_id FROM segments WHERE {selection.pred} "
           f"AND (audio_enhanced IS NULL OR audio_enhanced.bytes IS NULL)")
    missing, ids = 0, []
    try:
        reader = con.sql(sql).to_arrow_reader(batch_rows)
    except duckdb.Error as exc:
        raise ExportError(f"cannot select segments: {exc}") from None
    with reader:
        for batch in reader:
            batch = selection.filter(batch)
            missing += batch.num_rows
            ids += batch.column("segment_id").to_pylist()[: 5 - len(ids)]
    if missing:
        more = f" and {missing - len(ids)} more" if missing > len(ids) else ""
        raise ExportError(f"--variant enhanced: {missing} of {selection.count} selected segment(s) have no enhanced "
                          f"audio (audio_enhanced is null; runs without enhance.enabled write none): "
                          f"{', '.join(ids)}{more}")


# ---- writers -----------------------------------------------------------------------------
def _audio_info(data: bytes) -> tuple[int, int]:
    """(frames, sample rate) from the FLAC header, without decoding."""
    import soundfile as sf

    info = sf.info(io.BytesIO(data))
    return info.frames, info.samplerate


def _audio_rel(row: dict) -> str:
    return f"audio/{row['recording_id']}/{row['segment_id']}.flac"


def _not_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class _Writer:
    """Takes record batches (META_COLUMNS + ``audio``), writes files under ``stage``."""

    def __init__(self, stage: Path, final: Path, shard_bytes: int) -> None:
        self.stage, self.final, self.shard_bytes = stage, final, shard_bytes

    def write(self, batch: pa.RecordBatch) -> None:
        for row in batch.to_pylist():
            self.write_row(row)

    def write_row(self, row: dict) -> None:
        raise NotImplementedError

    def close(self) -> list[str]:
        """Finish the files; return the shard/manifest files, relative to the export root."""
        raise NotImplementedError


class _HfWriter(_Writer):
    """Arrow shards in the layout of ``Dataset.save_to_disk``, written batch by batch.

    ``features``: the `datasets` features of the batches' columns, in their order (default: the
    segment columns and ``audio``); ``what``: the dataset's description."""

    def __init__(self, stage: Path, final: Path, shard_bytes: int, features: dict | None = None,
                 what: str = "audio-refinery segments") -> None:
        super().__init__(stage, final, shard_bytes)
        import datasets

        self._datasets = datasets
        if features is None:
            hf = json.loads(segment_schema_with_hf_metadata().metadata[b"huggingface"])["info"]["features"]
            features = {**{c: hf[c] for c in META_COLUMNS}, "audio": {"_type": "Audio"}}
        self.features = datasets.Features.from_dict(features)
        self.what = what
        self._writer = None
        self._bytes = 0
        self._shards: list[Path] = []

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.finalize()
        path = self.stage / f"data-{len(self._shards):05d}.arrow.part"
        self._shards.append(path)
        self._writer = self._datasets.arrow_writer.ArrowWriter(features=self.features, path=str(path))
        self._bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        table = pa.Table.from_batches([batch])
        row_bytes = max(1.0, table.nbytes / table.num_rows)
        while table.num_rows:
            if self._writer is None or self._bytes >= self.shard_bytes:
                self._roll()
            fits = max(1, math.ceil((self.shard_bytes - self._bytes) / row_bytes))
            part, table = table.slice(0, fits), table.slice(fits)
            self._writer.write_table(part)
            self._bytes += part.nbytes

    def close(self) -> list[str]:
        if self._writer is not None:
            self._writer.finalize()
        n = len(self._shards)
        names = []
        for i, part in enumerate(self._shards):
            name = f"data-{i:05d}-of-{n:05d}.arrow"
            part.rename(self.stage / name)
            names.append(name)
        state = {
            "_data_files": [{"filename": name} for name in names],
            "_fingerprint": uuid.uuid4().hex[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        (self.stage / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
        info = asdict(self._datasets.DatasetInfo(
            description=f"{self.what} (see export.json for the selection)", features=self.features))
        (self.stage / "dataset_info.json").write_text(json.dumps({k: info[k] for k in sorted(info)}, indent=2))
        return names + ["state.json", "dataset_info.json"]


class _AudioFilesWriter(_Writer):
    """FLAC files under audio/<recording_id>/, one per segment."""

    def _write_audio(self, row: dict) -> tuple[str, int, int]:
        rel = _audio_rel(row)
        path = self.stage / rel
        if path.exists():  # the same source in two corpora gives the same ids
            raise ExportError(f"segment {row['segment_id']} is selected twice (corpus {row['corpus']} and another); "
                              "export one corpus at a time (--corpus)")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = row["audio"]["bytes"]
        path.write_bytes(data)
        frames, rate = _audio_info(data)
        return rel, frames, rate


class _NemoWriter(_AudioFilesWriter):
    def __init__(self, stage: Path, final: Path, shard_bytes: int) -> None:
        super().__init__(stage, final, shard_bytes)
        self._manifest = open(stage / "manifest.json", "w", encoding="utf-8")

    def write_row(self, row: dict) -> None:
        rel, frames, rate = self._write_audio(row)
        entry = {
            "audio_filepath": rel,
            "duration": frames / rate,
            "offset": 0.0,
            "text": row["text"] or "",
            "lang": row["language"],
            "speaker": row["speaker"],
            "segment_id": row["segment_id"],
            "recording_id": row["recording_id"],
            "source_uri": row["source_uri"],
            "corpus": row["corpus"],
            "start": row["start"],
            "end": row["end"],
            "orig_sample_rate": rate,
            **_not_none({k: row[k] for k in ("language_prob", "overlap_ratio", "snr_db", "dnsmos_ovrl")}),
        }
        if not row["kept"]:
            entry.update(kept=False, drop_reason=row["drop_reason"])
        self._manifest.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> list[str]:
        self._manifest.close()
        return ["manifest.json"]


class _LhotseWriter(_AudioFilesWriter):
    def __init__(self, stage: Path, final: Path, shard_bytes: int) -> None:
        super().__init__(stage, final, shard_bytes)
        import lhotse
        from lhotse.supervision import AlignmentItem

        self._lhotse, self._alignment_item = lhotse, AlignmentItem
        self._writers = {
            "recordings.jsonl.gz": lhotse.RecordingSet.open_writer(stage / "recordings.jsonl.gz"),
            "supervisions.jsonl.gz": lhotse.SupervisionSet.open_writer(stage / "supervisions.jsonl.gz"),
            "cuts.jsonl.gz": lhotse.CutSet.open_writer(stage / "cuts.jsonl.gz"),
        }

    def write_row(self, row: dict) -> None:
        lh = self._lhotse
        rel, frames, rate = self._write_audio(row)
        seg = row["segment_id"]
        duration = frames / rate
        source = lh.AudioSource(type="file", channels=[0], source=str(self.final / rel))
        recording = lh.Recording(id=seg, sources=[source], sampling_rate=rate, num_samples=frames, duration=duration)
        words = [self._alignment_item(symbol=w["token"], start=w["start"], score=w["prob"],
                                      duration=round(max(0.0, w["end"] - w["start"]), 6))
                 for w in row["words"] or [] if None not in (w["token"], w["start"], w["end"])]
        supervision = lh.SupervisionSegment(
            id=seg, recording_id=seg, start=0.0, duration=duration, channel=0, text=row["text"],
            language=row["language"], speaker=row["speaker"], alignment={"word": words} if words else None,
            custom=_not_none({"language_prob": row["language_prob"]}) or None,
        )
        custom = _not_none({
            "source_recording_id": row["recording_id"], "source_uri": row["source_uri"], "corpus": row["corpus"],
            "run_id": row["run_id"], "source_start": row["start"], "source_end": row["end"],
            "overlap_ratio": row["overlap_ratio"], "snr_db": row["snr_db"], "dnsmos_ovrl": row["dnsmos_ovrl"],
            "dnsmos_sig": row["dnsmos_sig"], "dnsmos_bak": row["dnsmos_bak"],
        })
        if not row["kept"]:
            custom.update(kept=False, drop_reason=row["drop_reason"])
        cut = lh.MonoCut(id=seg, start=0.0, duration=duration, channel=0, recording=recording,
                         supervisions=[supervision], custom=custom)
        self._writers["recordings.jsonl.gz"].write(recording)
        self._writers["supervisions.jsonl.gz"].write(supervision)
        self._writers["cuts.jsonl.gz"].write(cut)

    def close(self) -> list[str]:
        for w in self._writers.values():
            w.close()
        return list(self._writers)


class _WebDatasetWriter(_Writer):
    def __init__(self, stage: Path, final: Path, shard_bytes: int) -> None:
        super().__init__(stage, final, shard_bytes)
        import webdataset

        self._tar_writer = webdataset.TarWriter
        self._tar = None
        self._size = 0
        self.shards: list[str] = []

    def write_row(self, row: dict) -> None:
        if self._tar is None or self._size >= self.shard_bytes:
            if self._tar is not None:
                self._tar.close()
            name = f"shard-{len(self.shards):06d}.tar"
            self.shards.append(name)
            self._tar = self._tar_writer(str(self.stage / name))
            self._size = 0
        meta = {c: row[c] for c in META_COLUMNS}
        meta["sample_rate"] = row["sample_rate"]
        self._size += self._tar.write({
            "__key__": row["segment_id"].replace(".", "_"),
            "flac": row["audio"]["bytes"],
            "json": json.dumps(meta, ensure_ascii=False).encode("utf-8"),
        })

    def close(self) -> list[str]:
        if self._tar is not None:
            self._tar.close()
        return list(self.shards)


_WRITERS: dict[str, type[_Writer]] = {
    "hf": _HfWriter, "lhotse": _LhotseWriter, "nemo": _NemoWriter, "webdataset": _WebDatasetWriter,
}


# ---- the destination ---------------------------------------------------------------------
def _check_destination(dest: Path, overwrite: bool) -> None:
    if not dest.exists():
        return
    if not dest.is_dir():
        raise ExportError(f"{dest} exists and is not a directory")
    if not any(dest.iterdir()):
        return
    if not overwrite:
        raise ExportError(f"{dest} exists and is not empty (pass --overwrite to replace an earlier export)")
    if not (dest / MANIFEST_FILE).is_file():
        raise ExportError(f"{dest} is not an earlier export (no {MANIFEST_FILE}); refusing to replace it")


def _swap_into_place(stage: Path, dest: Path) -> None:
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        dest.rename(old)
    stage.rename(dest)
    if old is not None:
        shutil.rmtree(old)


# ---- the export --------------------------------------------------------------------------
def export(
    out_dir: str | Path,
    dest: str | Path,
    fmt: str,
    *,
    where: str | None = None,
    corpus: str | None = None,
    include_dropped: bool = False,
    variant: str = "raw",
    shard_mb: float = 500.0,
    batch_rows: int = 64,
    overwrite: bool = False,
    progress: Callable[[int, float], None] | None = None,
) -> ExportResult:
    """Write the selected segments under ``dest`` in format ``fmt``; see the module docstring.

    ``progress(segments, seconds)`` is called after each batch. Raises ExportError (and
    ManifestError from open_views, RefusedSQL from check_where) with a message for the user.
    """
    from inspection.query import check_where, open_views  # duckdb: imported when used, not by every `refinery` command

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if variant not in VARIANTS:
        raise ExportError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})")
    if shard_mb <= 0:
        raise ExportError("shard size must be > 0 MB")
    check_where(where)
    dest = Path(dest).absolute()
    _check_destination(dest, overwrite)
    audio_col = VARIANTS[variant]

    con = open_views(out_dir, corpus, include_audio=True)
    try:
        selection = _Selection.find(con, where, include_dropped)
        if selection.count == 0:
            raise ExportError(f"no segments match (selection: {selection.pred})")
        if audio_col == "audio_enhanced":
            _refuse_without_enhanced(con, selection, where, batch_rows)
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        result = ExportResult(format=fmt, variant=variant, path=str(dest), superseded=selection.superseded)
        try:
            writer = _WRITERS[fmt](stage, dest, int(shard_mb * 1e6))
            cols = ", ".join(f'"{c}"' for c in META_COLUMNS)
            sql = f'SELECT {cols}, "{audio_col}" AS audio FROM segments WHERE {selection.pred}'
            with con.sql(sql).to_arrow_reader(batch_rows) as reader:
                for batch in reader:
                    batch = selection.filter(batch)
                    if batch.num_rows == 0:
                        continue
                    _refuse_missing_audio(batch, audio_col)
                    writer.write(batch)
                    _count(result, batch)
                    if progress is not None:
                        progress(result.segments, result.seconds)
            result.files = writer.close()
            if result.segments != selection.count:  # the shards changed under us (a run committed meanwhile)
                raise ExportError(f"selected {selection.count} segment(s) but read {result.segments}: did a run commit "
                                  "during the export? Run it again.")
            _write_manifest(stage, result, out_dir=out_dir, corpus=corpus, where=where, include_dropped=include_dropped)
            _swap_into_place(stage, dest)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    finally:
        con.close()
    return result


def _refuse_missing_audio(batch: pa.RecordBatch, audio_col: str) -> None:
    audio = batch.column("audio")
    missing = pc.or_(pc.is_null(audio), pc.is_null(pc.struct_field(audio, "bytes")))
    if pc.any(missing).as_py():
        ids = pc.filter(batch.column("segment_id"), missing).to_pylist()
        raise ExportError(f"segment(s) without {audio_col}: {', '.join(ids[:5])}")


def _count(result: ExportResult, batch: pa.RecordBatch) -> None:
    result.segments += batch.num_rows
    for lang, dur in zip(batch.column("language").to_pylist(), batch.column("duration").to_pylist()):
        key = lang or "unknown"
        result.seconds_by_language[key] = result.seconds_by_language.get(key, 0.0) + (dur or 0.0)
        result.seconds += dur or 0.0


def _write_manifest(stage: Path, result: ExportResult, **selection) -> None:
    doc = {
        "format": result.format,
        "variant": result.variant,
        "source": str(selection["out_dir"]),
        "corpus": selection["corpus"],
        "where": selection["where"],
        "include_dropped": selection["include_dropped"],
        "segments": result.segments,
        "superseded_left_out": result.superseded,
        "seconds": result.seconds,
        "hours": result.hours,
        "hours_by_language": {k: v / 3600 for k, v in sorted(result.seconds_by_language.items())},
        "files": result.files,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (stage / MANIFEST_FILE).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def read_export_manifest(path: str | Path) -> dict:
    return json.loads((Path(path) / MANIFEST_FILE).read_text())


__all__ = ["FORMATS", "VARIANTS", "ExportError", "ExportResult", "export", "read_export_manifest"]
