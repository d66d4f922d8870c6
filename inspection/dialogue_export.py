"""Export dialogue corpora (``refinery synth run``): spoken SFT dialogues as chat messages, or turn rows.

Rows come from the `dialogues` view of ``inspection.query.open_views`` (one row per turn),
each dialogue from its latest run only (an earlier run's copy of a dialogue synthesised again
is left out and counted), streamed from DuckDB in record batches. The FLAC bytes in the
shards are written out as they are, never re-encoded.

Layouts under ``dest``:

    messages    dialogues.jsonl: one line per kept dialogue,
                {"id": dialogue_id, "form": "speech" | "audio_to_text", "messages": [
                  {"role": "system" | "user" | "assistant", "content": [
                    {"type": "text", "text": TEXT},
                    {"type": "audio", "audio_path": "audio/<dialogue_id>/<turn_index>.flac",
                     "duration": seconds, "voice_id": VOICE}]}]}
                with the FLAC files under audio/. System turns are text only, and so are the
                assistant turns of the audio_to_text form. Turns of one dialogue may lie in two
                shards: a dialogue's line is written once all its turns were read, so memory
                holds the text of the dialogues under way, never their audio.
    hf          data-NNNNN-of-NNNNN.arrow, state.json, dataset_info.json: the turn rows, every
                ``DIALOGUE_SCHEMA`` column, ``audio`` as an Audio feature (null for turns
                without audio) (``datasets.load_from_disk``).

Kept dialogues only; ``include_dropped`` (hf only) exports every turn row. ``where`` is a SQL
condition on the `dialogues` view: hf exports the turn rows it selects; messages exports, whole,
each kept dialogue that has a turn it selects. Each export also holds ``export.json`` and is
assembled in a hidden sibling directory, renamed into place when complete (as
``inspection.export`` does), so a failed export leaves nothing at ``dest``.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from manifests.layout import CorpusLayout
from manifests.schema import DIALOGUE_SCHEMA, with_hf_metadata
from inspection.export import (FORMATS, MANIFEST_FILE, ExportError, _audio_info, _check_destination, _HfWriter,
                               _swap_into_place)
from inspection.query import check_where, one_line, select_corpora

DIALOGUE_FORMATS = ("hf", "messages")
SEGMENT_ONLY_FORMATS = tuple(f for f in FORMATS if f not in DIALOGUE_FORMATS)
DIALOGUES_FILE = "dialogues.jsonl"
FORMS = ("speech", "audio_to_text")
ROLES = ("system", "user", "assistant")
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MESSAGE_COLUMNS = ("corpus", "dialogue_id", "run_id", "turn_index", "role", "text", "language", "voice_id",
                    "dialogue_form", "audio")


@dataclass
class DialogueExportResult:
    format: str
    path: str
    dialogues: int = 0
    dialogues_by_form: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    audio_files: int = 0  # audio files written (messages) or audio cells exported (hf)
    seconds: float = 0.0  # of that audio
    seconds_by_language: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    superseded: int = 0  # left out: earlier runs' copies (messages: dialogues; hf: turn rows)

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    def add_audio(self, language: str | None, seconds: float) -> None:
        self.audio_files += 1
        self.seconds += seconds
        key = language or "unknown"
        self.seconds_by_language[key] = self.seconds_by_language.get(key, 0.0) + seconds


# ---- which kind an export is -------------------------------------------------------------
def export_kind(out_dir: str | Path, corpus: str | None, fmt: str, variant: str = "raw") -> tuple[str, list[str]]:
    """("segments" | "dialogues", notes): which exporter serves ``fmt`` for the selected corpora.

    ExportError (one line) when the format does not apply to them; ManifestError when OUT holds
    no corpus (or not the one named)."""
    names = select_corpora(out_dir, corpus)
    kinds = {n: CorpusLayout(out_dir, n).kind for n in names}
    segments = [n for n in names if kinds[n] != "dialogues"]
    dialogues = [n for n in names if kinds[n] == "dialogues"]
    what = f"corpus {corpus!r}" if corpus else str(out_dir)
    if fmt == "messages" and not dialogues:
        raise ExportError(f"--format messages exports dialogue corpora; {what} holds segments only "
                          f"(segment formats: {', '.join(FORMATS)})")
    if fmt in SEGMENT_ONLY_FORMATS and not segments:
        raise ExportError(f"--format {fmt} exports segment corpora; {what} holds dialogues "
                          f"(dialogue formats: {', '.join(DIALOGUE_FORMATS)})")
    if fmt == "hf" and segments and dialogues:
        raise ExportError(f"{what} holds segment corpora ({', '.join(segments)}) and dialogue corpora "
                          f"({', '.join(dialogues)}); --format hf exports one kind: pick one with --corpus")
    kind = "dialogues" if fmt == "messages" or (fmt == "hf" and dialogues) else "segments"
    if kind == "dialogues" and variant != "raw":
        raise ExportError(f"--variant {variant} applies to segment corpora; dialogue turns have one audio column")
    notes = []
    left_out = dialogues if kind == "segments" else segments
    if left_out:
        other = "dialogue" if kind == "segments" else "segment"
        notes.append(f"left out the {other} corpora {', '.join(left_out)} (--format {fmt} exports {kind})")
    return kind, notes


# ---- selection ---------------------------------------------------------------------------
def _rows(con, sql: str, where: str | None) -> list[tuple]:
    import duckdb

    try:
        return con.sql(sql).fetchall()
    except duckdb.Error as exc:
        hint = f" (in --where {where!r})" if where else ""
        raise ExportError(f"cannot select dialogue turns{hint}: {one_line(str(exc))}") from None


@dataclass
class _Selection:
    """Each dialogue (corpus, dialogue_id) from its latest run among the rows ``where`` selects."""

    latest: set[tuple[str, str, str]]  # (corpus, dialogue_id, run_id) to export
    superseded_runs: set[tuple[str, str, str]]  # earlier runs' copies: left out
    rows: dict[tuple[str, str, str], int]  # rows to export per dialogue (hf) or turns per dialogue (messages)
    superseded: int

    @classmethod
    def find(cls, con, where: str | None, include_dropped: bool, whole_dialogues: bool) -> "_Selection":
        sel = f"({where})" if where and where.strip() else "TRUE"
        counted = "TRUE" if include_dropped else "dialogue_kept IS TRUE"
        groups = _rows(con, f"SELECT corpus, dialogue_id, run_id, count(*) FILTER (WHERE {counted}) "
                            f"FROM dialogues WHERE {sel} GROUP BY ALL", where)
        newest: dict[tuple[str, str], str] = {}
        for c, d, run, _ in groups:
            if run is not None and (newest.get((c, d)) is None or run > newest[(c, d)]):
                newest[(c, d)] = run
        old = {(c, d, run) for c, d, run, _ in groups if run != newest.get((c, d))}
        chosen = {(c, d, run): n for c, d, run, n in groups if (c, d, run) not in old and n}
        if not whole_dialogues:
            return cls(set(chosen), old, chosen, sum(n for c, d, run, n in groups if (c, d, run) in old))
        turns = {(c, d, run): n for c, d, run, n in _rows(
            con, "SELECT corpus, dialogue_id, run_id, count(*) FROM dialogues WHERE dialogue_kept IS TRUE GROUP BY ALL",
            where) if (c, d, run) in chosen}
        superseded = sum(1 for c, d, run, n in groups if (c, d, run) in old and n)
        return cls(set(turns), old, turns, superseded)

    def filter(self, batch: pa.RecordBatch, only_latest: bool) -> pa.RecordBatch:
        keys = zip(*(batch.column(c).to_pylist() for c in ("corpus", "dialogue_id", "run_id")))
        if only_latest:
            mask = [k in self.latest for k in keys]
        elif not self.superseded_runs:
            return batch
        else:
            mask = [k not in self.superseded_runs for k in keys]
        return batch.filter(pa.array(mask, pa.bool_()))


# ---- writers -----------------------------------------------------------------------------
class _MessagesWriter:
    """dialogues.jsonl and audio/<dialogue_id>/<turn_index>.flac; a dialogue's line once all its turns came."""

    def __init__(self, stage: Path, turns: dict[tuple[str, str, str], int], result: DialogueExportResult) -> None:
        self.stage, self.turns, self.result = stage, turns, result
        self.pending: dict[tuple[str, str, str], list[dict]] = {}
        self._out = open(stage / DIALOGUES_FILE, "w", encoding="utf-8")

    def write(self, batch: pa.RecordBatch) -> None:
        for row in batch.to_pylist():
            key = (row["corpus"], row["dialogue_id"], row["run_id"])
            self.pending.setdefault(key, []).append(self._turn(row))
            self.result.turns += 1
            if len(self.pending[key]) == self.turns[key]:
                self._emit(key)

    def _turn(self, row: dict) -> dict:
        dialogue, index, role, form = row["dialogue_id"], row["turn_index"], row["role"], row["dialogue_form"]
        where = f"dialogue {dialogue} (corpus {row['corpus']}, run {row['run_id']}) turn {index}"
        if not isinstance(dialogue, str) or not _SAFE_ID.fullmatch(dialogue):
            raise ExportError(f"dialogue id {dialogue!r} (corpus {row['corpus']}) cannot name a folder")
        if form not in FORMS:
            raise ExportError(f"{where}: the dialogue is kept but its dialogue_form is {form!r}, not one of "
                              f"{', '.join(FORMS)}")
        if role not in ROLES or index is None:
            raise ExportError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}" if role not in ROLES
                              else f"{where}: no turn_index")
        content: list[dict] = [{"type": "text", "text": row["text"] or ""}]
        if role == "user" or (role == "assistant" and form == "speech"):
            cell = row["audio"]
            if cell is None or cell["bytes"] is None:
                raise ExportError(f"{where} ({role}) has no audio, yet the dialogue is kept as {form}; "
                                  "run `refinery manifest verify`")
            rel = f"audio/{dialogue}/{index}.flac"
            path = self.stage / rel
            if path.exists():
                raise ExportError(f"{where}: a second turn {index} (a repeated turn_index); run `refinery manifest verify`")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(cell["bytes"])
            frames, rate = _audio_info(cell["bytes"])
            self.result.add_audio(row["language"], frames / rate)
            content.append({"type": "audio", "audio_path": rel, "duration": frames / rate, "voice_id": row["voice_id"]})
        return {"turn_index": index, "role": role, "form": form, "content": content}

    def _emit(self, key: tuple[str, str, str]) -> None:
        turns = sorted(self.pending.pop(key), key=lambda t: t["turn_index"])
        indices = [t["turn_index"] for t in turns]
        if indices != list(range(len(turns))):
            raise ExportError(f"dialogue {key[1]} (corpus {key[0]}, run {key[2]}): its turns are numbered {indices}, "
                              f"not 0..{len(turns) - 1}; run `refinery manifest verify`")
        form = turns[0]["form"]
        line = {"id": key[1], "form": form,
                "messages": [{"role": t["role"], "content": t["content"]} for t in turns]}
        self._out.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.result.dialogues += 1
        self.result.dialogues_by_form[form] = self.result.dialogues_by_form.get(form, 0) + 1

    def close(self) -> list[str]:
        self._out.close()
        if self.pending:
            raise ExportError(f"{len(self.pending)} dialogue(s) were not read whole (e.g. {next(iter(self.pending))[1]}): "
                              "did a run commit during the export? Run it again.")
        return [DIALOGUES_FILE]


