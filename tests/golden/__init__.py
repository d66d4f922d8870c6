"""The golden run: what the pipeline makes of the shared real clips, field by field.

``GOLDEN_INPUTS`` are the clips; ``golden_records`` reads what a run wrote into the
comparable part (ids, boundaries, speakers, languages, text, drop reasons). The file
``real_clips.json`` was recorded from main before the house refactor (issue 10) with

    .venv/bin/python -m tests.golden.record

and the test in ``tests/test_golden.py`` compares every later run with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as pads

GOLDEN_FILE = Path(__file__).with_name("real_clips.json")
# Relative to ../shared/data/real: the diarization clips, English and Chinese ASR clips.
GOLDEN_INPUTS = ("diarization/pyannote_sample", "diarization/ami_pyannote_debug", "asr_en", "asr_zh")
FIELDS = ("segment_id", "recording_id", "start", "end", "speaker", "language", "text", "kept", "drop_reason")


def golden_records(out_dir: str | Path, corpus: str, shard_paths: list[str] | None = None) -> list[dict]:
    """The comparable fields of every segment row, sorted by segment id."""
    corpus_dir = Path(out_dir) / corpus
    files = ([str(corpus_dir / p) for p in shard_paths] if shard_paths is not None
             else sorted(str(p) for p in (corpus_dir / "segments").glob("run=*/part-*.parquet")))
    rows = pads.dataset(files, format="parquet").to_table(columns=list(FIELDS)).to_pylist()
    return sorted(rows, key=lambda r: r["segment_id"])


def load_golden() -> list[dict]:
    return json.loads(GOLDEN_FILE.read_text())["segments"]
