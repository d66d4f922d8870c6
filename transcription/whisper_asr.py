"""Whisper transcription through faster-whisper, batched across segments, deterministic.

``WhisperTranscriber.transcribe(audios, language)`` decodes many segments (of any
recordings) together: their log-mel features are stacked, encoded and decoded as one
CTranslate2 batch (``batch_size`` at a time); each segment is one Whisper window (<= 30 s,
the pipeline's segments are <= 27 s).

Decoding policy (faster-whisper's default temperature fallback re-decodes by random
sampling, so the same audio can give different text run to run; a data pipeline must
not):

1. pass 1: temperature 0, beam search (``beam_size``), no conditioning on previous text
   (each segment is decoded on its own), no timestamp tokens; word timestamps from
   cross-attention alignment.
2. A segment whose pass-1 text fails a check (compression ratio above
   ``retry_compression_ratio``, an n-gram repeated back to back more than
   ``retry_max_ngram_repeats`` times, average log-probability below
   ``retry_avg_logprob``) is decoded once more, still deterministically, with other
   settings: ``retry_beam_size``, ``retry_repetition_penalty``,
   ``retry_no_repeat_ngram_size``.
3. The retry's text is taken when it passes the checks, or when it fails fewer of them
   (ties: the higher average log-probability). Which pass was used, and what it failed,
   goes into the result (``decode_pass``, ``retried``, ``failed_checks``,
   ``pass1_failed_checks``); the text filters then drop what still fails (with the reason).

The settings and thresholds come from ``transcription.asr.TranscribeParams`` (the one place
of their defaults) through ``transcription.asr.whisper_policy``; the classes here hold no
defaults of their own.

Word timestamps are aligned per segment (never carried over from the previous segment in
the batch), so a segment's words do not depend on what it was batched with.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Any

import numpy as np

from transcription.quality import compression_ratio, repeated_ngram
from transcription.result import AsrResult
from transcription.whisper_features import encoder_input

SAMPLE_RATE = 16000
WINDOW_S = 30.0


@dataclass(frozen=True)
class DecodeSettings:
    """One decoding pass (temperature 0)."""

    beam_size: int
    repetition_penalty: float
    no_repeat_ngram_size: int
    patience: float = 1.0  # not configurable: faster-whisper's own value
    length_penalty: float = 1.0  # not configurable: faster-whisper's own value


@dataclass(frozen=True)
class RetryChecks:
    """When a pass-1 transcript is decoded again (None disables a check)."""

    max_compression_ratio: float | None
    max_ngram_repeats: int | None
    ngram_max_n: int
    min_avg_logprob: float | None

    def failures(self, text: str, avg_logprob: float, language: str) -> list[str]:
        failed = []
        if self.max_compression_ratio is not None and compression_ratio(text) > self.max_compression_ratio:
            failed.append("compression_ratio")
        if self.max_ngram_repeats is not None and repeated_ngram(text, language, self.ngram_max_n)[0] > self.max_ngram_repeats:
            failed.append("repeated_ngram")
        if self.min_avg_logprob is not None and text.strip() and avg_logprob < self.min_avg_logprob:
            failed.append("avg_logprob")
        return failed


@dataclass(frozen=True)
class WhisperPolicy:
    first: DecodeSettings
    retry: DecodeSettings | None  # None: no retry
    checks: RetryChecks


class WhisperTranscriber:
    """Transcribes segments with one loaded faster-whisper ``WhisperModel``."""

    def __init__(self, model: Any, policy: WhisperPolicy, batch_size: int = 8) -> None:
        self.model = model
        self.policy = policy
        self.batch_size = batch_size

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def _tokenizer(self, language: str):
        from faster_whisper.tokenizer import Tokenizer

        return Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe", language=language)

    def transcribe(self, audios: list[np.ndarray], language: str, batch_size: int | None = None) -> list[AsrResult]:
        """One result per audio (16 kHz mono float32), in order."""
        if not self.multilingual and language != "en":
            raise ValueError(f"an English-only Whisper model cannot transcribe language {language!r}")
        size = batch_size or self.batch_size
        results: list[AsrResult | None] = [None] * len(audios)
        todo = []
        for i, audio in enumerate(audios):
            if len(audio) > WINDOW_S * SAMPLE_RATE + 1:
                results[i] = AsrResult("", error=f"longer than Whisper's {WINDOW_S:.0f} s window")
            else:
                todo.append(i)
        tokenizer = self._tokenizer(language)
        first = self._decode_all([audios[i] for i in todo], tokenizer, self.policy.first, size)
        retry_idx = []
        for i, res in zip(todo, first):
            res.failed_checks = self._failures(res, language)
            res.decode_pass = 1
            res.retried = False
            results[i] = res
            if res.failed_checks and self.policy.retry is not None:
                retry_idx.append(i)
        if retry_idx:
            assert self.policy.retry is not None
            second = self._decode_all([audios[i] for i in retry_idx], tokenizer, self.policy.retry, size)
            for i, res in zip(retry_idx, second):
                res.failed_checks = self._failures(res, language)
                res.decode_pass = 2
                old = results[i]
                assert old is not None and old.failed_checks is not None
                better = (len(res.failed_checks), -_logprob(res)) < (len(old.failed_checks), -_logprob(old))
                chosen = res if better else old
                chosen.retried = True
                chosen.pass1_failed_checks = list(old.failed_checks)
                results[i] = chosen
        return [r for r in results if r is not None]

    def _failures(self, res: AsrResult, language: str) -> list[str]:
        return self.policy.checks.failures(res.text, _logprob(res), language)

    # ---- one decoding pass ---------------------------------------------------------------

    def _decode_all(self, audios: list[np.ndarray], tokenizer: Any, settings: DecodeSettings, size: int) -> list[AsrResult]:
        out: list[AsrResult] = []
        for start in range(0, len(audios), size):
            out.extend(self._decode_batch(audios[start : start + size], tokenizer, settings))
        return out

    def _decode_batch(self, audios: list[np.ndarray], tokenizer: Any, s: DecodeSettings) -> list[AsrResult]:
        from faster_whisper.transcribe import get_suppressed_tokens

        if not audios:
            return []
        m = self.model
        encoder_output = m.encode(encoder_input(m.feature_extractor, audios))
        prompt = m.get_prompt(tokenizer, previous_tokens=[], without_timestamps=True)
        generated = m.model.generate(
            encoder_output,
            [list(prompt) for _ in audios],
            beam_size=s.beam_size,
            patience=s.patience,
            length_penalty=s.length_penalty,
            repetition_penalty=s.repetition_penalty,
            no_repeat_ngram_size=s.no_repeat_ngram_size,
            max_length=m.max_length,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            return_scores=True,
            return_no_speech_prob=True,
        )
        results = []
        for i, (audio, gen) in enumerate(zip(audios, generated)):
            tokens = [t for t in gen.sequences_ids[0] if t < tokenizer.eot]
            seq_len = len(gen.sequences_ids[0])
            avg_logprob = gen.scores[0] * (seq_len**s.length_penalty) / (seq_len + 1)
            text = tokenizer.decode(tokens).strip()
            duration = len(audio) / SAMPLE_RATE
            words = self._word_timestamps(tokens, tokenizer, encoder_output, i, len(audios), duration) if tokens else []
            results.append(AsrResult(
                text=text,
                words=words,
                avg_logprob=round(float(avg_logprob), 4),
                no_speech_prob=round(float(gen.no_speech_prob), 4),
                compression_ratio=round(compression_ratio(text), 4),
            ))
        return results

    def _word_timestamps(self, tokens: list[int], tokenizer: Any, encoder_output: Any, index: int, batch: int,
                         duration: float) -> list[dict]:
        """Words of one segment aligned on its own slice of the batch's encoder output."""
        m = self.model
        own = _batch_item(encoder_output, index) if batch > 1 else encoder_output
        num_frames = int(ceil(duration) * m.frames_per_second)
        segment = [[{"seek": 0, "start": 0.0, "end": duration, "tokens": tokens}]]
        m.add_word_timestamps(segment, tokenizer, own, [num_frames], "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、",
                              last_speech_timestamp=0.0)
        words = []
        for w in segment[0][0].get("words", []):
            start = min(max(0.0, float(w["start"])), duration)
            end = min(max(start, float(w["end"])), duration)
            words.append({"token": w["word"].strip(), "start": round(start, 3), "end": round(end, 3),
                          "prob": round(float(w["probability"]), 4)})
        return words


def _logprob(res: AsrResult) -> float:
    return res.avg_logprob if res.avg_logprob is not None else float("-inf")


def _batch_item(storage: Any, index: int) -> Any:
    """Row ``index`` of a CTranslate2 StorageView as a batch of one (CPU or CUDA)."""
    import ctranslate2

    if storage.device == "cpu":
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(storage)[index : index + 1]))
    import torch

    tensor = torch.as_tensor(storage, device=storage.device)
    return ctranslate2.StorageView.from_array(tensor[index : index + 1].contiguous())
