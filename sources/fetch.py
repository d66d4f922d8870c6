"""Stage 0, fetch: download sources named by URL into a corpus's raw store, through yt-dlp.

    OUT/<corpus>/media/<extractor>/<id>.<ext>                 the downloaded media (best audio)
    OUT/<corpus>/media/<extractor>/<id>.<ext>.source.json     where it came from (the sidecar)
    OUT/<corpus>/download_archive.txt                         yt-dlp's archive: fetched ids, never fetched twice
    OUT/<corpus>/fetch_log.jsonl                              one line per item fetched, skipped or failed
    OUT/<corpus>/_fetching/                                   partial downloads (resumed by the next fetch)

``refinery run OUT/<corpus>/media`` takes the result directly: the sidecars and partial
files are not media, so the run reads only the downloaded files, and it copies each
file's sidecar into its ledger row (``source_meta``, see ``read_source_meta``).

A URL may name one video, a playlist, a channel, a podcast feed or a page with embedded
media; yt-dlp's Python API does the work (``yt_dlp.YoutubeDL``, never a shell). Each
URL gets its own YoutubeDL in a thread pool; a playlist is expanded first and its items
are downloaded one by one, so one bad item fails alone. Transient errors (network,
HTTP 429/5xx, a cut-off download) are retried with exponential backoff; everything else
fails at once with a reason a person can act on. Nothing is ever half-visible: yt-dlp
downloads into ``_fetching`` and moves a file into ``media`` when it is complete, and the
file is probed with ffprobe before it counts as fetched.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from sources.redact import DEFAULT_SECRET_PARAMS, redact_meta, redact_text, redact_url

log = logging.getLogger("refinery")

SIDECAR_SUFFIX = ".source.json"
MEDIA_DIR = "media"
PARTIAL_DIR = "_fetching"  # "_": skipped by datasets/pyarrow globbing; not "_staging", which a run's recovery empties
ARCHIVE_FILE = "download_archive.txt"
LOG_FILE = "fetch_log.jsonl"
OUTTMPL = "%(extractor)s/%(id)s.%(ext)s"
_MAX_DEPTH = 6  # URL hops and nesting: a channel -> its tabs -> playlists -> videos
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})

Status = Literal["fetched", "archived", "failed"]


class FetchConfig(BaseModel):
    """Stage 0: yt-dlp downloads of URLs, playlists, channels and feeds (`refinery fetch`).

    None of these settings changes what a run makes of the fetched files, so the whole
    section stays out of ``config_hash``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    format: str = Field("bestaudio/best", min_length=1, description="yt-dlp format selector: the best audio-only "
                        "stream, else the best stream with audio")
    retries: int = Field(3, ge=0, description="yt-dlp retries per request and fragment, and how often a URL is "
                         "tried again after a transient failure (network error, HTTP 429/5xx, cut-off download)")
    backoff_base_s: float = Field(2.0, ge=0, description="first wait before a retry; doubles with each further retry")
    backoff_max_s: float = Field(60.0, ge=0, description="longest wait between two retries")
    rate_limit_bytes_per_s: int | None = Field(None, gt=0, description="download rate limit per download; None: no limit")
    # Bounded by default, as decode is: a 24 h stream or a mislabelled archive costs disk and time before any
    # decode limit can refuse it. 4 h is decode.max_duration_s; 4 GiB holds 4 h of the 'best' fallback (video).
    max_duration_s: float | None = Field(14400.0, gt=0, description="longer sources fail (before download when the "
                                         "site states the duration, else after it); None: no limit")
    max_filesize_bytes: int | None = Field(4 * 1024**3, gt=0, description="larger files fail (before download when "
                                           "the size is known); None: no limit")
    concurrency: int = Field(2, ge=1, description="URLs fetched at the same time (one yt-dlp instance each)")
    socket_timeout_s: float = Field(30.0, gt=0, description="network timeout of one request")
    secret_query_params: list[str] = Field(list(DEFAULT_SECRET_PARAMS), description="query parameters whose values "
                                           "are credentials (names, case-insensitive): the download uses the full URL, "
                                           "but what fetch prints, logs and stores (fetch log, sidecars, so the "
                                           "ledger's source_meta) has these values replaced by REDACTED and any "
                                           "user:password@ removed")


