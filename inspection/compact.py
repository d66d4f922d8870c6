"""`refinery manifest compact`: fold each corpus's many small ledger commit files into one.

A long-lived corpus gathers one commit file per written batch of every run (thousands at
scale), and every run and every reader opens all of them. Compaction holds the corpus lock
(no run writes meanwhile) and is atomic (``manifests.ledger.Ledger.compact``).
"""

from __future__ import annotations

from pathlib import Path

from manifests.layout import CorpusLayout
from manifests.ledger import CompactionReport, Ledger
from manifests.lock import lock_corpus
from inspection.query import select_corpora


def compact(out_dir: str | Path, corpus: str | None = None) -> dict[str, CompactionReport]:
    """Compact the ledger of ``corpus`` (or of every corpus under ``out_dir``); a report per corpus.
    Raises ``manifests.lock.CorpusLocked`` when a run holds a corpus."""
    from datetime import datetime, timezone

    reports = {}
    for name in select_corpora(out_dir, corpus):
        layout = CorpusLayout(out_dir, name)
        holder = f"compact-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
        with lock_corpus(layout, holder) as lock:
            reports[name] = Ledger(layout, fence=lock.check).compact()
    return reports
