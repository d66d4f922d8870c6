"""Text dialogues as they arrive: one JSON object per JSONL line, in either of the two common forms.

- OpenAI ``messages``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}]}``
  (``content`` may also be a list of ``{"type": "text", "text": ...}`` parts);
- ShareGPT ``conversations``: ``{"conversations": [{"from": "system"|"human"|"gpt", "value": "..."}]}``.

The form is detected per line. An optional ``id`` is kept as ``source_id``. A dialogue's identity
is the SHA-256 of its canonical form (roles and texts only), so the same dialogue in another file,
on another line or in the other form is the same dialogue to the ledger.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]
_SHAREGPT_ROLES: dict[str, Role] = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                                    "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant",
                                    "bard": "assistant"}
_OPENAI_ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})


class DialogueFormatError(ValueError):
    """A line that is not a dialogue in either form; the message says what is wrong."""


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str


@dataclass(frozen=True)
class Dialogue:
    turns: tuple[Turn, ...]
    form: Literal["messages", "sharegpt"]
    source_id: str | None = None

    @property
    def spoken_turns(self) -> tuple[Turn, ...]:
        """The turns that are spoken: everything but system turns (kept as text only)."""
        return tuple(t for t in self.turns if t.role != "system")

    def canonical(self) -> str:
        return json.dumps([[t.role, t.text] for t in self.turns], ensure_ascii=False, separators=(",", ":"))

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()

    @classmethod
    def from_canonical(cls, text: str, form: str = "messages", source_id: str | None = None) -> "Dialogue":
        """The dialogue ``canonical()`` wrote (how a dialogue travels between stages)."""
        return cls(tuple(Turn(role, body) for role, body in json.loads(text)), form, source_id)  # type: ignore[arg-type]


def dialogue_id(content_hash: str) -> str:
    """The id of a dialogue in the shards: short, stable, from its content."""
    return "dlg-" + content_hash[:16]


def _text_of(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text parts
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") not in (None, "text"):
                raise DialogueFormatError(f"{where}: content part of type {part.get('type')!r} is not text")
            else:
                raise DialogueFormatError(f"{where}: content parts must be objects with type and text")
        return "\n".join(parts)
    raise DialogueFormatError(f"{where}: content must be a string or a list of text parts, "
                              f"not {type(content).__name__}")


def parse_dialogue(line: str) -> Dialogue:
    """One JSONL line -> a Dialogue; ``DialogueFormatError`` says why a line is not one."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DialogueFormatError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise DialogueFormatError(f"a dialogue must be a JSON object, not {type(obj).__name__}")
    has_messages, has_conv = "messages" in obj, "conversations" in obj
    if has_messages == has_conv:
        raise DialogueFormatError("expected exactly one of 'messages' (OpenAI) or 'conversations' (ShareGPT)")
    source_id = obj.get("id")
    source_id = str(source_id) if isinstance(source_id, (str, int)) else None
    items = obj["messages"] if has_messages else obj["conversations"]
    if not isinstance(items, list) or not items:
        raise DialogueFormatError(f"{'messages' if has_messages else 'conversations'} must be a non-empty list")
    turns = []
    for i, item in enumerate(items):
        where = f"turn {i}"
        if not isinstance(item, dict):
            raise DialogueFormatError(f"{where}: must be an object")
        if has_messages:
            role = item.get("role")
            if role not in _OPENAI_ROLES:
                raise DialogueFormatError(f"{where}: role {role!r} is not one of system, user, assistant")
            text = _text_of(item.get("content"), where)
        else:
            who = item.get("from")
            role = _SHAREGPT_ROLES.get(who.lower()) if isinstance(who, str) else None
            if role is None:
                raise DialogueFormatError(f"{where}: 'from' {who!r} is not one of system, human, gpt")
            text = _text_of(item.get("value"), where)
        turns.append(Turn(role, text.strip()))
    if not any(t.role != "system" for t in turns):
        raise DialogueFormatError("no user or assistant turn")
    return Dialogue(tuple(turns), "messages" if has_messages else "sharegpt", source_id)
