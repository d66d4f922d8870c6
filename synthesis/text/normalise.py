"""Spoken-form normalisation: the text a TTS model should read, from the written text of a turn.

``spoken_form(text, language)`` returns the spoken text and the kinds of change made, in the
order the passes ran (e.g. ``["currency", "units", "numbers"]``); the caller keeps the written
text as well. English numbers are spelled with num2words, Chinese ones with cn2an. Passes that
consume digits run before the plain cardinal pass (dates, times, phone numbers, ranges, currency,
percentages, ordinals, years, units), so each number is read in its own context. Languages other
than en and zh get the markdown and width cleanup only; their digits are left as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import cn2an
from num2words import num2words

# A number as written: thousands separators (1,234,567) or plain digits, optional decimals.
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


class _Passes:
    """Applies regex passes to a text and records the kind of each pass that changed it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.kinds: list[str] = []

    def sub(self, kind: str, pattern: str | re.Pattern[str], repl: str | Callable[[re.Match[str]], str],
            flags: int = 0) -> None:
        new = re.sub(pattern, repl, self.text, flags=flags)
        self.apply(kind, new)

    def apply(self, kind: str, new: str) -> None:
        if new != self.text and kind not in self.kinds:
            self.kinds.append(kind)
        self.text = new


# ---------------------------------------------------------------- shared: markdown, width, spaces

def strip_markdown(text: str) -> str:
    """Markdown syntax a reader would not speak: emphasis, headings, bullets, quotes, links, code ticks."""
    text = re.sub(r"^\s*(```|~~~).*$", "", text, flags=re.M)           # fence lines (not their content)
    text = re.sub(r"!?\[([^\]\n]*)\]\([^)\s]*\)", r"\1", text)          # [text](url), ![alt](url)
    text = re.sub(r"^\s{0,3}#{1,6}\s+", "", text, flags=re.M)           # headings
    text = re.sub(r"^\s{0,3}>\s?", "", text, flags=re.M)                # block quotes
    text = re.sub(r"^\s*[-*+•]\s+", "", text, flags=re.M)               # bullet markers
    text = re.sub(r"^\s*([-*_])(\s*\1){2,}\s*$", "", text, flags=re.M)  # horizontal rules
    text = re.sub(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", r"\2", text)        # **bold**, __bold__
    text = re.sub(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])", r"\1", text)  # *italic*
    text = re.sub(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])", r"\1", text)    # _italic_
    text = re.sub(r"`([^`\n]+)`", r"\1", text)                          # `inline code`
    return text


