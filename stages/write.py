"""Stage 11, write: cut and encode segments, write staged shards, report one row per source.

A batch of sources becomes size-bounded shards that are not visible yet (staged locally,
written in place on an object store: see ``manifests.ledger``); workers get the output as
a path or URI and write through its filesystem. Each
output row carries the ledger fields of one source plus ``batch_id``/``batch_size``, so
the driver can commit a batch once all its rows have arrived (shards of a batch may hold
segments of several of its sources).
"""

from __future__ import annotations

import json
import time
import uuid

from manifests.layout import CorpusLayout
from manifests.segment_rows import RecordingContext, build_segment_rows
from manifests.shards import ShardLimits, write_shards
from manifests.storage import Storage
from manifests import planned_segment
from stages.enhance import raw_and_enhanced
from pipeline.config import OutputConfig

# Fields passed through to the ledger row unchanged.
_LEDGER_FIELDS = ("source_uri", "sha256", "size_bytes", "recording_id", "error", "duration_s", "container",
                  "codec", "source_sample_rate", "source_channels", "warning", "started_at")


def write_batch(rows: list[dict], *, out_dir: str, corpus: str, run_id: str, config_hash: str, output: OutputConfig,
                storage: Storage = None, variants: str = "both") -> list[dict]:
    layout = CorpusLayout(out_dir, corpus, storage)
    batch_id = uuid.uuid4().hex
    segment_rows: list[dict] = []
    owner: list[int] = []  # source index of each segment row
    results: list[dict] = []
    for i, row in enumerate(rows):
        res = {k: row.get(k) for k in _LEDGER_FIELDS}
        res.update(corpus=corpus, run_id=run_id, config_hash=config_hash, batch_id=batch_id, batch_size=len(rows),
                   segments=0, segments_kept=0, kept_seconds=0.0, speakers=row.get("speakers"), staged_paths=[])
        if row["status"] == "ok":
            try:
                built = _segment_rows(row, corpus, run_id, config_hash, output, variants)
                segment_rows.extend(built)
                owner.extend([i] * len(built))
                kept = [r for r in built if r["kept"]]
                res.update(status="done", segments=len(built), segments_kept=len(kept),
                           kept_seconds=round(sum(r["duration"] for r in kept), 3))
            except Exception as exc:  # noqa: BLE001
                res.update(status="failed", error=f"writing segments failed: {type(exc).__name__}: {exc}")
        else:
            res.update(status="failed")
        results.append(res)
    limits = ShardLimits(max_rows=output.max_shard_rows, max_bytes=int(output.max_shard_mb * 1024 * 1024))
    staged = write_shards(segment_rows, layout, run_id, limits)
    for path, indices in staged:
        rel = layout.rel(path)
        for src in sorted({owner[j] for j in indices}):
            results[src]["staged_paths"].append(rel)
    now = time.time()
    for res in results:
        res["finished_at"] = now
    return results


def _segment_rows(row: dict, corpus: str, run_id: str, config_hash: str, output: OutputConfig,
                  variants: str = "both") -> list[dict]:
    ctx = RecordingContext(
        recording_id=row["recording_id"], source_uri=row["source_uri"], corpus=corpus, run_id=run_id,
        config_hash=config_hash, models=tuple(tuple(m) for m in json.loads(row.get("models_json") or "[]")),
    )
    segments = planned_segment.loads(row["segments_json"])
    raw, enhanced = raw_and_enhanced(row)
    return build_segment_rows(ctx, raw, row["sample_rate"], segments, output.sample_rate, output.flac_subtype,
                              enhanced=enhanced, variants=variants)
