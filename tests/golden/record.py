"""Record ``real_clips.json``: run the default pipeline on the golden inputs, keep the comparable fields."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from tests.conftest import SHARED_REAL
from tests.golden import GOLDEN_FILE, GOLDEN_INPUTS, golden_records


def main() -> int:
    from pipeline.config import load_config
    from pipeline.run import run_pipeline

    inputs = [str(SHARED_REAL / p) for p in GOLDEN_INPUTS]
    with tempfile.TemporaryDirectory() as out:
        summary = run_pipeline(inputs, "golden", out, load_config(None, []))
        if summary.failed:
            print(f"golden run failed sources: {summary.failures}", file=sys.stderr)
            return 1
        records = golden_records(out, "golden")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    GOLDEN_FILE.write_text(json.dumps({"recorded_at_commit": commit, "config_hash": summary.config_hash,
                                       "sources": summary.sources, "segments": records},
                                      indent=1, ensure_ascii=False) + "\n")
    print(f"{len(records)} segments from {summary.sources} sources -> {GOLDEN_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