def _join_lines(text: str, language: str) -> tuple[str, bool]:
    """Line breaks become sentence breaks: a line without final punctuation gets a full stop.
    Returns the joined text and whether a full stop was added."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    stop, sep = ("。", "") if language == "zh" else (".", " ")
    ends = ".!?;:,…。！？；：，、"
    stopped = [ln if ln[-1] in ends or i == len(lines) - 1 else ln + stop for i, ln in enumerate(lines)]
    return sep.join(stopped), stopped != lines


def _half_width(ch: str) -> str:
    return chr(ord(ch) - 0xFEE0)


def _width_en(text: str) -> str:
    text = re.sub(r"[\uff01-\uff5e]", lambda m: _half_width(m.group()), text)
    table = str.maketrans({"\u3000": " ", "。": ".", "，": ",", "、": ",", "￥": "¥", "“": '"', "”": '"'})
    return text.translate(table)


def _width_zh(text: str) -> str:
    """Full-width digits, letters and symbols -> ASCII; Chinese punctuation (，。！？：；（）) stays."""
    text = re.sub(r"[０-９Ａ-Ｚａ-ｚ％＄＋＝＠＃＆／～＜＞]", lambda m: _half_width(m.group()), text)
    text = re.sub(r"(?<=\d)[．：－](?=\d)", lambda m: _half_width(m.group()), text)  # 3．5, 12：30, 3－5
    return text.replace("\u3000", " ").replace("￥", "¥")


def _spaces(text: str) -> str:
    return re.sub(r"[ \t]{2,}", " ", text).strip()


# ---------------------------------------------------------------- English

def _n2w(value: int) -> str:
    return num2words(value).replace(",", "")  # "one thousand, two hundred" -> no pause mid-number


def _digits_en(digits: str) -> str:
    return " ".join(_n2w(int(d)) for d in digits)


def _cardinal_en(written: str) -> str:
    """'1,234' 'one thousand two hundred and thirty-four'; '3.14' 'three point one four'; '-5' 'minus five'."""
    sign = "minus " if written.startswith("-") else ""
    whole, _, frac = written.lstrip("-").replace(",", "").partition(".")
    if len(whole) > 1 and whole.startswith("0") or len(whole) >= 8:
        spoken = _digits_en(whole)  # 007, long identifiers: digit by digit
    else:
        spoken = _n2w(int(whole))
    if frac:
        spoken += " point " + _digits_en(frac)
    return sign + spoken


def _is_one(written: str) -> bool:
    return written.lstrip("-") == "1"


def _year_en(year: int) -> str:
    return num2words(year, to="year")


def _en_iso_date(m: re.Match[str]) -> str:
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m[0]
    return f"{_MONTHS[month - 1]} {num2words(day, to='ordinal')}, {_year_en(year)}"


def _en_month_date(m: re.Match[str]) -> str:
    day = int(m[2])
    if not 1 <= day <= 31:
        return m[0]
    spoken = f"{m[1]} {num2words(day, to='ordinal')}"
    return spoken + (f", {_year_en(int(m[3]))}" if m[3] else "")


def _en_time(m: re.Match[str]) -> str:
    hour, minute, half = int(m[1]), int(m[2]), m[3]
    spoken = _n2w(hour)
    if minute == 0:
        spoken += "" if half else " o'clock"
    elif minute < 10:
        spoken += " oh " + _n2w(minute)
    else:
        spoken += " " + _n2w(minute)
    return spoken + (f" {half.upper()}M" if half else "")


def _en_phone(m: re.Match[str]) -> str:
    groups = re.findall(r"\d+", m[0])
    spoken = ", ".join(_digits_en(g) for g in groups)
    return ("plus " if m[0].startswith("+") else "") + spoken


# symbol -> (singular major, plural major, singular minor, plural minor); minor None: not spoken
_CURRENCIES: dict[str, tuple[str, str, str | None, str | None]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", None, None),
}
_CURRENCY_CODES = {"USD": ("US dollar", "US dollars"), "EUR": ("euro", "euros"), "GBP": ("pound", "pounds"),
                   "JPY": ("yen", "yen"), "CNY": ("yuan", "yuan"), "RMB": ("yuan", "yuan")}
_SCALES = {"thousand": "thousand", "million": "million", "billion": "billion", "trillion": "trillion",
           "k": "thousand", "K": "thousand", "m": "million", "M": "million", "bn": "billion", "B": "billion"}


def _en_currency(m: re.Match[str]) -> str:
    neg, symbol, amount, scale = m[1], m[2], m[3], m[4]
    major1, major, minor1, minor = _CURRENCIES[symbol]
    sign = "minus " if neg else ""
    if scale:
        return f"{sign}{_cardinal_en(amount)} {_SCALES[scale]} {major}"
    whole, _, frac = amount.replace(",", "").partition(".")
    if frac and (len(frac) != 2 or minor is None):
        return f"{sign}{_cardinal_en(amount)} {major}"
    cents = int(frac) if frac else 0
    parts = []
    if int(whole) or not cents:
        parts.append(f"{_cardinal_en(whole)} {major1 if whole == '1' else major}")
    if cents:
        parts.append(f"{_n2w(cents)} {minor1 if cents == 1 else minor}")
    return sign + " and ".join(parts)


def _en_currency_code(m: re.Match[str]) -> str:
    one, many = _CURRENCY_CODES[m[2]]
    return f"{_cardinal_en(m[1])} {one if _is_one(m[1]) else many}"


# unit -> (singular, plural); longest spellings first so km/h wins over km
_UNITS_EN: dict[str, tuple[str, str]] = {
    "km/h": ("kilometer per hour", "kilometers per hour"), "m/s": ("meter per second", "meters per second"),
    "km²": ("square kilometer", "square kilometers"), "m²": ("square meter", "square meters"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "℃": ("degree Celsius", "degrees Celsius"), "℉": ("degree Fahrenheit", "degrees Fahrenheit"),
    "mph": ("mile per hour", "miles per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "km": ("kilometer", "kilometers"), "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"),
    "kg": ("kilogram", "kilograms"), "mg": ("milligram", "milligrams"), "lbs": ("pound", "pounds"),
    "lb": ("pound", "pounds"), "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"),
    "ft": ("foot", "feet"), "TB": ("terabyte", "terabytes"), "GB": ("gigabyte", "gigabytes"),
    "MB": ("megabyte", "megabytes"), "KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes"),
    "ms": ("millisecond", "milliseconds"), "min": ("minute", "minutes"), "hrs": ("hour", "hours"),
    "hr": ("hour", "hours"), "m": ("meter", "meters"), "g": ("gram", "grams"), "L": ("liter", "liters"),
    "s": ("second", "seconds"), "h": ("hour", "hours"), "°": ("degree", "degrees"),
}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNITS_EN, key=len, reverse=True))


def _en_unit(m: re.Match[str]) -> str:
    one, many = _UNITS_EN[m[2]]
    return f"{_cardinal_en(m[1])} {one if _is_one(m[1]) else many}"


_YEAR = r"1[1-9]\d\d|20\d\d"
_YEAR_CONTEXT = (r"in|since|by|from|between|until|till|through|during|of|year|around|before|after|circa|early|"
                 r"late|mid|spring|summer|autumn|fall|winter|" + "|".join(_MONTHS))
# not a year when a unit, a percent sign or more digits follow ("in 1500 km", "by 2000%")
_NOT_QUANTITY = rf"(?![\d.,]\d|\s?(?:{_UNIT_RE}|%)(?![\w/]))"


def _en_years(m: re.Match[str]) -> str:
    spoken = f"{m[1]} {_year_en(int(m[2]))}"
    if m[4]:
        spoken += f" {m[3]} {_year_en(int(m[4]))}"
    return spoken


def _en_decade(m: re.Match[str]) -> str:
    spoken = _year_en(int(m[1]))
    return spoken[:-1] + "ies" if spoken.endswith("y") else spoken + "s"


def _en_year_range(m: re.Match[str]) -> str:
    first, second = int(m[1]), int(m[2])
    if second <= first:
        return m[0]
    return f"{_year_en(first)} to {_year_en(second)}"


def _en_cardinal_token(m: re.Match[str]) -> str:
    """A plain number; a letter glued on either side gets a space: "5G" "five G", "A4" "A four"."""
    before, after = m.string[m.start() - 1:m.start()], m.string[m.end():m.end() + 1]
    return (" " if before.isalpha() else "") + _cardinal_en(m[0]) + (" " if after.isalpha() else "")


def _spoken_en(p: _Passes) -> None:
    month_re = "|".join(_MONTHS)
    p.sub("dates", r"(?<![\d-])(\d{4})-(\d{2})-(\d{2})(?![\d-])", _en_iso_date)
    p.sub("dates", rf"\b({month_re})\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+({_YEAR})\b)?", _en_month_date)
    p.sub("times", r"(?<![\d:.])([01]?\d|2[0-3]):([0-5]\d)(?:\s?([AaPp])\.?[Mm]\.?(?!\w))?(?![\d:])", _en_time)
    p.sub("times", r"(?<![\d:.,])(1[0-2]|0?[1-9])\s?([AaPp])\.?[Mm]\.?(?!\w)",
          lambda m: f"{_n2w(int(m[1]))} {m[2].upper()}M")  # "3 pm", "11 a.m."
    p.sub("phone", r"(?<![\w+])(?:\+\d{1,3}[ -])?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\d-])", _en_phone)
    p.sub("years", rf"(?<![\d.,-])({_YEAR})\s?[-–]\s?({_YEAR})(?![\d-])", _en_year_range)
    # "3-5", "$5-$10", "10–20 km": the dash between two numbers is read "to"
    p.sub("ranges", rf"(?<![\w.,:/-])([$€£¥]?(?:{_NUM}))(?:-|\s?–\s?)([$€£¥]?(?:{_NUM}))(?![\d.,]*[-–]\d)",
          r"\1 to \2")
    p.sub("currency", rf"(?<![\w.,])(-)?([$€£¥])\s?({_NUM})(?:\s?(thousand|million|billion|trillion|k|K|m|M|bn|B)\b)?",
          _en_currency)
    p.sub("currency", rf"(?<![\w.,])({_NUM})\s?({'|'.join(_CURRENCY_CODES)})\b", _en_currency_code)
    p.sub("percent", rf"(?<![\w.,])(-?(?:{_NUM}))\s?%", lambda m: f"{_cardinal_en(m[1])} percent")
    p.sub("ordinals", r"(?<![\w.,])(\d+)(?:st|nd|rd|th)\b", lambda m: num2words(int(m[1]), to="ordinal"))
    p.sub("years", r"(?<![\w.,])(1[1-9]\d0|20\d0)s\b", _en_decade)
    p.sub("years", rf"\b((?i:{_YEAR_CONTEXT}))\s+({_YEAR}){_NOT_QUANTITY}(?:\s+(to|and|or|until|through)\s+"
                   rf"({_YEAR}){_NOT_QUANTITY})?\b", _en_years)
    p.sub("units", rf"(?<![\w.,])(-?(?:{_NUM}))\s?({_UNIT_RE})(?![\w/²³])", _en_unit)
    p.sub("symbols", r"(?<=\d) - (?=\d)", " minus ")
    p.sub("symbols", r"#(?=\d)", "number ")
    p.sub("symbols", r"(?<![\w~])~(?=\d)", "about ")
    words = {"&": "and", "+": "plus", "=": "equals", "@": "at", "#": "number", "×": "times", "÷": "divided by"}
    p.sub("symbols", r"(?<!\S)[&+=@#×÷](?!\S)", lambda m: words[m[0]])
    p.sub("numbers", r"(?<![\d.,])(\d+(?:\.\d+){2,})(?![\d.])",
          lambda m: " point ".join(_cardinal_en(part) for part in m[1].split(".")))  # versions 1.2.3
    p.sub("numbers", rf"(?:(?<![\w.,-])-)?(?<![\d.,])(?:{_NUM})", _en_cardinal_token)


# ---------------------------------------------------------------- Chinese

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_MEASURES = "个只本位次条张件种天年岁点台辆块元万亿名户间层套双对杯瓶碗份首"


def _digits_zh(digits: str) -> str:
    return "".join(_ZH_DIGITS[int(d)] for d in digits if d.isdigit())


def _cardinal_zh(written: str) -> str:
    sign = "负" if written.startswith("-") else ""
    plain = written.lstrip("-").replace(",", "")
    whole = plain.partition(".")[0]
    if len(whole) > 1 and whole.startswith("0"):
        return sign + _digits_zh(whole) + ("点" + _digits_zh(plain.partition(".")[2]) if "." in plain else "")
    return sign + cn2an.an2cn(plain)


def _zh_iso_date(m: re.Match[str]) -> str:
    month, day = int(m[2]), int(m[3])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m[0]
    return f"{_digits_zh(m[1])}年{cn2an.an2cn(str(month))}月{cn2an.an2cn(str(day))}日"


def _zh_hour(hour: int) -> str:
    return "两" if hour == 2 else cn2an.an2cn(str(hour))


def _zh_time(m: re.Match[str]) -> str:
    hour, minute = int(m[1]), int(m[2])
    if minute == 0:
        return f"{_zh_hour(hour)}点"
    return f"{_zh_hour(hour)}点{'零' if minute < 10 else ''}{cn2an.an2cn(str(minute))}分"


_CURRENCIES_ZH = {"$": "美元", "€": "欧元", "£": "英镑", "¥": "元"}
_UNITS_ZH = {"km/h": "公里每小时", "m/s": "米每秒", "km²": "平方公里", "m²": "平方米", "°C": "摄氏度",
             "℃": "摄氏度", "°F": "华氏度", "℉": "华氏度", "km": "公里", "cm": "厘米", "mm": "毫米", "kg": "公斤",
             "mg": "毫克", "ml": "毫升", "mL": "毫升", "ms": "毫秒", "min": "分钟", "m": "米", "g": "克",
             "L": "升", "s": "秒", "h": "小时", "°": "度"}
_UNIT_ZH_RE = "|".join(re.escape(u) for u in sorted(_UNITS_ZH, key=len, reverse=True))


def _zh_number_token(m: re.Match[str]) -> str:
    written, before, after = m[0], m.string[:m.start()], m.string[m.end():]
    if written == "2" and after[:1] and after[0] in _ZH_MEASURES and not before.endswith("第"):
        return "两"  # 2个 两个, 2万 两万; but 第2个 第二个
    return _cardinal_zh(written)


def _spoken_zh(p: _Passes) -> None:
    p.sub("dates", r"(?<![\d-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d-])", _zh_iso_date)
    p.sub("years", r"(?<![\d.])(\d{4})(?=年)", lambda m: _digits_zh(m[1]))  # 2024年 二零二四年
    p.sub("times", r"(?<![\d:.])([01]?\d|2[0-3]):([0-5]\d)(?![\d:])", _zh_time)
    p.sub("phone", r"(?<![\d-])(\d{3,4})-(\d{7,8})(?![\d-])", lambda m: f"{_digits_zh(m[1])}，{_digits_zh(m[2])}")
    p.sub("phone", r"(?<![\d.,])\d{7,}(?![\d.,])(?![元块万亿])", lambda m: _digits_zh(m[0]))
    p.sub("ranges", rf"(?<![A-Za-z0-9_.,:/-])((?:{_NUM}))\s?[-–~]\s?((?:{_NUM}))(?![\d.,]*[-–]\d)", r"\1到\2")
    p.sub("currency", rf"([$€£¥])\s?({_NUM})([万亿])?",
          lambda m: f"{_cardinal_zh(m[2])}{m[3] or ''}{_CURRENCIES_ZH[m[1]]}")
    p.sub("percent", rf"(-?(?:{_NUM}))\s?%", lambda m: f"百分之{_cardinal_zh(m[1])}")
    p.sub("units", rf"(-?(?:{_NUM}))\s?({_UNIT_ZH_RE})(?![A-Za-z/²³])",
          lambda m: f"{_cardinal_zh(m[1])}{_UNITS_ZH[m[2]]}")
    p.sub("numbers", r"(?<![\d/.])(\d+)/(\d+)(?![\d/])",
          lambda m: f"{_cardinal_zh(m[2])}分之{_cardinal_zh(m[1])}")
    p.sub("symbols", r"\s?\+\s?", "加")
    p.sub("symbols", r"\s?=\s?", "等于")
    p.sub("symbols", r"\s?&\s?", "和")
    p.sub("numbers", rf"(?:(?<![A-Za-z0-9_.,-])-)?(?<![\d.,])(?:{_NUM})", _zh_number_token)


# ---------------------------------------------------------------- entry point

def spoken_form(text: str, language: str) -> tuple[str, list[str]]:
    """The spoken form of ``text`` in ``language`` and the kinds of change made, in pass order."""
    p = _Passes(text)
    p.apply("markdown", strip_markdown(p.text))
    joined, stopped = _join_lines(p.text, language)
    if stopped:
        p.apply("lines", joined)
    p.text = joined
    p.apply("width", _width_zh(p.text) if language == "zh" else _width_en(p.text))
    if language == "en":
        _spoken_en(p)
    elif language == "zh":
        _spoken_zh(p)
    p.text = _spaces(p.text)
    return p.text, p.kinds
