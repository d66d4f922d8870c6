"""`refinery manifest repair`: set a corpus whose ledger holds damaged commit files right again.

A commit file that cannot be read (a disk fault, a truncated copy) stops every run and reader
of its corpus: nothing can tell which sources it committed. Repair holds the corpus lock, moves
each such file to ``quarantine/<time>/ledger/...`` (kept, not deleted) and then runs the
ledger's recovery, which moves the shards that only those files named to the same quarantine
folder. Their sources are then not done any more, and the next ``refinery run`` over the same
inputs processes them again: each source is still in the corpus exactly once
(``manifests.ledger.Ledger.repair``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from manifests.layout import CorpusLayout
from manifests.ledger import BadCommit, Ledger, RecoveryReport
from inspection.query import locked_corpora


@dataclass
class RepairReport:
    corpus: str
    quarantined: list[tuple[BadCommit, str]] = field(default_factory=list)  # (damaged file, where it went)
    recovery: RecoveryReport = field(default_factory=RecoveryReport)

    def lines(self, layout: CorpusLayout) -> list[str]:
        out = [f"{self.corpus}: moved unreadable ledger commit {layout.rel(b.path)} to {dst} ({b.reason})"
               for b, dst in self.quarantined]
        recovered = self.recovery.describe()
        if not self.quarantined:
            out.append(f"{self.corpus}: every ledger commit file is readable; recovery: {recovered}")
        else:
            out.append(f"{self.corpus}: recovery: {recovered}")
            out.append(f"{self.corpus}: the sources of the quarantined commit(s) are not done any more: "
                       f"the next `refinery run` over the same inputs processes them again")
        return out


def repair(out_dir: str | Path, corpus: str | None = None) -> dict[str, RepairReport]:
    """Repair ``corpus`` (or every corpus under ``out_dir``) under its lock; a report per corpus.
    Raises ``manifests.lock.CorpusLocked`` when a run holds a corpus."""
    reports = {}
    for name, layout, _lock in locked_corpora(out_dir, corpus, "repair"):
        bad, moved, recovery = Ledger(layout).repair()
        reports[name] = RepairReport(name, list(zip(bad, moved)), recovery)
    return reports
