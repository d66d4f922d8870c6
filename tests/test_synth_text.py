"""Text preparation: filters, spoken-form normalisation, turn language, prepare_dialogue, the demo input."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthesis.dialogue import Dialogue, Turn, parse_dialogue
from synthesis.text import filters
from synthesis.text.normalise import spoken_form, strip_markdown
from synthesis.text.prepare import TextPrepParams, content_reason, prepare_dialogue

DEMO = Path(__file__).resolve().parents[1] / "examples" / "dialogues" / "demo.jsonl"
P = TextPrepParams()


def code(text: str) -> str | None:
    return filters.code_reason(text, max_symbol_density=P.code_max_symbol_density, min_chars=P.code_min_chars)


def mixed(text: str) -> str | None:
    return filters.mixed_script_reason(text, max_share=P.mixed_script_max_share,
                                       min_foreign=P.mixed_script_min_foreign)


# ---------------------------------------------------------------- filters

@pytest.mark.parametrize("text, reason", [
    ("Try this:\n```python\nprint('hi')\n```", "code: fenced code block"),
    ("Like so:\n\n    x = 1\n    y = x + 1\n", "code: indented code block"),
    ("def area(r):\n  return 3.14 * r * r", "code: code line 'def area('"),
    ("#include <stdio.h>\nint main() { return 0; }", "code: code line '#include <'"),
    ("from os import path", "code: code line 'from os import'"),
    ("Run `ls -la` in the folder.", "code: inline code span"),
    ("a = {b: [c; d]} <e> f_g(h) | i / j * k & l", "code: symbol density 0.54 > 0.15"),
])
def test_code_positive(text: str, reason: str) -> None:
    assert code(text) == reason


@pytest.mark.parametrize("text", [
    "I paid $5",
    "I paid $5 (cash) and got 50% off, which is great.",
    "Import duties rose in 2020.",
    "Tell me what print means here.",
    "## Plan\n- buy milk\n- buy eggs and bread",
    "Sure (I think) it is fine.",
])
def test_code_negative(text: str) -> None:
    assert code(text) is None


@pytest.mark.parametrize("text, reason", [
    ("What is \\frac{1}{2} of 10?", "math: LaTeX \\frac"),
    ("Compute \\sum_i i", "math: LaTeX \\sum"),
    ("Show that \\(a + b\\) is even", "math: LaTeX delimiters"),
    ("Let a_{n} be the sequence", "math: LaTeX sub/superscript"),
    ("Solve $x^2 + 3x - 4 = 0$ for me", "math: $...$ formula"),
    ("Solve x^2 + 3x = 5 quickly", "math: expression 'x^2 + 3x = 5'"),
    ("If x + y = z then what?", "math: expression 'x + y = z'"),
    ("Einstein wrote e = mc^2 once", "math: power 'c^2'"),
    ("The ∑ of the terms", "math: symbol ∑"),
    ("```\n$x$\n```\nand \\frac{a}{b}", "math: LaTeX \\frac"),
])
def test_math_positive(text: str, reason: str) -> None:
    assert filters.math_reason(text) == reason


@pytest.mark.parametrize("text", [
    "2 + 2 = 4",          # plain arithmetic is spoken ("two plus two equals four"), not refused
    "It weighs 3 kg.",
    "It costs $5 and $10.",
    "Prices run $5-$10.",
    "We met on 2024-03-05.",
    "Plan A-B-C is ready.",
    "Take 3-5 tablets.",
    "```\nx^2 + 3x = 5\n```",  # inside a fence: the code check's business
])
def test_math_negative(text: str) -> None:
    assert filters.math_reason(text) is None


@pytest.mark.parametrize("text, reason", [
    ("| a | b |\n|---|---|\n| 1 | 2 |", "table: markdown table"),
    ("Here:\nName | Age\n:--- | ---:\nAl | 3", "table: markdown table"),
    ("+---+---+\n| a | b |\n+---+---+", "table: ASCII table"),
    ("name\tage\nAl\t3\nBo\t4", "table: tab-separated columns"),
])
def test_table_positive(text: str, reason: str) -> None:
    assert filters.table_reason(text, min_tsv_rows=3) == reason


@pytest.mark.parametrize("text", [
    "name\tage\nAl\t3",              # two rows only
    "Either this | or that.",
    "---\nNot a table\n---",
    "```\n| a |\n|---|\n```",        # inside a fence
])
def test_table_negative(text: str) -> None:
    assert filters.table_reason(text, min_tsv_rows=3) is None


def test_url_and_email() -> None:
    assert filters.url_reason("Read https://docs.python.org/3/ today") == "url: https://docs.python.org/3/"
    assert filters.url_reason("Go to www.example.com.") == "url: www.example.com."
    assert filters.url_reason("It ends at 5. Com on!") is None
    assert filters.email_reason("Write to ann.lee+x@mail.example.org now") == "email: ann.lee+x@mail.example.org"
    assert filters.email_reason("Meet me @ home at 5") is None
    assert filters.url_reason("Write to ann@example.org") is None


@pytest.mark.parametrize("text, reason", [
    ("这个project的deadline是next Friday，我们要finish所有的tasks吗？",
     "mixed_script: 35% of words outside the turn's script (han) > 20%"),
    ("My friend wrote Привет, как дела, мой друг on the card.",
     "mixed_script: 45% of words outside the turn's script (latin) > 20%"),
])
def test_mixed_script_positive(text: str, reason: str) -> None:
    assert mixed(text) == reason


@pytest.mark.parametrize("text", [
    "我刚买了新的iPhone，AI功能很好用。",   # a few English words in Chinese pass at the default bound
    "用AI写",                              # one foreign word: below mixed_script_min_foreign
    "I ordered 寿司 for lunch today.",
    "Plain English only.",
    "1234 !!",
])
def test_mixed_script_negative(text: str) -> None:
    assert mixed(text) is None


def test_mixed_script_share_bound_is_used() -> None:
    text = "我们今天开会讨论了这个project和deadline还有budget的问题"
    assert filters.mixed_script_reason(text, max_share=0.2, min_foreign=3) is None
    assert filters.mixed_script_reason(text, max_share=0.1, min_foreign=3).startswith("mixed_script: 15% ")


def test_lengths_and_estimate() -> None:
    rates = P.chars_per_second
    assert filters.estimate_seconds("a" * 140, "en", rates) == pytest.approx(10.0)
    assert filters.estimate_seconds("a   b", "en", rates) == pytest.approx(3 / 14)   # runs of spaces are one
    assert filters.estimate_seconds("今天天气很好。", "zh", rates) == pytest.approx(6 / 4.5)  # punctuation not read
    assert filters.estimate_seconds("x" * 28, "de", rates) == pytest.approx(2.0)   # falls back to the en rate
    assert filters.turn_chars_reason("x" * 612, max_chars=400) == "turn_length: 612 characters > 400"
    assert filters.turn_chars_reason("x" * 400, max_chars=400) is None
    assert filters.turn_seconds_reason(41.0, max_s=30) == "turn_length: about 41.0 s > 30 s"
    assert filters.turn_seconds_reason(30.0, max_s=30) is None


def test_dialogue_reason() -> None:
    kw = dict(max_turns=4, max_total_s=60.0)
    assert filters.dialogue_reason(4, 4, 59.0, **kw) is None
    assert filters.dialogue_reason(5, 5, 10.0, **kw) == "dialogue_turns: 5 turns > 4"
    assert filters.dialogue_reason(2, 0, 0.0, **kw) == "no_spoken_turn: every turn was dropped"
    assert filters.dialogue_reason(2, 2, 61.0, **kw) == "dialogue_length: about 61.0 s > 60 s"


@pytest.mark.parametrize("text, language", [
    ("How far is it from Paris to Lyon?", "en"),
    ("OK.", "en"),                           # short ASCII: English, whatever a detector says
    ("I paid $5", "en"),
    ("今天天气很好", "zh"),
    ("我刚买了新的iPhone，AI功能很好用。", "zh"),
    ("Bonjour, comment allez-vous aujourd'hui ?", "fr"),
    ("Danke schön, bis morgen!", "de"),
    ("Привет, как у тебя дела?", "ru"),
    ("こんにちは、元気ですか", "ja"),
    ("12345 !!", None),
    ("", None),
])
def test_turn_language(text: str, language: str | None) -> None:
    assert filters.turn_language(text) == language


# ---------------------------------------------------------------- normalisation

EN_CASES = [
    ("I paid $5 for 1,234 apples.", "I paid five dollars for one thousand two hundred and thirty-four apples.",
     ["currency", "numbers"]),
    ("Pi is 3.14 and it was -5 outside.", "Pi is three point one four and it was minus five outside.", ["numbers"]),
    ("She came 1st and he came 22nd.", "She came first and he came twenty-second.", ["ordinals"]),
    ("In 1999 we moved; by 2024 we were back.",
     "In nineteen ninety-nine we moved; by twenty twenty-four we were back.", ["years"]),
    ("from 2020 to 2024", "from twenty twenty to twenty twenty-four", ["years"]),
    ("the 1990s", "the nineteen nineties", ["years"]),
    ("We sold 1999 cars.", "We sold one thousand nine hundred and ninety-nine cars.", ["numbers"]),
    ("Prices rose 12% this year.", "Prices rose twelve percent this year.", ["percent"]),
    ("It costs $5.20, €3, £2.50 or ¥100.",
     "It costs five dollars and twenty cents, three euros, two pounds and fifty pence or one hundred yen.",
     ["currency"]),
    ("$1, $0.50, $1.01 and $5 million", "one dollar, fifty cents, one dollar and one cent and five million dollars",
     ["currency"]),
    ("It is 465 km, 1 km, 5.5 kg, 3 g, 20 mg, 2 lb, 30 mph, 50 km/h.",
     "It is four hundred and sixty-five kilometers, one kilometer, five point five kilograms, three grams, "
     "twenty milligrams, two pounds, thirty miles per hour, fifty kilometers per hour.", ["units"]),
    ("It was 25°C or 77 °F, 2 m and 30 cm and 4 mm.",
     "It was twenty-five degrees Celsius or seventy-seven degrees Fahrenheit, two meters and thirty centimeters "
     "and four millimeters.", ["units"]),
    ("128 GB, 700 MB, 500 ms, 10 s, 2 h, 45 min",
     "one hundred and twenty-eight gigabytes, seven hundred megabytes, five hundred milliseconds, ten seconds, "
     "two hours, forty-five minutes", ["units"]),
    ("The meeting is on 2024-03-05.", "The meeting is on March fifth, twenty twenty-four.", ["dates"]),
    ("March 5, 2024 was a Tuesday.", "March fifth, twenty twenty-four was a Tuesday.", ["dates"]),
    ("Meet at 3:30, 3:30 pm, 9:05 am or 10:00.",
     "Meet at three thirty, three thirty PM, nine oh five AM or ten o'clock.", ["times"]),
    ("See you at 3 pm or 11 a.m., 5 m away.", "See you at three PM or eleven AM, five meters away.",
     ["times", "units"]),
    ("Tom & Jerry", "Tom and Jerry", ["symbols"]),
    ("2 + 2 = 4", "two plus two equals four", ["symbols", "numbers"]),
    ("Meet me @ home.", "Meet me at home.", ["symbols"]),
    ("It was the #1 hit.", "It was the number one hit.", ["symbols", "numbers"]),
    ("Take 3-5 tablets for 10–20 min.", "Take three to five tablets for ten to twenty minutes.",
     ["ranges", "units", "numbers"]),
    ("Call 555-123-4567 now.", "Call five five five, one two three, four five six seven now.", ["phone"]),
    ("COVID-19, 5G and A4", "COVID-nineteen, five G and A four", ["numbers"]),
    ("**Bold**, *italic* and _quiet_ words", "Bold, italic and quiet words", ["markdown"]),
    ("# Shopping\n- milk\n- eggs", "Shopping. milk. eggs", ["markdown", "lines"]),
    ("See [the guide](https://x.y/z) first.", "See the guide first.", ["markdown"]),
    ("Ｉ ｐａｉｄ １２ dollars。", "I paid twelve dollars.", ["width", "numbers"]),
    ("Nothing to change here.", "Nothing to change here.", []),
]


@pytest.mark.parametrize("written, spoken, kinds", EN_CASES)
def test_spoken_form_en(written: str, spoken: str, kinds: list[str]) -> None:
    assert spoken_form(written, "en") == (spoken, kinds)


ZH_CASES = [
    ("我有2个苹果和12个梨", "我有两个苹果和十二个梨", ["numbers"]),
    ("他是第2名", "他是第二名", ["numbers"]),
    ("温度是25℃，最低-5°C", "温度是二十五摄氏度，最低负五摄氏度", ["units"]),
    ("原价¥299，现在只要239.2元。", "原价二百九十九元，现在只要二百三十九点二元。", ["currency", "numbers"]),
    ("门票$5，或者€3", "门票五美元，或者三欧元", ["currency"]),
    ("我2024年3月开始学钢琴。", "我二零二四年三月开始学钢琴。", ["years", "numbers"]),
    ("会议在2024-03-05举行", "会议在二零二四年三月五日举行", ["dates"]),
    ("下午2:30见，或者3:05，或者10:00", "下午两点三十分见，或者三点零五分，或者十点", ["times"]),
    ("我的电话是13812345678", "我的电话是一三八一二三四五六七八", ["phone"]),
    ("座机010-12345678", "座机零一零，一二三四五六七八", ["phone"]),
    ("要3-5天", "要三到五天", ["ranges", "numbers"]),
    ("打了50%的折扣，涨了3.5%", "打了百分之五十的折扣，涨了百分之三点五", ["percent"]),
    ("跑了5km，重0.5kg，时速60km/h", "跑了五公里，重零点五公斤，时速六十公里每小时", ["units"]),
    ("3.5公里", "三点五公里", ["numbers"]),
    ("1/2的人", "二分之一的人", ["numbers"]),
    ("１２３元，ＡＩ功能", "一百二十三元，AI功能", ["width", "numbers"]),
    ("**重点**是这个", "重点是这个", ["markdown"]),
    ("- 第一\n- 第二", "第一。第二", ["markdown", "lines"]),
    ("1,234元", "一千二百三十四元", ["numbers"]),
    ("1+1=2", "一加一等于二", ["symbols", "numbers"]),
    ("我刚买了iPhone 15", "我刚买了iPhone 十五", ["numbers"]),
    ("今天天气很好。", "今天天气很好。", []),
]


@pytest.mark.parametrize("written, spoken, kinds", ZH_CASES)
def test_spoken_form_zh(written: str, spoken: str, kinds: list[str]) -> None:
    assert spoken_form(written, "zh") == (spoken, kinds)


def test_other_languages_get_cleanup_only() -> None:
    assert spoken_form("**Très** bien, 5 km", "fr") == ("Très bien, 5 km", ["markdown"])


def test_strip_markdown_leaves_inner_underscores_and_stars() -> None:
    assert strip_markdown("a snake_case_name and 2*3*4") == "a snake_case_name and 2*3*4"
    assert strip_markdown("1. first\n> quoted\n***\n__strong__") == "1. first\nquoted\n\nstrong"


# ---------------------------------------------------------------- prepare_dialogue

def dlg(*turns: tuple[str, str]) -> Dialogue:
    return Dialogue(tuple(Turn(r, t) for r, t in turns), "messages")  # type: ignore[arg-type]


def test_prepare_end_to_end() -> None:
    d = dlg(("system", "You are helpful. See https://x.y and use `code`."),
            ("user", "How far is Lyon? About 465 km?"),
            ("assistant", "Here:\n```\nprint(465)\n```"),
            ("user", "42?"),
            ("assistant", "Oui, c'est à environ quatre cents kilomètres d'ici."))
    out = prepare_dialogue(d, P)
    system, user, code_turn, no_letters, french = out.turns
    assert [t.index for t in out.turns] == [0, 1, 2, 3, 4]
    # system turn: text only, never filtered
    assert system.text == d.turns[0].text and system.spoken_text is None and system.drop_reason is None
    assert not system.speakable and system.reasons == ()
    assert user.speakable and user.language == "en"
    assert user.spoken_text == "How far is Lyon? About four hundred and sixty-five kilometers?"
    assert user.reasons == ("normalised: units",)
    # a dropped turn keeps its written text
    assert code_turn.drop_reason == "code: fenced code block" and code_turn.text == d.turns[2].text
    assert code_turn.spoken_text is None and not code_turn.speakable
    # no letters: the dialogue's usual language
    assert no_letters.language == "en" and no_letters.spoken_text == "forty-two?"
    assert french.drop_reason == "language: fr not in en, zh" and french.spoken_text is None
    assert out.drop_reason is None  # turn-level drops do not drop the dialogue


def test_prepare_chinese_and_reasons() -> None:
    out = prepare_dialogue(dlg(("user", "明天气温多少？"), ("assistant", "明天最高25℃，最低-3℃。")), P)
    assert [t.language for t in out.turns] == ["zh", "zh"]
    assert out.turns[1].spoken_text == "明天最高二十五摄氏度，最低负三摄氏度。"
    assert out.turns[1].reasons == ("normalised: units",)
    assert out.turns[1].seconds == pytest.approx(17 / 4.5)


def test_prepare_length_bounds() -> None:
    long_zh = "这是一句很长的话。" * 20  # 180 characters > 150 for zh
    out = prepare_dialogue(dlg(("user", "Hi there."), ("assistant", long_zh)), P)
    assert out.turns[1].drop_reason == "turn_length: 180 characters > 150"
    # spoken length: digits expand on normalisation
    numbers = "Call 1234567, 2345678, 3456789 and 4567890 today."
    tight = TextPrepParams(max_turn_s=5.0)
    t = prepare_dialogue(dlg(("user", numbers), ("assistant", "Done.")), tight).turns[0]
    assert t.drop_reason is not None and t.drop_reason.startswith("turn_length: about ")
    assert t.drop_reason.endswith(" s > 5 s") and t.spoken_text is None and t.text == numbers


def test_prepare_dialogue_level_drops() -> None:
    many = dlg(*[("user" if i % 2 == 0 else "assistant", f"Turn number {i}.") for i in range(6)])
    assert prepare_dialogue(many, TextPrepParams(max_turns=4)).drop_reason == "dialogue_turns: 6 turns > 4"
    assert prepare_dialogue(many, TextPrepParams(max_turns=6)).drop_reason is None
    nothing = dlg(("user", "See https://a.b/c"), ("assistant", "```\nx\n```"))
    assert prepare_dialogue(nothing, P).drop_reason == "no_spoken_turn: every turn was dropped"
    long_total = prepare_dialogue(many, TextPrepParams(max_dialogue_s=3.0))
    assert long_total.drop_reason.startswith("dialogue_length: about ")


def test_prepare_flags_switch_checks_off() -> None:
    d = dlg(("user", "Read https://docs.python.org/3/ now."), ("assistant", "Okay."))
    assert prepare_dialogue(d, P).turns[0].drop_reason == "url: https://docs.python.org/3/"
    assert prepare_dialogue(d, TextPrepParams(check_url=False)).turns[0].drop_reason is None


def test_content_reason_order_prefers_specific_checks() -> None:
    # the symbol density of a LaTeX formula or a pipe table would also call it code
    assert content_reason("Is $\\frac{1}{2} + \\frac{1}{3}$ more than a half?", "en", P) == "math: LaTeX \\frac"
    assert content_reason("| a | b |\n|---|---|\n| 1 | 2 |", "en", P) == "table: markdown table"


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="max_turn_chars has no entry for fr"):
        TextPrepParams(languages=["en", "fr"], chars_per_second={"en": 14.0, "fr": 14.0})
    with pytest.raises(ValueError):
        TextPrepParams(unknown_bound=1)
    ok = TextPrepParams(languages=["en", "fr"], max_turn_chars={"en": 400, "fr": 400},
                        chars_per_second={"en": 14.0, "fr": 13.0})
    out = prepare_dialogue(dlg(("user", "Bonjour, comment allez-vous aujourd'hui ?"), ("assistant", "Bien.")), ok)
    assert out.turns[0].speakable and out.turns[0].language == "fr"


# ---------------------------------------------------------------- the demo input

def demo_dialogues() -> list[Dialogue]:
    lines = [ln for ln in DEMO.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [parse_dialogue(ln) for ln in lines]


def test_demo_parses_and_exercises_every_filter() -> None:
    dialogues = demo_dialogues()
    assert 10 <= len(dialogues) <= 16
    assert {d.form for d in dialogues} == {"messages", "sharegpt"}
    prepared = [prepare_dialogue(d, P) for d in dialogues]
    checks = {t.drop_reason.split(":")[0] for p in prepared for t in p.turns if t.drop_reason}
    assert {"code", "math", "table", "url", "turn_length", "mixed_script"} <= checks
    languages = {t.language for p in prepared for t in p.turns if t.speakable}
    assert languages == {"en", "zh"}
    assert any(t.role == "system" for d in dialogues for t in d.turns)
    clean = [p for p in prepared if p.drop_reason is None and all(t.speakable for t in p.turns if t.role != "system")]
    assert len(clean) >= 8
    assert sum(any(r.startswith("normalised:") for t in p.turns for r in t.reasons) for p in clean) >= 8


def test_demo_turns_are_short() -> None:
    for d in demo_dialogues():
        prepared = prepare_dialogue(d, P)
        if not all(t.speakable for t in prepared.turns if t.role != "system"):
            continue
        assert 2 <= len(d.spoken_turns) <= 4, d.source_id
        for t in d.spoken_turns:
            size = len(t.text) if filters.turn_language(t.text) == "zh" else len(t.text.split())
            bounds = (6, 30) if filters.turn_language(t.text) == "zh" else (4, 20)
            assert bounds[0] <= size <= bounds[1], (d.source_id, t.text)
