"""The Kimi gap rule for Chinese punctuation, on constructed character timestamps."""

from __future__ import annotations

import pytest

from transcription.asr import TranscribeParams
from transcription.chinese import char_tokens, finish_chinese, split_token
from transcription.punctuation import COMMA, FULL_STOP, TimedToken, gap_mark, punctuate_by_gaps
from transcription.result import AsrResult

CFG = TranscribeParams()
COMMA_GAP, STOP_GAP = CFG.zh_comma_gap_s, CFG.zh_full_stop_gap_s


def two_chars(gap: float, first_end: float = 0.51) -> list[TimedToken]:
    """"好" then "的" after ``gap`` seconds of silence; times chosen so float sums are inexact."""
    return [TimedToken("好", 0.31, first_end), TimedToken("的", first_end + gap, first_end + gap + 0.2)]


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (0.49, "好的。"),
        (0.5, "好的。"),  # exactly the comma gap: not more than it, so nothing
        (0.51, "好，的。"),
        (1.0, "好，的。"),  # exactly the full-stop gap: a comma, not a full stop
        (1.01, "好。的。"),
    ],
)
def test_gap_boundaries(gap: float, expected: str) -> None:
    assert punctuate_by_gaps(two_chars(gap), COMMA_GAP, STOP_GAP) == expected


@pytest.mark.parametrize("first_end", [0.51, 1.51, 2.07, 13.33])
def test_boundaries_hold_whatever_the_absolute_times(first_end: float) -> None:
    # 1.51 + 1.0 - 1.51 is not exactly 1.0 in floating point: the rule compares milliseconds
    for gap, mark in ((0.5, ""), (1.0, COMMA), (0.49, ""), (0.51, COMMA), (1.01, FULL_STOP)):
        text = punctuate_by_gaps(two_chars(gap, first_end), COMMA_GAP, STOP_GAP)
        assert text == f"好{mark}的。", (gap, first_end, text)


def test_thresholds_come_from_config() -> None:
    tokens = two_chars(0.3)
    assert punctuate_by_gaps(tokens, 0.5, 1.0) == "好的。"
    assert punctuate_by_gaps(tokens, 0.2, 1.0) == "好，的。"
    assert punctuate_by_gaps(tokens, 0.1, 0.25) == "好。的。"


def test_sentence_and_ending() -> None:
    chars = "我想问我在滨海新区有房"
    times = [0.0, 0.2, 0.4, 1.2, 1.4, 1.6, 1.8, 3.2, 3.4, 3.6, 3.8]  # gaps: 0.6 after 问, 1.2 after 海
    tokens = [TimedToken(c, t, t + 0.2) for c, t in zip(chars, times)]
    assert punctuate_by_gaps(tokens, COMMA_GAP, STOP_GAP) == "我想问，我在滨海。新区有房。"


def test_edge_cases() -> None:
    assert punctuate_by_gaps([], COMMA_GAP, STOP_GAP) == ""
    assert punctuate_by_gaps([TimedToken("嗯", 0.0, 0.3)], COMMA_GAP, STOP_GAP) == "嗯。"
    # overlapping timestamps (negative gap) count as no gap
    assert gap_mark(-0.2, COMMA_GAP, STOP_GAP) == ""
    # punctuation tokens the model emitted are removed before the rule applies
    tokens = [TimedToken("好", 0.0, 0.2), TimedToken("，", 0.2, 0.3), TimedToken("的", 0.3, 0.5), TimedToken("。", 0.5, 0.6)]
    assert punctuate_by_gaps(tokens, COMMA_GAP, STOP_GAP) == "好的。"
    # Latin words: a space between two of them, none next to a Chinese character
    tokens = [TimedToken("我", 0.0, 0.2), TimedToken("用", 0.2, 0.4), TimedToken("new", 0.4, 0.6),
              TimedToken("york", 0.6, 0.8), TimedToken("的", 0.8, 1.0)]
    assert punctuate_by_gaps(tokens, COMMA_GAP, STOP_GAP) == "我用new york的。"


def test_whisper_style_words_become_simplified_characters() -> None:
    # Whisper: multi-character words, traditional characters, its own punctuation
    words = [{"token": "換一首", "start": 0.0, "end": 0.6, "prob": 0.9}, {"token": "歌，", "start": 0.6, "end": 0.8, "prob": 0.8},
             {"token": "謝謝", "start": 2.0, "end": 2.4, "prob": 0.7}]
    chars = char_tokens(words)
    assert [c["token"] for c in chars] == list("换一首歌谢谢")
    assert [c["start"] for c in chars] == [0.0, 0.2, 0.4, 0.6, 2.0, 2.2]
    assert all(c["end"] > c["start"] for c in chars)
    out = finish_chinese(AsrResult("換一首歌，謝謝", words=words), COMMA_GAP, STOP_GAP)
    assert out.text == "换一首歌。谢谢。"  # 1.2 s gap before 谢
    assert out.raw_text == "換一首歌，謝謝"
    assert split_token("iPhone手机") == ["iPhone", "手", "机"]


def test_without_timestamps_the_text_still_ends_with_a_full_stop() -> None:
    out = finish_chinese(AsrResult("你好，世界", words=[]), COMMA_GAP, STOP_GAP)
    assert out.text == "你好世界。"
