"""Transcription of segments by language: the models a ``TranscribeConfig`` names, behind one call.

- en: Whisper ``en_model`` (English-only or multilingual), batched, deterministic
  (``transcription.whisper_asr``), punctuation and casing as Whisper writes them;
- zh: Paraformer-zh (``zh_backend=paraformer``) or Whisper ``multilingual_model`` with
  language=zh (``zh_backend=whisper``), then simplified characters and the gap
  punctuation rule (``transcription.chinese``);
- any other language the language-ID stage lets through: Whisper ``multilingual_model``
  with that language.

``transcribe_recordings`` runs it over the kept segments of many recordings, grouped by
language so each model sees one batch per call.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from pipeline.config import TranscribeConfig
from transcription.chinese import finish_chinese
from transcription.models import load_whisper, whisper_model_version
from transcription.paraformer import ParaformerTranscriber
from transcription.result import AsrResult
from transcription.whisper_asr import WINDOW_S, DecodeSettings, RetryChecks, WhisperPolicy, WhisperTranscriber


class Transcriber(Protocol):
    """What ``transcribe_recordings`` needs of the models."""

    def transcribe(self, audios: list[np.ndarray], language: str) -> list[AsrResult]: ...

    def model_for(self, language: str) -> str: ...


def whisper_policy(cfg: TranscribeConfig) -> WhisperPolicy:
    return WhisperPolicy(
        first=DecodeSettings(beam_size=cfg.beam_size),
        retry=DecodeSettings(beam_size=cfg.retry_beam_size, repetition_penalty=cfg.retry_repetition_penalty,
                             no_repeat_ngram_size=cfg.retry_no_repeat_ngram_size),
        checks=RetryChecks(max_compression_ratio=cfg.retry_compression_ratio, max_ngram_repeats=cfg.retry_max_ngram_repeats,
                           ngram_max_n=cfg.retry_ngram_max_n, min_avg_logprob=cfg.retry_avg_logprob),
    )


def paraformer_model_version(model: str) -> str:
    from importlib.metadata import version

    return f"{model}@funasr=={version('funasr')}"


class SegmentTranscriber:
    """Loads the configured models once; ``transcribe(audios, language)`` per language."""

    def __init__(self, cfg: TranscribeConfig) -> None:
        self.cfg = cfg
        self.policy = whisper_policy(cfg)
        self.en = self._whisper(cfg.en_model)
        self.paraformer: ParaformerTranscriber | None = None
        self.multilingual: WhisperTranscriber | None = None
        if cfg.zh_backend == "paraformer":
            self.paraformer = ParaformerTranscriber(cfg.paraformer_model, cfg.device, cfg.cpu_threads, cfg.batch_size,
                                                    cfg.paraformer_hub)
        else:
            self.multilingual = self._whisper(cfg.multilingual_model)

    def _whisper(self, model: str) -> WhisperTranscriber:
        cfg = self.cfg
        return WhisperTranscriber(load_whisper(model, cfg.device, cfg.precision, cfg.cpu_threads), self.policy, cfg.batch_size)

    def models(self) -> list[tuple[str, str]]:
        """[stage, model id@revision] pairs for the segments' ``models``."""
        out = [("transcribe_en", whisper_model_version(self.cfg.en_model))]
        if self.cfg.zh_backend == "paraformer":
            out.append(("transcribe_zh", paraformer_model_version(self.cfg.paraformer_model)))
        else:
            out.append(("transcribe_zh", whisper_model_version(self.cfg.multilingual_model)))
        return out

    def model_for(self, language: str) -> str:
        if language == "en":
            return self.cfg.en_model
        if language == "zh" and self.cfg.zh_backend == "paraformer":
            return self.cfg.paraformer_model
        return self.cfg.multilingual_model

    def transcribe(self, audios: list[np.ndarray], language: str) -> list[AsrResult]:
        if not audios:
            return []
        if language == "en":
            results = self.en.transcribe(audios, "en")
        elif language == "zh" and self.paraformer is not None:
            results = self.paraformer.transcribe(audios)
        else:
            if self.multilingual is None:
                self.multilingual = self._whisper(self.cfg.multilingual_model)
            results = self.multilingual.transcribe(audios, language)
        if language == "zh":
            results = [finish_chinese(r, self.cfg.zh_comma_gap_s, self.cfg.zh_full_stop_gap_s) for r in results]
        return results


def transcribe_recordings(recordings: list[Any], transcriber: Transcriber, pad_s: float = 0.0) -> None:
    """Fill text, words and ASR diagnostics of every kept segment (``RecordingSegments``), in place.

    Each segment is heard with ``pad_s`` of context on both sides; word times are shifted
    back to the segment's start and clamped to [0, duration].
    """
    by_language: dict[str, list[tuple[Any, Any]]] = {}
    for rec in recordings:
        for seg in rec.segments:
            if not seg.kept:
                continue
            if not seg.language:
                seg.extra["transcribe_skipped"] = "no language (language_id disabled?)"
                continue
            by_language.setdefault(seg.language, []).append((rec, seg))
    for language in sorted(by_language):
        pairs = by_language[language]
        pads = [window_pad(seg.duration, pad_s) for _, seg in pairs]
        results = transcriber.transcribe([rec.cut(seg, pad) for (rec, seg), pad in zip(pairs, pads)], language)
        for (rec, seg), pad, res in zip(pairs, pads, results):
            res.words = shift_words(res.words, rec.pad_before(seg, pad), seg.duration)
            seg.extra.update(res.extra)
            seg.extra["asr_model"] = transcriber.model_for(language)
            if res.error:
                seg.drop(f"transcribe: {res.error}")
                continue
            seg.text = res.text
            seg.words = res.words


def window_pad(duration_s: float, pad_s: float) -> float:
    """The context pad, shrunk so that the padded segment still fits one Whisper window."""
    return max(0.0, min(pad_s, (WINDOW_S - duration_s) / 2))


def shift_words(words: list[dict], offset_s: float, duration_s: float) -> list[dict]:
    """Word times from the padded window to the segment: minus ``offset_s``, clamped to [0, duration]."""
    out = []
    for w in words:
        start = min(max(0.0, w["start"] - offset_s), duration_s)
        end = min(max(start, w["end"] - offset_s), duration_s)
        out.append(dict(w, start=round(start, 3), end=round(end, 3)))
    return out
