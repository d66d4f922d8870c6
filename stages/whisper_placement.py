"""Placement fields of the Whisper stages (language ID, transcription): one declaration for both."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from stages.base import MODEL_PLACEMENT, ActorPool, Resources, Section


class WhisperPlacement(Section):
    """Where a Whisper stage runs and how it batches; never changes what is written."""

    placement_fields: ClassVar[frozenset[str]] = MODEL_PLACEMENT
    cpu_batch: ClassVar[int] = 1  # segments per batch when batch_size is None, on CPU
    gpu_batch: ClassVar[int] = 16  # ... and on a GPU

    enabled: bool = True
    device: str = "cpu"
    cpu_threads: int = Field(0, ge=0, description="CTranslate2 (and torch) threads; 0: follow OMP_NUM_THREADS, which Ray sets")
    batch_size: int | None = Field(None, ge=1, description="segments per batch; None: the stage's CPU or GPU default "
                                   "(on CPU, small batches keep the working set in cache: measured faster, and the "
                                   "results are the same)")
    recordings_per_call: int = Field(1, ge=1, description="recordings an actor takes per call; its segments are "
                                     "batched together. One keeps the graph streaming on small clusters (a call "
                                     "waits for this many recordings) and makes every batch the same whatever the "
                                     "timing; raise it on GPUs to fill batches with short recordings")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()

    def segments_per_batch(self) -> int:
        return self.batch_size or (self.gpu_batch if self.device.startswith("cuda") else self.cpu_batch)
