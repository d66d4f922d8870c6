"""`refinery eval pipeline`: score what `refinery run` ships, end to end, against references.

The other `refinery eval` commands measure one component on its own. This one runs the
real `refinery run` path (``pipeline.run.run_pipeline``, every stage, the writer and the
ledger) into a temporary output, reads back that run's Parquet segment shards and ledger
rows, and scores them; ``--out`` scores an output that already exists instead.

References are same-stem sidecars of each media file: ``<stem>.rttm`` (speaker turns) and
``<stem>.txt`` (transcript), in ``--ref`` or beside the audio. The hypothesis is what
training would get: the KEPT segments (``kept == true``), each its full ``[start, end]``
span with its ``speaker`` label ("speech" when null). So speech the segment merger bridged
is false alarm, and speech in dropped segments (too short, filtered) is missed.

Per file, with the UEM the whole file ``[0, duration_s]`` (duration from the ledger):

- ``der`` / ``der_collar_0.25``: pyannote.metrics DER, overlapped speech scored, collar
  0 and 0.25 s; ``missed`` / ``false_alarm`` / ``confusion``: the collar-0 components as
  fractions of reference speech.
- ``purity`` / ``coverage``: pyannote.metrics segmentation purity and coverage of the kept
  segments against the RTTM (None when no kept segment meets reference speech: pyannote
  would say 1.0 for an empty hypothesis).
- ``kept_speech_recall``: reference speech (union of the turns) inside the union of the
  kept segments, over reference speech.
- ``wer`` (English reference) or ``cer`` (CJK reference): the kept segments' text in time
  order against the .txt, scored by ``transcription.scoring`` as `refinery eval asr` does.
- counts: segments, kept segments and seconds, drops by check (``drop_reason`` up to the
  first ':').

Totals (per ``--audio`` folder and overall) accumulate components as pyannote.metrics
does (not a mean of per-file rates); WER/CER are corpus-level (errors / reference units).
A source the run failed ships nothing and has no duration: it is listed with its ledger
error and left out of the rates; a source that finished but kept nothing is scored (all
its reference speech missed) and listed under ``recordings_without_kept``.

The scoring functions take plain rows (dicts of segment columns) and references and
import neither Ray nor the pipeline; only the command runs the pipeline.
"""

from __future__ import annotations

import json
import os
import shlex
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Iterable

import click

from sources.discovery import MEDIA_EXTENSIONS
from transcription.scoring import Score, reference_language, score, total_rate

COLLARS = (0.0, 0.25)
DEFAULT_CORPUS = "eval"
SEGMENT_COLUMNS = ["recording_id", "run_id", "source_uri", "start", "end", "duration", "speaker", "kept",
                   "drop_reason", "text"]
LEDGER_COLUMNS = ["source_uri", "sha256", "recording_id", "run_id", "config_hash", "status", "error", "duration_s",
                  "finished_at"]
RATE_KEYS = ("der", "der_collar_0.25", "missed", "false_alarm", "confusion", "purity", "coverage",
             "kept_speech_recall", "wer", "cer")
COUNT_KEYS = ("segments", "kept_segments", "kept_s")


class EvalError(ValueError):
    """Inputs or an output that cannot be evaluated; the command prints it as one line."""


def der_key(collar: float) -> str:
    return "der" if collar == 0 else f"der_collar_{collar:g}"


# ---- inputs --------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalFile:
    key: str  # the file's key in the report: its stem, "group/stem" when two groups share a stem
    group: str
    path: Path
    rttm: Path | None
    txt: Path | None

    @property
    def uri(self) -> str:
        return str(self.path.resolve())  # what discovery records as source_uri for a local file


