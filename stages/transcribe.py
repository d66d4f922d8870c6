"""Stages 8-9, transcribe (+ Chinese gap punctuation): an actor pool stage over ``transcription.asr``.

Each actor loads the configured models once (Whisper for en; Paraformer-zh or Whisper for
zh). A call gathers the kept segments of all its rows, transcribes them grouped by
language in batches, and writes text, words and ASR figures back into each segment.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from stages.base import MODEL_PLACEMENT, ActorPool, Placement, Resources, RunContext, Section, Stage, append_models
from transcription.asr import SegmentTranscriber, TranscribeParams, transcribe_recordings
from transcription.rows import process_rows


class TranscribeSection(TranscribeParams, Section):
    """Stages 8-9: Whisper (en), Paraformer-zh or Whisper (zh), gap-based Chinese punctuation."""

    placement_fields: ClassVar[frozenset[str]] = MODEL_PLACEMENT
    enabled: bool = True
    device: str = "cpu"
    cpu_threads: int = Field(0, ge=0, description="CTranslate2/torch threads; 0: follow OMP_NUM_THREADS (set by Ray)")
    batch_size: int | None = Field(None, ge=1, description="segments per decoding batch; None: 2 on CPU, 8 "
                                   "on a GPU (on CPU, small batches keep the working set in cache: measured faster, "
                                   "and the results are the same)")
    recordings_per_call: int = Field(1, ge=1, description="recordings an actor takes per call; its segments are "
                                     "batched together. One keeps the graph streaming on small clusters (a call "
                                     "waits for this many recordings) and makes every batch the same whatever the "
                                     "timing; raise it on GPUs to fill batches with short recordings")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class TranscribeStage(Stage):
    name = "transcribe"
    sections = {"transcribe": TranscribeSection}
    uses_model = True

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        p: TranscribeSection = cfg.transcribe
        self.params = p
        self.transcriber = SegmentTranscriber(p, device=p.device, cpu_threads=p.cpu_threads, batch_size=self.segments_per_batch(p))

    @staticmethod
    def segments_per_batch(p: Any) -> int:
        return p.batch_size or (8 if p.device.startswith("cuda") else 2)

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return cfg.transcribe.enabled

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return Placement(cfg.transcribe.resources, rows_per_call=cfg.transcribe.recordings_per_call, pool=cfg.transcribe.pool)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("status", "analysis", "analysis_rate", "segments", "models")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("status", "error", "segments", "models")

    def model_ids(self) -> list[tuple[str, str]]:
        return self.transcriber.models()

    def process_batch(self, rows: list[dict]) -> list[dict]:
        done = process_rows(rows, "transcription",
                            lambda recs: transcribe_recordings(recs, self.transcriber, self.params.context_pad_s))
        return [dict(r, models=append_models(r.get("models"), self.model_ids())) for r in done]
