"""Text preparation of one dialogue: which turns can be spoken, and what to say for each.

Order: split a long single exchange (LLM, optional) -> filters on the written text -> colloquial
rewrite of the speakable turns (LLM, optional) -> spoken-form normalisation -> length on the spoken
text -> dialogue-level bounds. A turn that fails a check keeps its text and gets a ``drop_reason``;
the dialogue is only dropped for dialogue-level reasons (the caller decides which form remains).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pydantic import ConfigDict, Field, model_validator

from manifests.params import Params
from synthesis.dialogue import Dialogue
from synthesis.text import filters
from synthesis.text.normalise import spoken_form
from synthesis.text.rewrite import ChatRewriter, RewriteError, RewriteParams


class TextPrepParams(Params):
    """Every bound and switch of text preparation (the single place of each default)."""

    # rewrite.base_url may be refused for carrying a password; pydantic renders inputs with the
    # outermost model's config, so every model enclosing RewriteParams must hide them too
    model_config = ConfigDict(hide_input_in_errors=True)

    languages: list[str] = Field(default_factory=lambda: ["en", "zh"], min_length=1,
                                 description="languages that are spoken; a turn in another is dropped")
    check_code: bool = True
    check_math: bool = True
    check_table: bool = True
    check_url: bool = True
    check_email: bool = True
    check_mixed_script: bool = True
    code_max_symbol_density: float = Field(0.15, gt=0, le=1, description="share of code symbols among "
                                           "non-space characters above which a turn is code")
    code_min_chars: int = Field(20, ge=1, description="non-space characters a turn needs before symbol "
                                "density counts")
    table_min_tsv_rows: int = Field(3, ge=2, description="consecutive tab-separated lines that make a table")
    mixed_script_max_share: float = Field(0.20, ge=0, le=1, description="share of words outside the turn's "
                                          "main script above which it is mixed")
    mixed_script_min_foreign: int = Field(3, ge=1, description="foreign-script words needed before the share "
                                          "counts (a name or two is fine)")
    max_turn_chars: dict[str, int] = Field(default_factory=lambda: {"en": 400, "zh": 150},
                                           description="written characters per turn, per language")
    chars_per_second: dict[str, float] = Field(default_factory=lambda: {"en": 14.0, "zh": 4.5},
                                               description="speaking rate per language, in characters of "
                                               "normalised text (filters.estimate_seconds)")
    max_turn_s: float = Field(30.0, gt=0, description="estimated speaking time per turn")
    max_turns: int = Field(16, ge=1, description="spoken (non-system) turns per dialogue")
    max_dialogue_s: float = Field(240.0, gt=0, description="estimated speaking time of all speakable turns")
    rewrite: RewriteParams = Field(default_factory=RewriteParams)

    @model_validator(mode="after")
    def _bounds_for_each_language(self) -> "TextPrepParams":
        for name in ("max_turn_chars", "chars_per_second"):
            missing = [lang for lang in self.languages if lang not in getattr(self, name)]
            if missing:
                raise ValueError(f"{name} has no entry for {', '.join(missing)}")
        if "en" not in self.chars_per_second or any(v <= 0 for v in self.chars_per_second.values()):
            raise ValueError('chars_per_second needs positive rates and an "en" entry (the fallback)')
        return self


@dataclass(frozen=True)
class PreparedTurn:
    index: int                 # position in the prepared dialogue (after any split)
    role: str                  # system | user | assistant
    text: str                  # the written text (after rewriting when on)
    spoken_text: str | None    # normalised spoken form; None for system turns and dropped turns
    language: str | None
    drop_reason: str | None    # why this turn cannot be spoken (a filter reason), None when speakable
    reasons: tuple[str, ...]   # what preparation did ("normalised: numbers", "rewritten: colloquial", ...)
    seconds: float | None = None  # estimated speaking time of spoken_text

    @property
    def speakable(self) -> bool:
        return self.role != "system" and self.drop_reason is None


@dataclass(frozen=True)
class PreparedDialogue:
    turns: tuple[PreparedTurn, ...]
    drop_reason: str | None    # dialogue-level: too many turns, too long in all, no spoken turn

    @property
    def speakable_turns(self) -> tuple[PreparedTurn, ...]:
        return tuple(t for t in self.turns if t.speakable)


@dataclass
class _Draft:
    role: str
    text: str
    reasons: list[str] = field(default_factory=list)
    language: str | None = None
    drop_reason: str | None = None
    spoken: str | None = None
    seconds: float | None = None


def content_reason(text: str, language: str, params: TextPrepParams) -> str | None:
    """The first written-text check a turn fails (None: fine). Specific structure first (tables, math,
    links) so the code check's symbol density does not claim them."""
    checks = (
        (params.check_table, lambda: filters.table_reason(text, min_tsv_rows=params.table_min_tsv_rows)),
        (params.check_math, lambda: filters.math_reason(text)),
        (params.check_url, lambda: filters.url_reason(text)),
        (params.check_email, lambda: filters.email_reason(text)),
        (params.check_code, lambda: filters.code_reason(text, max_symbol_density=params.code_max_symbol_density,
                                                        min_chars=params.code_min_chars)),
        (params.check_mixed_script, lambda: filters.mixed_script_reason(
            text, max_share=params.mixed_script_max_share, min_foreign=params.mixed_script_min_foreign)),
        (True, lambda: filters.turn_chars_reason(text, max_chars=params.max_turn_chars[language])),
    )
    for enabled, check in checks:
        reason = check() if enabled else None
        if reason:
            return reason
    return None


