"""The synthesis output section: turn audio format and dialogue shard sizes (speak and write)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from stages.base import Resources, Section


class SynthOutputSection(Section):
    """Dialogue shards and the ledger of a synthesis corpus."""

    placement_fields: ClassVar[frozenset[str]] = frozenset(
        {"max_shard_rows", "max_shard_mb", "dialogues_per_write", "write_resources", "commit_every_s"})
    sample_rate: int = Field(24000, ge=8000, le=48000, description="rate of the FLAC turn audio in the shards")
    flac_subtype: Literal["PCM_16", "PCM_24"] = "PCM_16"
    max_shard_rows: int = Field(5000, ge=1)
    max_shard_mb: float = Field(256.0, gt=0)
    dialogues_per_write: int = Field(4, ge=1, description="dialogues gathered before a write and ledger commit")
    write_resources: Resources = Resources()
    commit_every_s: float = Field(10.0, ge=0, description="written dialogues wait at most this long for their ledger "
                                  "commit (0: each written batch at once): a kill loses at most this much work")
