"""Credentials out of URLs before they are printed, logged or stored.

A URL given to ``refinery fetch`` may carry credentials: a userinfo part
(``http://user:password@host/...``) or a signed/tokenised query
(``?token=...``, ``X-Amz-Signature=...``). The download needs them; nothing else does.
``redact_url`` is the one rule, used for every URL that leaves the fetch (what it says,
the fetch log, the sidecars, and through them the ledger's ``source_meta``):

* the userinfo is dropped entirely (``http://user:pw@host/p`` -> ``http://host/p``);
* the value of each query (or fragment) parameter whose name is secret is replaced by
  ``REDACTED``; the name stays, so one can see that the URL was signed
  (``?id=7&token=abc`` -> ``?id=7&token=REDACTED``). Names are compared case-insensitively
  after percent-decoding;
* everything else is kept byte for byte (host, IPv6 literal, port, path, other
  parameters, their order and escaping): a clean URL comes back unchanged.

It never raises: a value that is no URL, or a malformed one, is returned with only the
parts it can find redacted. ``redact_text`` applies the rule to every URL inside free text
(yt-dlp messages, failure reasons), ``redact_meta`` to every string of a sidecar.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "REDACTED"

DEFAULT_SECRET_PARAMS: tuple[str, ...] = (
    "token", "access_token", "refresh_token", "id_token", "auth", "authorization", "key", "api_key", "apikey",
    "api-key", "secret", "client_secret", "signature", "sig", "password", "passwd", "pwd",
    "x-amz-signature", "x-amz-credential", "x-amz-security-token",
    "x-goog-signature", "x-goog-credential",
)

_SCHEME_NETLOC = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*:)?//(?P<netloc>[^/?#]*)")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>\\]+")


def _names(secret_params: Iterable[str] | None) -> frozenset[str]:
    names = DEFAULT_SECRET_PARAMS if secret_params is None else secret_params
    return frozenset(n.strip().lower() for n in names if isinstance(n, str) and n.strip())


def _redact_params(params: str, secret: frozenset[str]) -> str:
    """``a=1&token=x`` -> ``a=1&token=REDACTED`` (``&``- or ``;``-separated pairs)."""
    if "=" not in params:
        return params
    parts = re.split(r"([&;])", params)  # keeps the separators, so the rest is rebuilt as it was
    for i in range(0, len(parts), 2):
        name, eq, _ = parts[i].partition("=")
        try:
            plain = unquote_plus(name).strip().lower()
        except Exception:  # noqa: BLE001  (never fail on odd escapes)
            plain = name.lower()
        if eq and plain in secret:
            parts[i] = f"{name}={REDACTED}"
    return "".join(parts)


def redact_url(url: Any, secret_params: Iterable[str] | None = None) -> Any:
    """``url`` without its userinfo and with the values of secret query parameters replaced.

    ``secret_params``: the parameter names that are secret (default ``DEFAULT_SECRET_PARAMS``).
    A non-string is returned as it is; the function never raises.
    """
    if not isinstance(url, str) or not url:
        return url
    secret = _names(secret_params)
    rest = url
    head = ""
    m = _SCHEME_NETLOC.match(url)
    if m:
        netloc = m.group("netloc")
        if "@" in netloc:  # the host is after the last "@", as urllib and yt-dlp read it
            netloc = netloc.rpartition("@")[2]
        head = (m.group("scheme") or "") + "//" + netloc
        rest = url[m.end():]
    path, hash_, fragment = rest.partition("#")
    path, qmark, query = path.partition("?")
    if qmark:
        query = _redact_params(query, secret)
    if hash_:
        fragment = _redact_params(fragment, secret)
    return f"{head}{path}{qmark}{query}{hash_}{fragment}"


def redact_text(text: Any, secret_params: Iterable[str] | None = None) -> Any:
    """``text`` with ``redact_url`` applied to every ``scheme://...`` in it (messages, reasons)."""
    if not isinstance(text, str) or "://" not in text:
        return text
    secret = tuple(_names(secret_params))
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0), secret), text)


def redact_meta(value: Any, secret_params: Iterable[str] | None = None) -> Any:
    """A copy of a JSON-like value (a sidecar, a fetch-log line) with every string redacted."""
    if isinstance(value, str):
        whole_url = _SCHEME_NETLOC.match(value) and not any(c.isspace() for c in value)
        return redact_url(value, secret_params) if whole_url else redact_text(value, secret_params)
    if isinstance(value, dict):
        return {k: redact_meta(v, secret_params) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_meta(v, secret_params) for v in value]
    return value
