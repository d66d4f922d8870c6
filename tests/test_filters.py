"""Text filters: each check on constructed segments, the measures behind them, the real fastText model."""

from __future__ import annotations

import numpy as np
import pytest

from manifests.planned_segment import PlannedSegment, from_rows, to_rows
from transcription.filters import (
    FastTextLanguageId,
    FilterParams,
    check_segment,
    filter_recordings,
    script_ratio,
    text_language,
)
from transcription.quality import compression_ratio, max_ngram_repeats, repeated_ngram, silence_phrase
from transcription.rows import open_rows, process_rows

PARAMS = FilterParams()


@pytest.fixture(scope="module")
def fasttext_lid() -> FastTextLanguageId:
    return FastTextLanguageId()


class FakeLid:
    """Says what it is told: (label, prob) pairs."""

    def __init__(self, preds: list[tuple[str, float]]) -> None:
        self.preds = preds

    def predict(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        return self.preds[:k]


def seg(text: str | None, language: str = "en", start: float = 0.0, end: float = 5.0, **asr) -> PlannedSegment:
    """A transcribed segment; ``asr``: the recogniser's figures, e.g. no_speech_prob=0.9 (``asr_*`` fields)."""
    return PlannedSegment(start, end, language=language, language_prob=0.99, text=text,
                          **{f"asr_{k}": v for k, v in asr.items()})


GOOD_EN = "It was the first great sorrow of his life, it was not so much the loss."
GOOD_ZH = "我有的时候说不清楚，你们知道吗。"


def checks(s: PlannedSegment, lid=None, params=PARAMS) -> list[str]:
    fails, _ = check_segment(s, params, lid if lid is not None else FakeLid([(s.language or "en", 0.99)]))
    return [f.check for f in fails]


def test_clean_segments_pass() -> None:
    assert checks(seg(GOOD_EN)) == []
    assert checks(seg(GOOD_ZH, "zh", end=3.0)) == []


@pytest.mark.parametrize(("start", "end", "fails"), [(0.0, 0.6, True), (0.0, 1.0, False), (0.0, 30.0, False), (0.0, 31.0, True)])
def test_duration_bounds(start: float, end: float, fails: bool) -> None:
    text = " ".join(["word"] * int(max(1, (end - start) * 2)))  # 2 words/s keeps chars/s in bounds
    assert ("duration" in checks(seg(text, start=start, end=end))) is fails


def test_empty_text() -> None:
    assert checks(seg("")) == ["empty_text"]
    assert checks(seg(None)) == ["empty_text"]


def test_silence_phrases() -> None:
    assert "silence_phrase" in checks(seg("Thanks for watching!", end=2.0))
    assert "silence_phrase" in checks(seg("谢谢观看。", "zh", end=2.0))
    assert "silence_phrase" in checks(seg("Thank you. Thank you.", end=2.0))
    assert "silence_phrase" not in checks(seg("Thanks for watching the game with me tonight.", end=3.0))
    assert silence_phrase("THANK   YOU!!", ["thank you"]) == "thank you"
    assert silence_phrase("thank", ["thank you"]) is None


def test_no_speech_follows_whispers_rule() -> None:
    # high no-speech probability AND low average log-probability: silence
    assert "no_speech" in checks(seg(GOOD_EN, no_speech_prob=0.9, avg_logprob=-1.5))
    # high no-speech probability but a confident decode: kept (Whisper's own rule)
    assert "no_speech" not in checks(seg(GOOD_EN, no_speech_prob=0.9, avg_logprob=-0.2))
    assert "no_speech" not in checks(seg(GOOD_EN, no_speech_prob=0.1, avg_logprob=-1.5))
    # models without these figures (Paraformer) are not judged
    assert "no_speech" not in checks(seg(GOOD_ZH, "zh", end=3.0))
    alone = FilterParams(no_speech_max_avg_logprob=None)
    assert "no_speech" in checks(seg(GOOD_EN, no_speech_prob=0.9, avg_logprob=-0.2), params=alone)


def test_compression_ratio_and_repeated_ngrams() -> None:
    loop = "I'm going to go to the store. " * 12
    fails = checks(seg(loop, end=25.0))
    assert "compression_ratio" in fails and "repeated_ngram" in fails
    assert compression_ratio(loop) > 2.4 > compression_ratio(GOOD_EN)
    assert compression_ratio("") == 0.0
    # a repeated word is caught even when the whole text is too short to compress well
    assert checks(seg("no no no no no no", end=3.0)) == ["repeated_ngram"]
    assert checks(seg("no no no no", end=3.0)) == []  # 4 copies: the default allows 4
    zh_loop = "我们" * 8
    assert "repeated_ngram" in checks(seg(zh_loop + "。", "zh", end=3.0))


def test_max_ngram_repeats() -> None:
    assert max_ngram_repeats([], 4) == (0, 0)
    assert max_ngram_repeats(list("abc"), 4) == (1, 1)
    assert max_ngram_repeats(list("ababab") + ["c"], 4) == (3, 2)
    assert max_ngram_repeats(list("xaaaay"), 4) == (4, 1)
    assert max_ngram_repeats(list("abcabc"), 2) == (1, 1)  # a 3-gram is beyond max_n


def test_chars_per_second_bounds() -> None:
    assert "chars_per_s" in checks(seg(GOOD_EN, end=1.5))  # ~55 letters in 1.5 s
    assert "chars_per_s" in checks(seg("Okay then.", end=20.0))  # 9 letters in 20 s
    assert "chars_per_s" in checks(seg("我有的时候说不清楚你们知道吗", "zh", end=1.0))  # 14 characters in 1 s
    assert "chars_per_s" not in checks(seg(GOOD_ZH, "zh", end=3.0))


def test_charset() -> None:
    assert "charset" in checks(seg("我有的时候说不清楚你们知道吗", "en", end=5.0))
    assert "charset" in checks(seg("Это был первый великий день в его жизни и так далее", "en", end=5.0))
    assert "charset" in checks(seg("it was the first great sorrow of his life", "zh", end=5.0))
    assert script_ratio("我在 New York 住了三年", "zh") == pytest.approx(6 / 8)  # 6 characters, 2 words
    assert script_ratio("Room 101 is here", "en") == 1.0  # digits are neutral
    assert script_ratio("texte", "fr") is None  # no script rule: not checked


def test_text_lid_with_a_fake_model() -> None:
    assert checks(seg(GOOD_EN), FakeLid([("en", 0.9)])) == []
    assert checks(seg(GOOD_EN), FakeLid([("de", 0.8), ("en", 0.1)])) == ["text_lid"]
    # The audio evidence counts too: sqrt(audio p x text p) must reach 0.5.
    assert checks(seg(GOOD_EN), FakeLid([("en", 0.4), ("de", 0.3)])) == []  # sqrt(0.99 x 0.4) = 0.63
    unsure_audio = seg(GOOD_EN)
    unsure_audio.language_prob = 0.5
    assert checks(unsure_audio, FakeLid([("en", 0.4), ("de", 0.3)])) == ["text_lid"]  # sqrt(0.5 x 0.4) = 0.45
    # related labels count as the audio language (filters.text_lid_aliases): zh 0.4 + yue 0.3 > ja 0.2
    assert checks(seg(GOOD_ZH, "zh", end=3.0), FakeLid([("zh", 0.4), ("yue", 0.3), ("ja", 0.2)])) == []
    assert text_language(FakeLid([("zh", 0.4), ("yue", 0.3), ("ja", 0.2)]), GOOD_ZH, "zh", {"zh": ["yue"]}) == ("zh", pytest.approx(0.7), pytest.approx(0.7))


def test_short_texts_are_not_judged_by_text_lid_and_that_is_recorded() -> None:
    fails, figures = check_segment(seg("换一首歌。", "zh", end=1.5), PARAMS, FakeLid([("ja", 0.52), ("zh", 0.46)]))
    assert fails == []
    assert figures["filter_text_lid_skipped"].startswith("4 units < 6")
    assert "filter_text_lid_language" not in figures


def test_correct_short_utterances_are_not_dropped_by_text_lid(fasttext_lid: FastTextLanguageId) -> None:
    # Seen dropped in shipped output: Han-only Chinese that fastText reads as Japanese, and
    # a four-word English title fastText gives p 0.47.
    assert checks(seg("希望你以后能够做的比我还好用。", "zh", end=3.0), fasttext_lid) == []
    assert checks(seg("8. The Press Yard.", "en", end=1.5), fasttext_lid) == []
    # Japanese with kana is still not taken for Chinese.
    assert checks(seg("今日はとても良い天気ですね、散歩に行きましょう。", "zh", end=4.0), fasttext_lid)[-1] == "text_lid"


def test_real_fasttext_model(fasttext_lid: FastTextLanguageId) -> None:
    assert text_language(fasttext_lid, GOOD_EN, "en", {})[0] == "en"
    assert text_language(fasttext_lid, GOOD_ZH, "zh", {"zh": ["wuu", "yue"]})[0] == "zh"
    assert checks(seg(GOOD_EN), fasttext_lid) == []
    assert checks(seg("Das war der erste große Kummer seines Lebens, es war nicht so sehr der Verlust.", "en"),
                  fasttext_lid) == ["text_lid"]


def test_reasons_group_by_check_not_by_value() -> None:
    a = seg("word " * 3, start=0.0, end=0.4)
    b = seg("word " * 3, start=0.0, end=0.7)
    for s in (a, b):
        fails, _ = check_segment(s, PARAMS, None)
        s.drop(fails[0].reason)
    assert a.drop_reason == b.drop_reason
    assert a.drop_reason.startswith("duration:") and "filters.min_duration_s" in a.drop_reason


def test_filter_rows_mark_segments_and_keep_every_one(fasttext_lid: FastTextLanguageId) -> None:
    segments = [
        seg(GOOD_EN, start=0.0, end=5.0, avg_logprob=-0.2, no_speech_prob=0.01),
        seg("Thank you.", start=6.0, end=7.5),
        seg("I'm going to go to the store. " * 12, start=8.0, end=30.0, retried=True),
        PlannedSegment(31.0, 31.5, drop_reason="segment_length: shorter than 1.0 s (segment.min_duration_s)"),
    ]
    row = {"status": "ok", "recording_id": "r", "segments": to_rows(segments)}
    failed = {"status": "failed", "error": "decode failed", "recording_id": "bad"}
    out, passed = process_rows([row, failed], "text filters",
                               lambda recs: filter_recordings(recs, PARAMS, fasttext_lid), with_audio=False)
    assert passed is failed
    assert out["recording_id"] == "r" and row["segments"] == to_rows(segments)  # the input row is left as it was
    result = from_rows(out["segments"])
    assert len(result) == 4
    assert [s.kept for s in result] == [True, False, False, False]
    assert result[1].drop_reason.startswith("silence_phrase")
    assert result[2].drop_reason.startswith("compression_ratio") and "after a deterministic retry" in result[2].drop_reason
    assert result[2].filter_failures[:2] == ["compression_ratio", "repeated_ngram"]
    assert result[3].drop_reason == "segment_length: shorter than 1.0 s (segment.min_duration_s)"  # the first reason stays
    assert result[3].filter_compression_ratio is None  # dropped earlier: not measured
    assert result[0].filter_text_lid_language == "en"


def test_filter_figures_land_in_the_typed_fields() -> None:
    loop = "I'm going to go to the store. " * 12
    good, bad, short = seg(GOOD_EN), seg(loop, end=25.0), seg("换一首歌。", "zh", end=1.5)
    rec = open_rows([{"status": "ok", "segments": to_rows([good, bad, short])}], with_audio=False)[0]
    assert rec is not None
    filter_recordings([rec], PARAMS, FakeLid([("en", 0.9), ("de", 0.05)]))
    good, bad, short = rec.segments
    assert good.kept and good.filter_failures is None
    assert good.filter_compression_ratio == round(compression_ratio(GOOD_EN), 4)
    assert (good.filter_ngram_repeats, good.filter_ngram_n) == repeated_ngram(GOOD_EN, "en", 8)
    assert good.filter_chars_per_s == pytest.approx(sum(c.isalnum() for c in GOOD_EN) / 5.0, abs=1e-3)
    assert good.filter_charset_ratio == 1.0
    assert (good.filter_text_lid_language, good.filter_text_lid_prob, good.filter_text_lid_skipped) == ("en", 0.9, None)
    assert not bad.kept and bad.filter_failures[:2] == ["compression_ratio", "repeated_ngram"]
    assert bad.filter_compression_ratio > 2.4 and bad.filter_ngram_repeats == 12 and bad.filter_ngram_n == 7
    assert short.filter_text_lid_skipped == "4 units < 6 (filters.text_lid_min_units)"
    assert short.filter_text_lid_language is None and short.filter_text_lid_prob is None
    # every figure is a PlannedSegment field, so it survives the trip through the row
    assert from_rows(to_rows(rec.segments)) == rec.segments


def test_filter_params_dump_as_the_config_did() -> None:
    dumped = FilterParams().model_dump(mode="json")
    assert dumped["text_lid_aliases"] == {"zh": ["wuu", "yue"]} and dumped["text_lid_min_units"] == {"en": 6, "zh": 6}
    assert dumped["min_chars_per_s"] == {"en": 2.0, "zh": 1.0} and isinstance(dumped["silence_phrases"], list)
    with pytest.raises(ValueError):
        FilterParams(batch_size=8)  # placement belongs to the stage's section, not here


def test_filter_recordings_core_runs_without_ray_or_models() -> None:
    row = {"status": "ok", "segments": to_rows([seg(""), seg(GOOD_EN)])}
    recs = [r for r in open_rows([row], with_audio=False) if r is not None]
    filter_recordings(recs, PARAMS, None)
    assert [s.kept for s in recs[0].segments] == [False, True]
    assert recs[0].segments[0].filter_failures == ["empty_text"]


def test_rows_take_the_16k_analysis_signal_and_never_resample() -> None:
    audio = np.arange(16000 * 2, dtype=np.float32)
    row = {"status": "ok", "segments": to_rows([seg(GOOD_EN, end=1.0)]), "analysis": audio, "analysis_rate": 16000}
    (rec,) = open_rows([row])
    assert rec is not None and rec.audio.dtype == np.float32 and len(rec.audio) == len(audio)
    assert len(rec.cut(rec.segments[0])) == 16000
    with pytest.raises(ValueError, match="24000 Hz"):
        open_rows([dict(row, analysis_rate=24000)])
    finished = rec.finish()
    assert set(finished) == set(row) and finished["segments"] == row["segments"]
