"""The output section: shard audio format and size, read by decode, enhance and write."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from stages.base import Resources, Section


class OutputSection(Section):
    """Stage 11: Parquet shards and the ledger."""

    placement_fields: ClassVar[frozenset[str]] = frozenset(
        {"max_shard_rows", "max_shard_mb", "sources_per_write", "encode_resources", "write_resources", "commit_every_s"})
    sample_rate: int = Field(24000, ge=8000, le=192000, description="rate of the FLAC audio in the shards")
    flac_subtype: Literal["PCM_16", "PCM_24"] = "PCM_16"
    max_shard_rows: int = Field(2000, ge=1)
    max_shard_mb: float = Field(256.0, gt=0)
    # One: a source's shards are written as soon as it is done (commits then follow commit_every_s);
    # several make fewer, larger shards for corpora of many short files, at the cost of waiting for them.
    sources_per_write: int = Field(1, ge=1, description="sources per shard write (a batch is committed when all "
                                   "its sources are written)")
    encode_resources: Resources = Resources()
    write_resources: Resources = Resources()
    commit_every_s: float = Field(10.0, ge=0, description="written sources wait at most this long for their ledger "
                                  "commit (0: each written batch at once): a kill loses at most this much work")
