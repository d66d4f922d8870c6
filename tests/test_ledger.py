"""The commit protocol, recovery, locking and incremental planning, without Ray."""

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.incremental import FingerprintedSource, plan_run
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger, LedgerIndex
from manifests.lock import CorpusLock, CorpusLocked
from manifests.planned_segment import PlannedSegment
from manifests.schema import LEDGER_SCHEMA
from audio_io.flac import encode_flac
from manifests.segment_rows import RecordingContext, build_segment_rows
from manifests.shards import ShardLimits, plan_shards, write_parquet_atomic, write_staged_shards


def _segments(n, rec="r1"):
    ctx = RecordingContext(rec, f"/a/{rec}.wav", "c", "run1", "h")
    x = np.zeros(24000 * 2 * n, dtype=np.float32)
    segments = [PlannedSegment(2 * i, 2 * i + 1.5) for i in range(n)]
    cells = [encode_flac(x[int(s.start * 24000):int(s.end * 24000)], 24000) for s in segments]
    return build_segment_rows(ctx, segments, 24000, cells, [None] * n)


def _ledger_row(layout, rec, staged, final, status="done", sha="s1"):
    return {"source_uri": f"/a/{rec}.wav", "sha256": sha, "recording_id": rec, "corpus": "c", "run_id": "run1",
            "config_hash": "h", "status": status, "segments": 1, "staged_paths": staged, "shard_paths": final}


def test_plan_shards_respects_rows_and_bytes():
    rows = _segments(10)
    assert [len(g) for g in plan_shards(rows, ShardLimits(max_rows=4, max_bytes=10**9))] == [4, 4, 2]
    one = len(rows[0]["audio"]["bytes"]) + 256
    groups = plan_shards(rows, ShardLimits(max_rows=100, max_bytes=2 * one))
    assert all(len(g) <= 2 for g in groups) and sum(map(len, groups)) == 10


def test_commit_makes_staged_shards_visible_and_recover_rolls_forward(tmp_path):
    layout = CorpusLayout(tmp_path, "c")
    ledger = Ledger(layout)
    staged = write_staged_shards(_segments(3), layout.staging_run_dir("run1"), ShardLimits(100, 10**9))
    rel_staged = [layout.rel(p) for p, _ in staged]
    final = [layout.rel(layout.shard_path("run1", 0))]
    # Simulate a kill right after the ledger commit, before the shards moved.
    write_parquet_atomic(pa.Table.from_pylist([_ledger_row(layout, "r1", rel_staged, final)], schema=LEDGER_SCHEMA),
                         layout.ledger_commit_path("run1", 0))
    assert not layout.abs(final[0]).exists()
    report = ledger.recover()
    assert report.rolled_forward == final
    assert layout.abs(final[0]).exists() and not layout.abs(rel_staged[0]).exists()
    assert pq.read_table(layout.abs(final[0])).num_rows == 3


def test_recover_discards_uncommitted_staging_and_temp_files(tmp_path):
    layout = CorpusLayout(tmp_path, "c")
    staged = write_staged_shards(_segments(2), layout.staging_run_dir("run9"), ShardLimits(100, 10**9))
    tmp = layout.ledger_dir / "run=run9" / ".commit-00000.parquet.abcd.tmp"
    tmp.parent.mkdir(parents=True)
    tmp.write_bytes(b"partial")
    report = Ledger(layout).recover()
    assert sorted(report.discarded) == sorted([layout.rel(staged[0][0]), layout.rel(tmp)])
    assert not staged[0][0].exists() and not tmp.exists()
    assert Ledger(layout).read().num_rows == 0


def test_commit_then_index(tmp_path):
    layout = CorpusLayout(tmp_path, "c")
    ledger = Ledger(layout)
    staged = write_staged_shards(_segments(1), layout.staging_run_dir("run1"), ShardLimits(100, 10**9))
    rel = [layout.rel(staged[0][0])]
    final = [layout.rel(layout.shard_path("run1", 0))]
    ledger.commit("run1", 0, [_ledger_row(layout, "r1", rel, final, sha="s1"),
                              _ledger_row(layout, "r2", [], [], status="failed", sha="s2")])
    assert layout.abs(final[0]).exists()
    idx = ledger.index("h")
    assert idx.done == {"s1": "run1"} and "s2" in idx.failed
    assert ledger.index("other").done == {}


def test_index_keeps_the_last_row_per_hash_and_looks_up_many(tmp_path):
    layout = CorpusLayout(tmp_path, "c")
    ledger = Ledger(layout)
    rows = [{**_ledger_row(layout, "a", [], [], status="failed", sha="s1"), "run_id": "r1", "error": "old"},
            {**_ledger_row(layout, "a", [], [], status="failed", sha="s1"), "run_id": "r2", "error": "new"},
            {**_ledger_row(layout, "b", [], [], sha="s2"), "run_id": "r1"},
            {**_ledger_row(layout, "b", [], [], sha="s2"), "run_id": "r3"},
            {**_ledger_row(layout, "c", [], [], status="failed", sha="s3"), "run_id": "r1"},  # done later: not failed
            {**_ledger_row(layout, "c", [], [], sha="s3"), "run_id": "r4"},
            {**_ledger_row(layout, "d", [], [], status="failed", sha="s4"), "run_id": "r1", "error": None}]
    for i, row in enumerate(rows):
        ledger.commit(row["run_id"], i, [row])
    idx = ledger.index("h")
    assert idx.done == {"s2": "r3", "s3": "r4"}
    assert idx.failed == {"s1": "new", "s4": "failed"}
    assert idx.lookup(["s3", None, "s1", "zz", "s4"]) == (["r4", None, None, None, None],
                                                         [None, None, "new", None, "failed"])


def test_plan_run_skips_done_failed_and_duplicates():
    idx = LedgerIndex(done={"d": "run0"}, failed={"f": "boom"})
    srcs = [FingerprintedSource("/1", "/1", "d", 1), FingerprintedSource("/2", "/2", "f", 1),
            FingerprintedSource("/3", "/3", "n", 1), FingerprintedSource("/4", "/4", "n", 1),
            FingerprintedSource("/5", None, None, None, "file not found")]
    plan = plan_run(srcs, idx, retry_failed=False)
    assert [s.uri for s in plan.process] == ["/3"]
    why = {s.uri: w for s, w in plan.skipped}
    assert "run0" in why["/1"] and "--retry-failed" in why["/2"] and "/3" in why["/4"]
    assert [(s.uri, w) for s, w in plan.failed] == [("/5", "file not found")]
    retry = plan_run(srcs, idx, retry_failed=True)
    assert [s.uri for s in retry.process] == ["/2", "/3"]


def test_second_lock_is_refused_with_the_holder(tmp_path):
    path = tmp_path / "c" / ".lock"
    with CorpusLock(path, "first"):
        with pytest.raises(CorpusLocked, match="first"):
            CorpusLock(path, "second").acquire()
    CorpusLock(path, "third").acquire().release()


def test_lock_of_a_killed_process_is_released(tmp_path):
    path = tmp_path / "c" / ".lock"
    code = ("import sys, os; sys.path.insert(0, %r); from manifests.lock import CorpusLock; "
            "CorpusLock(%r, 'doomed').acquire(); print('locked', flush=True); os.kill(os.getpid(), 9)") % (
        os.getcwd(), str(path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9 and "locked" in proc.stdout
    CorpusLock(path, "next").acquire().release()
