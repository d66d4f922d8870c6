"""Credentials in fetch URLs (user:password@, ?token=...) are used for the download and never
printed, logged or stored: sources.redact.redact_url, and `refinery fetch` end to end against a
local HTTP server (tests/test_fetch.py's) that insists on the credentials."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from pipeline.cli import main as cli
from pipeline.config import load_config
from sources.fetch import FetchInputError, expand_url_args, read_source_meta
from sources.redact import DEFAULT_SECRET_PARAMS, REDACTED, redact_meta, redact_text, redact_url
from tests.test_fetch import FAST, _Handler, _Site, serve

USER, PASSWORD, TOKEN = "user", "pass", "secret123"
SECRETS = (PASSWORD, TOKEN, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())


# ---- the rule ------------------------------------------------------------------------------
def test_userinfo_is_removed():
    assert redact_url("http://user:password@host/path") == "http://host/path"
    assert redact_url("https://user@host.example:8443/a/b") == "https://host.example:8443/a/b"
    assert redact_url("http://us%40er:p@ss:w@host/x") == "http://host/x"  # the host is after the last "@"


def test_secret_query_values_are_redacted_and_other_params_kept():
    url = "http://user:password@host/path?id=7&token=abc&Access_Token=x&lang=en&X-Amz-Signature=deadbeef"
    assert redact_url(url) == (f"http://host/path?id=7&token={REDACTED}&Access_Token={REDACTED}&lang=en"
                               f"&X-Amz-Signature={REDACTED}")
    assert redact_url("http://h/p?%74oken=x&sig=y;key=z&keep=1") == f"http://h/p?%74oken={REDACTED}&sig={REDACTED};key={REDACTED}&keep=1"
    assert redact_url("http://h/p?a=1#access_token=t&state=s") == f"http://h/p?a=1#access_token={REDACTED}&state=s"
    assert redact_url("http://h/p?token&x=1") == "http://h/p?token&x=1"  # a bare name has no value to hide
    for name in ("token", "access_token", "auth", "key", "api_key", "apikey", "signature", "sig", "x-amz-signature",
                 "x-amz-credential", "x-amz-security-token", "password", "passwd"):
        assert name in DEFAULT_SECRET_PARAMS
        assert redact_url(f"http://h/?{name.upper()}=v") == f"http://h/?{name.upper()}={REDACTED}"


def test_configured_names_replace_the_default_list():
    assert redact_url("http://h/?session=s&token=t", ["Session"]) == f"http://h/?session={REDACTED}&token=t"
    assert redact_url("http://u:p@h/?token=t", []) == "http://h/?token=t"  # userinfo always goes


def test_a_clean_url_is_unchanged():
    for url in ["https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=PL1&index=2",
                "http://127.0.0.1:8000/feed.xml", "https://example.org/a%20b/c.mp3?q=a+b&empty=&x",
                "https://example.org/path?", "https://example.org/#frag", "http://h/p;keyed=1/x"]:
        assert redact_url(url) == url


def test_ipv6_host_and_port_are_kept():
    assert redact_url("http://user:pw@[::1]:8080/a.mp3?token=t&b=2") == f"http://[::1]:8080/a.mp3?token={REDACTED}&b=2"
    assert redact_url("https://[2001:db8::7]/x") == "https://[2001:db8::7]/x"


@pytest.mark.parametrize("value", ["http://[::1", "http://a:b@[::1", "://", "http://", "not a url", "", "?token=x",
                                   "http://h/?=x&&=&token==", "http://h/?%zz=1&%E0%A4%A=2", None, 42])
def test_malformed_input_does_not_crash(value):
    out = redact_url(value)
    if isinstance(value, str):
        assert isinstance(out, str)
    else:
        assert out is value
    assert redact_url("http://a:b@[::1") == "http://[::1"
    assert redact_url("?token=x") == f"?token={REDACTED}"


def test_urls_inside_text_and_sidecars():
    text = "ERROR: Unsupported URL: 'http://u:p@h/x?token=s1' (see https://h/y?apikey=k2 and http://h/ok?a=1)"
    assert redact_text(text) == (f"ERROR: Unsupported URL: 'http://h/x?token={REDACTED}' "
                                 f"(see https://h/y?apikey={REDACTED} and http://h/ok?a=1)")
    meta = {"url": "http://u:p@h/a?sig=1", "n": 3, "title": "T", "more": [None, "https://h/?key=2"]}
    assert redact_meta(meta) == {"url": "http://h/a?sig=REDACTED", "n": 3, "title": "T",
                                 "more": [None, "https://h/?key=REDACTED"]}


def test_config_field_and_refused_arguments():
    cfg = load_config(None, ["fetch.secret_query_params=[session]"]).fetch
    assert cfg.secret_query_params == ["session"]
    assert list(load_config().fetch.secret_query_params) == list(DEFAULT_SECRET_PARAMS)
    assert load_config(None, ["fetch.secret_query_params=[session]"]).config_hash() == load_config().config_hash()
    with pytest.raises(FetchInputError) as err:
        expand_url_args(["ftp://user:pass@h/x?session=s3cr3t&token=t"], cfg.secret_query_params)
    assert "pass" not in str(err.value) and "s3cr3t" not in str(err.value)
    assert f"'ftp://h/x?session={REDACTED}&token=t'" in str(err.value)
    # the requests themselves keep the full URL: the download needs it
    assert [r.url for r in expand_url_args(["http://user:pass@h/x?token=t"])] == ["http://user:pass@h/x?token=t"]


def test_read_source_meta_redacts_sidecars_written_before_the_fix(tmp_path):
    media = tmp_path / "a.webm"
    media.write_bytes(b"")
    old = {"title": "T", "url": f"http://{USER}:{PASSWORD}@h/feed.xml?token={TOKEN}",
           "webpage_url": f"http://{USER}:{PASSWORD}@h/a.webm?token={TOKEN}&id=1",
           "original_url": f"http://h/a.webm?Signature={TOKEN}", "channel_url": None}
    (tmp_path / "a.webm.source.json").write_text(json.dumps(old))
    meta = read_source_meta(str(media))
    assert TOKEN not in meta and f"{USER}:{PASSWORD}" not in meta
    assert json.loads(meta) == {"title": "T", "url": f"http://h/feed.xml?token={REDACTED}",
                                "webpage_url": f"http://h/a.webm?token={REDACTED}&id=1",
                                "original_url": f"http://h/a.webm?Signature={REDACTED}", "channel_url": None}


# ---- end to end ----------------------------------------------------------------------------
class _AuthHandler(_Handler):
    """Serves /private/<file> only with the basic-auth credentials and the token: proof that
    the download used the full URL. Everything else as tests/test_fetch.py's server."""

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if not parts.path.startswith("/private/"):
            return super().do_GET()
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        authorized = self.headers.get("Authorization") == expected
        token_ok = parse_qs(parts.query).get("token") == [TOKEN]
        with self.site.lock:
            self.site.requests.append(f"{parts.path} auth={authorized} token={token_ok}")
        if not (authorized and token_ok):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.path = parts.path[len("/private"):]
        return super().do_GET()


