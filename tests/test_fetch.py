"""`refinery fetch`: real yt-dlp (generic extractor) against a local HTTP server on 127.0.0.1.

The server serves media made with ffmpeg from a real clip: direct links, a podcast feed
(RSS, which yt-dlp reads as a playlist), a page with an HTML5 <audio> element, and the
failures a fetch meets: a 404, a page without media, a download cut off mid-way, a
source over the duration limit (stated in the feed, or only found after the download),
a server error that goes away on the second try.
"""

from __future__ import annotations

import json
import subprocess
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.lock import CorpusLock, CorpusLocked
from manifests.schema import LEDGER_SCHEMA
from pipeline.cli import main as cli
from pipeline.config import load_config
from sources.fetch import FetchInputError, expand_url_args, fetch, read_source_meta
from sources.discovery import discover
from tests.conftest import real_clip

FAST = ["fetch.retries=1", "fetch.backoff_base_s=0.05", "fetch.socket_timeout_s=10", "fetch.concurrency=2"]


def _ffmpeg(src: Path, dst: Path, seconds: float, *codec: str) -> bytes:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-t", str(seconds), "-ac", "1", *codec, str(dst)],
                   check=True)
    return dst.read_bytes()


def _duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


class _Site:
    """Routes of the test server: path -> (content type, body), plus the special cases."""

    def __init__(self, media_dir: Path) -> None:
        jfk = real_clip("asr_en", "jfk.flac")
        self.talk = _ffmpeg(jfk, media_dir / "talk.webm", 3.0, "-c:a", "libopus", "-b:a", "24k")
        self.ep1 = _ffmpeg(jfk, media_dir / "ep1.ogg", 2.0, "-c:a", "libvorbis")
        self.ep2 = _ffmpeg(jfk, media_dir / "ep2.mp3", 2.0, "-c:a", "libmp3lame", "-b:a", "32k")
        self.clip = _ffmpeg(jfk, media_dir / "clip.wav", 2.0, "-ar", "16000")
        self.long = _ffmpeg(jfk, media_dir / "long.webm", 6.0, "-c:a", "libopus", "-b:a", "24k")
        self.requests: list[str] = []
        self.flaky_calls = 0
        self.lock = threading.Lock()
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def feed(self) -> bytes:
        item = ('<item><title>{title}</title><guid>{guid}</guid><pubDate>{date}</pubDate>'
                '<enclosure url="{url}" type="{type}"/><itunes:duration>{dur}</itunes:duration></item>')
        items = [
            item.format(title="Episode one", guid="ep1", date="Tue, 03 Jun 2008 11:05:30 GMT", url=self.url("ep1.ogg"),
                        type="audio/ogg", dur="2"),
            item.format(title="Episode two", guid="ep2", date="Wed, 04 Jun 2008 11:05:30 GMT", url=self.url("ep2.mp3"),
                        type="audio/mpeg", dur="2"),
            item.format(title="A very long episode", guid="ep3", date="Thu, 05 Jun 2008 11:05:30 GMT",
                        url=self.url("ep3.webm"), type="audio/webm", dur="01:00:00"),
        ]
        return ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
                'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel><title>Test cast</title>'
                f'<link>{self.url("")}</link><description>a test podcast</description>{"".join(items)}'
                '</channel></rss>').encode()

    def route(self, path: str) -> tuple[int, str, bytes] | None:
        pages = {
            "/talk.webm": ("audio/webm", self.talk), "/ep1.ogg": ("audio/ogg", self.ep1),
            "/ep2.mp3": ("audio/mpeg", self.ep2), "/ep3.webm": ("audio/webm", self.long),
            "/clip.wav": ("audio/wav", self.clip), "/long.webm": ("audio/webm", self.long),
            "/feed.xml": ("application/rss+xml", self.feed()),
            "/page.html": ("text/html", b"<html><head><title>A talk</title></head><body><h1>A talk</h1>"
                                        b'<audio controls src="clip.wav"></audio></body></html>'),
            "/two.html": ("text/html", b"<html><head><title>Two clips</title></head><body>"
                                       b'<audio src="ep1.ogg"></audio><video controls><source src="ep2.mp3" '
                                       b'type="audio/mpeg"></video></body></html>'),
            "/nothing.html": ("text/html", b"<html><head><title>Nothing</title></head><body>No media here.</body></html>"),
        }
        if path == "/flaky.wav":
            with self.lock:
                self.flaky_calls += 1
                first = self.flaky_calls == 1
            return (503, "text/plain", b"busy") if first else (200, "audio/wav", self.clip)
        if path in pages:
            return (200, *pages[path])
        return None


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, site: _Site, *args, **kwargs) -> None:
        self.site = site
        super().__init__(*args, **kwargs)

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        with self.site.lock:
            self.site.requests.append(self.path)
        if self.path == "/cut.webm":  # promises more than it sends, then hangs up
            body = self.site.talk
            self.send_response(200)
            self.send_header("Content-Type", "audio/webm")
            self.send_header("Content-Length", str(len(body) + 20000))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        found = self.site.route(self.path)
        if found is None:
            self.send_error(404, "File not found")
            return
        status, ctype, body = found
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # yt-dlp reads only the headers while extracting
            pass


