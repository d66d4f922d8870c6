"""Stages 8-9, transcribe (+ Chinese gap punctuation): an actor pool stage over ``transcription.asr``.

Each actor loads the configured models once (Whisper for en; Paraformer-zh or Whisper for
zh). A call gathers the kept segments of all its rows, transcribes them grouped by
language in batches, and writes text, words and ASR figures back into each segment.
"""

from __future__ import annotations

from typing import Any, ClassVar

from stages.base import Placement, RunContext, Stage, model_placement
from stages.whisper_placement import WhisperPlacement
from transcription.asr import SegmentTranscriber, TranscribeParams, transcribe_recordings
from transcription.rows import process_rows


class TranscribeSection(TranscribeParams, WhisperPlacement):
    """Stages 8-9: Whisper (en), Paraformer-zh or Whisper (zh), gap-based Chinese punctuation."""

    cpu_batch: ClassVar[int] = 2
    gpu_batch: ClassVar[int] = 8


class TranscribeStage(Stage):
    name = "transcribe"
    sections = {"transcribe": TranscribeSection}
    uses_model = True

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        p: TranscribeSection = cfg.transcribe
        self.params = p
        self.transcriber = SegmentTranscriber(p, device=p.device, cpu_threads=p.cpu_threads, batch_size=p.segments_per_batch())

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return cfg.transcribe.enabled

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return model_placement(cfg.transcribe, cfg.transcribe.recordings_per_call)

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
        return self.with_models(done)
