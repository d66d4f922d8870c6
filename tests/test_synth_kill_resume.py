"""kill -9 of `refinery synth run` mid-run, then the same command: every dialogue done exactly once;
a malformed line is a failed ledger row naming file and line, and the rest goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from manifests.layout import CorpusLayout
from manifests.ledger import Ledger

pytestmark = pytest.mark.slow

N_DIALOGUES = 10
CITIES = ["Paris", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Lisbon", "Dublin", "Oslo", "Athens"]


def _refinery(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("refinery")), *args]


def test_kill_9_then_rerun_speaks_every_dialogue_exactly_once(ray_session, tmp_path):
    lines = [json.dumps({"messages": [{"role": "user", "content": f"What is the weather like in {city} today?"},
                                      {"role": "assistant", "content": f"It is sunny and warm in {city}."}]})
             for city in CITIES[:N_DIALOGUES]]
    lines.insert(4, '{"messages": [{"role": "user", "content": "unterminated"}')
    src = tmp_path / "dialogues.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    layout = CorpusLayout(out, "k", kind="dialogues")
    # espeak-ng and one try per turn keep this cheap: what is tested is the ledger, not the voices.
    cmd = _refinery("synth", "run", str(src), "--corpus", "k", "--out", str(out), "--address", ray_session,
                    "--set", "tts.en_backend=espeak-ng", "--set", "gates.max_attempts=1", "--set", "gates.dnsmos=false",
                    "--set", "synth_output.dialogues_per_write=1", "--set", "synth_text.batch_size=1")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        rows = Ledger(layout).read().to_pylist() if Ledger(layout).commit_files() else []
        if any(r["status"] == "done" for r in rows):  # a dialogue committed: mid-run
            break
        time.sleep(0.05)
    assert victim.poll() is None, "the run finished before it could be killed:\n" + victim.stdout.read().decode()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    done_before = sum(r["status"] == "done" for r in Ledger(layout).read().to_pylist())
    assert 0 < done_before < N_DIALOGUES, f"kill landed outside the run ({done_before} done)"

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{N_DIALOGUES - done_before} dialogue(s) processed" in rerun.stdout, rerun.stdout
    assert f"failed: {src}:5: not valid JSON" in rerun.stderr, rerun.stderr

    ledger = Ledger(layout).read().to_pylist()
    done = Counter(r["sha256"] for r in ledger if r["status"] == "done")
    assert len(done) == N_DIALOGUES and set(done.values()) == {1}
    failed = {r["source_uri"] for r in ledger if r["status"] == "failed"}
    assert failed == {f"{src}#L5"}
    visible = sorted(layout.rel(p) for p in layout.dialogues_dir.glob("run=*/part-*.parquet"))
    referenced = sorted({p for r in ledger for p in r["shard_paths"] or []})
    assert visible == referenced, "a visible shard is not in the ledger, or a committed shard is missing"
    table = pads.dataset([str(layout.abs(p)) for p in visible], format="parquet").to_table(
        columns=["dialogue_id", "turn_index"])
    pairs = Counter(zip(table.column("dialogue_id").to_pylist(), table.column("turn_index").to_pylist()))
    assert len(pairs) == 2 * N_DIALOGUES and set(pairs.values()) == {1}
    leftovers = [p for p in layout.staging_dir.rglob("*") if p.is_file()] if layout.staging_dir.exists() else []
    assert leftovers == []
