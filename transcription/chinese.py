"""Chinese transcripts, whichever model made them: simplified characters, per-character
timestamps, punctuation by the gap rule.

Paraformer emits one timed token per character (a Latin word is one token); Whisper emits
timed "words" of one or more characters, often with its own punctuation and sometimes in
traditional characters. ``finish_chinese`` brings both to the same form:

1. traditional -> simplified (OpenCC t2s), per token;
2. model punctuation removed;
3. multi-character CJK tokens split into characters, the token's time shared equally
   between them (Latin words stay whole);
4. text = the characters joined with "，"/"。" by ``punctuate_by_gaps``.

``words`` become the per-character tokens with their times (relative to the segment);
``raw_text`` keeps the model's text as it came (the segment's ``asr_raw_text``).
"""

from __future__ import annotations

from dataclasses import replace

from transcription.punctuation import TimedToken, punctuate_by_gaps
from transcription.result import AsrResult
from transcription.text import is_cjk, strip_punctuation, to_simplified


def split_token(token: str) -> list[str]:
    """CJK characters one by one; runs of Latin letters or digits whole."""
    out: list[str] = []
    for piece in strip_punctuation(token, keep="'").split():
        buf = ""
        for ch in piece:
            if is_cjk(ch):
                if buf:
                    out.append(buf)
                    buf = ""
                out.append(ch)
            else:
                buf += ch
        if buf:
            out.append(buf)
    return out


def char_tokens(words: list[dict]) -> list[dict]:
    """Timed words -> timed characters (simplified), punctuation dropped."""
    out: list[dict] = []
    for w in words:
        parts = split_token(to_simplified(w["token"]))
        if not parts:
            continue
        start, end = float(w["start"]), float(w["end"])
        step = (end - start) / len(parts)
        for k, part in enumerate(parts):
            a = start + k * step
            b = end if k == len(parts) - 1 else start + (k + 1) * step
            out.append({"token": part, "start": round(a, 3), "end": round(b, 3), "prob": w.get("prob")})
    return out


def finish_chinese(result: AsrResult, comma_gap_s: float, full_stop_gap_s: float) -> AsrResult:
    if result.error:
        return result
    raw = result.text
    chars = char_tokens(result.words)
    if chars:
        text = punctuate_by_gaps([TimedToken(c["token"], c["start"], c["end"]) for c in chars], comma_gap_s, full_stop_gap_s)
    else:  # no timestamps to go by: simplified text without punctuation, ended as the rule ends it
        units = split_token(to_simplified(raw))
        text = punctuate_by_gaps([TimedToken(u, 0.0, 0.0) for u in units], comma_gap_s, full_stop_gap_s)
    return replace(result, text=text, words=chars, raw_text=raw)
