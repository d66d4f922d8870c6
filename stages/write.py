"""Stage 11, write: cut and encode segments, write staged shards, report one row per source.

A batch of sources becomes size-bounded shards that are not visible yet (staged locally,
written in place on an object store: see ``manifests.ledger``); workers get the output as
a path or URI and write through its filesystem. Each output row carries the ledger fields
of one source plus ``batch_id``/``batch_size``, so the driver can commit a batch once all
its rows have arrived (shards of a batch may hold segments of several of its sources).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterable

from audio_io.signals import cut_variant, read_variant
from manifests.layout import CorpusLayout
from manifests.planned_segment import from_rows
from manifests.segment_rows import RecordingContext, build_segment_rows, ordered
from manifests.shards import WRITE_ERROR_FIELDS, ShardLimits, segments_table, write_error_fields, write_shards
from manifests.storage import StorageConfig
from stages.base import Placement, RunContext, Stage
from stages.enhance import EnhanceSection
from stages.output import OutputSection

# Fields passed through to the ledger row unchanged.
LEDGER_FIELDS = ("source_uri", "sha256", "size_bytes", "recording_id", "error", "duration_s", "container",
                 "codec", "source_sample_rate", "source_channels", "warning", "started_at")


class WriteStage(Stage):
    name = "write"
    sections = {"output": OutputSection, "enhance": EnhanceSection, "storage": StorageConfig}

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        self.output: OutputSection = cfg.output
        self.storage = cfg.storage.model_dump()
        enhance = cfg.enhance
        self.variants = enhance.variants if enhance.enabled else "raw"

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return Placement(cfg.output.write_resources, rows_per_call=cfg.output.sources_per_write)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return LEDGER_FIELDS + ("status", "segments", "speakers", "models", "audio_raw", "audio_enhanced")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return LEDGER_FIELDS + ("corpus", "run_id", "config_hash", "status", "segment_count", "segments_kept",
                                "kept_seconds", "speakers", "staged_paths", "batch_id", "batch_size", "finished_at",
                                *WRITE_ERROR_FIELDS)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        run, output = self.run, self.output
        layout = CorpusLayout(run.out_dir, run.corpus, self.storage)
        batch_id = uuid.uuid4().hex
        segment_rows: list[dict] = []
        owner: list[int] = []  # source index of each segment row
        results: list[dict] = []
        for i, row in enumerate(rows):
            res = {k: row.get(k) for k in LEDGER_FIELDS}
            res.update(corpus=run.corpus, run_id=run.run_id, config_hash=run.config_hash, batch_id=batch_id,
                       batch_size=len(rows), segment_count=0, segments_kept=0, kept_seconds=0.0,
                       speakers=row.get("speakers"), staged_paths=[], stage_seconds=row.get("stage_seconds"))
            if row["status"] == "ok":
                try:
                    built = self.segment_rows(row)
                    segment_rows.extend(built)
                    owner.extend([i] * len(built))
                    kept = [r for r in built if r["kept"]]
                    res.update(status="done", segment_count=len(built), segments_kept=len(kept),
                               kept_seconds=round(sum(r["duration"] for r in kept), 3))
                except Exception as exc:  # noqa: BLE001
                    res.update(status="failed", error=f"writing segments failed: {type(exc).__name__}: {exc}")
            else:
                res.update(status="failed")
            results.append(res)
        limits = ShardLimits(max_rows=output.max_shard_rows, max_bytes=int(output.max_shard_mb * 1024 * 1024))
        return stage_shards(results, segment_rows, owner, layout, run.run_id, limits, segments_table)

    def segment_rows(self, row: dict) -> list[dict]:
        run, subtype = self.run, self.output.flac_subtype
        ctx = RecordingContext(recording_id=row["recording_id"], source_uri=row["source_uri"], corpus=run.corpus,
                               run_id=run.run_id, config_hash=run.config_hash,
                               models=tuple((m["stage"], m["model"]) for m in row.get("models") or []))
        segments = ordered(from_rows(row["segments"]))
        cells = {}
        for column, wanted in (("audio_raw", self.variants != "enhanced"), ("audio_enhanced", self.variants != "raw")):
            if not wanted:
                cells[column] = [None] * len(segments)
                continue
            if row.get(column) is None:
                raise ValueError(f"variants={self.variants} but the recording has no {column} signal")
            pcm, rate = read_variant(row[column], subtype)
            cells[column] = [cut_variant(pcm, rate, s.start, s.end, subtype) for s in segments]
        return build_segment_rows(ctx, segments, self.output.sample_rate, cells["audio_raw"], cells["audio_enhanced"])


def stage_shards(results: list[dict], shard_rows: list[dict], owner: list[int], layout: CorpusLayout, run_id: str,
                 limits: ShardLimits, table_of: Callable[[Iterable[dict]], Any]) -> list[dict]:
    """Write ``shard_rows`` (row j belongs to source ``owner[j]``) into staged shards, name each
    source's shards in its result's ``staged_paths`` and stamp ``finished_at``: the per-source
    rows the driver commits (segment and dialogue writers alike).

    A write that fails (a full disk, a read-only output) fails no source: every row carries the
    error (``manifests.shards.write_error_fields``) and the driver stops the run with it."""
    try:
        written = write_shards(shard_rows, layout, run_id, limits, table_of=table_of)
    except OSError as exc:
        for res in results:
            res.update(write_error_fields(exc), staged_paths=[])
        written = []
    for path, indices in written:
        rel = layout.rel(path)
        for src in sorted({owner[j] for j in indices}):
            results[src]["staged_paths"].append(rel)
    now = time.time()
    for res in results:
        res["finished_at"] = now
    return results
