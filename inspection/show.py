"""Everything known about one segment or one source, found by any of its names.

An identifier is tried, in order, as a segment_id, then as a source: its recording_id,
its source URI (also as a local path, resolved), or a prefix (>= 6 hex digits) of its
content sha256. Audio bytes are never printed: each audio cell is summarised as
duration, rate and size, and can be written out as a WAV.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import soundfile as sf

from inspection.query import ManifestError, open_views, plain
from sources.redact import redact_meta, redact_text

MIN_SHA_PREFIX = 6
_SEGMENT_LIST_COLUMNS = ["segment_id", "run_id", "config_hash", "start", "end", "duration", "speaker", "language",
                         "kept", "drop_reason", "text"]


def audio_summary(cell: dict | None) -> dict | None:
    """{bytes, sample_rate, frames, duration_s, path} of one FLAC audio cell, or None."""
    if not cell or cell.get("bytes") is None:
        return None
    data = cell["bytes"]
    out = {"bytes": len(data), "path": cell.get("path")}
    try:
        info = sf.info(io.BytesIO(data))
        out.update(sample_rate=info.samplerate, frames=info.frames, duration_s=round(info.frames / info.samplerate, 6),
                   format=f"{info.format} {info.subtype}".strip())
    except (sf.LibsndfileError, RuntimeError) as exc:
        out["error"] = f"not readable as audio: {exc}"
    return out


@dataclass
class Found:
    """What an identifier names: segments (one per run that wrote it) or sources."""

    kind: str  # "segment" | "source"
    ident: str
    segments: list[dict] = field(default_factory=list)  # kind == segment: full rows, audio summarised
    sources: list[dict] = field(default_factory=list)  # kind == source: {source_uri, sha256, ledger, segments}

    def to_dict(self) -> dict:
        body = {"segments": self.segments} if self.kind == "segment" else {"sources": self.sources}
        return plain({"kind": self.kind, "id": self.ident, **body})


def _segment_rows(con, ident: str) -> list[dict]:
    rows = con.sql("SELECT * FROM segments WHERE segment_id = ? ORDER BY run_id DESC", params=[ident]).to_arrow_table().to_pylist()
    for r in rows:
        for col in ("audio", "audio_enhanced"):
            if col in r:
                r[col] = audio_summary(r[col])
    return rows


def _source_keys(con, ident: str) -> tuple[list[tuple[str, str | None]], bool]:
    """Distinct (source_uri, sha256) pairs the identifier names, and whether by sha256 prefix."""
    candidates = [ident]
    if "://" not in ident:
        try:
            candidates.append(str(Path(ident).expanduser().resolve()))
        except (OSError, RuntimeError):
            pass
    marks = ", ".join("?" for _ in candidates)
    exact = con.sql(
        f"SELECT DISTINCT source_uri, sha256 FROM ledger WHERE recording_id = ? OR source_uri IN ({marks}) ORDER BY 1",
        params=[ident, *candidates],
    ).fetchall()
    if exact:
        return exact, False
    prefix = ident.lower()
    if len(prefix) >= MIN_SHA_PREFIX and all(c in "0123456789abcdef" for c in prefix):
        return con.sql(
            "SELECT DISTINCT source_uri, sha256 FROM ledger WHERE starts_with(sha256, ?) ORDER BY 1", params=[prefix]
        ).fetchall(), True
    return [], False


def find(out_dir: str | Path, ident: str, corpus: str | None = None) -> Found:
    """Look `ident` up; raises ManifestError when nothing (or more than one content hash by prefix) matches."""
    con = open_views(out_dir, corpus, include_audio=True)
    segments = _segment_rows(con, ident)
    if segments:
        return Found("segment", ident, segments=segments)
    keys, by_prefix = _source_keys(con, ident)
    if not keys:
        raise ManifestError(f"{ident!r} is no segment_id, recording_id, source URI or sha256 prefix "
                            f"(>= {MIN_SHA_PREFIX} hex digits) under {out_dir}")
    hashes = {sha for _, sha in keys}
    if by_prefix and len(hashes) > 1:
        listed = "; ".join(f"{sha[:12]} {uri}" for uri, sha in keys[:10])
        raise ManifestError(f"sha256 prefix {ident!r} is ambiguous: {len(hashes)} sources ({listed}); give more digits")
    sources = []
    for uri, sha in keys:
        ledger = con.sql(
            "SELECT * FROM ledger WHERE source_uri = ? AND sha256 IS NOT DISTINCT FROM ? "
            "ORDER BY finished_at NULLS LAST, run_id", params=[uri, sha]
        ).to_arrow_table().to_pylist()
        for row in ledger:
            if isinstance(row.get("source_meta"), str):  # a JSON column: shown as the object it holds
                try:  # redacted again: rows written before fetch redacted its URLs may hold credentials
                    row["source_meta"] = redact_meta(json.loads(row["source_meta"]))
                except ValueError:
                    row["source_meta"] = redact_text(row["source_meta"])
        cols = ", ".join(f'"{c}"' for c in _SEGMENT_LIST_COLUMNS)
        segs = con.sql(
            f"SELECT {cols} FROM segments WHERE source_uri = ? ORDER BY run_id, start, segment_id", params=[uri]
        ).to_arrow_table().to_pylist()
        sources.append({"source_uri": uri, "sha256": sha, "ledger": ledger, "segments": segs})
    return Found("source", ident, sources=sources)


def segment_audio(out_dir: str | Path, segment_id: str, corpus: str | None = None, run_id: str | None = None,
                  enhanced: bool = False) -> tuple[bytes, dict]:
    """FLAC bytes of one segment (the latest run's, or `run_id`'s) and the row's ids."""
    con = open_views(out_dir, corpus, include_audio=True)
    col = "audio_enhanced" if enhanced else "audio"
    sql = f"SELECT segment_id, run_id, config_hash, sample_rate, {col}['bytes'] AS flac FROM segments WHERE segment_id = ?"
    params = [segment_id]
    if run_id:
        sql += " AND run_id = ?"
        params.append(run_id)
    rows = con.sql(sql + " ORDER BY run_id DESC LIMIT 1", params=params).to_arrow_table().to_pylist()
    if not rows:
        where = f" in run {run_id}" if run_id else ""
        raise ManifestError(f"no segment {segment_id!r}{where} under {out_dir} (--wav and --play need a segment_id)")
    row = rows[0]
    if row["flac"] is None:
        raise ManifestError(f"segment {segment_id!r} (run {row['run_id']}) has no {col}"
                            + (" (the run did not enhance)" if enhanced else ""))
    return row.pop("flac"), row


