"""`refinery manifest compact`: many ledger commit files become one; the rows stay the same, once each,
whenever the compaction is killed."""

from __future__ import annotations

import pyarrow as pa
import pytest
from click.testing import CliRunner

import manifests.ledger as ledger_module
from inspection.cli import manifest
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.lock import lock_corpus


def _ledger_rows(run: int, batch: int, per_batch: int) -> list[dict]:
    return [{"source_uri": f"/in/r{run}b{batch}s{i}.wav", "sha256": f"{run:02d}{batch:03d}{i:03d}".ljust(64, "a"),
             "run_id": f"run{run}", "corpus": "c", "config_hash": "h", "status": "done" if i % 5 else "failed",
             "error": None if i % 5 else "cannot decode", "segments": i, "shard_paths": [], "staged_paths": []}
            for i in range(per_batch)]


def _fill(layout: CorpusLayout, runs: int = 3, batches: int = 7, per_batch: int = 4) -> None:
    ledger = Ledger(layout)
    for run in range(runs):
        for batch in range(batches):
            ledger.commit(f"run{run}", batch, _ledger_rows(run, batch, per_batch))


def _sorted(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["source_uri"])


@pytest.fixture
def layout(tmp_path):
    layout = CorpusLayout(tmp_path / "out", "c")
    _fill(layout)
    return layout


def test_compaction_folds_commit_files_into_one_with_equal_rows(layout):
    before = _sorted(Ledger(layout).read())
    assert len(Ledger(layout).commit_files()) == 21
    report = Ledger(layout).compact()
    assert (report.files_before, report.rows, report.files_written) == (21, 84, 1)
    files = layout.files(layout.ledger_dir, "run=*/commit-*.parquet")
    assert len(files) == 1 and Ledger(layout).commit_files() == files
    assert _sorted(Ledger(layout).read()) == before
    index = Ledger(layout).index("h")
    assert len(index.done) == 3 * 7 * 3 and len(index.failed) == 3 * 7 * 1


def test_later_commits_and_a_second_compaction(layout):
    Ledger(layout).compact()
    Ledger(layout).commit("run9", 0, _ledger_rows(9, 0, 4))
    both = _sorted(Ledger(layout).read())
    assert len(both) == 88
    report = Ledger(layout).compact()
    assert report.files_before == 2 and report.rows == 88
    assert len(layout.files(layout.ledger_dir, "run=*/commit-*.parquet")) == 1
    assert _sorted(Ledger(layout).read()) == both


def test_a_kill_after_the_compaction_file_is_written_reads_the_same(layout, monkeypatch):
    before = _sorted(Ledger(layout).read())

    class Killed(BaseException):
        pass

    def kill():
        raise Killed

    monkeypatch.setattr(ledger_module, "_after_compaction_written", kill)
    with pytest.raises(Killed):
        Ledger(layout).compact()
    # Both the replaced files and the compaction file are on disk: the rows are still there once each.
    assert len(layout.files(layout.ledger_dir, "run=*/commit-*.parquet")) == 22
    assert _sorted(Ledger(layout).read()) == before
    monkeypatch.undo()
    report = Ledger(layout).compact()  # the next compaction finishes the cleanup
    assert report.files_written == 0 and report.leftovers_removed == 21
    assert len(layout.files(layout.ledger_dir, "run=*/commit-*.parquet")) == 1
    assert _sorted(Ledger(layout).read()) == before


def test_a_kill_before_the_compaction_file_lands_changes_nothing(layout, monkeypatch):
    before = sorted(layout.files(layout.ledger_dir, "run=*/commit-*.parquet"))

    def torn_write(table, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ledger_module, "write_parquet_atomic", torn_write)
    with pytest.raises(OSError):
        Ledger(layout).compact()
    assert sorted(layout.files(layout.ledger_dir, "run=*/commit-*.parquet")) == before


def test_cli_compacts_and_refuses_a_locked_corpus(layout):
    result = CliRunner().invoke(manifest, ["compact", str(layout.out_dir)])
    assert result.exit_code == 0, result.output
    assert "c: compacted 21 commit files (84 ledger rows) into 1" in result.output
    again = CliRunner().invoke(manifest, ["compact", str(layout.out_dir), "--corpus", "c"])
    assert again.exit_code == 0 and "nothing to compact: 1 commit file(s), 84 row(s)" in again.output
    with lock_corpus(layout, "a-running-run"):
        locked = CliRunner().invoke(manifest, ["compact", str(layout.out_dir)])
    assert locked.exit_code == 1 and "Traceback" not in locked.output
    assert locked.output.startswith("Error: ") and len(locked.output.strip().splitlines()) == 1
    missing = CliRunner().invoke(manifest, ["compact", str(layout.out_dir), "--corpus", "nope"])
    assert missing.exit_code == 1 and "no corpus 'nope'" in missing.output
