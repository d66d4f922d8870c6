"""Language ID: the per-segment decision rule, and Whisper's language head on the real clips."""

from __future__ import annotations

import numpy as np
import pytest

from audio_io.decode import decode
from manifests.planned_segment import PlannedSegment
from tests.conftest import real_clip
from transcription.language_id import LanguageIdParams, WhisperLanguageId, decide_languages, identify_languages
from transcription.models import load_whisper
from transcription.rows import RecordingSegments

POLICY = LanguageIdParams(languages=["en", "zh"], min_probability=0.5, tie_break_min_probability=0.2)


def p(**probs: float) -> dict[str, float]:
    return probs


def test_confident_segments_are_decided_on_their_own() -> None:
    # a recording that switches language: each segment keeps its own language (no file-level decision)
    out = decide_languages([p(en=0.95), p(zh=0.9, en=0.05), p(en=0.8)], [20.0, 5.0, 3.0], POLICY)
    assert [(d.language, d.drop_reason) for d in out] == [("en", None), ("zh", None), ("en", None)]
    assert out[1].probability == 0.9 and not out[1].tie_break


def test_unconfigured_language_is_dropped_but_recorded() -> None:
    (d,) = decide_languages([p(fr=0.9, en=0.05)], [5.0], POLICY)
    assert (d.language, d.probability) == ("fr", 0.9)
    assert d.drop_reason == "language_id: fr not in configured languages en,zh (language_id.languages)"


def test_low_confidence_segment_takes_the_majority_language_only_as_a_tie_breaker() -> None:
    probs = [p(en=0.97), p(en=0.9), p(zh=0.9), p(nn=0.35, en=0.3, zh=0.1)]
    out = decide_languages(probs, [10.0, 10.0, 4.0, 1.5], POLICY)
    last = out[-1]
    assert (last.language, last.drop_reason, last.tie_break) == ("en", None, True)
    assert last.probability == 0.3  # the probability of the language given, not of the top one
    assert last.top[0] == ("nn", 0.35)


def test_tie_breaker_never_overrides_the_segments_own_ranking() -> None:
    # majority is en, but this segment ranks zh above en: uncertain, dropped (top language recorded)
    out = decide_languages([p(en=0.97), p(zh=0.45, en=0.4)], [10.0, 2.0], POLICY)
    assert out[1].language == "zh" and out[1].probability == 0.45
    assert out[1].drop_reason.startswith("language_id: uncertain")


def test_tie_breaker_needs_a_minimum_probability_and_a_majority() -> None:
    out = decide_languages([p(en=0.97), p(ko=0.3, en=0.1)], [10.0, 2.0], POLICY)
    assert out[1].drop_reason is not None  # en only 0.1 < 0.2
    out = decide_languages([p(ko=0.3, en=0.25)], [2.0], POLICY)
    assert out[0].drop_reason is not None  # no confident segment: no majority
    no_tie = LanguageIdParams(languages=["en", "zh"], min_probability=0.5, tie_break_min_probability=None)
    out = decide_languages([p(en=0.97), p(nn=0.35, en=0.3)], [10.0, 2.0], no_tie)
    assert out[1].drop_reason is not None


def test_majority_is_by_seconds_and_ignores_segments_dropped_earlier() -> None:
    probs = [p(zh=0.9), p(zh=0.9), p(en=0.9), p(nn=0.3, en=0.25, zh=0.1), p(nn=0.3, zh=0.25, en=0.1)]
    durations = [2.0, 2.0, 10.0, 1.0, 1.0]
    out = decide_languages(probs, durations, POLICY)
    assert [(d.language, d.tie_break) for d in out[3:]] == [("en", True), ("nn", False)]  # 10 s of en beat 4 s of zh
    out = decide_languages(probs, durations, POLICY, eligible=[True, True, False, True, True])
    # the en segment was dropped by an earlier stage: it gets a language but does not count, so zh is the majority
    assert out[2].language == "en" and out[2].drop_reason is None
    assert [(d.language, d.tie_break) for d in out[3:]] == [("nn", False), ("zh", True)]


class FakeLid:
    """Gives the probabilities it is told, one dict per audio, in order; remembers what it heard."""

    def __init__(self, probs: list[dict[str, float]]) -> None:
        self.probs = probs
        self.heard: list[int] = []

    def probabilities(self, audios: list[np.ndarray]) -> list[dict[str, float]]:
        self.heard = [len(a) for a in audios]
        return self.probs[: len(audios)]