def find_inputs(audio_dirs: Iterable[str | Path], ref_dir: str | Path | None = None) -> list[EvalFile]:
    """Every media file in each folder (not recursive), grouped by folder, with its sidecar references."""
    ref = Path(ref_dir) if ref_dir is not None else None
    if ref is not None and not ref.is_dir():
        raise EvalError(f"--ref {ref}: no such directory")
    groups: list[tuple[str, list[Path]]] = []
    seen: set[Path] = set()
    for d in map(Path, audio_dirs):
        if not d.is_dir():
            raise EvalError(f"--audio {d}: no such directory")
        if d.resolve() in seen:
            continue
        seen.add(d.resolve())
        media = sorted(p for p in d.iterdir()
                       if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS and not p.name.startswith("."))
        if not media:
            raise EvalError(f"--audio {d}: no media files ({', '.join(sorted(MEDIA_EXTENSIONS)[:6])}, ...)")
        name = Path(os.path.abspath(d)).name or str(d)  # the folder's own name (a symlinked folder keeps it)
        if name in {g for g, _ in groups}:
            name = str(d)
        groups.append((name, media))
    if not groups:
        raise EvalError("no --audio directory given")
    groups_of_stem: dict[str, set[str]] = defaultdict(set)
    for g, media in groups:
        for p in media:
            groups_of_stem[p.stem].add(g)
    files = []
    for g, media in groups:
        stems = [p.stem for p in media]
        for p in media:
            base = p.stem if stems.count(p.stem) == 1 else p.name
            key = base if len(groups_of_stem[p.stem]) == 1 else f"{g}/{base}"
            where = ref or p.parent
            rttm, txt = where / f"{p.stem}.rttm", where / f"{p.stem}.txt"
            files.append(EvalFile(key, g, p, rttm if rttm.is_file() else None, txt if txt.is_file() else None))
    return files


def load_reference(file: EvalFile) -> tuple[Any, str | None]:
    """(RTTM annotation or None, transcript or None) of one input."""
    from evaluation.diarization import load_rttm

    rttm = load_rttm(file.rttm) if file.rttm else None
    text = file.txt.read_text(encoding="utf-8").strip() if file.txt else None
    return rttm, text


# ---- scoring (plain rows in, dicts out; no Ray) -------------------------------------------

def _duration(s: dict) -> float:
    d = s.get("duration")
    return float(d) if d is not None else float(s["end"] - s["start"])


def kept_rows(segments: list[dict]) -> list[dict]:
    return sorted((s for s in segments if s.get("kept")), key=lambda s: (s["start"], s["end"]))


def drop_check(reason: str | None) -> str:
    """The check that dropped a segment: ``drop_reason`` up to its first ':'."""
    return (reason or "unknown").split(":", 1)[0].strip() or "unknown"


def segment_counts(segments: list[dict]) -> dict:
    """segments, kept_segments, kept_s and drops {check: {segments, seconds}} of one recording's rows."""
    kept = [s for s in segments if s.get("kept")]
    drops: dict[str, dict] = {}
    for s in segments:
        if not s.get("kept"):
            d = drops.setdefault(drop_check(s.get("drop_reason")), {"segments": 0, "seconds": 0.0})
            d["segments"] += 1
            d["seconds"] += _duration(s)
    return {"segments": len(segments), "kept_segments": len(kept), "kept_s": sum(_duration(s) for s in kept),
            "drops": drops}


def kept_annotation(segments: list[dict], uri: str = "hyp"):
    """The kept segments as a pyannote Annotation: one track per segment, labelled by speaker."""
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=uri)
    for i, s in enumerate(kept_rows(segments)):
        if s["end"] > s["start"]:
            ann[Segment(s["start"], s["end"]), i] = s.get("speaker") or "speech"
    return ann


