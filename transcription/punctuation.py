"""Kimi-Audio's rule for punctuating Chinese ASR output from character timestamps.

Between two adjacent characters, the silence gap (next start - previous end) decides:

    gap <= comma_gap_s                    nothing
    comma_gap_s < gap <= full_stop_gap_s  "，"
    gap > full_stop_gap_s                 "。"

and the text ends with "。". With the defaults (0.5 s, 1.0 s): a gap of exactly 0.5 s
inserts nothing, 0.51 s a comma, exactly 1.0 s a comma, 1.01 s a full stop.

Gaps are compared in whole milliseconds (timestamps from Paraformer are integer
milliseconds, and rounding keeps float noise such as 1.51 - 0.51 = 0.99999... from
moving a gap across a boundary). Negative gaps (overlapping timestamps) count as 0.
Punctuation the model already emitted is removed first, so the rule alone decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from transcription.text import is_punctuation

COMMA = "，"
FULL_STOP = "。"


@dataclass(frozen=True)
class TimedToken:
    token: str
    start: float  # seconds, relative to the segment
    end: float


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def gap_mark(gap_s: float, comma_gap_s: float, full_stop_gap_s: float) -> str:
    """The mark a silence gap between two characters inserts ("" for none)."""
    gap = max(0, _ms(gap_s))
    if gap > _ms(full_stop_gap_s):
        return FULL_STOP
    if gap > _ms(comma_gap_s):
        return COMMA
    return ""


def punctuate_by_gaps(tokens: list[TimedToken], comma_gap_s: float, full_stop_gap_s: float) -> str:
    """Join the tokens, inserting marks by the gap rule; end with "。". "" when no tokens.

    Latin words among the characters are separated by a space from a neighbouring Latin
    word and joined directly to Chinese characters, as Chinese text is written.
    """
    tokens = [t for t in tokens if t.token and not all(is_punctuation(c) for c in t.token)]
    if not tokens:
        return ""
    out = [tokens[0].token]
    for prev, cur in zip(tokens, tokens[1:]):
        mark = gap_mark(cur.start - prev.end, comma_gap_s, full_stop_gap_s)
        if mark:
            out.append(mark)
        elif prev.token[-1].isascii() and prev.token[-1].isalnum() and cur.token[0].isascii() and cur.token[0].isalnum():
            out.append(" ")
        out.append(cur.token)
    out.append(FULL_STOP)
    return "".join(out)
