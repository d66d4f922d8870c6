"""soak: 200 mixed good and bad inputs, the driver killed with SIGKILL at 5 random moments.

The corpus: ``GOOD`` short pieces of the real speech clips (each with its own seeded gain and
length, so no two share content) and ``BAD`` inputs of nine kinds that must fail with a
reason: text, random bytes and JSON under media names, a FLAC cut after its header, a WAV
declaring 1 Hz, WAVs with no samples, a named pipe (FIFO) and an empty file. The same
``refinery run`` command is started ``KILLS`` times and killed at a seeded random moment
(the driver and the local Ray it started, as a lost machine would), then run once more to
the end. Then every good input must be ``done`` exactly once, every bad one ``failed`` with a
reason and never done, no segment id may appear twice in the committed shards, nothing may
be left in staging, and ``refinery manifest verify`` must pass.

``REFINERY_BENCH_SOAK=GOOD,BAD,KILLS`` sets other sizes (e.g. ``20,8,2`` for a quick check).
The runs use a lean config (no enhancement, no DNSMOS): what is soaked is the driver's
recovery, not the models.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import wave
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import REPO, Context, benchmark

GOOD, BAD, KILLS = (int(n) for n in os.environ.get("REFINERY_BENCH_SOAK", "150,50,5").split(","))
SEED = 14
KILL_AFTER_S = (5.0, 150.0)  # a kill lands between driver start and this many seconds later
LEAN = ("enhance.enabled=false", "quality.enabled=false")
SPEECH = ("diarization/pyannote_sample/sample.wav", "asr_en/librispeech-1995-1837-0001.wav", "asr_en/jfk.flac",
          "asr_zh/BAC009S0764W0121.wav", "asr_zh/IT0011W0001.wav")
BAD_KINDS = ("text", "random_wav", "random_flac", "json_m4a", "one_hz", "no_samples", "cut_flac", "fifo")


def _good_inputs(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    import soundfile as sf

    from benchmarks.inputs import SHARED_REAL

    clips = [sf.read(SHARED_REAL / rel, dtype="float32", always_2d=True) for rel in SPEECH]
    paths = []
    for i in range(n):
        audio, sr = clips[i % len(clips)]
        length = int(rng.uniform(2.0, 4.0) * sr)
        start = int(rng.integers(0, max(1, len(audio) - length)))
        piece = audio[start:start + length, 0] * rng.uniform(0.5, 1.0)
        path = folder / f"good_{i:03d}.wav"
        sf.write(path, piece, sr, subtype="PCM_16")
        paths.append(path)
    return paths


def _bad_inputs(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    from benchmarks.inputs import SHARED_REAL

    flac = (SHARED_REAL / "asr_en" / "jfk.flac").read_bytes()
    paths = [folder / "bad_empty.wav"]
    paths[0].write_bytes(b"")  # one only: every empty file has the same content hash
    for i in range(n - 1):
        kind = BAD_KINDS[i % len(BAD_KINDS)]
        ext = {"random_flac": ".flac", "json_m4a": ".m4a", "cut_flac": ".flac"}.get(kind, ".wav")
        path = folder / f"bad_{i:03d}_{kind}{ext}"
        if kind == "text":
            path.write_text(f"not audio, item {i}\n")
        elif kind in ("random_wav", "random_flac"):
            path.write_bytes(rng.bytes(int(rng.integers(2_000, 40_000))))
        elif kind == "json_m4a":
            path.write_text(json.dumps({"item": i, "note": "not audio"}))
        elif kind == "cut_flac":
            path.write_bytes(flac[:200 + i])
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(1 if kind == "one_hz" else 16000 + i)  # one rate each: unique content
                w.writeframes(rng.integers(-3000, 3000, 4000).astype("<i2").tobytes() if kind == "one_hz" else b"")
        paths.append(path)
    return paths


def _kill_tree(pid: int) -> None:
    """SIGKILL the driver and every process it started (its local Ray): a lost machine."""
    import psutil

    try:
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)


def _ledger_state(out: Path, corpus: str) -> list[dict]:
    from manifests.layout import CorpusLayout
    from manifests.ledger import Ledger

    return Ledger(CorpusLayout(out, corpus)).read().to_pylist()


@benchmark("soak", "200 good and bad inputs, the driver killed 5 times at random moments, then run to the end: "
                   "exactly once, every failure with a reason, verify clean", timeout_s=5400)
def bench_soak(ctx: Context) -> dict[str, Any]:
    from manifests.layout import CorpusLayout
    from manifests.ledger import Ledger

    rng = np.random.default_rng(SEED)
    work = Path(ctx.work_dir) / "soak"
    inputs = work / "in"
    inputs.mkdir(parents=True)
    good = _good_inputs(inputs, GOOD, rng)
    bad = _bad_inputs(inputs, BAD, rng)
    out = work / "out"
    refinery = str(Path(sys.executable).with_name("refinery"))
    cmd = [refinery, "run", str(inputs), "--corpus", "soak", "--out", str(out)]
    for setting in LEAN:
        cmd += ["--set", setting]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    t_start = time.perf_counter()
    kills = []
    for k in range(KILLS):
        delay = float(rng.uniform(*KILL_AFTER_S))
        with open(work / f"run_{k}.log", "wb") as log:
            driver = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                      start_new_session=True)
            try:
                driver.wait(timeout=delay)
                landed = False  # the run ended first: nothing left to kill
            except subprocess.TimeoutExpired:
                _kill_tree(driver.pid)
                landed = True
        ledger = _ledger_state(out, "soak") if (out / "soak").exists() else []
        kills.append({"after_s": round(delay, 1), "landed": landed,
                      "done_so_far": sum(r["status"] == "done" for r in ledger)})
        print(f"  kill {k + 1}/{KILLS} after {delay:.1f} s: {'landed mid-run' if landed else 'the run had ended'}; "
              f"{kills[-1]['done_so_far']} source(s) done so far", flush=True)
    t_final = time.perf_counter()
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, timeout=4800)
    final_s = time.perf_counter() - t_final
    if final.returncode != 0:
        raise RuntimeError(f"the final run failed ({final.returncode}):\n{final.stdout[-3000:]}\n{final.stderr[-3000:]}")
    verify = subprocess.run([refinery, "manifest", "verify", str(out), "--corpus", "soak"], env=env,
                            capture_output=True, text=True, cwd=REPO, timeout=1800)

    ledger = _ledger_state(out, "soak")
    by_uri: dict[str, list[dict]] = {}
    for r in ledger:
        by_uri.setdefault(r["source_uri"], []).append(r)
    good_done = Counter(sum(r["status"] == "done" for r in by_uri.get(str(p.resolve()), [])) for p in good)
    bad_rows = [by_uri.get(str(p.resolve()), []) for p in bad]
    bad_failed_with_reason = sum(1 for rows in bad_rows if rows and not any(r["status"] == "done" for r in rows)
                                 and any(r["status"] == "failed" and r["error"] for r in rows))
    layout = CorpusLayout(out, "soak")
    shards = Ledger(layout).shard_files()
    import pyarrow.dataset as pads

    ids = pads.dataset([str(p) for p in shards], format="parquet").to_table(columns=["segment_id"]) \
        .column("segment_id").to_pylist() if shards else []
    repeated_ids = sum(n - 1 for n in Counter(ids).values() if n > 1)
    staging_left = [p for p in layout.staging_dir.rglob("*") if p.is_file()] if layout.staging_dir.exists() else []
    figures = {
        "inputs": GOOD + BAD, "good_inputs": GOOD, "bad_inputs": BAD,
        "kills": KILLS, "kills_landed_mid_run": sum(k["landed"] for k in kills),
        "good_done_exactly_once": good_done.get(1, 0),
        "good_not_done": good_done.get(0, 0),
        "good_done_more_than_once": sum(n for times, n in good_done.items() if times > 1),
        "bad_failed_with_reason": bad_failed_with_reason,
        "segments": len(ids), "repeated_segment_ids": repeated_ids,
        "staging_files_left": len(staging_left),
        "ledger_commit_files": len(Ledger(layout).commit_files()),
        "verify_exit_status": verify.returncode,
        "final_run_s": round(final_s, 1),
        "soak_wall_s": round(time.perf_counter() - t_start, 1),
        "note": "kills at " + ", ".join(f"{k['after_s']} s ({'mid-run' if k['landed'] else 'after the end'}, "
                                        f"{k['done_so_far']} done)" for k in kills),
    }
    print("  " + final.stdout.strip().splitlines()[-1] if final.stdout.strip() else "", flush=True)
    ok = (figures["good_done_exactly_once"] == GOOD and figures["bad_failed_with_reason"] == BAD
          and repeated_ids == 0 and not staging_left and verify.returncode == 0)
    figures["all_checks_hold"] = int(ok)
    if not ok:
        raise RuntimeError(f"the soak's checks do not hold: {json.dumps(figures)}\nverify: {verify.stdout[-2000:]}"
                           f"{verify.stderr[-2000:]}")
    return figures
