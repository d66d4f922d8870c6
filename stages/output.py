"""The output section: shard audio format and size, read by decode, enhance and write."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from stages.base import Resources, Section


class OutputSection(Section):
    """Stage 11: Parquet shards and the ledger."""

    placement_fields: ClassVar[frozenset[str]] = frozenset(
        {"max_shard_rows", "max_shard_mb", "sources_per_write", "encode_resources", "write_resources"})
    sample_rate: int = Field(24000, ge=8000, le=192000, description="rate of the FLAC audio in the shards")
    flac_subtype: Literal["PCM_16", "PCM_24"] = "PCM_16"
    max_shard_rows: int = Field(2000, ge=1)
    max_shard_mb: float = Field(256.0, gt=0)
    sources_per_write: int = Field(4, ge=1, description="sources gathered before a write and ledger commit")
    encode_resources: Resources = Resources()
    write_resources: Resources = Resources()