def serve(site, handler):
    """Serve ``site`` with ``handler`` on a free local port until the generator is closed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, site))
    server.daemon_threads = True
    site.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    yield from serve(_Site(tmp_path_factory.mktemp("site")), _Handler)


GOOD = ["talk.webm", "feed.xml", "page.html"]
BAD = ["missing.wav", "nothing.html", "cut.webm", "long.webm"]


@pytest.fixture(scope="module")
def first_fetch(site, tmp_path_factory):
    out = tmp_path_factory.mktemp("fetch_out")
    url_list = out / "urls.txt"
    url_list.write_text("# test sources\n\n" + "\n".join(site.url(p) for p in GOOD + BAD) + "\n")
    result = CliRunner().invoke(cli, ["fetch", f"@{url_list}", "--corpus", "pods", "--out", str(out),
                                      *[a for s in [*FAST, "fetch.max_duration_s=5"] for a in ("--set", s)]])
    return out, result


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".source.json").read_text())


def test_fetch_downloads_direct_links_feeds_and_pages(first_fetch):
    out, result = first_fetch
    media = out / "pods" / "media"
    expected = {"generic/talk.webm": 3.0, "generic/ep1.ogg": 2.0, "generic/ep2.mp3": 2.0, "html5/page-1.wav": 2.0}
    for rel, seconds in expected.items():
        assert (media / rel).is_file(), (rel, result.output)
        assert _duration(media / rel) == pytest.approx(seconds, abs=0.1)
    # only finished media and their sidecars are visible
    files = sorted(p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file())
    assert files == sorted([*expected, *(f"{rel}.source.json" for rel in expected)])
    assert "4 fetched, 0 already in the download archive, 5 failed" in result.output, result.output


def test_sidecars_say_where_each_file_came_from(first_fetch, site):
    out, _ = first_fetch
    media = out / "pods" / "media"
    ep1 = _sidecar(media / "generic" / "ep1.ogg")
    assert ep1["title"] == "Episode one" and ep1["id"] == "ep1" and ep1["extractor"] == "generic"
    assert ep1["url"] == site.url("feed.xml") and ep1["webpage_url"] == site.url("ep1.ogg")
    assert ep1["playlist"] == "Test cast" and ep1["playlist_index"] == 1
    assert ep1["upload_date"] == "20080603" and ep1["duration"] == pytest.approx(2.0, abs=0.1)
    assert ep1["codec"] == "vorbis" and ep1["filesize"] == len(site.ep1)
    talk = _sidecar(media / "generic" / "talk.webm")
    assert talk["url"] == talk["webpage_url"] == talk["original_url"] == site.url("talk.webm")
    assert talk["duration"] == pytest.approx(3.0, abs=0.1) and talk["codec"] == "opus"
    page = _sidecar(media / "html5" / "page-1.wav")
    assert page["title"].startswith("A talk") and page["url"] == site.url("page.html")
    for meta in (ep1, talk, page):
        assert {"channel", "uploader", "license", "fetched_at"} <= meta.keys()
        assert meta["fetched_at"].endswith("+00:00")


def test_failures_have_reasons_and_the_rest_is_fetched(first_fetch, site):
    out, result = first_fetch
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in (out / "pods" / "fetch_log.jsonl").read_text().splitlines()]
    by_status: dict[str, list[dict]] = {}
    for line in lines:
        by_status.setdefault(line["status"], []).append(line)
    assert len(by_status["fetched"]) == 4 and all(line["source"]["title"] for line in by_status["fetched"])
    failed = {(line["url"].rsplit("/", 1)[-1], line["item"]): line["reason"] for line in by_status["failed"]}
    assert "not found (HTTP 404)" in failed[("missing.wav", None)]
    assert "no audio or video found" in failed[("nothing.html", None)]
    assert "interrupted" in failed[("cut.webm", "cut")]
    assert "longer than the limit: 6 s > max_duration_s 5 s" in failed[("long.webm", "long")]
    assert "longer than the limit: 3600 s" in failed[("feed.xml", "A very long episode")]
    assert "/ep3.webm" not in site.requests  # the feed said how long it is: never downloaded
    assert "5 failed" in result.output and "failed: " + site.url("missing.wav") in result.output


def test_a_second_fetch_downloads_nothing(first_fetch, site):
    out, _ = first_fetch
    media = out / "pods" / "media"
    before = {p: p.stat().st_mtime_ns for p in media.rglob("*") if p.is_file()}
    archive = (out / "pods" / "download_archive.txt").read_text().split()
    assert archive.count("generic") == 3 and "ep1" in archive and "page-1" in archive
    result = CliRunner().invoke(cli, ["fetch", *[site.url(p) for p in GOOD], "--corpus", "pods", "--out", str(out),
                                      *[a for s in [*FAST, "fetch.max_duration_s=5"] for a in ("--set", s)]])
    # the over-long feed item is not archived (a higher limit may take it later): it fails again
    assert result.exit_code == 1, result.output
    assert "0 fetched, 4 already in the download archive, 1 failed" in result.output
    assert "A very long episode" in result.output
    assert {p: p.stat().st_mtime_ns for p in media.rglob("*") if p.is_file()} == before


def test_non_http_urls_are_refused_before_any_download(site, tmp_path):
    bad = ["ftp://example.org/a.mp3", "file:///etc/hosts", "just-words", "s3://bucket/key.wav"]
    with pytest.raises(FetchInputError) as err:
        fetch([site.url("talk.webm"), *bad], "c", tmp_path, load_config().fetch)
    for url in bad:
        assert repr(url) in str(err.value)
    assert not (tmp_path / "c").exists()
    url_list = tmp_path / "list.txt"
    url_list.write_text(f"{site.url('talk.webm')}\n# a comment\nftp://example.org/x.mp3\n")
    result = CliRunner().invoke(cli, ["fetch", f"@{url_list}", "--corpus", "c", "--out", str(tmp_path)])
    assert result.exit_code == 2 and f"{url_list}:3" in result.output and "only http" in result.output
    assert not (tmp_path / "c").exists()
    url_list.write_text(f"{site.url('talk.webm')}\n# a comment\n\nhttps://example.org/x.mp3\n{site.url('talk.webm')}\n")
    assert [r.url for r in expand_url_args([f"@{url_list}"])] == [site.url("talk.webm"), "https://example.org/x.mp3"]


def test_transient_errors_are_retried_and_size_limits_hold(site, tmp_path):
    said: list[str] = []
    cfg = load_config(None, [*FAST, "fetch.max_filesize_bytes=40000"]).fetch
    report = fetch([site.url("flaky.wav"), site.url("talk.webm")], "c", tmp_path, cfg, say=said.append)
    by_url = {r.url.rsplit("/", 1)[-1]: r for r in report.results}
    assert by_url["talk.webm"].status == "fetched"  # 10 kB
    flaky = by_url["flaky.wav"]  # 503 first (retried), then 64 kB: over the size limit
    assert flaky.status == "failed" and flaky.attempts == 2, flaky
    assert "larger than the limit" in flaky.reason and "40000" in flaky.reason
    assert any("HTTP error 503" in line and "trying again" in line for line in said)
    assert not (tmp_path / "c" / "media" / "generic" / "flaky.wav").exists()


def test_a_page_with_two_players_is_a_playlist_and_one_fetch_at_a_time(site, tmp_path):
    cfg = load_config(None, FAST).fetch
    report = fetch([site.url("two.html")], "c", tmp_path, cfg)
    assert [r.status for r in report.results] == ["fetched", "fetched"], report.results
    assert [Path(r.path).name for r in report.results] == ["two-1.ogg", "two-2.mp3"]
    assert [(r.meta["playlist"], r.meta["playlist_index"]) for r in report.results] == [("Two clips", 1), ("Two clips", 2)]
    with CorpusLock(tmp_path / "c" / ".fetch.lock", "other"), pytest.raises(CorpusLocked, match="another `refinery fetch`"):
        fetch([site.url("two.html")], "c", tmp_path, cfg)


def test_fetch_settings_leave_the_config_hash_alone():
    base = load_config().config_hash()
    limits = load_config().fetch
    assert (limits.max_duration_s, limits.max_filesize_bytes) == (14400.0, 4 * 1024**3)  # bounded by default
    assert load_config(None, ["fetch.concurrency=8", "fetch.max_duration_s=60", "fetch.format=bestaudio"]).config_hash() == base
    with pytest.raises(ValueError, match="fetch.bogus"):
        load_config(None, ["fetch.bogus=1"])


def test_read_source_meta(tmp_path):
    media = tmp_path / "a.wav"
    media.write_bytes(b"")
    assert read_source_meta(str(media)) is None and read_source_meta(None) is None
    (tmp_path / "a.wav.source.json").write_text(json.dumps({"title": "T", "id": "x"}, indent=2))
    assert json.loads(read_source_meta(str(media))) == {"title": "T", "id": "x"}
    assert discover([str(tmp_path)])[0].path == str(media.resolve()) and len(discover([str(tmp_path)])) == 1


def test_ledger_files_written_before_source_meta_still_read(tmp_path):
    layout = CorpusLayout(tmp_path, "c")
    old_schema = pa.schema([f for f in LEDGER_SCHEMA if f.name != "source_meta"])
    path = layout.ledger_commit_path("r0", 0)
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"source_uri": "/a.wav", "status": "done", "run_id": "r0"}], schema=old_schema),
                   path)
    Ledger(layout).commit("r1", 0, [{"source_uri": "/b.wav", "status": "done", "run_id": "r1", "source_meta": '{"title":"B"}'}])
    rows = {r["source_uri"]: r for r in Ledger(layout).read().to_pylist()}
    assert rows["/a.wav"]["source_meta"] is None and rows["/b.wav"]["source_meta"] == '{"title":"B"}'


@pytest.mark.slow
def test_run_takes_the_fetched_media_directory(first_fetch, ray_session, tmp_path):
    out, _ = first_fetch
    media = out / "pods" / "media"
    assert len(discover([str(media)])) == 4  # the sidecars are not sources
    fast_run = ["diarization.enabled=false", "language_id.enabled=false", "transcribe.enabled=false",
                "filters.enabled=false"]
    result = CliRunner().invoke(cli, ["run", str(media), "--corpus", "pods", "--out", str(tmp_path),
                                      "--address", ray_session, *[a for s in fast_run for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    rows = Ledger(CorpusLayout(tmp_path, "pods")).read().to_pylist()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    titles = {Path(r["source_uri"]).name: json.loads(r["source_meta"])["title"] for r in rows}
    assert titles["ep1.ogg"] == "Episode one" and titles["ep2.mp3"] == "Episode two"
    assert titles["talk.webm"] == "talk" and titles["page-1.wav"].startswith("A talk")
