"""`refinery manifest export` and `refinery manifest report`: thin over inspection.export and inspection.report.

Plain click commands, not attached to any group here: inspection.cli adds them to `manifest`
(this module imports nothing back from it).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import click

from inspection.export import FORMATS, VARIANTS

EXPORT_FORMATS = FORMATS + ("messages",)  # messages: dialogue corpora (inspection.dialogue_export)


@contextmanager
def _as_click_errors():
    from inspection.export import ExportError
    from inspection.query import ManifestError, RefusedSQL
    from manifests.ledger import UnreadableLedger
    from manifests.shards import UnreadableShard

    try:
        yield
    except (ExportError, ManifestError, RefusedSQL, UnreadableLedger, UnreadableShard) as exc:
        raise click.ClickException(str(exc)) from None


def _hours(h: float) -> str:
    return f"{h:.4f} h" if h < 1 else f"{h:.2f} h" if h < 10 else f"{h:,.1f} h"


class _Progress:
    """A line on stderr at most every `every` seconds while an export runs."""

    def __init__(self, every: float = 10.0, unit: str = "segments") -> None:
        self.every, self.last, self.unit = every, time.monotonic(), unit

    def __call__(self, segments: int, seconds: float) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            click.echo(f"  ... {segments} {self.unit}, {_hours(seconds / 3600)}", err=True)


@click.command("export")
@click.argument("out_dir", metavar="OUT")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True,
              help="hf: datasets.load_from_disk; lhotse: CutSet manifests + FLAC; nemo: JSONL manifest + FLAC; "
                   "webdataset: tar shards. Dialogue corpora: messages (chat JSONL + FLAC) or hf (turn rows)")
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False),
              help="directory to create (must not exist or be empty; see --overwrite)")
@click.option("--where", help="SQL condition on the `segments` view, e.g. \"language = 'en' AND duration > 3\"; "
                               "dialogue corpora: on the `dialogues` view (turn rows; messages exports each "
                               "dialogue with a matching turn whole)")
@click.option("--corpus", help="only this corpus (default: all under OUT)")
@click.option("--all", "include_dropped", is_flag=True,
              help="include dropped segments (default: kept only); dialogue corpora: hf only, every turn row")
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

    Dialogue corpora (`refinery synth run`): --format messages writes dialogues.jsonl (one kept
    dialogue a line, chat messages with text and audio parts) and the turns' FLAC under audio/;
    --format hf the turn rows. Each dialogue comes from its latest run.
    """
    from inspection.dialogue_export import export_kind
    from inspection.export import export

    with _as_click_errors():
        kind, notes = export_kind(out_dir, corpus, fmt, variant)
        for note in notes:
            click.echo(f"note: {note}", err=True)
        if kind == "dialogues":
            return _export_dialogues(out_dir, dest, fmt, where, corpus, include_dropped, shard_mb, overwrite)
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


def _export_dialogues(out_dir: str, dest: str, fmt: str, where: str | None, corpus: str | None,
                      include_dropped: bool, shard_mb: float, overwrite: bool) -> None:
    from inspection.dialogue_export import export_dialogues

    r = export_dialogues(out_dir, dest, fmt, where=where, corpus=corpus, include_dropped=include_dropped,
                         shard_mb=shard_mb, overwrite=overwrite, progress=_Progress(unit="turns"))
    forms = ", ".join(f"{n} {form}" for form, n in sorted(r.dialogues_by_form.items()))
    langs = ", ".join(f"{k} {_hours(v / 3600)}" for k, v in sorted(r.seconds_by_language.items())) or "no audio"
    click.echo(f"exported {r.dialogues} dialogue(s) ({forms}), {r.turns} turn(s), {r.audio_files} with audio, "
               f"{_hours(r.hours)} ({langs}) as {fmt} to {r.path}")
    if r.superseded:
        what = "dialogue(s)" if fmt == "messages" else "turn row(s)"
        click.echo(f"  left out {r.superseded} matching {what} of earlier runs whose dialogues a later run "
                   "synthesised again (select one run with --where \"run_id = '...'\")")


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

