"""Transcription of segments by language: the models ``TranscribeParams`` names, behind one call.

- en: Whisper ``en_model`` (English-only or multilingual), batched, deterministic
  (``transcription.whisper_asr``), punctuation and casing as Whisper writes them;
- zh: Paraformer-zh (``zh_backend=paraformer``) or Whisper ``multilingual_model`` with
  language=zh (``zh_backend=whisper``), then simplified characters and the gap
  punctuation rule (``transcription.chinese``);
- any other language the language-ID stage lets through: Whisper ``multilingual_model``
  with that language.

``transcribe_recordings`` runs it over the kept segments of many recordings, grouped by
language so each model sees one batch per call, and writes text, words and the ``asr_*``
fields of each segment.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from manifests.params import Params
from transcription.chinese import finish_chinese
from transcription.models import Precision, load_whisper, whisper_model_version
from transcription.paraformer import ParaformerTranscriber
from transcription.result import AsrResult
from transcription.whisper_asr import WINDOW_S, DecodeSettings, RetryChecks, WhisperPolicy, WhisperTranscriber


class TranscribeParams(Params):
    """Transcription parameters (stages 8-9); the stage's config section adds placement."""

    en_model: str = Field("whisper-tiny.en-offline", description="English Whisper: 'whisper-tiny.en-offline', "
                          "'whisper-base-offline', a faster-whisper size/hub id (e.g. 'large-v3') or a local directory")
    zh_backend: Literal["paraformer", "whisper"] = Field(
        "whisper", description="'paraformer': FunASR Paraformer-zh (paraformer_model); 'whisper': multilingual_model "
        "with language=zh, converted to simplified characters (the offline default: no Paraformer weights offline)")
    paraformer_model: str = Field("paraformer-zh", description="FunASR hub id (ModelScope) or a local model directory")
    paraformer_hub: Literal["ms", "hf"] = "ms"
    multilingual_model: str = Field("whisper-base-offline", description="Whisper for zh (zh_backend=whisper) and any "
                                    "other configured language")
    beam_size: int = Field(5, ge=1, description="pass 1: temperature 0, beam search")
    retry_beam_size: int = Field(5, ge=1, description="the one deterministic retry")
    retry_repetition_penalty: float = Field(1.1, ge=1.0)
    retry_no_repeat_ngram_size: int = Field(4, ge=0, description="0: off")
    retry_compression_ratio: float | None = Field(2.4, gt=0, description="retry when pass-1 text compresses more than this")
    retry_max_ngram_repeats: int | None = Field(4, ge=1, description="retry when an n-gram repeats back to back more often")
    retry_ngram_max_n: int = Field(8, ge=1, description="longest n-gram the repetition check looks at")
    retry_avg_logprob: float | None = Field(-1.0, description="retry when pass-1 average log-probability is below this")
    context_pad_s: float = Field(0.5, ge=0, description="audio context added on each side of a segment for the "
                                 "recogniser; word times stay relative to the segment, clamped to it (0.5: shipped zh "
                                 "CER on the shared clips 0.049, at 0.2 it was 0.082)")
    zh_comma_gap_s: float = Field(0.5, ge=0, description="gap > this and <= full-stop gap inserts '，'")
    zh_full_stop_gap_s: float = Field(1.0, ge=0, description="gap > this inserts '。'")
    precision: Precision = "int8"

    @model_validator(mode="after")
    def _gaps_ordered(self) -> "TranscribeParams":
        if self.zh_full_stop_gap_s < self.zh_comma_gap_s:
            raise ValueError("zh_full_stop_gap_s must be >= zh_comma_gap_s")
        return self


class Transcriber(Protocol):
    """What ``transcribe_recordings`` needs of the models."""

    def transcribe(self, audios: list[np.ndarray], language: str) -> list[AsrResult]: ...

    def model_for(self, language: str) -> str: ...


def whisper_policy(params: TranscribeParams) -> WhisperPolicy:
    """Whisper's decoding passes and retry checks, as ``params`` sets them (pass 1: no penalties)."""
    return WhisperPolicy(
        first=DecodeSettings(beam_size=params.beam_size, repetition_penalty=1.0, no_repeat_ngram_size=0),
        retry=DecodeSettings(beam_size=params.retry_beam_size, repetition_penalty=params.retry_repetition_penalty,
                             no_repeat_ngram_size=params.retry_no_repeat_ngram_size),
        checks=RetryChecks(max_compression_ratio=params.retry_compression_ratio,
                           max_ngram_repeats=params.retry_max_ngram_repeats, ngram_max_n=params.retry_ngram_max_n,
                           min_avg_logprob=params.retry_avg_logprob),
    )


