"""Stage 7, language ID: an actor pool stage over ``transcription.language_id``.

Each actor loads the Whisper model once. A call batches all segments of all its rows
through Whisper's language head, then decides per recording (per segment; majority only
as a tie-breaker). Rows that are not ``ok`` pass through untouched.
"""

from __future__ import annotations

from pipeline.config import LanguageIdConfig
from transcription.language_id import LidPolicy, WhisperLanguageId, identify_languages
from transcription.models import load_whisper, whisper_model_version
from transcription.rows import process_rows


class LanguageIdStage:
    def __init__(self, language_id: LanguageIdConfig) -> None:
        cfg = language_id
        self.lid = WhisperLanguageId(load_whisper(cfg.model, cfg.device, cfg.precision, cfg.cpu_threads), cfg.batch_size)
        self.policy = LidPolicy(tuple(cfg.languages), cfg.min_probability, cfg.tie_break_min_probability)
        self.pad_s = cfg.context_pad_s
        self.models = [("language_id", whisper_model_version(cfg.model))]

    def __call__(self, rows: list[dict]) -> list[dict]:
        return process_rows(rows, "language ID", lambda recs: identify_languages(recs, self.lid, self.policy, self.pad_s),
                            self.models)
