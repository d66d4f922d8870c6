"""`refinery manifest compact`: fold each corpus's many small ledger commit files into one.

A long-lived corpus gathers one commit file per written batch of every run (thousands at
scale), and every run and every reader opens all of them. Compaction holds the corpus lock
(no run writes meanwhile) and is atomic (``manifests.ledger.Ledger.compact``).
"""

from __future__ import annotations

from pathlib import Path

from manifests.ledger import CompactionReport, Ledger
from inspection.query import locked_corpora


def compact(out_dir: str | Path, corpus: str | None = None) -> dict[str, CompactionReport]:
    """Compact the ledger of ``corpus`` (or of every corpus under ``out_dir``); a report per corpus.
    Raises ``manifests.lock.CorpusLocked`` when a run holds a corpus."""
    return {name: Ledger(layout, fence=lock.check).compact()
            for name, layout, lock in locked_corpora(out_dir, corpus, "compact")}
