"""LLM rewriting against a real local HTTP server standing in for the OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from synthesis.dialogue import Dialogue, Turn
from synthesis.text.prepare import TextPrepParams, prepare_dialogue
from synthesis.text.rewrite import ChatRewriter, RewriteError, RewriteParams, fill_template, parse_split

KEY = "sk-test-secret-4242"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    delay_s: float = 0.0


def chat(content: str) -> Reply:
    return Reply(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())


def turns_reply(*turns: tuple[str, str]) -> Reply:
    return chat(json.dumps({"turns": [{"role": r, "content": c} for r, c in turns]}))


@dataclass
class Endpoint:
    """What the server answers: scripted replies in order (the last one repeats), or a function of the request."""

    url: str
    script: list[Reply] = field(default_factory=list)
    respond: Callable[[dict], Reply] | None = None
    requests: list[tuple[dict[str, str], dict]] = field(default_factory=list)

    def next_reply(self, body: dict) -> Reply:
        if self.respond is not None:
            return self.respond(body)
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state: Endpoint

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.loads(raw)
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            if self.path != "/v1/chat/completions":
                reply = Reply(404, b'{"error": {"message": "no such route"}}')
            else:
                reply = state.next_reply(body)
            time.sleep(reply.delay_s)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = Endpoint(f"http://127.0.0.1:{server.server_address[1]}/v1")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def rewriter_for(ep: Endpoint, **overrides: object) -> ChatRewriter:
    params = dict(enabled=True, base_url=ep.url, model="tiny-chat", api_key_env="TEST_LLM_KEY", timeout_s=5.0,
                  max_retries=2, backoff_s=0.01)
    params.update(overrides)
    return ChatRewriter(RewriteParams(**params))


def test_good_reply_and_request_shape(endpoint: Endpoint) -> None:
    endpoint.script = [chat("  Sure, it is about five kilometers.  ")]
    rw = rewriter_for(endpoint, seed=7, temperature=0.3)
    assert rw.colloquial("It is approx. 5 km.", "en") == "Sure, it is about five kilometers."
    assert len(endpoint.requests) == 1
    _, body = endpoint.requests[0]
    assert body["model"] == "tiny-chat" and body["seed"] == 7 and body["temperature"] == 0.3
    prompt = body["messages"][0]["content"]
    assert "It is approx. 5 km." in prompt and "English" in prompt and "{text}" not in prompt
    assert rw.describe() == f"llm:tiny-chat@{urlsplit(endpoint.url).netloc}"
    assert rw.describe().startswith("llm:tiny-chat@127.0.0.1:")


def test_slow_reply_times_out_then_next_attempt_succeeds(endpoint: Endpoint) -> None:
    endpoint.script = [Reply(200, chat("late").body, delay_s=1.5), chat("on time")]
    rw = rewriter_for(endpoint, timeout_s=0.5)
    start = time.monotonic()
    assert rw.colloquial("Hello there.", "en") == "on time"
    assert len(endpoint.requests) == 2
    assert time.monotonic() - start < 1.5  # it did not wait for the slow reply


def test_invalid_json_every_time_fails_after_all_attempts(endpoint: Endpoint) -> None:
    endpoint.script = [Reply(200, b"<html>oops</html>")]
    rw = rewriter_for(endpoint, max_retries=3)
    with pytest.raises(RewriteError, match="not JSON") as err:
        rw.colloquial("Hello.", "en")
    assert len(endpoint.requests) == 4
    assert "\n" not in str(err.value) and "<html>" not in str(err.value)


@pytest.mark.parametrize("reply, why", [
    (Reply(200, b'{"choices": []}'), "lacks choices"),
    (Reply(200, b'{"id": "x"}'), "lacks choices"),
    (chat("   "), "empty content"),
])
def test_reply_without_content_is_retried_then_fails(endpoint: Endpoint, reply: Reply, why: str) -> None:
    endpoint.script = [reply]
    with pytest.raises(RewriteError, match=why):
        rewriter_for(endpoint, max_retries=1).colloquial("Hello.", "en")
    assert len(endpoint.requests) == 2


@pytest.mark.parametrize("first", [Reply(500, b"{}"), Reply(503, b"busy"), Reply(429, b"{}")])
def test_server_error_then_success(endpoint: Endpoint, first: Reply) -> None:
    endpoint.script = [first, chat("fine")]
    assert rewriter_for(endpoint).colloquial("Hello.", "en") == "fine"
    assert len(endpoint.requests) == 2


def test_client_error_fails_at_once(endpoint: Endpoint) -> None:
    endpoint.script = [Reply(400, b'{"error": {"message": "unknown model tiny-chat"}}'), chat("never")]
    with pytest.raises(RewriteError, match="HTTP 400.*unknown model") as err:
        rewriter_for(endpoint).colloquial("Hello.", "en")
    assert len(endpoint.requests) == 1
    assert "not retried" in str(err.value)


def test_connection_refused_is_retried_then_fails() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rw = ChatRewriter(RewriteParams(enabled=True, base_url=f"http://127.0.0.1:{port}/v1", model="m",
                                    max_retries=1, backoff_s=0.01))
    with pytest.raises(RewriteError, match="after 2 attempt.*connection failed"):
        rw.colloquial("Hello.", "en")


def test_split_good_reply(endpoint: Endpoint) -> None:
    endpoint.script = [chat("```json\n" + json.dumps({"turns": [
        {"role": "user", "content": "What is a starter?"}, {"role": "assistant", "content": "Flour and water."},
        {"role": "user", "content": "How long?"}, {"role": "assistant", "content": "About a week."}]}) + "\n```")]
    pairs = rewriter_for(endpoint).split("long question", "long answer", "en")
    assert pairs == [("user", "What is a starter?"), ("assistant", "Flour and water."),
                     ("user", "How long?"), ("assistant", "About a week.")]
    prompt = endpoint.requests[0][1]["messages"][0]["content"]
    assert "long question" in prompt and "long answer" in prompt and "at most 6" in prompt
    assert '{"turns": [{"role": "user"' in prompt  # the template's JSON example survives substitution


@pytest.mark.parametrize("bad", [
    turns_reply(("assistant", "hi"), ("user", "hello")),                       # starts with assistant
    turns_reply(("user", "a"), ("assistant", "b"), ("user", "c")),             # ends with user
    turns_reply(("user", "a"), ("user", "b")),                                 # not alternating
    turns_reply(("user", "a"), ("assistant", "  ")),                           # empty text
    turns_reply(*[("user", "q"), ("assistant", "a")] * 3),                     # more than max_split_turns=2 pairs
    chat('{"dialogue": []}'),                                                  # wrong key
    chat("Here is the conversation you asked for."),                           # not JSON at all
])
def test_split_bad_shape_is_retried_then_fails(endpoint: Endpoint, bad: Reply) -> None:
    endpoint.script = [bad]
    with pytest.raises(RewriteError, match="split reply"):
        rewriter_for(endpoint, max_split_turns=2, max_retries=1).split("q", "a", "en")
    assert len(endpoint.requests) == 2


def test_authorization_only_when_env_var_is_set(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint.script = [chat("ok")]
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    rewriter_for(endpoint).colloquial("Hello.", "en")
    assert "authorization" not in endpoint.requests[-1][0]
    monkeypatch.setenv("TEST_LLM_KEY", KEY)
    rw = rewriter_for(endpoint)
    rw.colloquial("Hello.", "en")
    assert endpoint.requests[-1][0]["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(rw.params) and KEY not in repr(rw.__dict__)
    # no key is sent at all when api_key_env is None, even if the variable exists
    rewriter_for(endpoint, api_key_env=None).colloquial("Hello.", "en")
    assert "authorization" not in endpoint.requests[-1][0]


def test_key_never_in_errors(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", KEY)
    endpoint.script = [Reply(401, json.dumps({"error": {"message": f"bad key {KEY}"}}).encode())]
    with pytest.raises(RewriteError) as err:
        rewriter_for(endpoint).colloquial("Hello.", "en")
    assert KEY not in str(err.value) and "***" in str(err.value)
    endpoint.script = [Reply(500, KEY.encode())]
    with pytest.raises(RewriteError) as err:
        rewriter_for(endpoint).colloquial("Hello.", "en")
    assert KEY not in str(err.value) and "HTTP 500" in str(err.value)


@pytest.mark.parametrize("url, why", [
    ("http://user:hunter2@llm.local/v1", "credentials"),
    ("https://token@llm.local/v1", "credentials"),
    ("ftp://llm.local/v1", "http:// or https://"),
    ("llm.local:8000/v1", "http:// or https://"),
])
def test_base_url_refused(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as err:
        RewriteParams(base_url=url)
    assert "hunter2" not in str(err.value) and "token@" not in str(err.value)


def test_credentials_do_not_leak_through_the_enclosing_params() -> None:
    with pytest.raises(ValueError, match="credentials") as err:
        TextPrepParams(rewrite={"base_url": "http://user:hunter2@llm.local/v1"})
    assert "hunter2" not in str(err.value)


def test_params_refuse_a_key_in_api_key_env_and_need_an_endpoint_when_enabled() -> None:
    with pytest.raises(ValueError, match="NAME of an environment variable") as err:
        RewriteParams(api_key_env="sk-live-abc123")
    assert "sk-live-abc123" not in str(err.value)
    with pytest.raises(ValueError, match="needs rewrite.base_url"):
        RewriteParams(enabled=True, model="m")
    assert RewriteParams(base_url="https://api.example.com/v1/").base_url == "https://api.example.com/v1"


def test_custom_template_and_placeholder_check(tmp_path, endpoint: Endpoint) -> None:
    good = tmp_path / "c.txt"
    good.write_text("Say in {language}: {text} (keep {braces} and {\"json\": 1})", encoding="utf-8")
    endpoint.script = [chat("ok")]
    rewriter_for(endpoint, colloquial_prompt=str(good)).colloquial("5 {text} km", "zh")
    prompt = endpoint.requests[0][1]["messages"][0]["content"]
    assert prompt == 'Say in Mandarin Chinese (simplified characters): 5 {text} km (keep {braces} and {"json": 1})'
    bad = tmp_path / "b.txt"
    bad.write_text("no placeholder here", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks the placeholder\(s\) \{text\}"):
        rewriter_for(endpoint, colloquial_prompt=str(bad))


def test_fill_template_and_parse_split_units() -> None:
    assert fill_template("{a}-{b}-{c}", a="{b}", b=2) == "{b}-2-{c}"
    assert parse_split('Sure! {"turns": [{"role": "user", "content": " q "}, '
                       '{"role": "assistant", "content": "a"}]} Hope it helps.', 3) == [("user", "q"),
                                                                                      ("assistant", "a")]
    with pytest.raises(ValueError, match="even number"):
        parse_split('{"turns": []}', 3)


def test_prepare_dialogue_splits_and_rewrites(endpoint: Endpoint) -> None:
    long_user = ("I have been thinking about starting to bake bread at home, and I keep reading about sourdough. "
                 "What exactly is a starter, how long does it take to make one, and do I need any special flour for it at all?")
    assert len(long_user) >= 200

    def respond(body: dict) -> Reply:
        prompt = body["messages"][0]["content"]
        if '"turns"' in prompt:
            return turns_reply(("user", "What is a starter?"), ("assistant", "Flour and water, left to ferment."),
                               ("user", "How long does it take?"), ("assistant", "About 7 days."))
        if "About 7 days." in prompt:
            return chat("See https://example.com")  # a rewrite that fails the filters is not taken
        return chat(prompt.rsplit("Text:\n", 1)[1].strip() + " Okay?")

    endpoint.respond = respond
    params = TextPrepParams(rewrite=RewriteParams(enabled=True, base_url=endpoint.url, model="m", backoff_s=0.01))
    dialogue = Dialogue((Turn("system", "Be brief."), Turn("user", long_user), Turn("assistant", "A long answer.")),
                        "messages")
    prepared = prepare_dialogue(dialogue, params, ChatRewriter(params.rewrite))
    assert [t.role for t in prepared.turns] == ["system", "user", "assistant", "user", "assistant"]
    assert [t.index for t in prepared.turns] == [0, 1, 2, 3, 4]
    assert prepared.turns[0].text == "Be brief." and prepared.turns[0].spoken_text is None
    assert all("split: 2 turns -> 4" in t.reasons for t in prepared.turns[1:])
    assert prepared.turns[1].text == "What is a starter? Okay?" and "rewritten: colloquial" in prepared.turns[1].reasons
    last = prepared.turns[4]
    assert last.text == "About 7 days." and last.spoken_text == "About seven days."
    assert "rewrite rejected: url: https://example.com" in last.reasons
    assert prepared.drop_reason is None and all(t.speakable for t in prepared.turns[1:])

    # rewriting off in the params: the rewriter is not called even when given
    before = len(endpoint.requests)
    plain = prepare_dialogue(dialogue, TextPrepParams(), ChatRewriter(params.rewrite))
    assert len(endpoint.requests) == before and len(plain.turns) == 3


def test_prepare_dialogue_keeps_text_when_rewrite_fails(endpoint: Endpoint) -> None:
    endpoint.script = [Reply(503, b"{}")]
    params = TextPrepParams(rewrite=RewriteParams(enabled=True, base_url=endpoint.url, model="m", max_retries=1,
                                                  backoff_s=0.01))
    dialogue = Dialogue((Turn("user", "Is it 5 km?"), Turn("assistant", "Yes, 5 km.")), "messages")
    prepared = prepare_dialogue(dialogue, params, ChatRewriter(params.rewrite))
    assert [t.text for t in prepared.turns] == ["Is it 5 km?", "Yes, 5 km."]
    assert [t.spoken_text for t in prepared.turns] == ["Is it five kilometers?", "Yes, five kilometers."]
    assert all(any(r.startswith("rewrite failed: colloquial:") and "HTTP 503" in r for r in t.reasons)
               for t in prepared.turns)
    assert all(t.speakable for t in prepared.turns)
