"""scale: the driver at 100k and 1M sources, a rerun with nothing to do, and ledger compaction.

For each size N: N real (empty) files listed in an ``@list`` file; a corpus whose ledger says
all N are done under the default config (N / 1,000 commit files written by ``Ledger.commit``)
and whose stat cache covers them (``manifests.stat_cache``, stamps from real ``stat`` calls).
Then, in a fresh Python process (its peak RSS is the driver's own), ``run_pipeline`` on the
list: discovery, stat-cache lookups, the ledger index, planning and the commit of N skipped
rows. It must read no file and start no Ray. Then ``Ledger.compact`` folds the ledger (the
N done rows and the rerun's N skipped rows) into one file. Goal: 1M sources planned in
under 60 s and under 2 GB.

``REFINERY_BENCH_SCALE_SIZES=1000,20000`` runs other sizes (a quick check).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, Context, benchmark

SIZES = tuple(int(n) for n in os.environ.get("REFINERY_BENCH_SCALE_SIZES", "100000,1000000").split(","))
ROWS_PER_COMMIT = 1000

_DRIVER = """
import json, sys, time
t0 = time.perf_counter()
from pipeline.config import load_config
from pipeline.run import run_pipeline
from benchmarks.harness import peak_rss_mib
imported = time.perf_counter()
summary = run_pipeline([sys.argv[1]], sys.argv[2], sys.argv[3], load_config())
done = time.perf_counter()
import ray
print(json.dumps({"import_s": imported - t0, "plan_s": done - imported, "processed": summary.processed,
                  "skipped": summary.skipped, "sources": summary.sources, "ray_started": ray.is_initialized(),
                  "peak_rss_mib": peak_rss_mib()}))
"""


def _make_inputs(root: Path, n: int) -> Path:
    listing = root / "inputs.txt"
    with open(listing, "w") as out:
        for i in range(n):
            folder = root / "in" / f"{i // 1000:04d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True)
            path = folder / f"s{i:07d}.wav"
            open(path, "wb").close()
            out.write(f"{path}\n")
    return listing


def _make_corpus(root: Path, listing: Path, corpus: str) -> Path:
    from manifests.layout import CorpusLayout
    from manifests.ledger import Ledger
    from manifests.stat_cache import StatCache, local_stamp
    from pipeline.config import load_config

    config_hash = load_config().config_hash()
    out = root / "out"
    layout = CorpusLayout(out, corpus)
    ledger, cache = Ledger(layout), StatCache(layout)
    paths = listing.read_text().splitlines()
    for start in range(0, len(paths), ROWS_PER_COMMIT):
        rows = []
        for i, path in enumerate(paths[start:start + ROWS_PER_COMMIT], start):
            sha = f"{i:064x}"
            rows.append({"source_uri": path, "sha256": sha, "size_bytes": 0, "recording_id": f"r{i}",
                         "corpus": corpus, "run_id": "seed", "config_hash": config_hash, "status": "done",
                         "segments": 3, "segments_kept": 2, "kept_seconds": 12.5, "shard_paths": [],
                         "staged_paths": []})
            cache.update([(path, local_stamp(os.stat(path)), 0, sha)])
        ledger.commit("seed", start // ROWS_PER_COMMIT, rows)
    cache.save()
    return out


@benchmark("scale", "the driver over 100k and 1M unchanged sources (stat cache, ledger index, plan) and "
           "ledger compaction, on synthetic listings and ledgers", rss_key="bench_process_peak_rss_mib")
def bench_scale(ctx: Context) -> dict[str, Any]:
    from manifests.layout import CorpusLayout
    from manifests.ledger import Ledger

    figures: dict[str, Any] = {}
    for n in SIZES:
        tag = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}m"
        with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            listing = _make_inputs(root, n)
            out = _make_corpus(root, listing, "scale")
            figures[f"setup_{tag}_s"] = time.perf_counter() - t0
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            driver = subprocess.run([sys.executable, "-c", _DRIVER, f"@{listing}", "scale", str(out)],
                                    capture_output=True, text=True, env=env, cwd=REPO, timeout=1800)
            if driver.returncode != 0:
                raise RuntimeError(f"the {tag} rerun failed: {driver.stderr[-2000:]}")
            got = json.loads(driver.stdout.strip().splitlines()[-1])
            if got["processed"] or got["skipped"] != n or got["ray_started"]:
                raise RuntimeError(f"the {tag} rerun did work it should not have: {got}")
            figures[f"rerun_{tag}_plan_s"] = got["plan_s"]
            figures[f"rerun_{tag}_driver_import_s"] = got["import_s"]
            figures[f"rerun_{tag}_driver_peak_rss_mib"] = got["peak_rss_mib"]
            ledger = Ledger(CorpusLayout(out, "scale"))
            files = len(ledger.commit_files())
            t0 = time.perf_counter()
            report = ledger.compact()
            figures[f"compact_{tag}_s"] = time.perf_counter() - t0
            figures[f"compact_{tag}_files_before"] = files
            figures[f"compact_{tag}_rows"] = report.rows
    figures["note"] = ("plan: discovery of an @list + one stat per source against the stat cache + ledger index + "
                       "plan + commit of the rerun's skipped rows, in a fresh driver process (no Ray started); "
                       "goal at 1M: under 60 s and 2 GB")
    return figures
