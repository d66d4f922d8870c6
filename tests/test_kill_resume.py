"""kill -9 of the driver mid-run, then the same command again: every source done exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
import soundfile as sf

from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from tests.conftest import real_clip

pytestmark = pytest.mark.slow

N_SOURCES = 20


def _make_corpus(directory: Path) -> None:
    """20 short files cut from real speech, each different (so none is a duplicate)."""
    speech, sr = sf.read(real_clip("diarization", "pyannote_sample", "sample.wav"), dtype="float32")
    rng = np.random.default_rng(7)
    for i in range(N_SOURCES):
        start = int(rng.uniform(0, 20) * sr)
        piece = speech[start : start + int(rng.uniform(4, 8) * sr)]
        sf.write(directory / f"clip_{i:02d}.wav", piece, sr)


def _refinery(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("refinery")), *args]


def test_kill_9_then_rerun_completes_exactly_once(ray_session, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _make_corpus(src)
    out = tmp_path / "out"
    layout = CorpusLayout(out, "k")
    cmd = _refinery("run", str(src), "--corpus", "k", "--out", str(out), "--address", ray_session,
                    "--set", "output.sources_per_write=2", "--set", "filters.batch_size=2",
                    "--set", "language_id.batch_size=2", "--set", "transcribe.batch_size=2")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}

    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
        if Ledger(layout).commit_files():  # at least one batch committed: now is mid-run
            break
        time.sleep(0.05)
    assert victim.poll() is None, "the run finished before it could be killed:\n" + victim.stdout.read().decode()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    done_before = sum(r["status"] == "done" for r in Ledger(layout).read().to_pylist())
    assert 0 < done_before < N_SOURCES, f"kill landed outside the run ({done_before} done)"

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    ledger = Ledger(layout).read().to_pylist()
    done = Counter(r["sha256"] for r in ledger if r["status"] == "done")
    failed = [(r["source_uri"], r["error"]) for r in ledger if r["status"] == "failed"]
    assert len(done) == N_SOURCES and set(done.values()) == {1}, (done, failed, rerun.stdout)
    assert f"{N_SOURCES - done_before} source(s) processed" in rerun.stdout

    visible = sorted(layout.rel(p) for p in layout.segments_dir.glob("run=*/part-*.parquet"))
    referenced = sorted({p for r in ledger for p in r["shard_paths"] or []})
    assert visible == referenced, "a visible shard is not in the ledger, or a committed shard is missing"
    ids = pads.dataset([str(layout.abs(p)) for p in visible], format="parquet").to_table(columns=["segment_id", "source_uri"])
    counts = Counter(ids.column("segment_id").to_pylist())
    assert counts and max(counts.values()) == 1
    with_segments = {r["source_uri"] for r in ledger if r["status"] == "done" and r["segments"]}
    assert set(ids.column("source_uri").to_pylist()) == with_segments and len(with_segments) >= N_SOURCES - 4
    leftovers = [p for p in layout.staging_dir.rglob("*") if p.is_file()] if layout.staging_dir.exists() else []
    assert leftovers == []


def test_a_small_run_at_default_batch_sizes_commits_as_it_goes(ray_session, tmp_path):
    """Issue 14 item 10: with the default config, four sources are not committed together in the
    run's last second: a kill -9 right after the first commit keeps that work, and the rerun does
    only the rest."""
    src = tmp_path / "in"
    src.mkdir()
    speech, sr = sf.read(real_clip("diarization", "pyannote_sample", "sample.wav"), dtype="float32")
    for i in range(4):
        sf.write(src / f"part_{i}.wav", speech[int(i * 5 * sr):int((i * 5 + 6) * sr)], sr)
    out = tmp_path / "out"
    layout = CorpusLayout(out, "small")
    cmd = _refinery("run", str(src), "--corpus", "small", "--out", str(out), "--address", ray_session)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None and not Ledger(layout).commit_files():
        time.sleep(0.05)
    assert victim.poll() is None, "the run committed nothing before it ended:\n" + victim.stdout.read().decode()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    done_before = sum(r["status"] == "done" for r in Ledger(layout).read().to_pylist())
    assert 1 <= done_before < 4

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{4 - done_before} source(s) processed" in rerun.stdout
    done = Counter(r["sha256"] for r in Ledger(layout).read().to_pylist() if r["status"] == "done")
    assert len(done) == 4 and set(done.values()) == {1}
