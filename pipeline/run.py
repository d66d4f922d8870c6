"""One run of the pipeline over a corpus: the orchestration, and nothing else.

    discover -> lock corpus -> recover -> fingerprint (Ray) -> plan against the ledger
    -> Ray Data graph: decode -> segment (actor pool) -> write staged shards
    -> driver commits each written batch to the ledger (shards become visible)

The graph streams: sources flow through all stages at once, and the driver commits a
batch as soon as its last row arrives, so a killed run loses only uncommitted batches.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pyarrow as pa

from manifests.ids import recording_id
from manifests.incremental import FingerprintedSource, RunPlan, plan_run
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.schema import LEDGER_SCHEMA
from manifests.shards import raise_write_error
from manifests.lock import lock_corpus
from manifests.stat_cache import StatCache, source_stamp
from manifests.storage import forwarded_env, is_remote, normalise
from pipeline.config import RayConfig
from pipeline.progress import RunProgress
from pipeline.stage_order import PIPELINE, PRE_GRAPH
from sources.discovery import SourceRef, discover
from sources.fetch import read_source_meta
from stages.base import RunContext

log = logging.getLogger("refinery")


@dataclass
class RunSummary:
    run_id: str
    corpus: str
    out_dir: str
    config_hash: str
    sources: int = 0
    processed: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    segments: int = 0
    segments_kept: int = 0
    kept_seconds: float = 0.0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    recovery: str = ""
    failures: list[tuple[str, str]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # busy seconds per stage, all sources

    def describe(self) -> str:
        if self.processed == 0:
            return (f"nothing to do: all {self.sources} source(s) are already in corpus {self.corpus!r} "
                    f"under config {self.config_hash} ({self.skipped} skipped, {self.failed} unreadable); "
                    f"use --retry-failed to try failed ones again")
        speed = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        return (f"run {self.run_id}: {self.processed} source(s) processed: {self.done} done, {self.failed} failed; "
                f"{self.skipped} skipped; {self.segments} segments ({self.segments_kept} kept, "
                f"{self.kept_seconds / 3600:.3f} h kept) from {self.audio_seconds / 3600:.3f} h of audio "
                f"in {self.wall_seconds:.1f} s ({speed:.1f} s of audio per second)")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def ensure_ray(cfg: RayConfig) -> None:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        kwargs: dict = {"include_dashboard": False, "log_to_driver": cfg.log_to_driver, "logging_level": logging.WARNING}
        # Under `ray job submit` the job's driver is told its cluster by RAY_ADDRESS: attach to it
        # (starting a local Ray there would run the whole job on the head alone).
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        if address:
            kwargs["address"] = address
            # Workers of an existing cluster do not share this process's environment: hand them its
            # object-store credentials/endpoint (unless `ray job submit` already set the job's runtime_env).
            env = forwarded_env()
            if env and "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ:
                kwargs["runtime_env"] = {"env_vars": env}
        else:
            if cfg.num_cpus:
                kwargs["num_cpus"] = cfg.num_cpus
            if cfg.object_store_memory_gb:
                kwargs["object_store_memory"] = int(cfg.object_store_memory_gb * 1024**3)
        ray.init(**kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = cfg.preserve_order
    # A map call's output rows are buffered into blocks of up to this size before the next
    # stage sees them: with the default 128 MiB, a recording's row waits for the rest of its
    # call's rows (a whole enhance batch, say), and the graph stops streaming. A row carries
    # its signals, so at this size every row leaves as soon as it is done.
    ctx.target_max_block_size = int(cfg.block_size_mb * 1024 * 1024)
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # e.g. "progress bars disabled"


# Local sources up to this many bytes in all are hashed by the driver itself: a Ray job for
# them would cost more (worker start) than reading them.
DRIVER_FINGERPRINT_MAX_BYTES = 2 * 1024**3
# Local sources checked against the stat cache per lookup.
STAT_CHUNK = 100_000


def _fingerprint(sources: list[SourceRef], cfg, run: RunContext, cache: StatCache) -> list[FingerprintedSource]:
    """Content hash and size of every source, in order: from the stat cache where the source is
    unchanged (local files are checked here, with one ``stat`` each), else read and hashed (by
    the driver for a few local GB, else as Ray tasks where the data is). The cache learns the rest."""
    out: list[FingerprintedSource | None] = [None] * len(sources)
    local = [i for i, s in enumerate(sources) if s.path is not None and not s.error and not is_remote(s.path)]
    for start in range(0, len(local), STAT_CHUNK):  # a chunk's stamps at a time: bounded memory
        chunk = local[start:start + STAT_CHUNK]
        hits = cache.lookup_many([sources[i].uri for i in chunk], [source_stamp(sources[i].path) for i in chunk])
        for i, hit in zip(chunk, hits):
            if hit is not None:
                s = sources[i]
                out[i] = FingerprintedSource(s.uri, s.path, hit.sha256, hit.size_bytes, None)
    todo = [i for i, o in enumerate(out) if o is None]
    remote = [i for i in todo if sources[i].path is not None and is_remote(sources[i].path)]
    known = dict(zip(remote, cache.entries_for([sources[i].uri for i in remote])))
    items = []
    for i in todo:
        s, cached = sources[i], known.get(i)
        items.append({"index": i, "uri": s.uri, "path": s.path, "error": s.error,
                      "cached_stamp": cached.stamp if cached else None,
                      "cached_sha256": cached.sha256 if cached else None,
                      "cached_size": cached.size_bytes if cached else None})
    if items:
        log.info("hashing %d source(s) (%d unchanged since they were last hashed)",
                 len(items), len(sources) - len(items))
        hashed = _hash_rows(items, [sources[item["index"]] for item in items], cfg, run)
        for r in hashed:
            out[r["index"]] = FingerprintedSource(r["uri"], r["path"], r["sha256"], r["size_bytes"], r["error"])
        cache.update((r["uri"], r.get("stamp"), r["size_bytes"], r["sha256"]) for r in hashed if not r["error"])
    return out  # type: ignore[return-value]


def _hash_rows(items: list[dict], sources: list[SourceRef], cfg, run: RunContext) -> list[dict]:
    import ray

    from pipeline.graph import apply_stage, cluster_cpus, plan_graph

    if _small_and_local(sources):
        rows = items
        for stage in PRE_GRAPH:
            rows = stage(cfg, run).process_batch(rows)
        return rows
    ensure_ray(cfg.ray)
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 200)))
    for planned in plan_graph(PRE_GRAPH, cfg, cluster_cpus()):
        ds = apply_stage(ds, planned, cfg, run)
    return ds.take_all()


def _small_and_local(sources: list[SourceRef]) -> bool:
    total = 0
    for s in sources:
        if s.path is None or is_remote(s.path):
            return False
        try:
            total += os.stat(s.path).st_size
        except OSError:
            pass  # the fingerprint stage says why, as it does on a worker
        if total > DRIVER_FINGERPRINT_MAX_BYTES:
            return False
    return True


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if value is not None else None


# Skipped and unreadable sources' rows per ledger commit file: at a million sources the driver
# holds one such batch of columns at a time.
EARLY_ROWS_PER_COMMIT = 100_000


def commit_early_rows(committer: "_Committer", plan: RunPlan, corpus: str, run_id: str, config_hash: str,
                      id_of: Callable[[FingerprintedSource], str | None]) -> None:
    """The ledger rows of the sources a run will not process (skipped, then unreadable), built
    column-wise and committed ``EARLY_ROWS_PER_COMMIT`` at a time. ``id_of``: a source's id
    (recording or dialogue) from its fingerprint."""
    now = datetime.now(timezone.utc)
    for status, entries in (("skipped", plan.skipped), ("failed", plan.failed)):
        for start in range(0, len(entries), EARLY_ROWS_PER_COMMIT):
            chunk = entries[start:start + EARLY_ROWS_PER_COMMIT]
            srcs = [s for s, _ in chunk]
            n = len(chunk)
            columns = {
                "source_uri": [s.uri for s in srcs], "sha256": [s.sha256 for s in srcs],
                "size_bytes": [s.size_bytes for s in srcs],
                "recording_id": [id_of(s) for s in srcs],
                "corpus": pa.repeat(corpus, n), "run_id": pa.repeat(run_id, n),
                "config_hash": pa.repeat(config_hash, n), "status": pa.repeat(status, n),
                "error": [why for _, why in chunk],
                "segments": pa.repeat(0, n), "segments_kept": pa.repeat(0, n), "kept_seconds": pa.repeat(0.0, n),
                "shard_paths": pa.array([[]] * n, pa.list_(pa.string())),
                "staged_paths": pa.array([[]] * n, pa.list_(pa.string())),
                "started_at": pa.repeat(pa.scalar(now, LEDGER_SCHEMA.field("started_at").type), n),
                "finished_at": pa.repeat(pa.scalar(now, LEDGER_SCHEMA.field("finished_at").type), n),
                # A skipped source's sidecar is in the row of the run that did it: a rerun over a
                # million sources need not look for a million sidecars again.
                "source_meta": ([read_source_meta(s.path) for s in srcs] if status == "failed"
                                else pa.nulls(n, pa.string())),
            }
            arrays = [columns[f.name] if isinstance(columns.get(f.name), pa.Array)
                      else pa.array(columns[f.name], f.type) if f.name in columns
                      else pa.nulls(n, f.type) for f in LEDGER_SCHEMA]
            committer.commit_table(pa.Table.from_arrays(arrays, schema=LEDGER_SCHEMA))


class _Committer:
    """Gathers the writer's per-source rows and commits what is complete: a written batch is
    complete once all its rows arrived (its shards may hold segments of several of its
    sources); complete batches are committed together, at most every ``every_s`` seconds, so
    a run commits as it goes (a kill loses at most the last interval's work) without a ledger
    file per source."""

    def __init__(self, ledger: Ledger, layout: CorpusLayout, run_id: str, every_s: float = 0.0) -> None:
        self.ledger, self.layout, self.run_id = ledger, layout, run_id
        self.every_s = every_s
        self.pending: dict[str, list[dict]] = defaultdict(list)
        self.ready: list[dict] = []  # rows of complete batches, not committed yet
        self.commits = 0
        self.shards = 0
        self.last_commit = time.monotonic()

    def commit_rows(self, rows: list[dict]) -> None:
        if rows:
            self.ledger.commit(self.run_id, self.commits, rows)
            self.commits += 1
            self.last_commit = time.monotonic()

    def commit_table(self, table: pa.Table) -> None:
        if table.num_rows:
            self.ledger.commit_table(self.run_id, self.commits, table)
            self.commits += 1

    def add(self, row: dict) -> None:
        """Take one writer row; once its batch is complete, its rows wait for the next commit."""
        raise_write_error(row)  # the output, not the source, failed (a full disk): stop the run
        batch = self.pending[row["batch_id"]]
        batch.append(row)
        if len(batch) >= row["batch_size"]:
            del self.pending[row["batch_id"]]
            self.ready.extend(batch)

    def due_in(self) -> float | None:
        """Seconds until the complete rows are due for commit (0: now); None when there are none."""
        if not self.ready:
            return None
        return max(0.0, self.every_s - (time.monotonic() - self.last_commit))

    def flush(self) -> list[dict]:
        """Commit every complete batch in one ledger commit; the committed ledger rows."""
        batch, self.ready = self.ready, []
        if not batch:
            return []
        final_of: dict[str, str] = {}
        ledger_rows = []
        for r in batch:
            for staged in r["staged_paths"] or []:
                if staged not in final_of:
                    final_of[staged] = (staged if self.layout.writes_in_place  # object store: no move
                                        else self.layout.rel(self.layout.shard_path(self.run_id, self.shards)))
                    self.shards += 1
            ledger_rows.append({
                **{k: r.get(k) for k in ("source_uri", "sha256", "size_bytes", "recording_id", "corpus", "run_id",
                                         "config_hash", "status", "error", "duration_s", "segments_kept",
                                         "kept_seconds", "speakers", "container", "codec", "source_sample_rate",
                                         "source_channels", "warning")},
                "segments": r.get("segment_count") or 0,
                "staged_paths": list(r["staged_paths"] or []),
                "shard_paths": [final_of[s] for s in r["staged_paths"] or []],
                "started_at": _ts(r.get("started_at")), "finished_at": _ts(r.get("finished_at")),
                "source_meta": read_source_meta(r["source_uri"]),  # local sources: the uri is the path
                "worker_nodes": [{"stage": t["stage"], "node": t.get("node")} for t in r.get("stage_seconds") or []],
            })
        self.commit_rows(ledger_rows)
        for ledger_row, r in zip(ledger_rows, batch):  # not a ledger column: for the run summary only
            ledger_row["stage_seconds"] = r.get("stage_seconds")
        return ledger_rows


def run_pipeline(
    inputs: list[str],
    corpus: str,
    out_dir: str | Path,
    cfg,
    *,
    retry_failed: bool = False,
    progress: RunProgress | None = None,
) -> RunSummary:
    t0 = time.monotonic()
    # The driver's Arrow buffers (ledger, stat cache) come and go per phase: the system allocator
    # gives them back, mimalloc (Arrow's default) keeps them (peak RSS at 200k sources: 509 against 763 MiB).
    pa.set_memory_pool(pa.system_memory_pool())
    out_dir = normalise(out_dir)  # an absolute local path, or the object-store URI
    storage = cfg.storage.model_dump()
    layout = CorpusLayout(out_dir, corpus, storage, kind="segments")
    sources = discover(inputs, storage)
    run_id = new_run_id()
    config_hash = cfg.config_hash()
    summary = RunSummary(run_id=run_id, corpus=corpus, out_dir=out_dir, config_hash=config_hash, sources=len(sources))
    progress = progress or RunProgress()
    with lock_corpus(layout, run_id, ttl_s=cfg.storage.lease_ttl_s) as lock:
        layout.claim_kind()  # refuses a dialogue corpus
        ledger = Ledger(layout, fence=lock.check)
        summary.recovery = ledger.recover().describe()
        run_dir = layout.run_dir(run_id)
        layout.write_text(run_dir / "config.yaml", f"# config_hash: {config_hash}\n" + cfg.to_yaml())
        layout.write_text(run_dir / "inputs.json", json.dumps(inputs, indent=1))
        log.info("run %s on corpus %r: %d source(s) found; config %s", run_id, corpus, len(sources), config_hash)
        if not sources:
            log.warning("no sources found in %s", " ".join(inputs))

        run = RunContext(out_dir=out_dir, corpus=corpus, run_id=run_id, config_hash=config_hash)
        cache = StatCache.load(layout)
        fingerprinted = _fingerprint(sources, cfg, run, cache) if sources else []
        cache.save()
        plan = plan_run(fingerprinted, ledger.index(config_hash), retry_failed)
        committer = _Committer(ledger, layout, run_id, every_s=cfg.output.commit_every_s)
        commit_early_rows(committer, plan, corpus, run_id, config_hash,
                          lambda s: recording_id(s.uri, s.sha256) if s.sha256 else None)
        summary.skipped = len(plan.skipped)
        summary.failed = len(plan.failed)
        summary.failures = [(s.uri, why) for s, why in plan.failed]
        summary.processed = len(plan.process)
        if plan.process:
            log.info("processing %d source(s); %d skipped, %d unreadable", len(plan.process), len(plan.skipped), len(plan.failed))
            # The stamp each hash was computed under: decode refuses a source that changed since.
            cached = cache.entries_for([s.uri for s in plan.process])
            items = [{"source_uri": s.uri, "path": s.path, "sha256": s.sha256, "size_bytes": s.size_bytes,
                      "recording_id": recording_id(s.uri, s.sha256),
                      "stamp": c.stamp if c is not None and c.sha256 == s.sha256 else None}
                     for s, c in zip(plan.process, cached)]
            ensure_ray(cfg.ray)  # only now: a rerun with nothing to do starts no Ray at all
            finished = stream_through_graph(items, PIPELINE, cfg, run, committer, progress, cfg.ray.fuse_model_stages)
            add_finished(summary, finished)
        summary.wall_seconds = time.monotonic() - t0
        layout.write_text(run_dir / "summary.json", json.dumps(asdict(summary), indent=1))
    return summary


def add_finished(summary, finished: list[dict], parts: str = "segments", parts_kept: str = "segments_kept") -> None:
    """Add the committed ledger rows of processed sources to ``summary`` (its ``parts`` /
    ``parts_kept`` fields count the ledger's ``segments`` / ``segments_kept``)."""
    for r in finished:
        summary.audio_seconds += r.get("duration_s") or 0.0
        setattr(summary, parts, getattr(summary, parts) + (r.get("segments") or 0))
        setattr(summary, parts_kept, getattr(summary, parts_kept) + (r.get("segments_kept") or 0))
        summary.kept_seconds += r.get("kept_seconds") or 0.0
        for t in r.get("stage_seconds") or []:
            summary.stage_seconds[t["stage"]] = round(summary.stage_seconds.get(t["stage"], 0.0) + t["seconds"], 3)
        if r["status"] == "done":
            summary.done += 1
        else:
            summary.failed += 1
            summary.failures.append((r["source_uri"], r["error"]))


def stream_through_graph(items: list[dict], stages: tuple, cfg, run: RunContext, committer: _Committer,
                         progress: RunProgress, fuse: str) -> list[dict]:
    """Run ``items`` through the Ray Data graph of ``stages``, committing written batches as
    they complete (``committer.every_s`` apart at most, whether or not more rows arrive);
    the committed ledger rows, in commit order."""
    import ray

    from pipeline.graph import apply_stage, cluster_cpus, cluster_nodes, plan_graph

    ds = ray.data.from_items(items, override_num_blocks=len(items))
    planned = plan_graph(stages, cfg, cluster_cpus(), fuse=fuse, nodes=cluster_nodes())
    log.info("graph: %s", " -> ".join(
        f"{p.name} ({p.placement.pool.max_size if p.placement.pool else 'tasks'} x {p.placement.resources.num_cpus:g} CPU)"
        for p in planned))
    for stage in planned:
        ds = apply_stage(ds, stage, cfg, run)
    finished: list[dict] = []

    def commit_ready() -> None:
        for r in committer.flush():
            finished.append(r)
            progress.source_finished(r["status"], r.get("duration_s"), r.get("segments") or 0)

    progress.start(len(items))
    rows = _rows_or_ticks(ds, committer.due_in)
    try:
        for row in rows:
            if row is not None:
                committer.add(row)
            if committer.due_in() == 0.0:
                commit_ready()
        commit_ready()
    finally:
        rows.close()
        progress.close()
    if committer.pending:
        raise RuntimeError(f"{len(committer.pending)} written batch(es) arrived incomplete; they were not committed")
    return finished


_END = object()


def _rows_or_ticks(ds, wait_s: Callable[[], float | None]):
    """The dataset's rows, read on a thread; None whenever ``wait_s()`` seconds pass with no row
    (so the caller can commit on time while the graph is busy). Errors of the graph re-raise here.
    Closing the generator (the caller stopped, e.g. on a full disk) stops the reading and lets
    go of the graph, so an in-process caller gets its Ray workers back."""
    rows: queue.Queue = queue.Queue(maxsize=256)
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                rows.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        iterator = iter(ds.iter_rows())
        try:
            for row in iterator:
                if not hand_over(row):
                    return
            hand_over(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            hand_over(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator over the streaming executor: shuts the graph down

    threading.Thread(target=read, name="graph-rows", daemon=True).start()
    try:
        while True:
            try:
                item = rows.get(timeout=wait_s())
            except queue.Empty:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
