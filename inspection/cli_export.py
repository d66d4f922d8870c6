"""`refinery manifest export` and `refinery manifest report`: thin over inspection.export and inspection.report.

Plain click commands, not attached to any group here: inspection.cli adds them to `manifest`
(this module imports nothing back from it).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import click

from inspection.export import FORMATS, VARIANTS


@contextmanager
def _as_click_errors():
    from inspection.export import ExportError
    from inspection.query import ManifestError

    try:
        yield
    except (ExportError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None


def _hours(h: float) -> str:
    return f"{h:.4f} h" if h < 1 else f"{h:.2f} h" if h < 10 else f"{h:,.1f} h"


class _Progress:
    """A line on stderr at most every `every` seconds while an export runs."""

    def __init__(self, every: float = 10.0) -> None:
        self.every, self.last = every, time.monotonic()

    def __call__(self, segments: int, seconds: float) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            click.echo(f"  ... {segments} segments, {_hours(seconds / 3600)}", err=True)


@click.command("export")
@click.argument("out_dir", metavar="OUT")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="hf: datasets.load_from_disk; lhotse: CutSet manifests + FLAC; nemo: JSONL manifest + FLAC; "
                   "webdataset: tar shards")
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False),
              help="directory to create (must not exist or be empty; see --overwrite)")
@click.option("--where", help="SQL condition on the `segments` view, e.g. \"language = 'en' AND duration > 3\"")
@click.option("--corpus", help="only this corpus (default: all under OUT)")
@click.option("--all", "include_dropped", is_flag=True, help="include dropped segments (default: kept only)")
@click.option("--variant", type=click.Choice(list(VARIANTS)), default="raw", show_default=True,
              help="which audio: raw, or enhanced (every selected segment must have it)")
@click.option("--shard-mb", type=click.FloatRange(min=0, min_open=True), default=500.0, show_default=True,
              help="hf and webdataset: start a new shard past this size")
@click.option("--overwrite", is_flag=True, help="replace an earlier export at --to (one holding export.json)")
def export_cmd(out_dir: str, fmt: str, dest: str, where: str | None, corpus: str | None, include_dropped: bool,
               variant: str, shard_mb: float, overwrite: bool) -> None:
    """Write segments for a training framework, streaming shard by shard.

    Kept segments only unless --all; --where narrows with SQL over the segment columns.
    Each recording comes from its latest run among the rows --where selects. The export is
    assembled in a hidden directory beside --to and moved there when done.
    """
    from inspection.export import export

    with _as_click_errors():
        r = export(out_dir, dest, fmt, where=where, corpus=corpus, include_dropped=include_dropped, variant=variant,
                   shard_mb=shard_mb, overwrite=overwrite, progress=_Progress())
    langs = ", ".join(f"{k} {_hours(v / 3600)}" for k, v in sorted(r.seconds_by_language.items()))
    click.echo(f"exported {r.segments} segment(s), {_hours(r.hours)} ({langs}) as {fmt} ({variant} audio) to {r.path}")
    if r.superseded:
        click.echo(f"  left out {r.superseded} matching segment(s) of earlier runs whose recordings a later run "
                   "processed again (select one run with --where \"run_id = '...'\")")
    shards = [f for f in r.files if f.endswith((".tar", ".arrow"))]
    if shards:
        click.echo(f"  {len(shards)} shard(s): {shards[0]}{' ... ' + shards[-1] if len(shards) > 1 else ''}")


@click.command("report")
@click.argument("out_dir", metavar="OUT")
@click.option("--to", "dest", required=True, type=click.Path(dir_okay=False), help="the HTML file to write")
@click.option("--corpus", help="only this corpus (default: all under OUT)")
@click.option("--title", default="audio-refinery report", show_default=True)
def report_cmd(out_dir: str, dest: str, corpus: str | None, title: str) -> None:
    """A self-contained HTML page: summary tables and plots (hours by language/corpus, lengths,
    speakers per recording, drop reasons, DNSMOS)."""
    from inspection.report import write_report

    with _as_click_errors():
        r = write_report(out_dir, dest, corpus, title=title)
    t = r.totals
    click.echo(f"wrote {r.path}: {len(r.plots)} plot(s); "
               f"{t['sources']} source(s) ({t['done']} done, {t['failed']} failed), "
               f"{t['segments']} segment(s), {t['kept']} kept, {_hours(t['kept_hours'])} kept, {t['runs']} run(s)")
    for note in r.notes:
        click.echo(f"  note: {note}", err=True)

