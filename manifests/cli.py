"""`refinery manifest ...`: inspect what runs wrote. Thin over manifests.stats."""

from __future__ import annotations

import json
from pathlib import Path

import click

from manifests.layout import CorpusLayout, corpora
from manifests.ledger import Ledger
from manifests.schema import STATUSES
from manifests.stats import source_status, stats


@click.group()
def manifest() -> None:
    """Inspect ledgers and shards under an output directory."""


def _hours(h: float) -> str:
    return f"{h:.3f} h" if h < 10 else f"{h:.1f} h"


@manifest.command("stats")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--corpus", help="only this corpus (default: all under OUT)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object with stable keys")
def stats_cmd(out_dir: str, corpus: str | None, as_json: bool) -> None:
    """Sources by status, segments, hours by language and speakers, segment lengths."""
    if corpus and corpus not in corpora(Path(out_dir)):
        raise click.ClickException(f"no corpus {corpus!r} under {out_dir} (found: {', '.join(corpora(Path(out_dir))) or 'none'})")
    s = stats(Path(out_dir), corpus)
    if as_json:
        click.echo(json.dumps(s, indent=1, sort_keys=True))
        return
    for name, c in s["corpora"].items():
        click.echo(f"corpus {name}")
        click.echo(f"  sources      {c['sources']}: {c['sources_done']} done, {c['sources_failed']} failed, {c['sources_skipped']} skipped")
        click.echo(f"  source audio {_hours(c['source_hours'])} (done sources)")
        click.echo(f"  segments     {c['segments']}: {c['segments_kept']} kept, {_hours(c['hours'])} kept")
        langs = ", ".join(f"{k} {_hours(v)}" for k, v in c["hours_by_language"].items()) or "none"
        click.echo(f"  by language  {langs}")
        spk = ", ".join(f"{k} speaker(s): {v} recording(s)" for k, v in c["recordings_by_speaker_count"].items()) or "none"
        click.echo(f"  speakers     {c['speakers']} ({spk})")
        for reason, d in c["dropped"].items():
            click.echo(f"  dropped      {d['segments']} segment(s), {_hours(d['hours'])}: {reason}")
        ln = c["segment_length_s"]
        if ln["median"] is not None:
            click.echo(f"  length       min {ln['min']:.2f} s, median {ln['median']:.2f} s, max {ln['max']:.2f} s")
        width = max(c["segment_length_histogram"].values(), default=0) or 1
        for b, n in c["segment_length_histogram"].items():
            click.echo(f"    {b:>8} {n:6d} {'#' * round(30 * n / width)}")
    if len(s["corpora"]) > 1:
        click.echo(f"total: {s['sources_done']} sources done, {s['sources_failed']} failed, {s['segments']} segments, {_hours(s['hours'])} kept")


@manifest.command("ls")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--corpus", help="only this corpus")
@click.option("--status", type=click.Choice(STATUSES), help="only sources with this status")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one source each")
def ls_cmd(out_dir: str, corpus: str | None, status: str | None, as_json: bool) -> None:
    """Sources with their status across runs, and the error of failed ones."""
    for name in [corpus] if corpus else corpora(Path(out_dir)):
        for r in source_status(Ledger(CorpusLayout(Path(out_dir), name)).read()):
            if status and r["status"] != status:
                continue
            if as_json:
                keep = ("source_uri", "status", "error", "sha256", "duration_s", "segments", "kept_seconds", "run_id")
                click.echo(json.dumps({"corpus": name, **{k: r[k] for k in keep}}))
            else:
                dur = f"{r['duration_s']:8.1f}s" if r["duration_s"] is not None else "        -"
                err = f"  {r['error']}" if r["status"] != "done" and r["error"] else ""
                click.echo(f"{name}\t{r['status']:<7} {dur} {r['segments'] or 0:5d} seg  {r['source_uri']}{err}")