def _hf_features() -> dict:
    return json.loads(with_hf_metadata(DIALOGUE_SCHEMA).metadata[b"huggingface"])["info"]["features"]


def _count_hf(result: DialogueExportResult, batch: pa.RecordBatch, dialogues: dict) -> None:
    result.turns += batch.num_rows
    names = ("corpus", "dialogue_id", "run_id", "dialogue_form", "language", "duration")
    cols = [batch.column(c).to_pylist() for c in names]
    audio = pc.is_valid(pc.struct_field(batch.column("audio"), "bytes")).to_pylist()
    for c, d, run, form, lang, dur, has_audio in zip(*cols, audio):
        dialogues[(c, d, run)] = form
        if has_audio:
            result.add_audio(lang, dur or 0.0)


# ---- the export --------------------------------------------------------------------------
def export_dialogues(
    out_dir: str | Path,
    dest: str | Path,
    fmt: str,
    *,
    where: str | None = None,
    corpus: str | None = None,
    include_dropped: bool = False,
    shard_mb: float = 500.0,
    batch_rows: int = 64,
    overwrite: bool = False,
    progress: Callable[[int, float], None] | None = None,
) -> DialogueExportResult:
    """Write the selected dialogues of the dialogue corpora under OUT (or the one named) under
    ``dest`` in format ``fmt``; see the module docstring. ``progress(turns, seconds)`` after each
    batch. Raises ExportError (and ManifestError, RefusedSQL) with a message for the user."""
    from inspection.query import open_views  # duckdb: imported when used

    if fmt not in DIALOGUE_FORMATS:
        raise ExportError(f"--format {fmt} does not export dialogue corpora (dialogue formats: "
                          f"{', '.join(DIALOGUE_FORMATS)})")
    if fmt == "messages" and include_dropped:
        raise ExportError("--format messages holds kept dialogues only; --all works with --format hf (every turn row)")
    if shard_mb <= 0:
        raise ExportError("shard size must be > 0 MB")
    check_where(where)
    if export_kind(out_dir, corpus, fmt)[0] != "dialogues":
        raise ExportError(f"--format {fmt}: {f'corpus {corpus!r}' if corpus else out_dir} holds no dialogue corpus")
    dest = Path(dest).absolute()
    _check_destination(dest, overwrite)

    con = open_views(out_dir, corpus, include_audio=True)
    try:
        messages = fmt == "messages"
        selection = _Selection.find(con, where, include_dropped, whole_dialogues=messages)
        if not selection.rows:
            kept = "" if include_dropped else "kept "
            raise ExportError(f"no {kept}dialogues match" + (f" --where {where!r}" if where else ""))
        repeated = [d for d, n in Counter(d for _, d, _ in selection.latest).items() if n > 1]
        if messages and repeated:
            raise ExportError(f"dialogue {repeated[0]} is in more than one corpus; export one corpus at a time (--corpus)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        result = DialogueExportResult(format=fmt, path=str(dest), superseded=selection.superseded)
        try:
            if messages:
                writer = _MessagesWriter(stage, selection.rows, result)
                cols, pred = _MESSAGE_COLUMNS, "dialogue_kept IS TRUE"
            else:
                writer = _HfWriter(stage, dest, int(shard_mb * 1e6), features=_hf_features(),
                                   what="audio-refinery dialogue turns")
                cols = tuple(DIALOGUE_SCHEMA.names)
                sel = f" AND ({where})" if where and where.strip() else ""
                pred = ("TRUE" if include_dropped else "dialogue_kept IS TRUE") + sel
            dialogues: dict[tuple[str, str, str], str | None] = {}  # hf: exported dialogue -> its form
            names = ", ".join(f'"{c}"' for c in cols)
            sql = f"SELECT {names} FROM dialogues WHERE {pred}"
            with con.sql(sql).to_arrow_reader(batch_rows) as reader:
                for batch in reader:
                    batch = selection.filter(batch, only_latest=messages)
                    if batch.num_rows == 0:
                        continue
                    writer.write(batch)
                    if not messages:
                        _count_hf(result, batch, dialogues)
                    if progress is not None:
                        progress(result.turns, result.seconds)
            result.files = writer.close()
            if not messages:
                result.dialogues = len(dialogues)
                result.dialogues_by_form = dict(Counter(form or "none" for form in dialogues.values()))
                if result.turns != sum(selection.rows.values()):
                    raise ExportError(f"selected {sum(selection.rows.values())} turn row(s) but read {result.turns}: "
                                      "did a run commit during the export? Run it again.")
            _write_manifest(stage, result, out_dir=out_dir, corpus=corpus, where=where,
                            include_dropped=include_dropped)
            _swap_into_place(stage, dest)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    finally:
        con.close()
    return result


def _write_manifest(stage: Path, result: DialogueExportResult, **selection) -> None:
    doc = {
        "format": result.format,
        "kind": "dialogues",
        "source": str(selection["out_dir"]),
        "corpus": selection["corpus"],
        "where": selection["where"],
        "include_dropped": selection["include_dropped"],
        "dialogues": result.dialogues,
        "dialogues_by_form": dict(sorted(result.dialogues_by_form.items())),
        "turns": result.turns,
        "audio_files": result.audio_files,
        "superseded_left_out": result.superseded,
        "seconds": result.seconds,
        "hours": result.hours,
        "hours_by_language": {k: v / 3600 for k, v in sorted(result.seconds_by_language.items())},
        "files": result.files,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (stage / MANIFEST_FILE).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


__all__ = ["DIALOGUE_FORMATS", "DialogueExportResult", "export_dialogues", "export_kind"]