def _split(drafts: list[_Draft], params: TextPrepParams, rewriter: ChatRewriter) -> list[_Draft]:
    """One user + one assistant turn (after any system turns) with a long user turn -> a short conversation."""
    spoken = [d for d in drafts if d.role != "system"]
    leading_system = all(d.role == "system" for d in drafts[:len(drafts) - len(spoken)])
    if not (leading_system and [d.role for d in spoken] == ["user", "assistant"]):
        return drafts
    user, assistant = spoken
    if len(user.text) < params.rewrite.split_min_chars:
        return drafts
    language = filters.turn_language(user.text) or filters.turn_language(assistant.text)
    if language not in params.languages:
        return drafts
    try:
        pairs = rewriter.split(user.text, assistant.text, language)
    except RewriteError as exc:
        user.reasons.append(f"rewrite failed: split: {exc}")
        return drafts
    note = f"split: 2 turns -> {len(pairs)}"
    return drafts[:len(drafts) - 2] + [_Draft(role, text, [note]) for role, text in pairs]


def _assign_languages(drafts: list[_Draft], params: TextPrepParams) -> None:
    """Each spoken turn's language; a turn without letters ("42?") takes the dialogue's usual one."""
    for d in drafts:
        if d.role != "system":
            d.language = filters.turn_language(d.text)
    usual = Counter(d.language for d in drafts if d.role != "system" and d.language).most_common(1)
    for d in drafts:
        if d.role == "system":
            continue
        if not d.text.strip():
            d.drop_reason = "empty: no text"
        elif d.language is None:
            d.language = usual[0][0] if usual else None
            if d.language is None:
                d.drop_reason = "language: no letters"
        if d.drop_reason is None and d.language not in params.languages:
            d.drop_reason = f"language: {d.language} not in {', '.join(params.languages)}"


def _colloquial(d: _Draft, params: TextPrepParams, rewriter: ChatRewriter) -> None:
    assert d.language is not None
    try:
        new = rewriter.colloquial(d.text, d.language)
    except RewriteError as exc:
        d.reasons.append(f"rewrite failed: colloquial: {exc}")
        return
    # the rewrite must itself pass the written-text checks and stay in the turn's language
    rejected = content_reason(new, d.language, params)
    if rejected is None and filters.turn_language(new) not in (d.language, None):
        rejected = f"language: {filters.turn_language(new)} instead of {d.language}"
    if rejected:
        d.reasons.append(f"rewrite rejected: {rejected}")
    else:
        d.text = new
        d.reasons.append("rewritten: colloquial")


def prepare_dialogue(dialogue: Dialogue, params: TextPrepParams,
                     rewriter: ChatRewriter | None = None) -> PreparedDialogue:
    """The prepared form of ``dialogue``; the rewriter is used only when ``params.rewrite.enabled``."""
    llm = rewriter if params.rewrite.enabled else None
    drafts = [_Draft(t.role, t.text) for t in dialogue.turns]
    if llm is not None:
        drafts = _split(drafts, params, llm)
    _assign_languages(drafts, params)
    for d in drafts:
        if d.role == "system" or d.drop_reason:
            continue
        assert d.language is not None
        d.drop_reason = content_reason(d.text, d.language, params)
        if d.drop_reason:
            continue
        if llm is not None:
            _colloquial(d, params, llm)
        spoken, kinds = spoken_form(d.text, d.language)
        if kinds:
            d.reasons.append("normalised: " + ", ".join(kinds))
        if not spoken:
            d.drop_reason = "empty: nothing to speak"
            continue
        seconds = filters.estimate_seconds(spoken, d.language, params.chars_per_second)
        d.drop_reason = filters.turn_seconds_reason(seconds, max_s=params.max_turn_s)
        if d.drop_reason is None:
            d.spoken, d.seconds = spoken, seconds
    turns = tuple(PreparedTurn(i, d.role, d.text, d.spoken, d.language, d.drop_reason, tuple(d.reasons), d.seconds)
                  for i, d in enumerate(drafts))
    spoken_turns = [t for t in turns if t.role != "system"]
    drop = filters.dialogue_reason(len(spoken_turns), sum(t.speakable for t in spoken_turns),
                                   sum(t.seconds or 0.0 for t in spoken_turns if t.speakable),
                                   max_turns=params.max_turns, max_total_s=params.max_dialogue_s)
    return PreparedDialogue(turns, drop)
