"""A self-contained HTML report of what runs wrote: summary tables and plots.

Every figure comes from a DuckDB aggregate over the views of ``inspection.query.open_views``
(audio columns never read; the shards are scanned, never loaded), is drawn with
matplotlib's Agg canvas (no pyplot, no display) and is embedded as a base64 PNG, so the
page needs nothing but itself.

Plots (``<img id=...>``): hours by language, hours by corpus, segment lengths, speakers
per recording, drop reasons (segments and hours), DNSMOS OVRL (a note instead when no
segment has a value). Tables: each corpus's sources by status, segments, kept hours and
runs; the latest runs.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from inspection.query import open_views

LENGTH_BIN_S = 1.0
LENGTH_MAX_S = 30  # the last bin holds everything from here on
DNSMOS_BIN = 0.1
TOP_REASONS = 12
MAX_RUNS = 50
MAX_REASON_ROWS = 50
KEPT_COLOR, DROPPED_COLOR, ACCENT = "#2b6cb0", "#d69e2e", "#2f855a"


@dataclass
class Plot:
    id: str
    title: str
    png: bytes
    caption: str = ""


@dataclass
class ReportResult:
    path: str
    plots: list[str] = field(default_factory=list)  # img ids, in page order
    notes: list[str] = field(default_factory=list)
    totals: dict = field(default_factory=dict)


# ---- aggregates --------------------------------------------------------------------------
def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.sql(sql).fetchall()


def collect(con: duckdb.DuckDBPyConnection) -> dict:
    """Every figure and table of the report, as small lists of tuples."""
    data: dict = {}
    data["corpora"] = _rows(con, """
        SELECT corpus, count(*), count(*) FILTER (WHERE kept),
               coalesce(sum(duration) FILTER (WHERE kept), 0) / 3600,
               coalesce(sum(duration) FILTER (WHERE NOT kept), 0) / 3600
        FROM segments GROUP BY corpus ORDER BY corpus""")
    # a source's status across runs, as inspection.stats.source_status decides it
    data["sources"] = _rows(con, """
        SELECT corpus, status, count(*), coalesce(sum(duration_s), 0) / 3600 FROM (
            SELECT corpus, coalesce(sha256, source_uri) AS source,
                   CASE WHEN count(*) FILTER (WHERE status = 'done') > count(*) FILTER (WHERE status = 'retired')
                        THEN 'done' WHEN bool_or(status = 'retired') THEN 'retired'
                        WHEN bool_or(status = 'failed') THEN 'failed' ELSE 'skipped' END AS status,
                   max(duration_s) FILTER (WHERE status = 'done') AS duration_s
            FROM ledger GROUP BY corpus, source)
        GROUP BY corpus, status ORDER BY corpus, status""")
    data["run_counts"] = dict(_rows(con, "SELECT corpus, count(*) FROM runs GROUP BY corpus"))
    data["runs"] = _rows(con, f"""
        SELECT run_id, corpus, strftime(started_at, '%Y-%m-%d %H:%M:%S'), complete, sources, done, failed, skipped,
               segments, segments_kept, kept_seconds / 3600, wall_seconds, throughput
        FROM runs ORDER BY started_at DESC NULLS LAST, run_id DESC LIMIT {MAX_RUNS}""")
    data["n_runs"] = _rows(con, "SELECT count(*) FROM runs")[0][0]
    data["language_hours"] = _rows(con, """
        SELECT coalesce(language, 'unknown'), sum(duration) / 3600 FROM segments WHERE kept
        GROUP BY 1 ORDER BY 2 DESC, 1""")
    data["lengths"] = _rows(con, f"""
        SELECT least(floor(duration / {LENGTH_BIN_S}) * {LENGTH_BIN_S}, {LENGTH_MAX_S}) AS b,
               count(*) FILTER (WHERE kept), count(*) FILTER (WHERE NOT kept)
        FROM segments WHERE duration IS NOT NULL GROUP BY b ORDER BY b""")
    data["speakers"] = _rows(con, """
        SELECT n, count(*) FROM (
            SELECT recording_id, count(DISTINCT speaker) AS n FROM segments WHERE kept GROUP BY recording_id)
        GROUP BY n ORDER BY n""")
    data["drops"] = _rows(con, """
        SELECT coalesce(drop_reason, 'unspecified'), count(*), coalesce(sum(duration), 0) / 3600
        FROM segments WHERE NOT kept GROUP BY 1 ORDER BY 2 DESC, 1""")
    # done recordings that ship nothing, by the check that dropped most of their seconds
    data["without_kept"] = _rows(con, """
        SELECT why, count(*), coalesce(sum(duration_s), 0) / 3600 FROM (
            SELECT l.recording_id, max(l.duration_s) AS duration_s,
                   coalesce((SELECT split_part(coalesce(s.drop_reason, 'unspecified'), ':', 1) FROM segments s
                             WHERE s.recording_id = l.recording_id GROUP BY 1 ORDER BY sum(s.duration) DESC, 1
                             LIMIT 1), 'no speech found') AS why
            FROM ledger l WHERE l.status = 'done' AND NOT EXISTS (  -- retired: its segments are hidden
                SELECT 1 FROM ledger r WHERE r.status = 'retired' AND r.recording_id = l.recording_id
                                           AND r.run_id = l.run_id)
            GROUP BY l.recording_id
            HAVING NOT coalesce((SELECT bool_or(s.kept) FROM segments s WHERE s.recording_id = l.recording_id), false))
        GROUP BY why ORDER BY 2 DESC, 1""")
    data["dnsmos_counts"] = _rows(con, "SELECT count(dnsmos_ovrl), count(*) FROM segments")[0]
    per_point = round(1 / DNSMOS_BIN)  # bins by multiplying: 3.1 / 0.1 floors to 30
    data["dnsmos"] = _rows(con, f"""
        SELECT least(greatest(floor(dnsmos_ovrl * {per_point}) / {per_point}, 1.0), 5.0 - {DNSMOS_BIN}) AS b,
               count(*) FILTER (WHERE kept), count(*) FILTER (WHERE NOT kept)
        FROM segments WHERE dnsmos_ovrl IS NOT NULL GROUP BY b ORDER BY b""")
    return data


# ---- figures -----------------------------------------------------------------------------
def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _figure(height: float = 3.6) -> tuple[Figure, object]:
    fig = Figure(figsize=(6.4, height), layout="constrained")
    ax = fig.subplots()
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555", fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])


def _short(label: str, n: int = 46) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _bar_hours(pid: str, title: str, items: list[tuple[str, float]], empty: str,
               dropped: list[float] | None = None) -> Plot:
    """Horizontal bars of hours per label (kept; dropped stacked after it when given)."""
    fig, ax = _figure(max(2.4, 1.0 + 0.36 * len(items)))
    if not items:
        _empty(ax, empty)
    else:
        labels = [_short(str(lbl)) for lbl, _ in items][::-1]
        kept = [v for _, v in items][::-1]
        ax.barh(labels, kept, color=KEPT_COLOR, label="kept", height=0.6)
        ends = kept
        if dropped is not None:
            drop = dropped[::-1]
            ax.barh(labels, drop, left=kept, color=DROPPED_COLOR, label="dropped", height=0.6)
            ends = [k + d for k, d in zip(kept, drop)]
            ax.legend(frameon=False, loc="lower right", fontsize=8)
        for y, (v, end) in enumerate(zip(kept, ends)):
            ax.annotate(f"{v:.3g} h", (end, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_xlim(0, max(ends) * 1.18 or 1)
        ax.set_xlabel("hours" if dropped is None else "hours (kept, then dropped)")
    ax.set_title(title, loc="left", fontsize=11)
    return Plot(pid, title, _png(fig))


def _plot_lengths(rows: list[tuple]) -> Plot:
    title = "Segment lengths"
    fig, ax = _figure()
    if not rows:
        _empty(ax, "no segments")
    else:
        lefts = [b for b, _, _ in rows]
        kept = [n for _, n, _ in rows]
        dropped = [n for _, _, n in rows]
        ax.bar(lefts, kept, width=LENGTH_BIN_S, align="edge", color=KEPT_COLOR, edgecolor="white", label="kept")
        ax.bar(lefts, dropped, bottom=kept, width=LENGTH_BIN_S, align="edge", color=DROPPED_COLOR,
               edgecolor="white", label="dropped")
        ax.set_xlim(0, LENGTH_MAX_S + LENGTH_BIN_S)
        ax.set_xlabel(f"segment length, s ({LENGTH_BIN_S:g} s bins; the last holds >= {LENGTH_MAX_S} s)")
        ax.set_ylabel("segments")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(frameon=False)
    ax.set_title(title, loc="left", fontsize=11)
    return Plot("plot-segment-lengths", title, _png(fig))


def _plot_speakers(rows: list[tuple]) -> Plot:
    title = "Speakers per recording (kept segments)"
    fig, ax = _figure()
    if not rows:
        _empty(ax, "no kept segments")
    else:
        ax.bar([str(n) for n, _ in rows], [c for _, c in rows], color=ACCENT)
        ax.set_xlabel("distinct speakers in a recording")
        ax.set_ylabel("recordings")
        ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title, loc="left", fontsize=11)
    return Plot("plot-speakers-per-recording", title, _png(fig))


def _plot_drops(rows: list[tuple]) -> Plot:
    title = "Drop reasons"
    if len(rows) > TOP_REASONS:
        rest = rows[TOP_REASONS - 1:]
        other = (f"{len(rest)} other reasons", sum(r[1] for r in rest), sum(r[2] for r in rest))
        rows = rows[: TOP_REASONS - 1] + [other]
    fig = Figure(figsize=(6.4, max(2.6, 1.1 + 0.34 * len(rows))), layout="constrained")
    if not rows:
        ax = fig.subplots()
        _empty(ax, "no dropped segments")
        ax.set_title(title, loc="left", fontsize=11)
    else:
        ax_n, ax_h = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 1]})
        labels = [_short(r[0], 34) for r in rows][::-1]
        ax_n.barh(labels, [r[1] for r in rows][::-1], color=DROPPED_COLOR, height=0.6)
        ax_h.barh(labels, [r[2] for r in rows][::-1], color=DROPPED_COLOR, height=0.6)
        ax_n.set_xlabel("segments")
        ax_h.set_xlabel("hours")
        ax_n.xaxis.get_major_locator().set_params(integer=True)
        for ax in (ax_n, ax_h):
            ax.spines[["top", "right"]].set_visible(False)
            ax.tick_params(axis="y", labelsize=8)
        fig.suptitle(title, x=0.02, ha="left", fontsize=11)
    return Plot("plot-drop-reasons", title, _png(fig),
                caption="segments not kept, by the reason of their first failed check")


def _plot_dnsmos(rows: list[tuple], with_value: int) -> Plot:
    title = "DNSMOS OVRL"
    fig, ax = _figure()
    lefts = [b for b, _, _ in rows]
    kept = [n for _, n, _ in rows]
    dropped = [n for _, _, n in rows]
    ax.bar(lefts, kept, width=DNSMOS_BIN, align="edge", color=KEPT_COLOR, edgecolor="white", label="kept")
    ax.bar(lefts, dropped, bottom=kept, width=DNSMOS_BIN, align="edge", color=DROPPED_COLOR, edgecolor="white",
           label="dropped")
    ax.set_xlim(1, 5)
    ax.set_xlabel("DNSMOS P.835 OVRL (1-5)")
    ax.set_ylabel("segments")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False)
    ax.set_title(title, loc="left", fontsize=11)
    return Plot("plot-dnsmos-ovrl", title, _png(fig), caption=f"{with_value} segment(s) with a value")


def build_plots(data: dict) -> tuple[list[Plot], list[str]]:
    plots = [
        _bar_hours("plot-hours-by-language", "Hours by language (kept segments)", data["language_hours"],
                   "no kept segments"),
        _bar_hours("plot-hours-by-corpus", "Hours by corpus", [(c[0], c[3]) for c in data["corpora"]], "no segments",
                   dropped=[c[4] for c in data["corpora"]]),
        _plot_lengths(data["lengths"]),
        _plot_speakers(data["speakers"]),
        _plot_drops(data["drops"]),
    ]
    notes = []
    if data["without_kept"]:
        n = sum(r[1] for r in data["without_kept"])
        hours = sum(r[2] for r in data["without_kept"])
        why = ", ".join(f"{count} {reason}" for reason, count, _ in data["without_kept"])
        notes.append(f"{n} recording(s) ({hours:.3f} h of audio) were processed but ship no kept segment: {why}")
    with_value, total = data["dnsmos_counts"]
    if with_value:
        plots.append(_plot_dnsmos(data["dnsmos"], with_value))
    else:
        notes.append(f"DNSMOS OVRL: no value in any of the {total} segment(s) (column dnsmos_ovrl is empty: "
                     "the runs computed no DNSMOS), so no distribution is shown.")
    return plots, notes


# ---- the page ----------------------------------------------------------------------------
_CSS = """
body { font-family: DejaVu Sans, Helvetica, Arial, sans-serif; margin: 24px; color: #1a202c; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px 0; } h2 { font-size: 17px; margin: 26px 0 8px 0; }
.meta { color: #4a5568; font-size: 13px; margin-bottom: 12px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e2e8f0; padding: 4px 10px; text-align: right; }
th { background: #f7fafc; } td.l, th.l { text-align: left; }
tr.total td { font-weight: bold; border-top: 2px solid #a0aec0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 18px; }
figure { margin: 0; border: 1px solid #e2e8f0; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: #4a5568; margin-top: 4px; }
.note { background: #fffbea; border-left: 4px solid #d69e2e; padding: 8px 12px; font-size: 13px; }
"""


def _fmt_h(h: float | None) -> str:
    if h is None:
        return "-"
    return f"{h:.4f}" if h < 1 else f"{h:.3f}" if h < 10 else f"{h:,.1f}"


def _cell(v, left: bool = False) -> str:
    return f'<td class="l">{html.escape(str(v))}</td>' if left else f"<td>{html.escape(str(v))}</td>"


def _summary_table(data: dict) -> tuple[str, dict]:
    status: dict[str, dict[str, int]] = {}
    source_hours: dict[str, float] = {}
    for corpus, st, n, hours in data["sources"]:
        status.setdefault(corpus, {})[st] = n
        if st == "done":
            source_hours[corpus] = hours
    seg = {c[0]: c for c in data["corpora"]}
    names = sorted(set(status) | set(seg))
    head = ("<tr><th class='l'>corpus</th><th>sources</th><th>done</th><th>failed</th><th>skipped</th>"
            "<th>source hours (done)</th><th>segments</th><th>kept</th><th>kept hours</th><th>dropped hours</th>"
            "<th>runs</th></tr>")
    totals = dict.fromkeys(["sources", "done", "failed", "skipped", "source_hours", "segments", "kept", "kept_hours",
                            "dropped_hours", "runs"], 0)
    body = []
    for name in names:
        s = status.get(name, {})
        _, n_seg, n_kept, kept_h, drop_h = seg.get(name, (name, 0, 0, 0.0, 0.0))
        row = {"sources": sum(s.values()), "done": s.get("done", 0), "failed": s.get("failed", 0),
               "skipped": s.get("skipped", 0), "source_hours": source_hours.get(name, 0.0), "segments": n_seg,
               "kept": n_kept, "kept_hours": kept_h, "dropped_hours": drop_h, "runs": data["run_counts"].get(name, 0)}
        for k, v in row.items():
            totals[k] += v
        body.append(_summary_row(name, row))
    if len(names) > 1:
        body.append(_summary_row("total", totals, css="total"))
    return f"<table id='summary'>{head}{''.join(body)}</table>", totals


def _summary_row(name: str, r: dict, css: str = "") -> str:
    cells = [_cell(name, left=True), _cell(r["sources"]), _cell(r["done"]), _cell(r["failed"]), _cell(r["skipped"]),
             _cell(_fmt_h(r["source_hours"])), _cell(r["segments"]), _cell(r["kept"]), _cell(_fmt_h(r["kept_hours"])),
             _cell(_fmt_h(r["dropped_hours"])), _cell(r["runs"])]
    return f"<tr class='{css}'>{''.join(cells)}</tr>"


def _runs_table(data: dict) -> str:
    head = ("<tr><th class='l'>run</th><th class='l'>corpus</th><th class='l'>started (UTC)</th><th>complete</th>"
            "<th>sources</th><th>done</th><th>failed</th><th>skipped</th><th>segments</th><th>kept</th>"
            "<th>kept hours</th><th>wall s</th><th>audio s / wall s</th></tr>")
    body = []
    for run in data["runs"]:
        run_id, corpus, started, complete, *counts, kept_h, wall, thr = run
        cells = [_cell(run_id, True), _cell(corpus, True), _cell(started or "-", True),
                 _cell("yes" if complete else "no"), *(_cell(n) for n in counts), _cell(_fmt_h(kept_h)),
                 _cell(f"{wall:.1f}" if wall is not None else "-"), _cell(f"{thr:.2f}" if thr is not None else "-")]
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = ""
    if data["n_runs"] > len(data["runs"]):
        more = f"<p class='meta'>the latest {len(data['runs'])} of {data['n_runs']} runs</p>"
    return f"<table id='runs'>{head}{''.join(body)}</table>{more}"


def _drops_table(data: dict) -> str:
    if not data["drops"]:
        return "<p class='meta'>no dropped segments</p>"
    head = "<tr><th class='l'>reason</th><th>segments</th><th>hours</th></tr>"
    body = "".join(f"<tr>{_cell(reason, True)}{_cell(n)}{_cell(_fmt_h(h))}</tr>"
                   for reason, n, h in data["drops"][:MAX_REASON_ROWS])
    more = ""
    if len(data["drops"]) > MAX_REASON_ROWS:
        more = f"<p class='meta'>the {MAX_REASON_ROWS} most frequent of {len(data['drops'])} reasons</p>"
    return f"<table id='drop-reasons'>{head}{body}</table>{more}"


def render_html(data: dict, plots: list[Plot], notes: list[str], *, title: str, out_dir: str,
                corpus: str | None) -> tuple[str, dict]:
    summary, totals = _summary_table(data)
    figures = []
    for p in plots:
        b64 = base64.b64encode(p.png).decode("ascii")
        cap = f"<figcaption>{html.escape(p.caption)}</figcaption>" if p.caption else ""
        figures.append(f'<figure><img id="{p.id}" class="plot" alt="{html.escape(p.title)}" '
                       f'src="data:image/png;base64,{b64}">{cap}</figure>')
    note_html = "".join(f'<p class="note" id="note-{i}">{html.escape(n)}</p>' for i, n in enumerate(notes))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scope = f"corpus {corpus}" if corpus else "all corpora"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<div class="meta">{html.escape(str(out_dir))} &middot; {html.escape(scope)} &middot; generated {generated} &middot;
{totals['kept']} kept segment(s), {_fmt_h(totals['kept_hours'])} h kept</div>
<h2>Summary</h2>
{summary}
<h2>Plots</h2>
<div class="grid">{''.join(figures)}</div>
{note_html}
<h2>Drop reasons</h2>
{_drops_table(data)}
<h2>Runs</h2>
{_runs_table(data)}
</body></html>
"""
    return page, totals


def write_report(out_dir: str | Path, dest: str | Path, corpus: str | None = None,
                 title: str = "audio-refinery report") -> ReportResult:
    """Aggregate, plot and write the page to ``dest``. Raises ManifestError when OUT holds no corpus."""
    con = open_views(out_dir, corpus)
    try:
        data = collect(con)
    finally:
        con.close()
    plots, notes = build_plots(data)
    page, totals = render_html(data, plots, notes, title=title, out_dir=str(out_dir), corpus=corpus)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(dest)
    return ReportResult(path=str(dest), plots=[p.id for p in plots], notes=notes, totals=totals)
