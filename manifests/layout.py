"""Where a corpus keeps its files under the output directory.

    OUT/<corpus>/segments/run=<run_id>/part-NNNNN.parquet   visible segment shards
    OUT/<corpus>/ledger/run=<run_id>/commit-NNNNN.parquet   committed ledger rows
    OUT/<corpus>/runs/<run_id>/config.yaml, summary.json    what each run used and did
    OUT/<corpus>/_staging/run=<run_id>/...                  shards written, not yet committed
    OUT/<corpus>/.lock                                      held by the one running run

Names starting with "_" or "." are skipped by pyarrow datasets and by `datasets`' globbing,
so nothing under _staging is ever read as data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CorpusLayout:
    out_dir: Path
    corpus: str

    def __post_init__(self) -> None:
        if not self.corpus or "/" in self.corpus or self.corpus.startswith((".", "_")):
            raise ValueError(f"invalid corpus name {self.corpus!r}: use a plain name without '/' or a leading '.'/'_'")
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    @property
    def root(self) -> Path:
        return self.out_dir / self.corpus

    @property
    def segments_dir(self) -> Path:
        return self.root / "segments"

    @property
    def ledger_dir(self) -> Path:
        return self.root / "ledger"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def staging_dir(self) -> Path:
        return self.root / "_staging"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def staging_run_dir(self, run_id: str) -> Path:
        return self.staging_dir / f"run={run_id}"

    def shard_path(self, run_id: str, index: int) -> Path:
        return self.segments_dir / f"run={run_id}" / f"part-{index:05d}.parquet"

    def ledger_commit_path(self, run_id: str, index: int) -> Path:
        return self.ledger_dir / f"run={run_id}" / f"commit-{index:05d}.parquet"

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def abs(self, rel: str) -> Path:
        return self.root / rel


def corpora(out_dir: Path) -> list[str]:
    """Corpus names under an output directory (those holding a ledger)."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if (p / "ledger").is_dir() and not p.name.startswith((".", "_")))
