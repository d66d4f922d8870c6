"""`refinery manifest retire`: hide the segments of content that was replaced at its path.

A file replaced by new content keeps its old content's segments visible under the same
``source_uri`` until they are retired (the rules and the commit: ``manifests.retire``). Retiring
holds the corpus lock (refused while a run writes the corpus) and commits all its rows in one
ledger file; a dry run only reads. Plain click command, added to `manifest` by inspection.cli.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.lock import CorpusLocked, lock_corpus
from manifests.retire import RetireReport, retire
from inspection.query import ManifestError, select_corpora


def retire_corpus(out_dir: str | Path, corpus: str, dry_run: bool = False) -> RetireReport:
    """Retire the superseded content of one segment corpus. Raises ManifestError (no such corpus,
    a dialogue corpus) or ``manifests.lock.CorpusLocked`` (a run holds it; not for a dry run)."""
    select_corpora(out_dir, corpus)
    layout = CorpusLayout(out_dir, corpus)
    if layout.kind != "segments":
        raise ManifestError(f"corpus {corpus!r} holds {layout.kind}: retire works on segment corpora")
    if dry_run:
        return retire(Ledger(layout), dry_run=True)
    with lock_corpus(layout, f"retire-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}") as lock:
        return retire(Ledger(layout, fence=lock.check))


@click.command("retire")
@click.argument("out_dir", metavar="OUT")
@click.option("--corpus", required=True, help="the corpus whose replaced content to retire")
@click.option("--dry-run", is_flag=True, help="say what would be retired; change nothing")
@click.option("--json", "as_json", is_flag=True, help="the report as one JSON object")
def retire_cmd(out_dir: str, corpus: str, dry_run: bool, as_json: bool) -> None:
    """Hide the old content of sources replaced at their path (their segments stay in the shards).

    A source's old content is superseded once a later run read other content at its URI (and that
    content is nowhere else current). One `retired` ledger row per superseded recording, all
    committed at once under the corpus lock; stats, query, show, export and verify leave their
    segments out from then on. Retiring again does nothing.
    """
    try:
        report = retire_corpus(out_dir, corpus, dry_run)
    except (ValueError, CorpusLocked) as exc:  # ManifestError; a damaged ledger commit (refinery manifest repair)
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"retire failed (a retire commits all of its rows or none): "
                                   f"{exc.strerror or exc}") from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1, default=str))
        return
    for line in report.describe():
        click.echo(line)
