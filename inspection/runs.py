"""Runs of the pipeline as data: the list (manifest runs) and what changed between two (manifest diff).

A run is known by ``runs/<run_id>/config.yaml`` and ``summary.json`` (written when it
finished) and by its ledger rows; see ``inspection.query.run_rows``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml

from manifests.layout import CorpusLayout
from inspection.query import ManifestError, open_views, read_text, run_rows, select_corpora

_ABSENT = "<absent>"


def list_runs(out_dir: str | Path, corpus: str | None = None) -> list[dict]:
    """One dict per run (inspection.query.RUNS_SCHEMA keys), oldest first within each corpus."""
    return [r for name in select_corpora(out_dir, corpus) for r in run_rows(out_dir, name)]


def find_run(out_dir: str | Path, run_id: str, corpus: str | None = None) -> dict:
    """The run with this id (or the one id this prefix starts); ManifestError if none or several."""
    runs = list_runs(out_dir, corpus)
    exact = [r for r in runs if r["run_id"] == run_id]
    matches = exact or [r for r in runs if r["run_id"].startswith(run_id)]
    if not matches:
        known = ", ".join(r["run_id"] for r in runs[-5:]) or "none"
        raise ManifestError(f"no run {run_id!r} under {out_dir} (latest: {known})")
    if len(matches) > 1:
        raise ManifestError(f"run {run_id!r} is ambiguous: " + ", ".join(f"{r['corpus']}/{r['run_id']}" for r in matches))
    return matches[0]


def flatten(tree, prefix: str = "") -> dict:
    """Nested dicts to dotted keys; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    out: dict = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def run_config(out_dir: str | Path, run: dict) -> dict | None:
    layout = CorpusLayout(out_dir, run["corpus"])
    text = read_text(layout, layout.run_dir(run["run_id"]) / "config.yaml")
    return None if text is None else yaml.safe_load(text) or {}


def config_diff(a: dict | None, b: dict | None) -> dict:
    """{dotted key: {"a": value, "b": value}} for every key whose value differs."""
    fa, fb = flatten(a or {}), flatten(b or {})
    return {k: {"a": fa.get(k, _ABSENT), "b": fb.get(k, _ABSENT)}
            for k in sorted(set(fa) | set(fb)) if fa.get(k, _ABSENT) != fb.get(k, _ABSENT)}


def _segment_figures(con, run_id: str) -> dict:
    total = con.sql(
        "SELECT count(*), count(*) FILTER (WHERE kept), coalesce(sum(duration), 0), "
        "coalesce(sum(duration) FILTER (WHERE kept), 0) FROM segments WHERE run_id = ?", params=[run_id]).fetchall()[0]
    dropped = con.sql(
        "SELECT coalesce(drop_reason, 'unspecified'), count(*), sum(duration) FROM segments "
        "WHERE run_id = ? AND NOT coalesce(kept, false) GROUP BY 1 ORDER BY 1", params=[run_id]).fetchall()
    langs = con.sql(
        "SELECT coalesce(language, 'unknown'), count(*), sum(duration) FROM segments "
        "WHERE run_id = ? AND kept GROUP BY 1 ORDER BY 1", params=[run_id]).fetchall()
    return {
        "segments": total[0], "segments_kept": total[1], "hours": total[2] / 3600, "hours_kept": total[3] / 3600,
        "dropped": {r: {"segments": n, "hours": s / 3600} for r, n, s in dropped},
        "languages": {lang: {"segments": n, "hours": s / 3600} for lang, n, s in langs},
    }


def _sources(con, run_id: str) -> dict[str, str]:
    # a source's retired row (manifests.retire names the run of the done row it retires) comes last and wins
    return dict(con.sql("SELECT source_uri, status FROM ledger WHERE run_id = ? ORDER BY 1, status = 'retired'",
                        params=[run_id]).fetchall())


def _pair(a: dict, b: dict) -> dict:
    zero = {"segments": 0, "hours": 0.0}
    return {k: {"a": a.get(k, zero), "b": b.get(k, zero)} for k in sorted(set(a) | set(b))}