@pytest.fixture(scope="module")
def auth_site(tmp_path_factory):
    yield from serve(_Site(tmp_path_factory.mktemp("site")), _AuthHandler)


def _secret_url(site: _Site, path: str) -> str:
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{site.port}/private/{path}?token={TOKEN}&lang=en"


def _no_secrets(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}:\n{text}"


def test_fetch_downloads_with_credentials_but_never_shows_them(auth_site, tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="refinery")
    urls = [_secret_url(auth_site, "talk.webm"), _secret_url(auth_site, "missing.wav")]
    url_list = tmp_path / "urls.txt"
    url_list.write_text(urls[1] + "\n")
    result = CliRunner().invoke(cli, ["fetch", urls[0], f"@{url_list}", "--corpus", "c", "--out", str(tmp_path), "-v",
                                      *[a for s in FAST for a in ("--set", s)]])
    captured = capfd.readouterr()
    assert result.exit_code == 1, result.output  # the missing file fails, the other is fetched
    assert "1 fetched, 0 already in the download archive, 1 failed" in result.output, result.output

    # the download used the full URL: the server let it through only with user:pass and the token
    media = tmp_path / "c" / "media" / "generic" / "talk.webm"
    assert media.read_bytes() == auth_site.talk
    assert "/private/talk.webm auth=True token=True" in auth_site.requests
    assert not any(r.startswith("/private/talk.webm auth=False") for r in auth_site.requests)

    # ... and none of what was printed, logged or stored holds the credentials
    _no_secrets("the command's output", result.output + (result.stderr or ""))
    _no_secrets("the captured stdout/stderr", captured.out + captured.err)
    _no_secrets("the log", caplog.text)
    assert caplog.text, "the -v debug log was captured"
    fetch_log = (tmp_path / "c" / "fetch_log.jsonl").read_text()
    _no_secrets("fetch_log.jsonl", fetch_log)
    sidecar_text = media.with_name(media.name + ".source.json").read_text()
    _no_secrets("the sidecar", sidecar_text)
    ledger_meta = read_source_meta(str(media))
    _no_secrets("read_source_meta", ledger_meta)

    shown = f"http://127.0.0.1:{auth_site.port}/private/talk.webm?token={REDACTED}&lang=en"
    sidecar = json.loads(sidecar_text)
    assert sidecar["url"] == sidecar["webpage_url"] == sidecar["original_url"] == shown
    assert json.loads(ledger_meta)["url"] == shown
    lines = {json.loads(line)["status"]: json.loads(line) for line in fetch_log.splitlines()}
    assert lines["fetched"]["url"] == shown and lines["fetched"]["source"]["url"] == shown
    assert lines["failed"]["url"] == shown.replace("talk.webm", "missing.wav")
    assert f"failed: {shown.replace('talk.webm', 'missing.wav')}" in result.output
    assert f"[1/2] {shown}" in result.output


def test_refetch_of_an_old_sidecar_reports_it_redacted(auth_site, tmp_path):
    """A file fetched before the fix is found again: its old sidecar does not leak through the log."""
    from sources.fetch import fetch

    cfg = load_config(None, FAST).fetch
    first = fetch([_secret_url(auth_site, "talk.webm")], "c", tmp_path, cfg)
    assert [r.status for r in first.results] == ["fetched"]
    path = Path(first.results[0].path)
    side = path.with_name(path.name + ".source.json")
    old = json.loads(side.read_text())
    old["url"] = _secret_url(auth_site, "talk.webm")  # as a fetch before this fix wrote it
    side.write_text(json.dumps(old))
    (tmp_path / "c" / "download_archive.txt").unlink()  # so yt-dlp finds the file already there
    said: list[str] = []
    again = fetch([_secret_url(auth_site, "talk.webm")], "c", tmp_path, cfg, say=said.append)
    assert [r.status for r in again.results] == ["fetched"], again.results
    _no_secrets("what fetch said", "\n".join(said))
    _no_secrets("the result", json.dumps(again.results[0].meta) + again.results[0].url)
    _no_secrets("fetch_log.jsonl", (tmp_path / "c" / "fetch_log.jsonl").read_text())
    _no_secrets("read_source_meta", read_source_meta(str(path)))