def recording(*segments: PlannedSegment) -> RecordingSegments:
    return RecordingSegments({"status": "ok"}, list(segments), np.zeros(16000 * 40, np.float32))


def test_identify_languages_writes_the_typed_fields() -> None:
    rec = recording(PlannedSegment(0.0, 10.0), PlannedSegment(10.0, 20.0), PlannedSegment(20.0, 21.5))
    lid = FakeLid([p(en=0.97, zh=0.02), p(fr=0.9, en=0.05), p(nn=0.35, en=0.3, zh=0.1)])
    identify_languages([rec], lid, POLICY)
    a, b, c = rec.segments
    assert (a.language, a.language_prob, a.language_runner_up, a.language_runner_up_prob) == ("en", 0.97, "zh", 0.02)
    assert a.language_tie_break is False and a.kept
    assert b.language == "fr" and b.drop_reason.startswith("language_id: fr not in configured languages")
    assert (c.language, c.language_prob, c.language_tie_break, c.kept) == ("en", 0.3, True, True)
    assert (c.language_runner_up, c.language_runner_up_prob) == ("nn", 0.35)  # its own top language, not the one taken
    # each segment is heard with params.context_pad_s on both sides, within the recording
    assert lid.heard == [int(10.2 * 16000), int(10.4 * 16000), int(1.9 * 16000)]
    only = recording(PlannedSegment(0.0, 5.0))
    identify_languages([only], FakeLid([p(en=1.0)]), POLICY)
    assert only.segments[0].language_runner_up is None and only.segments[0].language_runner_up_prob is None


def test_dropped_segments_are_not_heard_and_do_not_count_toward_the_majority() -> None:
    # the 10 s of en were dropped upstream: not heard, no language, so zh (4 s) is the majority
    dropped = PlannedSegment(4.0, 14.0, drop_reason="overlap: earlier stage")
    rec = recording(PlannedSegment(0.0, 2.0), PlannedSegment(2.0, 4.0), dropped, PlannedSegment(14.0, 15.0))
    lid = FakeLid([p(zh=0.9), p(zh=0.9), p(nn=0.3, zh=0.25, en=0.2)])
    identify_languages([rec], lid, POLICY)
    assert len(lid.heard) == 3  # the dropped segment costs no encoder pass
    assert dropped.language is None and dropped.language_prob is None and dropped.language_tie_break is None
    assert dropped.drop_reason == "overlap: earlier stage"
    last = rec.segments[-1]
    assert (last.language, last.language_tie_break, last.kept) == ("zh", True, True)
    # a recording whose segments were all dropped is not heard at all
    gone = recording(PlannedSegment(0.0, 3.0, drop_reason="x"))
    lid = FakeLid([])
    identify_languages([gone], lid, POLICY)
    assert lid.heard == [] and gone.segments[0].language is None


@pytest.fixture(scope="module")
def lid() -> WhisperLanguageId:
    params = LanguageIdParams()
    return WhisperLanguageId(load_whisper(params.model, "cpu", params.precision, 0), batch_size=4)


def test_whisper_language_head_on_real_clips(lid: WhisperLanguageId) -> None:
    clips = {
        "en": [real_clip("asr_en", "jfk.flac"), real_clip("asr_en", "librispeech-1995-1837-0001.wav"),
               real_clip("diarization", "pyannote_sample", "sample.wav")],
        "zh": sorted(real_clip("asr_zh").glob("*.wav")),
    }
    paths = [(lang, path) for lang, ps in clips.items() for path in ps]
    probs = lid.probabilities([decode(str(path), 16000).samples for _, path in paths])
    for (lang, path), pr in zip(paths, probs):
        top = max(pr, key=pr.get)
        assert top == lang and pr[top] >= 0.5, (path.name, sorted(pr.items(), key=lambda kv: -kv[1])[:3])
        assert sum(pr.values()) == pytest.approx(1.0, abs=0.02)


def test_english_only_model_is_refused_for_language_id() -> None:
    with pytest.raises(ValueError, match="multilingual"):
        WhisperLanguageId(load_whisper("whisper-tiny.en-offline"))
