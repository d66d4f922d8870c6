"""Optional LLM rewriting of dialogue text through an OpenAI-compatible chat-completions endpoint.

Two uses: ``colloquial`` turns a written answer into something a person would say; ``split`` turns
one long exchange into a short multi-turn conversation. The endpoint (vLLM, llama.cpp server, a
hosted API) is outside this system: every failure mode (timeouts, refused connections, 429/5xx,
malformed replies) is retried a bounded number of times and then reported as a one-line
``RewriteError``. The API key is read from the environment variable *named* in the params; it never
appears in params, logs or error messages.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import requests
from pydantic import ConfigDict, Field, field_validator, model_validator

from manifests.params import Params

_T = TypeVar("_T")
PROMPTS_DIR = Path(__file__).parent / "prompts"
_LANGUAGE_NAMES = {"en": "English", "zh": "Mandarin Chinese (simplified characters)"}


class RewriteParams(Params):
    """The LLM endpoint and how to use it; off by default."""

    # a refused base_url may carry a password: keep inputs out of validation messages
    model_config = ConfigDict(hide_input_in_errors=True)

    enabled: bool = Field(False, description="rewrite turns with the LLM (colloquial form, splitting long exchanges)")
    base_url: str | None = Field(None, description="OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1")
    model: str = Field("", description="model name sent in each request")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="NAME of the environment variable holding the "
                                    "API key (sent as a Bearer token when set); None: never send a key")
    timeout_s: float = Field(30.0, gt=0, description="per-request timeout")
    max_retries: int = Field(2, ge=0, description="retries after the first attempt (timeouts, 429, 5xx, bad replies)")
    backoff_s: float = Field(0.5, ge=0, description="wait before the first retry; doubled for each further one")
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int | None = Field(0, description="sent for reproducible sampling where the server supports it")
    colloquial_prompt: str | None = Field(None, description="template file; None: prompts/colloquial.txt")
    split_prompt: str | None = Field(None, description="template file; None: prompts/split.txt")
    split_min_chars: int = Field(200, ge=1, description="split an exchange whose user turn has at least this many "
                                 "characters")
    max_split_turns: int = Field(6, ge=1, description="most user+assistant pairs a split may produce")

    @field_validator("base_url")
    @classmethod
    def _plain_http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("rewrite.base_url must be an http:// or https:// URL with a host")
        if "@" in parts.netloc:
            raise ValueError("rewrite.base_url must not contain credentials (user:pass@); put the API key in the "
                             "environment variable named by rewrite.api_key_env")
        return url.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError("rewrite.api_key_env is the NAME of an environment variable (letters, digits, _), "
                             "not the key itself")
        return name

    @model_validator(mode="after")
    def _enabled_needs_endpoint(self) -> "RewriteParams":
        if self.enabled and (self.base_url is None or not self.model):
            raise ValueError("rewrite.enabled needs rewrite.base_url and rewrite.model")
        return self


class RewriteError(RuntimeError):
    """The endpoint gave no usable answer; the message is one line, without the key or the reply body."""


class _Retryable(Exception):
    """An attempt failed in a way another attempt may not (timeout, 429/5xx, malformed reply)."""


def fill_template(template: str, **values: object) -> str:
    """``{name}`` placeholders for the given names only, in one pass: other braces (JSON examples)
    and braces inside the substituted texts stay as they are."""
    pattern = re.compile(r"\{(" + "|".join(map(re.escape, values)) + r")\}")
    return pattern.sub(lambda m: str(values[m[1]]), template)


def _load_template(path: str | None, default: str, required: tuple[str, ...]) -> str:
    file = Path(path) if path else PROMPTS_DIR / default
    template = file.read_text(encoding="utf-8")
    missing = [name for name in required if "{" + name + "}" not in template]
    if missing:
        raise ValueError(f"prompt template {file.name} lacks the placeholder(s) "
                         + ", ".join("{" + n + "}" for n in missing))
    return template


def _strip_fences(content: str) -> str:
    m = re.fullmatch(r"\s*```[\w-]*\s*\n(.*?)\n?```\s*", content, re.S)
    return m[1] if m else content


def parse_split(content: str, max_pairs: int) -> list[tuple[str, str]]:
    """The split reply ``{"turns": [{"role": ..., "content": ...}, ...]}`` -> (role, text) pairs.

    Valid: 1..max_pairs user/assistant pairs, alternating, starting with user, ending with assistant,
    every content a non-empty string. Raises ValueError saying what is wrong.
    """
    body = _strip_fences(content).strip()
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        start, end = body.find("{"), body.rfind("}")  # prose around the object
        try:
            obj = json.loads(body[start:end + 1]) if 0 <= start < end else None
        except json.JSONDecodeError:
            obj = None
    if not isinstance(obj, dict) or not isinstance(obj.get("turns"), list):
        raise ValueError('split reply is not a JSON object with a "turns" list')
    turns = obj["turns"]
    if not 2 <= len(turns) <= 2 * max_pairs or len(turns) % 2:
        raise ValueError(f"split reply has {len(turns)} turns, expected an even number from 2 to {2 * max_pairs}")
    pairs = []
    for i, turn in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if not isinstance(turn, dict) or turn.get("role") != expected:
            raise ValueError(f"split reply turn {i} is not a {expected} turn")
        text = turn.get("content")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"split reply turn {i} has no text")
        pairs.append((expected, text.strip()))
    return pairs


class ChatRewriter:
    """Rewrites texts with a chat-completions endpoint; one instance per worker (holds a connection pool)."""

    def __init__(self, params: RewriteParams, session: requests.Session | None = None) -> None:
        if params.base_url is None or not params.model:
            raise ValueError("ChatRewriter needs rewrite.base_url and rewrite.model")
        self.params = params
        self._url = params.base_url + "/chat/completions"
        self._colloquial = _load_template(params.colloquial_prompt, "colloquial.txt", ("text",))
        self._split = _load_template(params.split_prompt, "split.txt", ("user", "assistant"))
        self._session = session or requests.Session()

    def describe(self) -> str:
        """The model for the ``models`` column: ``llm:<model>@<host[:port]>``."""
        return f"llm:{self.params.model}@{urlsplit(self._url).netloc}"

    def colloquial(self, text: str, language: str) -> str:
        prompt = fill_template(self._colloquial, text=text, language=_LANGUAGE_NAMES.get(language, language))
        return self._complete(prompt, lambda content: _strip_fences(content).strip().strip('"“”').strip())

    def split(self, user_text: str, assistant_text: str, language: str) -> list[tuple[str, str]]:
        prompt = fill_template(self._split, user=user_text, assistant=assistant_text,
                               language=_LANGUAGE_NAMES.get(language, language),
                               max_turns=self.params.max_split_turns, text=user_text)
        return self._complete(prompt, lambda content: parse_split(content, self.params.max_split_turns))

    # ------------------------------------------------------------ transport

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.params.api_key_env) if self.params.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _complete(self, prompt: str, parse: Callable[[str], _T]) -> _T:
        """One completion, parsed by ``parse`` (ValueError: unusable, retried); retries, then RewriteError."""
        p = self.params
        body: dict[str, object] = {"model": p.model, "messages": [{"role": "user", "content": prompt}],
                                   "temperature": p.temperature}
        if p.seed is not None:
            body["seed"] = p.seed
        attempts = 1 + p.max_retries
        last = "no attempt"
        for attempt in range(attempts):
            if attempt:
                time.sleep(p.backoff_s * 2 ** (attempt - 1))
            try:
                return self._attempt(body, parse)
            except _Retryable as exc:
                last = str(exc)
        raise RewriteError(f"{self.describe()}: no usable reply after {attempts} attempt(s): {last}")

    def _attempt(self, body: dict[str, object], parse: Callable[[str], _T]) -> _T:
        p = self.params
        try:
            response = self._session.post(self._url, json=body, headers=self._headers(), timeout=p.timeout_s)
        except requests.Timeout:
            raise _Retryable(f"timed out after {p.timeout_s:g} s") from None
        except requests.ConnectionError:
            raise _Retryable("connection failed") from None
        except requests.RequestException as exc:
            raise RewriteError(f"{self.describe()}: request failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}")
        if status >= 300:
            raise RewriteError(f"{self.describe()}: HTTP {status}, not retried{self._error_hint(response)}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except ValueError:
            raise _Retryable("reply is not JSON") from None
        except (KeyError, IndexError, TypeError):
            raise _Retryable("reply lacks choices[0].message.content") from None
        if not isinstance(content, str) or not content.strip():
            raise _Retryable("empty content")
        try:
            result = parse(content)
        except ValueError as exc:
            raise _Retryable(str(exc)) from None
        if not result:
            raise _Retryable("empty content")
        return result

    def _error_hint(self, response: requests.Response) -> str:
        """The server's own error message (OpenAI form), one line, short, with the key scrubbed."""
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return ""
        if not isinstance(message, str):
            return ""
        key = os.environ.get(self.params.api_key_env) if self.params.api_key_env else None
        if key:
            message = message.replace(key, "***")
        return ": " + " ".join(message.split())[:120]
