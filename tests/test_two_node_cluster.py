"""`refinery run` on a real two-node Ray cluster (head and worker in two network namespaces).

- attached from a driver with ``--address``: model actors run on both nodes (the ledger's
  ``worker_nodes`` names the node of every stage of every source), every source done once;
- submitted with ``ray job submit``: the job's driver attaches to the cluster it runs on;
- the worker node's raylet killed mid-run: the run completes on the head, every source done
  exactly once, no segment twice.

The cases share one cluster (the raylet kill comes last: it takes the worker node away).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
import soundfile as sf

from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from pipeline.config import load_config
from pipeline.graph import plan_graph
from pipeline.stage_order import PIPELINE
from tests.conftest import real_clip
from tests.two_node import VENV_BIN, TwoNodeCluster, netns_available

_NO_NETNS = netns_available()
pytestmark = [pytest.mark.slow, pytest.mark.netns,
              pytest.mark.skipif(_NO_NETNS is not None, reason=f"two-node cluster tests: {_NO_NETNS}")]

MODEL_STAGES = {s.name for s in PIPELINE if s.uses_model}
REFINERY = str(VENV_BIN / "refinery")
RAY = str(VENV_BIN / "ray")
# Separate pools (not one fused actor per CPU): each model stage is its own actor, and Ray
# spreads them over the nodes.
APART = ["--set", "ray.fuse_model_stages=never"]
# Lighter graph for the job and the kill cases: Silero VAD instead of pyannote, no enhancement,
# every request small enough that all actors fit on the head alone once the worker is gone
# (an actor that cannot restart anywhere would hold its retried calls forever).
LIGHT = [*APART, "--set", "enhance.enabled=false", "--set", "diarization.enabled=false",
         *[arg for key in ("decode", "vad", "language_id", "transcribe", "filters", "quality")
           for arg in ("--set", f"{key}.resources.num_cpus=0.2")]]


@pytest.fixture(scope="module")
def cluster():
    with TwoNodeCluster(cpus_per_node=2) as c:
        yield c
    # Torn down: no namespace, process or temp dir of the cluster is left.
    import subprocess

    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert c.head.netns not in left and c.worker.netns not in left
    assert not c.root.exists()


def _clips(directory: Path, count: int, seed: int) -> Path:
    """``count`` different 4-6 s pieces of a real two-speaker call."""
    directory.mkdir(parents=True)
    speech, sr = sf.read(real_clip("diarization", "pyannote_sample", "sample.wav"), dtype="float32")
    rng = np.random.default_rng(seed)
    for i in range(count):
        start = int(rng.uniform(0, 22) * sr)
        sf.write(directory / f"clip_{i:02d}.wav", speech[start : start + int(rng.uniform(4, 6) * sr)], sr)
    return directory


def _check_exactly_once(layout: CorpusLayout, count: int) -> list[dict]:
    ledger = Ledger(layout).read().to_pylist()
    done = Counter(r["sha256"] for r in ledger if r["status"] == "done")
    assert len(done) == count and set(done.values()) == {1}, f"not every source done exactly once: {done}"
    assert not [r for r in ledger if r["status"] == "failed"], [r["error"] for r in ledger if r["status"] == "failed"]
    shards = sorted({layout.abs(p) for r in ledger for p in r["shard_paths"] or []})  # a shard holds a batch
    ids = pads.dataset([str(p) for p in shards], format="parquet").to_table(columns=["segment_id"]).column(0).to_pylist()
    assert ids and max(Counter(ids).values()) == 1, "a segment was written twice"
    return ledger


def _model_nodes(ledger: list[dict], roles: dict[str, str]) -> set[str]:
    """'head' / 'worker': where the model stages of these sources ran."""
    return {roles.get(w["node"], w["node"]) for r in ledger for w in r["worker_nodes"] or [] if w["stage"] in MODEL_STAGES}


@pytest.mark.timeout(600)
def test_run_attached_with_address_uses_both_nodes(cluster, tmp_path):
    src = _clips(tmp_path / "in", 4, seed=11)
    out = tmp_path / "out"
    done = cluster.exec([REFINERY, "run", str(src), "--corpus", "two", "--out", str(out),
                         "--address", cluster.address, *APART], timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 source(s) processed: 4 done, 0 failed" in done.stdout
    ledger = _check_exactly_once(CorpusLayout(out, "two"), 4)
    assert _model_nodes(ledger, cluster.roles) == {"head", "worker"}
    enabled = {p.name for p in plan_graph(PIPELINE, load_config(), None, fuse="never") if p.uses_model}
    recorded = {w["stage"] for r in ledger for w in r["worker_nodes"]}
    assert enabled and enabled <= recorded  # every model stage of the default graph recorded its node


@pytest.mark.timeout(600)
def test_ray_job_submit_runs_on_the_cluster(cluster, tmp_path):
    src = _clips(tmp_path / "in", 3, seed=12)
    out = tmp_path / "out"
    job_id = f"refinery-test-{os.getpid()}"
    submitted = cluster.exec([RAY, "job", "submit", "--address", cluster.dashboard, "--submission-id", job_id,
                              "--", REFINERY, "run", str(src), "--corpus", "job", "--out", str(out), *LIGHT],
                             timeout=540)
    log = submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert submitted.returncode == 0 and f"Job '{job_id}' succeeded" in log, log
    status = cluster.exec([RAY, "job", "status", "--address", cluster.dashboard, job_id], timeout=60)
    assert f"Job '{job_id}' succeeded" in status.stdout + status.stderr
    ledger = _check_exactly_once(CorpusLayout(out, "job"), 3)
    # The job's driver attached to the cluster it was submitted to (RAY_ADDRESS), not a Ray of its own.
    assert _model_nodes(ledger, cluster.roles) == {"head", "worker"}


@pytest.mark.timeout(600)
def test_worker_raylet_killed_mid_run_every_source_done_once(cluster, tmp_path):
    count = 6
    src = _clips(tmp_path / "in", count, seed=13)
    out = tmp_path / "out"
    layout = CorpusLayout(out, "kill")
    driver = cluster.popen([REFINERY, "run", str(src), "--corpus", "kill", "--out", str(out),
                            "--address", cluster.address, "--set", "output.sources_per_write=1",
                            "--set", "filters.batch_size=1", "--set", "language_id.batch_size=1",
                            "--set", "transcribe.batch_size=1", *LIGHT])
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and driver.poll() is None:
            if Ledger(layout).commit_files():  # one source committed: the graph is running
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the run ended before the kill:\n" + (driver.stdout.read() or "")
        raylets = cluster.worker.pids_named("raylet")
        assert raylets, "no raylet in the worker namespace"
        for pid in raylets:
            os.kill(pid, signal.SIGKILL)
        done_at_kill = sum(r["status"] == "done" for r in Ledger(layout).read(["status"]).to_pylist())
        output, _ = driver.communicate(timeout=500)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output[-4000:]
    assert done_at_kill < count, "every source was done before the kill"
    _check_exactly_once(layout, count)
    assert [n for n in cluster.alive_nodes()] and all(n["ip"] == cluster.head.ip for n in cluster.alive_nodes())
