"""Stages 8-9, transcribe (+ Chinese gap punctuation): an actor pool stage over ``transcription.asr``.

Each actor loads the configured models once (Whisper for en; Paraformer-zh or Whisper for
zh). A call gathers the kept segments of all its rows, transcribes them grouped by
language in batches, and writes text, words and ASR diagnostics back into each segment.
"""

from __future__ import annotations

from pipeline.config import TranscribeConfig
from transcription.asr import SegmentTranscriber, transcribe_recordings
from transcription.rows import process_rows


class TranscribeStage:
    def __init__(self, transcribe: TranscribeConfig) -> None:
        self.transcriber = SegmentTranscriber(transcribe)
        self.models = self.transcriber.models()
        self.pad_s = transcribe.context_pad_s

    def __call__(self, rows: list[dict]) -> list[dict]:
        return process_rows(rows, "transcription", lambda recs: transcribe_recordings(recs, self.transcriber, self.pad_s),
                            self.models)