def paraformer_model_version(model: str) -> str:
    from importlib.metadata import version

    return f"{model}@funasr=={version('funasr')}"


class SegmentTranscriber:
    """Loads the configured models once; ``transcribe(audios, language)`` per language.

    ``device``, ``cpu_threads`` and ``batch_size`` (segments per decoding batch) are
    placement: they change how fast, never what is written.
    """

    def __init__(self, params: TranscribeParams, *, device: str = "cpu", cpu_threads: int = 0,
                 batch_size: int = 8) -> None:
        self.params = params
        self.device = device
        self.cpu_threads = cpu_threads
        self.batch_size = batch_size
        self.policy = whisper_policy(params)
        self.en = self._whisper(params.en_model)
        self.paraformer: ParaformerTranscriber | None = None
        self.multilingual: WhisperTranscriber | None = None
        if params.zh_backend == "paraformer":
            self.paraformer = ParaformerTranscriber(params.paraformer_model, device, cpu_threads, batch_size,
                                                    params.paraformer_hub)
        else:
            self.multilingual = self._whisper(params.multilingual_model)

    def _whisper(self, model: str) -> WhisperTranscriber:
        return WhisperTranscriber(load_whisper(model, self.device, self.params.precision, self.cpu_threads), self.policy,
                                  self.batch_size)

    def models(self) -> list[tuple[str, str]]:
        """[stage, model id@revision] pairs, for the stage to record as the row's models."""
        out = [("transcribe_en", whisper_model_version(self.params.en_model))]
        if self.params.zh_backend == "paraformer":
            out.append(("transcribe_zh", paraformer_model_version(self.params.paraformer_model)))
        else:
            out.append(("transcribe_zh", whisper_model_version(self.params.multilingual_model)))
        return out

    def model_for(self, language: str) -> str:
        if language == "en":
            return self.params.en_model
        if language == "zh" and self.params.zh_backend == "paraformer":
            return self.params.paraformer_model
        return self.params.multilingual_model

    def transcribe(self, audios: list[np.ndarray], language: str) -> list[AsrResult]:
        if not audios:
            return []
        if language == "en":
            results = self.en.transcribe(audios, "en")
        elif language == "zh" and self.paraformer is not None:
            results = self.paraformer.transcribe(audios)
        else:
            if self.multilingual is None:
                self.multilingual = self._whisper(self.params.multilingual_model)
            results = self.multilingual.transcribe(audios, language)
        if language == "zh":
            results = [finish_chinese(r, self.params.zh_comma_gap_s, self.params.zh_full_stop_gap_s) for r in results]
        return results


def transcribe_recordings(recordings: list[Any], transcriber: Transcriber, pad_s: float = 0.0) -> None:
    """Fill text, words and the ``asr_*`` fields of every kept segment (``RecordingSegments``), in place.

    Each segment is heard with ``pad_s`` of context on both sides (``TranscribeParams.context_pad_s``);
    word times are shifted back to the segment's start and clamped to [0, duration]. A kept
    segment without a language is left alone (``asr_note`` says so).
    """
    by_language: dict[str, list[tuple[Any, Any]]] = {}
    for rec in recordings:
        for seg in rec.segments:
            if not seg.kept:
                continue
            if not seg.language:
                seg.asr_note = "no language (language_id disabled?)"
                continue
            by_language.setdefault(seg.language, []).append((rec, seg))
    for language in sorted(by_language):
        pairs = by_language[language]
        pads = [window_pad(seg.duration, pad_s) for _, seg in pairs]
        results = transcriber.transcribe([rec.cut(seg, pad) for (rec, seg), pad in zip(pairs, pads)], language)
        model = transcriber.model_for(language)
        for (rec, seg), pad, res in zip(pairs, pads, results):
            res.words = shift_words(res.words, rec.pad_before(seg, pad), seg.duration)
            write_result(seg, res, model)
            if res.error:
                seg.drop(f"transcribe: {res.error}")
                continue
            seg.text = res.text
            seg.words = res.words


def write_result(seg: Any, res: AsrResult, model: str) -> None:
    """The recogniser's figures into the segment's ``asr_*`` fields (``PlannedSegment``)."""
    seg.asr_model = model
    seg.asr_avg_logprob = res.avg_logprob
    seg.asr_no_speech_prob = res.no_speech_prob
    seg.asr_compression_ratio = res.compression_ratio
    seg.asr_decode_pass = res.decode_pass
    seg.asr_retried = res.retried
    seg.asr_failed_checks = res.failed_checks
    seg.asr_pass1_failed_checks = res.pass1_failed_checks
    seg.asr_raw_text = res.raw_text
    seg.asr_note = res.note


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