def write_wav(flac: bytes, path: str | Path) -> dict:
    """Decode FLAC bytes and write them as a WAV (same rate, 16-bit or 24-bit PCM as the FLAC)."""
    try:
        info = sf.info(io.BytesIO(flac))
        samples, rate = sf.read(io.BytesIO(flac), dtype="int32" if info.subtype == "PCM_24" else "int16")
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise ManifestError(f"the audio cell does not decode as FLAC: {exc}") from None
    subtype = "PCM_24" if info.subtype == "PCM_24" else "PCM_16"
    sf.write(str(path), samples, rate, format="WAV", subtype=subtype)
    return {"path": str(path), "sample_rate": rate, "frames": len(samples), "duration_s": len(samples) / rate}


def players() -> list[list[str]]:
    """Command lines of the audio players found on PATH, best first."""
    out = []
    if shutil.which("ffplay"):
        out.append(["ffplay", "-nodisp", "-autoexit", "-loglevel", "error"])
    if shutil.which("aplay"):
        out.append(["aplay", "-q"])
    return out


def play(flac: bytes) -> str:
    """Play through ffplay or aplay; returns the player used. ManifestError when none works."""
    found = players()
    if not found:
        raise ManifestError("no audio player found (looked for ffplay and aplay on PATH); use --wav FILE and play it elsewhere")
    fd, tmp = tempfile.mkstemp(suffix=".wav", prefix="refinery-")
    os.close(fd)
    try:
        write_wav(flac, tmp)
        errors = []
        for cmd in found:
            proc = subprocess.run([*cmd, tmp], capture_output=True, text=True)
            if proc.returncode == 0:
                return cmd[0]
            errors.append(f"{cmd[0]}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['exit ' + str(proc.returncode)]}")
        raise ManifestError("could not play the audio (no audio device?): " + "; ".join(errors) + "; use --wav FILE instead")
    finally:
        os.unlink(tmp)


# ---- text -----------------------------------------------------------------------------------
def _audio_text(summary: dict | None) -> str:
    if summary is None:
        return "-"
    if "error" in summary:
        return f"{summary['bytes']} bytes, {summary['error']}"
    return (f"{summary['duration_s']:.3f} s at {summary['sample_rate']} Hz, {summary['frames']} frames, "
            f"{summary['bytes']} bytes ({summary['format']})")


def _value_text(key: str, value) -> str:
    if value is None:
        return "-"
    if key in ("audio", "audio_enhanced"):
        return _audio_text(value)
    if key == "words":
        return f"{len(value)} word(s): " + " ".join(f"{w['token']}[{w['start']:.2f}-{w['end']:.2f}]" for w in value)
    if key == "models":
        return ", ".join(f"{m['stage']}={m['model']}" for m in value) or "-"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _fields(row: dict, indent: str) -> list[str]:
    width = max((len(k) for k in row), default=0)
    return [f"{indent}{k:<{width}}  {_value_text(k, v)}" for k, v in row.items()]


def format_found(found: Found) -> list[str]:
    lines: list[str] = []
    if found.kind == "segment":
        for i, row in enumerate(found.segments):
            if len(found.segments) > 1:
                lines.append(f"segment {row['segment_id']} ({i + 1} of {len(found.segments)}: run {row['run_id']})")
            lines += _fields(row, "  " if len(found.segments) > 1 else "")
        return lines
    for src in found.sources:
        lines.append(f"source {src['source_uri']}")
        lines.append(f"  sha256 {src['sha256'] or '-'}")
        lines.append(f"  ledger: {len(src['ledger'])} row(s)")
        for row in src["ledger"]:
            lines.append(f"  - run {row['run_id']}: {row['status']}")
            lines += _fields({k: v for k, v in row.items() if k not in ("run_id", "status")}, "      ")
        lines.append(f"  segments: {len(src['segments'])}")
        for s in src["segments"]:
            state = "kept" if s["kept"] else f"dropped: {s['drop_reason'] or 'unspecified'}"
            text = (s["text"] or "").replace("\n", " ")
            text = text if len(text) <= 60 else text[:57] + "..."
            lines.append(f"    {s['segment_id']}  run {s['run_id']}  {s['start']:.3f}-{s['end']:.3f} s  "
                         f"{s['speaker'] or '-'}  {s['language'] or '-'}  {state}  {text}")
    return lines
