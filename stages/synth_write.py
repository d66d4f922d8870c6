"""Synthesis stage 3, write: dialogue shards (one row per turn) and one ledger row per dialogue.

As the segment writer (``stages.write``): a batch of dialogues becomes staged, size-bounded
shards; each output row carries one dialogue's ledger fields plus ``batch_id``/``batch_size``,
and the driver commits the batch once all its rows have arrived.
"""

from __future__ import annotations

import uuid
from typing import Any

from manifests.layout import CorpusLayout
from manifests.schema import TURN_COLUMNS
from manifests.shards import WRITE_ERROR_FIELDS, ShardLimits, dialogues_table
from manifests.storage import StorageConfig
from stages.base import Placement, RunContext, Stage
from stages.synth_output import SynthOutputSection
from stages.write import stage_shards

LEDGER_FIELDS = ("source_uri", "sha256", "size_bytes", "recording_id", "error", "started_at")


def dialogue_rows(row: dict, run: RunContext, sample_rate: int) -> list[dict]:
    """The shard rows of one spoken dialogue: its turns, with the dialogue's fields on each."""
    did = row["recording_id"]
    out = []
    for cell in row["turns"]:
        turn = {k: cell.get(k) for k in TURN_COLUMNS}
        audio = turn.pop("audio")
        turn.update(
            dialogue_id=did, audio={"bytes": audio, "path": f"{did}/{cell['turn_index']}.flac"} if audio else None,
            sample_rate=sample_rate if audio else None, dialogue_kept=row.get("dialogue_kept"),
            dialogue_form=row.get("dialogue_form"), dialogue_drop_reason=row.get("dialogue_drop_reason"),
            source_uri=row["source_uri"], corpus=run.corpus, run_id=run.run_id, config_hash=run.config_hash,
            models=row.get("models") or [])
        out.append(turn)
    return out


class SynthWriteStage(Stage):
    name = "synth_write"
    sections = {"synth_output": SynthOutputSection, "storage": StorageConfig}

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        self.output: SynthOutputSection = cfg.synth_output
        self.storage = cfg.storage.model_dump()

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return Placement(cfg.synth_output.write_resources, rows_per_call=cfg.synth_output.dialogues_per_write)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return LEDGER_FIELDS + ("status", "turns", "dialogue_kept", "dialogue_form", "dialogue_drop_reason", "models")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return LEDGER_FIELDS + ("corpus", "run_id", "config_hash", "status", "segment_count", "segments_kept",
                                "kept_seconds", "duration_s", "speakers", "staged_paths", "batch_id", "batch_size",
                                "finished_at", *WRITE_ERROR_FIELDS)

    def process_batch(self, rows: list[dict]) -> list[dict]:
        run = self.run
        layout = CorpusLayout(run.out_dir, run.corpus, self.storage, kind="dialogues")
        batch_id = uuid.uuid4().hex
        shard_rows: list[dict] = []
        owner: list[int] = []
        results: list[dict] = []
        for i, row in enumerate(rows):
            res = {k: row.get(k) for k in LEDGER_FIELDS}
            res.update(corpus=run.corpus, run_id=run.run_id, config_hash=run.config_hash, batch_id=batch_id,
                       batch_size=len(rows), segment_count=0, segments_kept=0, kept_seconds=0.0, duration_s=0.0,
                       speakers=None, staged_paths=[], stage_seconds=row.get("stage_seconds"))
            if row.get("status") == "ok":
                built = dialogue_rows(row, run, self.output.sample_rate)
                shard_rows.extend(built)
                owner.extend([i] * len(built))
                kept = [r for r in built if r["kept"] and r["audio"] is not None and r["dialogue_kept"]]
                res.update(status="done", segment_count=len(built), segments_kept=len(kept),
                           kept_seconds=round(sum(r["duration"] for r in kept), 3),
                           duration_s=round(sum(r["duration"] or 0.0 for r in built), 3),
                           speakers=len({r["voice_id"] for r in built if r["voice_id"]}))
            else:
                res.update(status="failed")
            results.append(res)
        limits = ShardLimits(max_rows=self.output.max_shard_rows, max_bytes=int(self.output.max_shard_mb * 1024 * 1024))
        return stage_shards(results, shard_rows, owner, layout, run.run_id, limits, dialogues_table)