def diff_runs(out_dir: str | Path, run_a: str, run_b: str, corpus: str | None = None) -> dict:
    """What changed from run A to run B: config key by key, sources, segments, drops, languages."""
    a, b = find_run(out_dir, run_a, corpus), find_run(out_dir, run_b, corpus)
    cons = {name: open_views(out_dir, name) for name in {a["corpus"], b["corpus"]}}
    ca, cb = cons[a["corpus"]], cons[b["corpus"]]
    src_a, src_b = _sources(ca, a["run_id"]), _sources(cb, b["run_id"])
    seg_a, seg_b = _segment_figures(ca, a["run_id"]), _segment_figures(cb, b["run_id"])
    conf_a, conf_b = run_config(out_dir, a), run_config(out_dir, b)
    return {
        "a": a,
        "b": b,
        "config": {
            "hash": {"a": a["config_hash"], "b": b["config_hash"]},
            "missing": [x["run_id"] for x, c in ((a, conf_a), (b, conf_b)) if c is None],
            "changed": config_diff(conf_a, conf_b),
        },
        "sources": {
            "added": [{"source_uri": u, "status": s} for u, s in src_b.items() if u not in src_a],
            "removed": [{"source_uri": u, "status": s} for u, s in src_a.items() if u not in src_b],
            "changed": [{"source_uri": u, "a": src_a[u], "b": s} for u, s in src_b.items() if u in src_a and src_a[u] != s],
            "unchanged": sum(1 for u, s in src_b.items() if src_a.get(u) == s),
        },
        "segments": {k: {"a": seg_a[k], "b": seg_b[k]} for k in ("segments", "segments_kept", "hours", "hours_kept")},
        "dropped": _pair(seg_a["dropped"], seg_b["dropped"]),
        "languages": _pair(seg_a["languages"], seg_b["languages"]),
    }


# ---- text -----------------------------------------------------------------------------------
def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _num(x, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def format_runs(runs: list[dict]) -> list[str]:
    header = ("corpus", "run", "config", "started", "wall s", "sources", "done", "failed", "skipped", "segments",
              "kept", "audio h", "kept h", "audio s/s")
    rows = [header]
    for r in runs:
        rows.append((r["corpus"], r["run_id"] + ("" if r["complete"] else " (unfinished)"), r["config_hash"] or "-",
                     _when(r["started_at"]), _num(r["wall_seconds"]), str(r["sources"]), str(r["done"]),
                     str(r["failed"]), str(r["skipped"]), str(r["segments"]), str(r["segments_kept"]),
                     _num(r["audio_seconds"] / 3600, "{:.3f}"), _num(r["kept_seconds"] / 3600, "{:.3f}"),
                     _num(r["throughput"], "{:.2f}")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = set(range(4, len(header)))
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def _fig(d: dict) -> str:
    return f"{d['segments']} seg {d['hours']:.3f} h"


def format_diff(d: dict) -> list[str]:
    a, b = d["a"], d["b"]
    lines = [f"A {a['corpus']}/{a['run_id']}  config {a['config_hash']}  started {_when(a['started_at'])}",
             f"B {b['corpus']}/{b['run_id']}  config {b['config_hash']}  started {_when(b['started_at'])}"]
    conf = d["config"]
    if conf["missing"]:
        lines.append(f"config: no config.yaml for {', '.join(conf['missing'])}")
    if conf["changed"]:
        lines.append(f"config: {len(conf['changed'])} key(s) differ")
        lines += [f"  {k}: {v['a']!r} -> {v['b']!r}" for k, v in conf["changed"].items()]
    elif not conf["missing"]:
        lines.append("config: same")
    s = d["sources"]
    lines.append(f"sources: {len(s['added'])} added, {len(s['removed'])} removed, {len(s['changed'])} changed status, "
                 f"{s['unchanged']} unchanged")
    lines += [f"  + {x['source_uri']} ({x['status']})" for x in s["added"]]
    lines += [f"  - {x['source_uri']} ({x['status']})" for x in s["removed"]]
    lines += [f"  ~ {x['source_uri']}: {x['a']} -> {x['b']}" for x in s["changed"]]
    g = d["segments"]
    lines.append(f"segments: {g['segments']['a']} -> {g['segments']['b']} "
                 f"(kept {g['segments_kept']['a']} -> {g['segments_kept']['b']}); "
                 f"hours {g['hours']['a']:.3f} -> {g['hours']['b']:.3f} "
                 f"(kept {g['hours_kept']['a']:.3f} -> {g['hours_kept']['b']:.3f})")
    if d["dropped"]:
        lines.append("dropped, by reason:")
        lines += [f"  {reason}: {_fig(v['a'])} -> {_fig(v['b'])}" for reason, v in d["dropped"].items()]
    if d["languages"]:
        lines.append("kept, by language:")
        lines += [f"  {lang}: {_fig(v['a'])} -> {_fig(v['b'])}" for lang, v in d["languages"].items()]
    return lines