class FetchInputError(ValueError):
    """URL arguments that cannot be fetched; nothing was downloaded."""


@dataclass(frozen=True)
class FetchRequest:
    url: str
    origin: str = "argument"  # or "<list file>:<line>"


@dataclass
class FetchResult:
    url: str  # the URL as requested, redacted (sources.redact.redact_url): no credentials
    status: Status
    item: str | None = None  # the item's own address inside a playlist/channel/feed, or its title
    path: str | None = None  # the media file, fetched or already there
    reason: str | None = None  # why it failed
    attempts: int = 1
    meta: dict[str, Any] | None = None  # the sidecar


@dataclass
class FetchReport:
    corpus: str
    media_dir: str
    log_path: str
    results: list[FetchResult] = field(default_factory=list)
    wall_seconds: float = 0.0

    def _count(self, status: Status) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def fetched(self) -> int:
        return self._count("fetched")

    @property
    def archived(self) -> int:
        return self._count("archived")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def failures(self) -> list[FetchResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def describe(self) -> str:
        return (f"{self.fetched} fetched, {self.archived} already in the download archive, {self.failed} failed "
                f"({self.wall_seconds:.1f} s); media in {self.media_dir}, log in {self.log_path}")


# ---- URL arguments ---------------------------------------------------------------------
def refuse_reason(url: str) -> str | None:
    """Why ``url`` cannot be fetched, or None when it is an http(s) URL."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return None if parsed.hostname else "no host in the URL"
    if not parsed.scheme or "://" not in url:
        return "not a URL (only http:// and https:// URLs can be fetched; local files go straight to `refinery run`)"
    return f"'{parsed.scheme}://' URLs are not fetched (only http:// and https://)"


def expand_url_args(args: Sequence[str], secret_params: Sequence[str] | None = None) -> list[FetchRequest]:
    """URL arguments and ``@list.txt`` files (one URL a line, ``#`` comments) -> requests, each URL once.

    Raises FetchInputError naming every argument or line that is not an http(s) URL (the
    URLs redacted with ``secret_params``). The requests keep the full URLs, for the download.
    """
    requests: list[FetchRequest] = []
    refused: list[str] = []
    for arg in args:
        arg = arg.strip()
        if arg.startswith("@"):
            list_path = Path(arg[1:])
            try:
                lines = list_path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise FetchInputError(f"cannot read URL list {list_path}: {exc.strerror}") from None
            for n, line in enumerate(lines, 1):
                line = line.strip()
                if line and not line.startswith("#"):
                    requests.append(FetchRequest(line, f"{list_path}:{n}"))
        elif arg:
            requests.append(FetchRequest(arg))
    for req in requests:
        why = refuse_reason(req.url)
        if why:
            where = "" if req.origin == "argument" else f" ({req.origin})"
            refused.append(f"{redact_url(req.url, secret_params)!r}{where}: {why}")
    if refused:
        raise FetchInputError("refused, nothing was fetched:\n  " + "\n  ".join(refused))
    seen: set[str] = set()
    unique = [r for r in requests if not (r.url in seen or seen.add(r.url))]
    if not unique:
        raise FetchInputError("no URLs given")
    return unique


def corpus_root(out_dir: str | Path, corpus: str) -> Path:
    """``out_dir/<corpus>`` on the local disk (yt-dlp writes local files); the corpus name rule of the layout."""
    if "://" in str(out_dir):
        raise FetchInputError(f"--out {out_dir}: fetch writes to a local directory (copy the media to an object "
                              "store afterwards, or run on the fetched directory)")
    if not corpus or "/" in corpus or corpus.startswith((".", "_")):
        raise FetchInputError(f"invalid corpus name {corpus!r}: use a plain name without '/' or a leading '.'/'_'")
    return Path(out_dir).resolve() / corpus


# ---- the ledger side -------------------------------------------------------------------
def sidecar_path(media_path: str | Path) -> Path:
    media_path = Path(media_path)
    return media_path.with_name(media_path.name + SIDECAR_SUFFIX)


def read_source_meta(path: str | None, secret_params: Sequence[str] | None = None) -> str | None:
    """The fetch sidecar of a local media file as compact JSON text, or None when it has none.

    Every URL in it is redacted again (``secret_params``, default the default list): sidecars
    written before fetch redacted its URLs never bring credentials into the ledger.
    """
    if not path:
        return None
    try:
        text = sidecar_path(path).read_text(encoding="utf-8")
    except (OSError, ValueError):  # no sidecar (the usual case), or a path that is not a local file
        return None
    try:
        meta = redact_meta(json.loads(text), secret_params)
        return json.dumps(meta, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    except ValueError:
        log.warning("ignoring unreadable source sidecar of %s", path)
        return None


# ---- the archive shared by the threads -------------------------------------------------
class DownloadArchive:
    """yt-dlp's download archive file, shared by all YoutubeDL instances of one fetch.

    Given to yt-dlp as its ``download_archive`` option (yt-dlp takes a file name or a
    set-like object). One in-memory set behind a lock, so concurrent URLs see each other's
    downloads at once; each new id is appended to the file in yt-dlp's own format
    (``<extractor key lower> <id>``), so ``yt-dlp --download-archive`` reads it too.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._ids: set[str] = set()
        if path.exists():
            self._ids = {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}

    def __contains__(self, archive_id: object) -> bool:
        with self._lock:
            return archive_id in self._ids

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)

    def __bool__(self) -> bool:
        return True  # yt-dlp skips the archive check for a falsy archive

    def add(self, archive_id: str) -> None:
        with self._lock:
            if archive_id in self._ids:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(archive_id + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._ids.add(archive_id)


# ---- one fetch -------------------------------------------------------------------------
def fetch(
    urls: Sequence[str],
    corpus: str,
    out_dir: str | Path,
    cfg: FetchConfig,
    *,
    say: Callable[[str], None] | None = None,
) -> FetchReport:
    """Download ``urls`` (http(s) URLs or ``@list`` files) into ``out_dir/<corpus>``.

    ``say`` receives one line per step for people (default: the "refinery" logger).
    Raises FetchInputError before any download when an argument is not an http(s) URL,
    CorpusLocked when another fetch fills the same corpus.
    """
    from manifests.lock import CorpusLock, CorpusLocked

    t0 = time.monotonic()
    requests = expand_url_args(urls, cfg.secret_query_params)
    root = corpus_root(out_dir, corpus)
    fetch_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    try:
        lock = CorpusLock(root / ".fetch.lock", fetch_id).acquire()
    except CorpusLocked:
        raise CorpusLocked(f"another `refinery fetch` is filling corpus {corpus!r}; wait for it to finish") from None
    try:
        fetcher = _Fetcher(root, cfg, say or log.info)
        report = FetchReport(corpus=corpus, media_dir=str(fetcher.media_dir), log_path=str(fetcher.log_path))
        fetcher.say(f"fetching {len(requests)} URL(s) into {fetcher.media_dir} "
                    f"({len(fetcher.archive)} item(s) already in the download archive)")
        workers = max(1, min(cfg.concurrency, len(requests)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
            per_url = list(pool.map(lambda ir: fetcher.fetch_url(ir[1], ir[0] + 1, len(requests)),
                                    enumerate(requests)))
    finally:
        lock.release()
    report.results = [r for results in per_url for r in results]
    report.wall_seconds = time.monotonic() - t0
    return report


@dataclass
class _Unit:
    """One item to download: an (unresolved or resolved) yt-dlp info dict, plus playlist context."""

    info: dict[str, Any]
    extra: dict[str, Any]
    label: str
    retry: tuple[str, str | None] | None = None  # (url, extractor key) to extract again for a retry
    tries_before: int = 0  # failed tries of the look-up that produced this item


class _Outcome:
    """What yt-dlp did during one item, as seen by the hooks of its YoutubeDL."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, dict]] = []  # (media path, sidecar)
        self.rejected: str | None = None
        self.messages: deque[str] = deque(maxlen=20)
        self.request_url = ""


class _Failure(Exception):
    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.reason, self.transient = reason, transient
        self.attempts = 1


class _Fetcher:
    def __init__(self, root: Path, cfg: FetchConfig, say: Callable[[str], None]) -> None:
        self.root, self.cfg = root, cfg
        self.media_dir = root / MEDIA_DIR
        self.partial_dir = root / PARTIAL_DIR
        self.log_path = root / LOG_FILE
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.archive = DownloadArchive(root / ARCHIVE_FILE)
        self._say = say
        self._log_lock = threading.Lock()

    def say(self, text: str) -> None:
        self._say(self.redact_text(text))  # every line for people: no URL leaves with its credentials

    def shown(self, url: str) -> str:
        """``url`` as it may be printed, logged or stored (the download itself uses the full URL)."""
        return redact_url(url, self.cfg.secret_query_params)

    def redact_text(self, text: Any) -> Any:
        return redact_text(text, self.cfg.secret_query_params)

    # ---- yt-dlp ------------------------------------------------------------------------
    def _backoff(self, n: int) -> float:
        """Seconds to wait before retry ``n + 1`` (n from 0)."""
        return min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2.0 ** n)

    def _ydl(self, outcome: _Outcome):
        import yt_dlp

        cfg = self.cfg

        def match_filter(info: dict, *, incomplete: bool = False) -> str | None:
            why = _over_limit(info, cfg)
            if why and info.get("_type", "video") == "video":
                outcome.rejected = why
            return why

        opts: dict[str, Any] = {
            "format": cfg.format,
            "paths": {"home": str(self.media_dir), "temp": str(self.partial_dir)},
            "outtmpl": {"default": OUTTMPL},
            "download_archive": self.archive,
            "retries": cfg.retries,
            "fragment_retries": cfg.retries,
            "extractor_retries": cfg.retries,
            "retry_sleep_functions": {"http": self._backoff, "fragment": self._backoff, "extractor": self._backoff},
            "socket_timeout": cfg.socket_timeout_s,
            "ratelimit": cfg.rate_limit_bytes_per_s,
            "max_filesize": cfg.max_filesize_bytes,
            "match_filter": match_filter,
            "logger": _YtdlpLog(outcome, cfg.secret_query_params),
            "quiet": True,
            "noprogress": True,
            "updatetime": False,
            "cachedir": False,
            "ignoreerrors": False,
            "noplaylist": False,
        }
        ydl = yt_dlp.YoutubeDL(opts)
        ydl.add_post_processor(_record_source_pp(self, outcome)(ydl), when="after_move")
        return ydl

    # ---- one URL -----------------------------------------------------------------------
    def fetch_url(self, req: FetchRequest, index: int, total: int) -> list[FetchResult]:
        prefix = f"[{index}/{total}] {self.shown(req.url)}"
        self.say(f"{prefix}: looking up")
        try:
            results = self._fetch_url(req, prefix)
        except Exception as exc:  # noqa: BLE001  (a bug or an unexpected yt-dlp error: this URL fails, others go on)
            log.debug("fetch of %s crashed: %s", self.shown(req.url), self.redact_text(traceback.format_exc()))
            results = [FetchResult(self.shown(req.url), "failed",
                                   reason=self.redact_text(f"unexpected error: {type(exc).__name__}: {exc}"))]
            self.say(f"{prefix}: failed: {results[0].reason}")
            self._log(results[0])
        return results

    def _fetch_url(self, req: FetchRequest, prefix: str) -> list[FetchResult]:
        shown = self.shown(req.url)  # what the results say; the download uses req.url
        outcome = _Outcome()
        outcome.request_url = req.url
        results: list[FetchResult] = []
        with self._ydl(outcome) as ydl:
            for unit in self._units(ydl, req, {"_type": "url", "url": req.url}, {}, 0, prefix, results):
                results.append(self._download(ydl, outcome, req, unit, prefix))
        if not results:
            results.append(self._finish(FetchResult(shown, "failed", reason="nothing to fetch: the playlist is empty"),
                                        prefix))
        return results

    def _units(self, ydl, req: FetchRequest, info: dict, extra: dict, depth: int, prefix: str,
               results: list[FetchResult]) -> Iterator[_Unit]:
        """Expand a URL, playlist, channel or feed into items to download, one by one.

        Failures and archive hits found on the way go straight into ``results``.
        """
        shown = self.shown(req.url)  # what the results say; the download uses req.url
        kind = info.get("_type", "video")
        if depth > _MAX_DEPTH:
            yield _Unit(info, extra, _label(info, self.cfg))
        elif kind == "url":  # resolve (without downloading) to see whether it is one item or many
            url, ie_key = info["url"], info.get("ie_key")
            item = _label(info, self.cfg) if depth else None
            why = _over_limit(info, self.cfg) if depth else None  # a flat playlist entry may state its duration
            if why:
                results.append(self._finish(FetchResult(shown, "failed", item=item, reason=why), prefix))
                return
            try:
                resolved, attempts = self._retrying(f"{prefix}: {item!r}" if item else prefix, lambda: ydl.extract_info(
                    url, ie_key=ie_key, download=False, process=False))
            except _Failure as f:
                results.append(self._finish(FetchResult(shown, "failed", item=item, reason=f.reason,
                                                        attempts=f.attempts), prefix))
                return
            if resolved is None:  # yt-dlp found its id in the archive before extracting
                results.append(self._finish(FetchResult(shown, "archived", item=item, attempts=attempts), prefix))
            elif resolved.get("_type", "video") == "video":
                yield _Unit(resolved, extra, _label(resolved, self.cfg), retry=(url, ie_key), tries_before=attempts - 1)
            else:
                yield from self._units(ydl, req, resolved, extra, depth + 1, prefix, results)
        elif kind in ("playlist", "multi_video", "compat_list"):
            title = info.get("title") or info.get("id")
            entries = info.get("entries") or []
            count = len(entries) if isinstance(entries, list) else None
            self.say(f"{prefix}: playlist {title!r}" + (f" with {count} item(s)" if count is not None else ""))
            here = {"playlist": title, "playlist_id": info.get("id"), "playlist_title": info.get("title"),
                    "playlist_webpage_url": info.get("webpage_url"), "playlist_count": count,
                    "playlist_uploader": info.get("uploader"), "playlist_channel": info.get("channel")}
            for i, entry in enumerate(entries, 1):
                if entry:
                    sub_extra = {**extra, **{k: v for k, v in here.items() if v is not None}, "playlist_index": i}
                    yield from self._units(ydl, req, entry, sub_extra, depth + 1, prefix, results)
        else:  # a resolved video, or a url_transparent entry (yt-dlp resolves it and keeps the entry's fields)
            yield _Unit(info, extra, _label(info, self.cfg))

    def _download(self, ydl, outcome: _Outcome, req: FetchRequest, unit: _Unit, prefix: str) -> FetchResult:
        shown = self.shown(req.url)  # what the results say; the download uses req.url
        why = _over_limit(unit.info, self.cfg)  # a feed or playlist may state the duration: no request at all
        if why:
            return self._finish(FetchResult(shown, "failed", item=unit.label, reason=why), prefix)
        state = {"first": True}

        def attempt():
            outcome.saved.clear()
            outcome.rejected = None
            outcome.messages.clear()
            if state["first"] or unit.retry is None:
                state["first"] = False
                return ydl.process_ie_result(dict(unit.info), download=True, extra_info=dict(unit.extra))
            url, ie_key = unit.retry  # extract again: the first answer may hold links that expired
            return ydl.extract_info(url, ie_key=ie_key, download=True, extra_info=dict(unit.extra))

        try:
            info, attempts = self._retrying(f"{prefix}: {unit.label!r}", attempt)
        except _Failure as f:
            return self._finish(FetchResult(shown, "failed", item=unit.label, reason=f.reason,
                                            attempts=unit.tries_before + f.attempts), prefix)
        attempts += unit.tries_before
        if outcome.saved:
            path, meta = outcome.saved[-1]
            return self._finish(FetchResult(shown, "fetched", item=unit.label, path=path, attempts=attempts,
                                            meta=meta), prefix)
        if info is None or ydl.in_download_archive(info):
            return self._finish(FetchResult(shown, "archived", item=unit.label, attempts=attempts), prefix)
        if outcome.rejected:
            reason = outcome.rejected
        else:
            reason = _reason_from_messages(outcome.messages) or "nothing was downloaded (no usable format)"
        return self._finish(FetchResult(shown, "failed", item=unit.label, reason=reason, attempts=attempts), prefix)

    def _retrying(self, what: str, call: Callable[[], Any]) -> tuple[Any, int]:
        """Run ``call`` (a yt-dlp call); retry transient failures with backoff. Returns (result, attempts)."""
        from yt_dlp.utils import DownloadError

        for n in range(self.cfg.retries + 1):
            try:
                return call(), n + 1
            except DownloadError as exc:
                failure = _classify(exc)
            if not failure.transient or n == self.cfg.retries:
                failure.attempts = n + 1
                raise failure
            delay = self._backoff(n)
            self.say(f"{what}: {failure.reason}; trying again in {delay:.3g} s ({n + 1}/{self.cfg.retries})")
            time.sleep(delay)
        raise AssertionError("unreachable")

    # ---- reporting ---------------------------------------------------------------------
    def _finish(self, result: FetchResult, prefix: str) -> FetchResult:
        result.reason = self.redact_text(result.reason)  # yt-dlp's messages may quote the URL
        item = f" {result.item!r}" if result.item else ""
        if result.status == "fetched":
            meta = result.meta or {}
            dur = f"{meta['duration']:.1f} s, " if isinstance(meta.get("duration"), (int, float)) else ""
            size = f"{(meta.get('filesize') or 0) / 1e6:.2f} MB"
            self.say(f"{prefix}: fetched{item} ({dur}{size}) -> {self._rel(result.path)}")
        elif result.status == "archived":
            self.say(f"{prefix}:{item} already fetched before (in the download archive), skipped")
        else:
            self.say(f"{prefix}:{item} failed: {result.reason}")
        self._log(result)
        return result

    def _rel(self, path: str) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def _log(self, result: FetchResult) -> None:
        line = {
            "status": result.status, "url": result.url, "item": result.item,
            "path": self._rel(result.path) if result.path else None,
            "reason": result.reason, "attempts": result.attempts, "logged_at": _now(),
            "source": result.meta,
        }
        line = redact_meta(line, self.cfg.secret_query_params)
        text = json.dumps(line, ensure_ascii=False, sort_keys=False) + "\n"
        with self._log_lock:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(text)

    # ---- after a download --------------------------------------------------------------
    def record(self, info: dict, outcome: _Outcome) -> dict:
        """Probe the downloaded file, enforce the duration limit, write its sidecar.

        A file that fails is deleted, and the PostProcessingError raised carries the reason
        (``refinery_reason``); yt-dlp then records nothing in the archive.
        """
        from audio_io.decode import DecodeError, probe

        path = Path(info["filepath"])
        side = sidecar_path(path)
        if not info.get("__real_download", True) and side.exists():  # the file was already here
            try:
                meta = redact_meta(json.loads(side.read_text(encoding="utf-8")), self.cfg.secret_query_params)
                outcome.saved.append((str(path), meta))
                return meta
            except ValueError:
                pass
        try:
            audio = probe(str(path), timeout_s=min(120.0, self.cfg.socket_timeout_s * 4))
        except DecodeError as exc:
            _remove(path)
            raise _rejected(f"the downloaded file is not usable audio: {exc}") from None
        duration = audio.duration_s or info.get("duration")  # the file's own, over what the site or feed claims
        limit = self.cfg.max_duration_s
        if limit is not None and audio.duration_s is not None and audio.duration_s > limit:
            _remove(path)
            raise _rejected(f"longer than the limit: {audio.duration_s:.0f} s > max_duration_s {limit:g} s")
        meta = redact_meta(_source_meta(info, outcome.request_url, path, audio, duration), self.cfg.secret_query_params)
        tmp = side.with_name("." + side.name + ".tmp")
        tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, side)
        outcome.saved.append((str(path), meta))
        return meta


def _label(info: dict, cfg: FetchConfig) -> str:
    from yt_dlp.utils import unsmuggle_url

    url = info.get("webpage_url") or info.get("url")
    label = str(info.get("title") or (unsmuggle_url(url)[0] if url else None) or info.get("id") or "item")
    return redact_text(label, cfg.secret_query_params)  # a URL as the label: shown and logged, so redacted


def _over_limit(info: dict, cfg: FetchConfig) -> str | None:
    """Why yt-dlp's metadata already rules the item out (before any download)."""
    if info.get("is_live") or info.get("live_status") == "is_live":
        return "a live stream (it has no end to download)"
    if info.get("live_status") == "is_upcoming":
        return "not yet available (an upcoming stream or premiere)"
    duration = info.get("duration")
    if cfg.max_duration_s is not None and isinstance(duration, (int, float)) and duration > cfg.max_duration_s:
        return f"longer than the limit: {duration:.0f} s > max_duration_s {cfg.max_duration_s:g} s"
    size = info.get("filesize") or info.get("filesize_approx")
    if cfg.max_filesize_bytes is not None and isinstance(size, (int, float)) and size > cfg.max_filesize_bytes:
        return f"larger than the limit: {int(size)} bytes > max_filesize_bytes {cfg.max_filesize_bytes}"
    return None


def _reason_from_messages(messages: deque[str]) -> str | None:
    """A failure reason from what yt-dlp said, for downloads it gave up without raising."""
    for msg in reversed(messages):
        if "larger than max-filesize" in msg:
            detail = msg.split("(", 1)[-1].split(")", 1)[0]  # "N bytes > M bytes"
            return f"larger than the limit: {detail} (max_filesize_bytes)"
    for msg in reversed(messages):
        if msg.startswith(("WARNING", "ERROR")):
            return f"nothing was downloaded ({_clean(msg)})"
    return None


def _classify(exc: BaseException) -> _Failure:
    """A yt-dlp DownloadError -> a reason for people, and whether trying again may help."""
    from yt_dlp.networking.exceptions import HTTPError, IncompleteRead, TransportError
    from yt_dlp.utils import ContentTooShortError, UnsupportedError

    chain: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is c for c in chain):
            continue
        chain.append(e)
        info = getattr(e, "exc_info", None)
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__, info[1] if info else None]
    message = _clean(str(getattr(exc, "msg", None) or exc))
    for e in chain:
        if getattr(e, "refinery_reason", None):
            return _Failure(e.refinery_reason, transient=False)
    for e in chain:
        if isinstance(e, HTTPError):
            status = e.status
            if status in (404, 410):
                return _Failure(f"not found (HTTP {status})", transient=False)
            if status in (401, 403):
                return _Failure(f"access denied (HTTP {status}): private, removed, region- or login-restricted", False)
            if status == 429:
                return _Failure("too many requests (HTTP 429): the site is rate limiting us", transient=True)
            return _Failure(f"HTTP error {status} {e.reason or ''}".rstrip(), transient=status in _TRANSIENT_HTTP)
    for e in chain:
        if isinstance(e, UnsupportedError):
            return _Failure("no audio or video found at this address (not a media file, a feed or a page with "
                            "embedded media that yt-dlp understands)", transient=False)
    for e in chain:
        if isinstance(e, (ContentTooShortError, IncompleteRead)):
            return _Failure(f"download interrupted before the end ({message})", transient=True)
    lowered = message.lower()
    if any(s in lowered for s in ("bytes read", "more expected", "content too short", "did not get any data blocks")):
        return _Failure(f"download interrupted before the end ({message})", transient=True)
    for e in chain:
        if isinstance(e, (TransportError, TimeoutError, ConnectionError)):
            return _Failure(f"network error ({message})", transient=True)
    if "unsupported url" in lowered:
        return _Failure("no audio or video found at this address", transient=False)
    if "requested format is not available" in lowered:
        return _Failure(f"no audio format available ({message})", transient=False)
    return _Failure(message or type(exc).__name__, transient=False)


def _clean(message: str) -> str:
    message = message.replace("\r", "").strip()
    for prefix in ("ERROR: ", "WARNING: ", "[download] ", "Got error: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return message.split("; please report this issue")[0].strip()


def _rejected(reason: str):
    from yt_dlp.utils import PostProcessingError

    err = PostProcessingError(reason)
    err.refinery_reason = reason
    return err


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _source_meta(info: dict, request_url: str, path: Path, audio, duration: float | None) -> dict[str, Any]:
    import yt_dlp
    from yt_dlp.utils import unsmuggle_url

    g = info.get
    plain = lambda key: unsmuggle_url(g(key))[0] if g(key) else None  # noqa: E731  (drop yt-dlp's private fragment)
    return {
        "extractor": g("extractor"),
        "extractor_key": g("extractor_key"),
        "id": g("id"),
        "title": g("title"),
        "channel": g("channel"),
        "channel_id": g("channel_id"),
        "channel_url": g("channel_url"),
        "uploader": g("uploader"),
        "uploader_id": g("uploader_id"),
        "upload_date": g("upload_date"),
        "timestamp": g("timestamp"),
        "duration": float(duration) if duration is not None else None,
        "license": g("license"),
        "language": g("language"),
        "url": request_url,
        "webpage_url": plain("webpage_url"),
        "original_url": plain("original_url"),
        "playlist": g("playlist"),
        "playlist_id": g("playlist_id"),
        "playlist_index": g("playlist_index"),
        "playlist_webpage_url": g("playlist_webpage_url"),
        "format_id": g("format_id"),
        "ext": g("ext"),
        "acodec": g("acodec"),
        "abr": g("abr"),
        "file": path.name,
        "filesize": path.stat().st_size,
        "container": audio.container,
        "codec": audio.codec,
        "sample_rate": audio.sample_rate,
        "channels": audio.channels,
        "fetched_at": _now(),
        "fetched_with": f"yt-dlp {yt_dlp.version.__version__}",
    }


class _YtdlpLog:
    """yt-dlp's logger: keeps the last messages of the current item (failure reasons), debug-logs them."""

    def __init__(self, outcome: _Outcome, secret_params: Sequence[str] | None = None) -> None:
        self.outcome = outcome
        self.secret_params = secret_params

    def debug(self, msg: str) -> None:
        msg = redact_text(msg, self.secret_params)  # "[generic] Extracting URL: http://user:pw@..."
        self.outcome.messages.append(msg)
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        self.debug(msg)

    def warning(self, msg: str) -> None:
        self.debug(msg if msg.startswith("WARNING") else f"WARNING: {msg}")

    def error(self, msg: str) -> None:
        self.debug(msg if msg.startswith("ERROR") else f"ERROR: {msg}")


_PP_CLASS = None


def _record_source_pp(fetcher: _Fetcher, outcome: _Outcome):
    """A yt-dlp post-processor (after the move into media/) that probes the file and writes its sidecar."""
    global _PP_CLASS
    if _PP_CLASS is None:
        from yt_dlp.postprocessor.common import PostProcessor

        class RecordSourcePP(PostProcessor):
            def __init__(self, downloader, fetcher, outcome):
                super().__init__(downloader)
                self.fetcher, self.outcome = fetcher, outcome

            def run(self, info):
                self.fetcher.record(info, self.outcome)
                return [], info

        _PP_CLASS = RecordSourcePP
    cls = _PP_CLASS
    return lambda ydl: cls(ydl, fetcher, outcome)