def union(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted((float(a), float(b)) for a, b in spans if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def overlap_s(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds in both of two unions (sorted, disjoint spans)."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0.0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def kept_speech(reference_spans: Iterable[tuple[float, float]], segments: list[dict],
                duration_s: float | None) -> dict:
    """{reference_s, kept_reference_s}: reference speech inside [0, duration_s], and how much of it is kept."""
    end = float("inf") if duration_s is None else float(duration_s)
    ref = union((max(0.0, a), min(b, end)) for a, b in reference_spans)
    hyp = union((s["start"], s["end"]) for s in kept_rows(segments))
    return {"reference_s": sum(b - a for a, b in ref), "kept_reference_s": overlap_s(ref, hyp)}


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def diarization_scores(reference, segments: list[dict], duration_s: float | None) -> dict:
    """DER (each collar), its components, purity, coverage and kept-speech recall of one recording.

    ``reference`` is a pyannote Annotation (the RTTM); the UEM is [0, duration_s]. Returns the
    figures and, under "components", what the totals add up.
    """
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate
    from pyannote.metrics.segmentation import SegmentationCoverage, SegmentationPurity

    hyp = kept_annotation(segments, uri=reference.uri or "ref")
    uem = None
    ref = reference
    if duration_s is not None:
        uem = Timeline([Segment(0.0, float(duration_s))], uri=reference.uri)
        ref, hyp = reference.crop(uem), hyp.crop(uem)
    out: dict[str, Any] = {}
    comps: dict[str, dict] = {}
    for collar in COLLARS:
        metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
        detail = {k: float(v) for k, v in metric.compute_components(reference, hyp, uem=uem).items()}
        comps[der_key(collar)] = detail
        out[der_key(collar)] = float(metric.compute_metric(detail))
    out.update(_der_fractions(comps["der"]))
    for name, cls in (("purity", SegmentationPurity), ("coverage", SegmentationCoverage)):
        metric = cls()
        detail = {k: float(v) for k, v in metric.compute_components(ref, hyp).items()}
        comps[name] = detail
        out[name] = _segmentation_rate(cls, detail)
    recall = kept_speech(((s.start, s.end) for s in reference.itersegments()), segments, duration_s)
    comps["kept_speech"] = recall
    out["kept_speech_recall"] = _ratio(recall["kept_reference_s"], recall["reference_s"])
    out["components"] = comps
    return out


def _der_fractions(detail: dict) -> dict:
    total = detail["total"]
    return {"missed": _ratio(detail["missed detection"], total), "false_alarm": _ratio(detail["false alarm"], total),
            "confusion": _ratio(detail["confusion"], total)}


def _segmentation_rate(cls, detail: dict) -> float | None:
    from pyannote.metrics.segmentation import PTY_CVG_TOTAL

    return None if detail[PTY_CVG_TOTAL] == 0 else float(cls().compute_metric(detail))


def transcript_score(segments: list[dict], reference_text: str) -> Score:
    """WER (English reference) or CER (CJK reference) of the kept segments' text in time order."""
    lang = reference_language(reference_text)
    texts = [s["text"] for s in kept_rows(segments) if s.get("text")]
    return score(("" if lang == "zh" else " ").join(texts), reference_text, lang)


def score_file(segments: list[dict], duration_s: float | None, reference=None,
               transcript: str | None = None) -> dict:
    """Counts, and the figures of each reference given, for one recording's segment rows."""
    out: dict[str, Any] = segment_counts(segments)
    comps: dict[str, Any] = {}
    if reference is not None:
        figures = diarization_scores(reference, segments, duration_s)
        comps.update(figures.pop("components"))
        out.update(figures)
    if transcript is not None:
        s = transcript_score(segments, transcript)
        out[s.metric] = s.rate
        comps["asr"] = {"metric": s.metric, "errors": s.errors, "units": s.units}
    out["components"] = comps
    return out


def _add(into: dict, detail: dict) -> None:
    for k, v in detail.items():
        into[k] = into.get(k, 0.0) + v


def totals(files: dict[str, dict]) -> dict:
    """Totals over file reports (as `score_file` makes them, plus status/error): components summed."""
    from pyannote.metrics.diarization import DiarizationErrorRate
    from pyannote.metrics.segmentation import SegmentationCoverage, SegmentationPurity

    comps: dict[str, dict] = defaultdict(dict)
    scores: list[Score] = []
    drops: dict[str, dict] = {}
    out: dict[str, Any] = {"sources": len(files), "done": 0, "failed": 0, "with_rttm": 0, "with_txt": 0,
                           "without_reference": 0, "duration_s": 0.0, "segments": 0, "kept_segments": 0,
                           "kept_s": 0.0}
    without_kept, failed = [], {}
    for key, f in files.items():
        refs = f.get("references", [])
        out["with_rttm"] += "rttm" in refs
        out["with_txt"] += "txt" in refs
        out["without_reference"] += not refs
        if f.get("status") != "done":
            out["failed"] += 1
            failed[key] = f.get("error") or f.get("status") or "failed"
            continue
        out["done"] += 1
        out["duration_s"] += f.get("duration_s") or 0.0
        for k in COUNT_KEYS:
            out[k] += f[k]
        if not f["kept_segments"]:
            without_kept.append(key)
        for reason, d in f["drops"].items():
            _add(drops.setdefault(reason, {"segments": 0, "seconds": 0.0}), d)
        for name, detail in f["components"].items():
            if name == "asr":
                scores.append(Score(detail["metric"], detail["errors"], detail["units"], "", ""))
            else:
                _add(comps[name], detail)
    out["drops"] = {r: drops[r] for r in sorted(drops)}
    for collar in COLLARS:
        k = der_key(collar)
        out[k] = float(DiarizationErrorRate(collar=collar).compute_metric(comps[k])) if comps.get(k) else None
    out.update(_der_fractions(comps["der"]) if comps.get("der") else {"missed": None, "false_alarm": None,
                                                                      "confusion": None})
    for name, cls in (("purity", SegmentationPurity), ("coverage", SegmentationCoverage)):
        out[name] = _segmentation_rate(cls, comps[name]) if comps.get(name) else None
    ks = comps.get("kept_speech")
    out["kept_speech_recall"] = _ratio(ks["kept_reference_s"], ks["reference_s"]) if ks else None
    for metric in ("wer", "cer"):
        out[metric] = total_rate(scores, metric)
        chosen = [s for s in scores if s.metric == metric]
        out[f"{metric}_errors"], out[f"{metric}_units"] = sum(s.errors for s in chosen), sum(s.units for s in chosen)
    out["recordings_without_kept"] = without_kept
    out["failed_sources"] = failed
    return out


def build_report(results: list[tuple[EvalFile, dict, list[dict]]], run_id: str, config_hash: str) -> dict:
    """The report of one run: ``results`` is (input, its resolved ledger row, its segment rows) per file.

    The ledger row needs status, error, duration_s (and run_id: where its segments are).
    """
    files: dict[str, dict] = {}
    for file, row, segments in results:
        refs = [k for k, p in (("rttm", file.rttm), ("txt", file.txt)) if p]
        entry: dict[str, Any] = {"group": file.group, "source": str(file.path), "references": refs,
                                 "status": row.get("status"), "error": row.get("error"),
                                 "duration_s": row.get("duration_s"), "run_id": row.get("run_id")}
        if row.get("status") == "done":
            reference, transcript = load_reference(file)
            entry.update(score_file(segments, row.get("duration_s"), reference, transcript))
        files[file.key] = entry
    groups = {}
    for g in dict.fromkeys(f.group for f, _, _ in results):
        groups[g] = totals({k: v for k, v in files.items() if v["group"] == g})
    total = totals(files)
    return {"config_hash": config_hash, "run_id": run_id, "files": files, "groups": groups, "total": total,
            "drops": total["drops"], "collars": list(COLLARS)}


# ---- reading an output ---------------------------------------------------------------------

@dataclass
class RunOutput:
    run_id: str
    config_hash: str
    ledger: list[dict]  # every ledger row of the corpus (LEDGER_COLUMNS)
    layout: Any

    def rows_of_run(self) -> list[dict]:
        return [r for r in self.ledger if r["run_id"] == self.run_id]


def open_output(out_dir: str | Path, corpus: str, run_id: str | None = None) -> RunOutput:
    """The ledger of a corpus under an output, and the run to score (default: its latest)."""
    from manifests.layout import CorpusLayout, corpora
    from manifests.ledger import Ledger

    try:
        layout = CorpusLayout(out_dir, corpus)
    except ValueError as exc:
        raise EvalError(str(exc)) from None
    ledger = Ledger(layout).read(LEDGER_COLUMNS).to_pylist()
    if not ledger:
        names = corpora(out_dir)
        raise EvalError(f"no corpus {corpus!r} with a ledger under {out_dir}"
                        + (f" (corpora there: {', '.join(names)}; use --corpus)" if names else ""))
    run_id = run_id or max(r["run_id"] for r in ledger)  # run ids start with their UTC start time
    hashes = {r["config_hash"] for r in ledger if r["run_id"] == run_id}
    if not hashes:
        raise EvalError(f"run {run_id} of corpus {corpus!r} committed nothing to the ledger")
    return RunOutput(run_id, sorted(hashes)[0], ledger, layout)


def read_run_segments(layout: Any, run_ids: Iterable[str]) -> list[dict]:
    """Segment rows (SEGMENT_COLUMNS, no audio) of every visible shard of the given runs."""
    import pyarrow.dataset as pads

    from manifests.ledger import Ledger

    wanted = {f"run={r}" for r in run_ids}
    files = [str(p) for p in Ledger(layout).shard_files() if p.parent.name in wanted]
    if not files:
        return []
    table = pads.dataset(files, format="parquet", filesystem=layout.arrow_filesystem).to_table(columns=SEGMENT_COLUMNS)
    return table.to_pylist()


def resolve(files: list[EvalFile], output: RunOutput) -> list[tuple[EvalFile, dict, list[dict]]]:
    """Each input's ledger row in the run (the done row it was skipped for, when it was) and its segments."""
    from sources.discovery import fingerprint

    in_run = output.rows_of_run()
    by_uri = {r["source_uri"]: r for r in in_run}
    done_by_sha = {}
    for r in sorted(output.ledger, key=lambda r: r["run_id"]):
        if r["status"] == "done" and r["config_hash"] == output.config_hash:
            done_by_sha[r["sha256"]] = r  # the latest done row of that content under this config
    rows = []
    for f in files:
        row = by_uri.get(f.uri)
        if row is None:  # the output was made from another copy of the file: match by content
            try:
                sha = fingerprint(str(f.path))[0]
            except OSError:
                sha = None
            row = next((r for r in in_run if sha and r["sha256"] == sha), None)
        if row is None:
            row = {"status": "missing", "error": f"not a source of run {output.run_id}", "run_id": output.run_id}
        elif row["status"] == "skipped" and row["sha256"] in done_by_sha:
            row = done_by_sha[row["sha256"]]
        rows.append((f, dict(row)))
    segments = read_run_segments(output.layout, {r["run_id"] for _, r in rows if r["status"] == "done"})
    by_recording: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for s in segments:
        by_recording[(s["run_id"], s["recording_id"])].append(s)
    return [(f, r, by_recording.get((r.get("run_id"), r.get("recording_id")), [])) for f, r in rows]


def score_output(files: list[EvalFile], out_dir: str | Path, corpus: str, run_id: str | None = None) -> dict:
    """Score a run already in an output (default: the corpus' latest run) against the inputs' references."""
    output = open_output(out_dir, corpus, run_id)
    return build_report(resolve(files, output), output.run_id, output.config_hash)


# ---- text ----------------------------------------------------------------------------------

def _fmt(v: Any, width: int) -> str:
    if v is None:
        return f"{'-':>{width}}"
    if isinstance(v, float):
        return f"{v:>{width}.3f}"
    return f"{v!s:>{width}}"


_FILE_COLS = (("der", "der"), ("der_collar_0.25", "der.25"), ("missed", "miss"), ("false_alarm", "fa"),
              ("confusion", "conf"), ("purity", "pur"), ("coverage", "cov"), ("kept_speech_recall", "recall"),
              ("wer", "wer"), ("cer", "cer"), ("segments", "segs"), ("kept_segments", "kept"), ("kept_s", "kept_s"))


def report_text(report: dict) -> str:
    keys = list(report["files"]) + [f"{g} (group)" for g in report["groups"]] + ["total"]
    w = max(len(k) for k in keys) + 2
    lines = [f"run {report['run_id']}  config {report['config_hash']}  (DER with collars "
             f"{', '.join(f'{c:g}' for c in report['collars'])} s, overlapped speech scored, UEM the whole file; "
             f"hypothesis: kept segments)",
             f"{'file':<{w}}" + "".join(f"{h:>8}" for _, h in _FILE_COLS)]
    for key, f in report["files"].items():
        if f["status"] != "done":
            lines.append(f"{key:<{w}}  {f['status']}: {f['error']}")
            continue
        lines.append(f"{key:<{w}}" + "".join(_fmt(f.get(c), 8) for c, _ in _FILE_COLS))
    rows = [(f"{g} (group)", t) for g, t in report["groups"].items()] if len(report["groups"]) > 1 else []
    for name, t in rows + [("total", report["total"])]:
        lines.append(f"{name:<{w}}" + "".join(_fmt(t.get(c), 8) for c, _ in _FILE_COLS))
    t = report["total"]
    lines.append(f"{t['sources']} source(s): {t['done']} done, {t['failed']} failed or not in the run; "
                 f"{t['with_rttm']} with .rttm, "
                 f"{t['with_txt']} with .txt, {t['without_reference']} without reference (counted only)")
    for reason, d in report["drops"].items():
        lines.append(f"dropped: {d['segments']} segment(s), {d['seconds']:.1f} s: {reason}")
    if t["recordings_without_kept"]:
        lines.append(f"nothing kept: {', '.join(t['recordings_without_kept'])}")
    for key, why in t["failed_sources"].items():
        lines.append(f"failed: {key}: {why}")
    return "\n".join(lines)


def compare_rows(report: dict) -> list[tuple[str, Any]]:
    """(figure, value) rows of one report for the side-by-side table: totals, then per group, then drops."""
    t = report["total"]
    figures = (*RATE_KEYS, *COUNT_KEYS)
    rows = [(k, t.get(k)) for k in figures]
    rows += [("failed sources", t["failed"]), ("nothing kept", len(t["recordings_without_kept"]))]
    if len(report["groups"]) > 1:
        for g, gt in report["groups"].items():
            rows += [(f"{g}: {k}", gt.get(k)) for k in figures]
    return rows


def compare_text(variants: list[dict]) -> str:
    tables = [dict(compare_rows(v["report"])) for v in variants]
    reasons = sorted({r for v in variants for r in v["report"]["drops"]})
    for table, v in zip(tables, variants):
        for r in reasons:
            table[f"dropped s: {r}"] = v["report"]["drops"].get(r, {}).get("seconds", 0.0)
    names = list(dict.fromkeys(k for t in tables for k in t))
    w = max(len(n) for n in names) + 2
    cw = max(10, *(len(v["label"]) + 2 for v in variants))
    lines = [f"{'figure':<{w}}" + "".join(f"{v['label']:>{cw}}" for v in variants)]
    lines += [f"{n:<{w}}" + "".join(_fmt(t.get(n), cw) for t in tables) for n in names]
    lines.append("runs: " + ", ".join(f"{v['label']} {v['report']['run_id']} (config {v['report']['config_hash']})"
                                      for v in variants))
    return "\n".join(lines)


# ---- the command ---------------------------------------------------------------------------

def _one_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())  # a Ray task error carries its remote traceback: one line, cut short
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_compare(value: str) -> list[str]:
    """One --compare value: whitespace-separated key=value overrides (shell quoting allowed)."""
    try:
        items = shlex.split(value)
    except ValueError as exc:
        raise EvalError(f"--compare {value!r}: {exc}") from None
    if not items:
        raise EvalError("--compare needs at least one key=value override")
    return items


def run_and_score(files: list[EvalFile], cfg: Any, corpus: str, label: str) -> dict:
    """Run the pipeline on the inputs into a temporary output (deleted after) and score the run."""
    from pipeline.run import run_pipeline

    with TemporaryDirectory(prefix="refinery-eval-") as tmp:
        try:
            summary = run_pipeline([str(f.path) for f in files], corpus, tmp, cfg)
        except Exception as exc:  # noqa: BLE001 - any failure of the run is reported as one line
            raise click.ClickException(f"{label}: the run failed: {_one_line(exc)}") from None
        click.echo(f"{label}: {summary.describe()}", err=True)
        return score_output(files, tmp, corpus, summary.run_id)


@click.command("pipeline")
@click.option("--audio", "audio_dirs", multiple=True, required=True, metavar="DIR",
              help="folder of media files (repeatable; each folder is a group)")
@click.option("--ref", "ref_dir", metavar="DIR",
              help="folder of references <stem>.rttm / <stem>.txt (default: beside each audio file)")
@click.option("--config", "config_path", metavar="FILE", help="YAML config file")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key (repeatable)")
@click.option("--compare", "compares", multiple=True, metavar='"KEY=VALUE [KEY=VALUE ...]"',
              help="also run this variant (base config + --set + these overrides); repeatable")
@click.option("--out", "out_dir", metavar="OUT",
              help="score this existing output (its latest run of --corpus) instead of running")
@click.option("--corpus", default=DEFAULT_CORPUS, show_default=True, metavar="NAME", help="corpus name of the run")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def pipeline_cmd(audio_dirs, ref_dir, config_path, overrides, compares, out_dir, corpus, as_json) -> None:
    """Score what `refinery run` ships (its shards) end to end against references.

    Runs the pipeline on every media file in each --audio folder (a group) into a temporary
    output, or reads --out, and scores the kept segments against same-stem <stem>.rttm and
    <stem>.txt references: DER (collars 0 and 0.25 s), purity/coverage, kept-speech recall,
    WER/CER, and what was dropped by which check. --compare runs config variants side by side.
    """
    try:
        files = find_inputs(audio_dirs, ref_dir)
        if out_dir is not None:
            if compares:
                raise EvalError("--out scores an existing output; it cannot be combined with --compare")
            if config_path or overrides:
                click.echo("note: --config/--set are not used with --out (nothing is run)", err=True)
            click.echo(f"scoring {len(files)} file(s) against the latest run of corpus {corpus!r} in {out_dir}",
                       err=True)
            report = score_output(files, out_dir, corpus)
            click.echo(json.dumps(report, ensure_ascii=False, indent=1) if as_json else report_text(report))
            return
        variants = _variants(config_path, overrides, compares)
    except EvalError as exc:
        raise click.ClickException(str(exc)) from None
    results = []
    for i, (label, extra, cfg) in enumerate(variants, 1):
        prefix = f"variant {i}/{len(variants)}: {label}" if len(variants) > 1 else label
        click.echo(f"{prefix}: running {len(files)} file(s) (config {cfg.config_hash()}) into a temporary output",
                   err=True)
        try:
            report = run_and_score(files, cfg, corpus, prefix)
        except EvalError as exc:
            raise click.ClickException(f"{prefix}: {exc}") from None
        results.append({"label": label, "overrides": extra, "report": report})
    if as_json:
        out = results[0]["report"] if not compares else {"variants": results}
        click.echo(json.dumps(out, ensure_ascii=False, indent=1))
    else:
        click.echo(report_text(results[0]["report"]) if not compares else compare_text(results))


def _variants(config_path, overrides, compares) -> list[tuple[str, list[str], Any]]:
    """(label, the variant's own overrides, config) for the base and each --compare; all checked before any run."""
    from pipeline.config import ConfigError, load_config

    out = []
    for label, extra in [("base", [])] + [(" ".join(items), items) for items in map(parse_compare, compares)]:
        try:
            cfg = load_config(config_path, [*overrides, *extra])
        except ConfigError as exc:
            where = "" if label == "base" else f"--compare {label!r}: "
            raise EvalError(f"{where}{' '.join(str(exc).split())}") from None
        out.append((label, extra, cfg))
    return out
