"""Only shards a committed ledger row names are data: a file copied under ``segments/``, or the
shard of a lost commit, is read by no reader, and recovery moves it to ``quarantine/``."""

from __future__ import annotations

import shutil

from inspection.stats import corpus_stats, read_segments
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.shards import ShardLimits, write_staged_shards
from tests.test_ledger import _ledger_row, _segments


def _committed_corpus(tmp_path):
    layout = CorpusLayout(tmp_path, "c")
    staged = write_staged_shards(_segments(3), layout.staging_run_dir("run1"), ShardLimits(100, 10**9))
    rel = [layout.rel(staged[0][0])]
    final = [layout.rel(layout.shard_path("run1", 0))]
    Ledger(layout).commit("run1", 0, [_ledger_row(layout, "r1", rel, final)])
    return layout, layout.abs(final[0])


def test_a_copied_shard_is_not_read_and_recovery_quarantines_it(tmp_path):
    layout, shard = _committed_corpus(tmp_path)
    copy = shard.parent / "part-99999.parquet"
    shutil.copy(shard, copy)
    lost = layout.data_dir / "run=lost" / "part-00000.parquet"  # a commit that never happened
    lost.parent.mkdir(parents=True)
    shutil.copy(shard, lost)

    assert Ledger(layout).shard_files() == [shard]
    assert read_segments(layout).num_rows == 3
    assert corpus_stats(tmp_path, "c")["segments"] == 3

    report = Ledger(layout).recover()
    assert sorted(report.quarantined) == sorted([layout.rel(copy), layout.rel(lost)])
    assert "2 file(s) under the shard folder that no ledger row names" in report.describe()
    assert not copy.exists() and not lost.exists() and shard.exists()
    kept = sorted(p.name for p in layout.abs(report.quarantine_dir).rglob("*.parquet"))
    assert kept == ["part-00000.parquet", "part-99999.parquet"]  # moved, not deleted
    # Nothing left to move: a second recovery is quiet, and the glob of the README finds only data.
    assert Ledger(layout).recover().describe() == "nothing to recover"
    assert sorted(layout.data_dir.glob("*/*.parquet")) == [shard]
