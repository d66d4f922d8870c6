"""Object-store inputs and outputs against a real S3-compatible server (moto in server mode).

Nothing is mocked on the client side: s3fs, pyarrow and the Ray workers talk HTTP to the
moto server on loopback. The first run goes through the CLI in a subprocess attached to the
suite's Ray, with credentials and endpoint only in its environment (which the driver hands
to the workers); the second runs in-process with them in the config's ``storage`` section.
"""

from __future__ import annotations

import logging
import os
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest
import soundfile as sf

from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.lock import CorpusLocked, LeaseLock, lock_corpus
from manifests.planned_segment import PlannedSegment
from manifests.schema import SEGMENT_SCHEMA
from audio_io.flac import encode_flac
from manifests.segment_rows import RecordingContext, build_segment_rows
from manifests.shards import ShardLimits, write_shards
from inspection.stats import read_segments
from manifests.storage import StorageConfig
from pipeline.config import load_config
from stages.base import RunContext
from stages.decode import DecodeStage
from stages.fingerprint import FingerprintStage
from tests.conftest import real_clip

pytestmark = pytest.mark.slow

BUCKET = "refinery"
KEY, SECRET = "testing", "testing"
FAST = ["enhance.enabled=false", "diarization.enabled=false", "language_id.enabled=false", "transcribe.enabled=false",
        "filters.enabled=false", "output.sources_per_write=2"]
CLIPS = {"jfk_a.flac": ("jfk.flac", 0.0, 6.0), "jfk_b.wav": ("jfk.flac", 4.0, 10.0),
         "libri.wav": ("librispeech-1995-1837-0001.wav", 0.0, 6.0)}


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer
    import s3fs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key=KEY, secret=SECRET, skip_instance_cache=True,
                          use_listings_cache=False)
    fs.mkdir(BUCKET)
    storage = {"endpoint_url": endpoint, "options": {"key": KEY, "secret": SECRET}}
    yield {"endpoint": endpoint, "fs": fs, "storage": storage,
           "env": {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": endpoint,
                   "AWS_DEFAULT_REGION": "us-east-1"},
           "set": [f"storage.endpoint_url={endpoint}", f"storage.options={{key: {KEY}, secret: {SECRET}}}"]}
    server.stop()


@pytest.fixture(scope="module")
def clips(tmp_path_factory, s3):
    """Three short real clips and a corrupt file, locally and under s3://refinery/in/."""
    local = tmp_path_factory.mktemp("clips")
    for name, (src, start, end) in CLIPS.items():
        audio, sr = sf.read(real_clip("asr_en", src), dtype="float32")
        sf.write(local / name, audio[int(start * sr): int(end * sr)], sr)
    (local / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEthis is not audio at all")
    fs = s3["fs"]
    for f in sorted(local.iterdir()):
        fs.put_file(str(f), f"{BUCKET}/in/{f.name}")
    fs.pipe_file(f"{BUCKET}/in/notes.txt", b"not media: ignored in a listing")
    fs.pipe_file(f"{BUCKET}/in/.hidden/x.wav", b"hidden: ignored in a listing")
    return local


def _refinery(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("refinery")), *args]


@pytest.fixture(scope="module")
def s3_run(ray_session, s3, clips, tmp_path_factory):
    listing = tmp_path_factory.mktemp("list") / "list.txt"
    listing.write_text(f"# one missing object\ns3://{BUCKET}/in/missing.wav\n")
    cmd = _refinery("run", f"s3://{BUCKET}/in/", f"@{listing}", f"s3://{BUCKET}/nothing/", "--corpus", "c",
                    "--out", f"s3://{BUCKET}/out", "--address", ray_session, *sum((["--set", s] for s in FAST), []))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **s3["env"]}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, time.monotonic() - t0


def _layout(s3, corpus="c") -> CorpusLayout:
    return CorpusLayout(f"s3://{BUCKET}/out", corpus, s3["storage"])


def test_s3_run_writes_ledger_rows_with_reasons(s3_run, s3):
    proc, _ = s3_run
    rows = {r["source_uri"]: r for r in Ledger(_layout(s3)).read().to_pylist()}
    named = {f"s3://{BUCKET}/in/{n}" for n in [*CLIPS, "bad.wav", "missing.wav"]}
    assert set(rows) == named | {f"s3://{BUCKET}/nothing/"}
    for name in CLIPS:
        r = rows[f"s3://{BUCKET}/in/{name}"]
        assert r["status"] == "done" and r["segments"] >= 1 and r["sha256"], r
    bad = rows[f"s3://{BUCKET}/in/bad.wav"]
    assert bad["status"] == "failed" and "not a readable media file" in bad["error"]
    assert "/refinery-" not in bad["error"]  # names the object, not the temporary copy
    missing = rows[f"s3://{BUCKET}/in/missing.wav"]
    assert missing["status"] == "failed" and missing["error"] == "cannot read the object: not found"
    nothing = rows[f"s3://{BUCKET}/nothing/"]
    assert nothing["status"] == "failed" and "not found" in nothing["error"]
    assert "3 done, 3 failed" in proc.stdout
    # the manifest CLI reads the object-store output too
    env = {**os.environ, **s3["env"]}
    stats = subprocess.run(_refinery("manifest", "stats", f"s3://{BUCKET}/out", "--json"), env=env, capture_output=True,
                           text=True, timeout=120)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["corpora"]["c"]["sources_done"] == 3


def test_shards_are_readable_over_s3_and_match_the_ledger(s3_run, s3):
    layout = _layout(s3)
    ledger = Ledger(layout).read().to_pylist()
    named = sorted({p for r in ledger for p in r["shard_paths"] or []})
    assert named and all(p.startswith("segments/run=") for p in named)
    listed = sorted(layout.rel(p) for p in s3["fs"].find(f"{BUCKET}/out/c/segments"))
    assert listed == named  # a clean run leaves no orphan objects
    native = pafs.S3FileSystem(access_key=KEY, secret_key=SECRET, endpoint_override=s3["endpoint"], scheme="http",
                               region="us-east-1")
    table = pads.dataset([f"{BUCKET}/out/c/{p}" for p in named], format="parquet", filesystem=native).to_table()
    assert table.schema.remove_metadata().equals(SEGMENT_SCHEMA)
    assert table.num_rows == sum(r["segments"] for r in ledger) > 0
    assert read_segments(layout, ["segment_id"]).num_rows == table.num_rows
    run_id = ledger[0]["run_id"]
    for name in ("config.yaml", "inputs.json", "summary.json"):
        assert s3["fs"].exists(f"{BUCKET}/out/c/runs/{run_id}/{name}")
    assert not s3["fs"].exists(f"{BUCKET}/out/c/.lock")  # the lease was given back


def test_second_run_skips_everything(s3_run, s3):
    from pipeline.run import run_pipeline

    before = s3["fs"].find(f"{BUCKET}/out/c/segments")
    summary = run_pipeline([f"s3://{BUCKET}/in/"], "c", f"s3://{BUCKET}/out", load_config(None, FAST + s3["set"]))
    assert summary.processed == 0 and summary.skipped == 4 and summary.failed == 0  # bad.wav: failed before
    assert s3["fs"].find(f"{BUCKET}/out/c/segments") == before
    latest = [r for r in Ledger(_layout(s3)).read().to_pylist() if r["run_id"] == summary.run_id]
    assert sorted(r["status"] for r in latest) == ["skipped"] * 4
    assert sum("already done" in r["error"] for r in latest) == 3


def _segments(n: int, rec: str = "r1") -> list[dict]:
    ctx = RecordingContext(rec, f"s3://{BUCKET}/in/{rec}.wav", "k", "run1", "h")
    x = np.zeros(24000 * 2 * n, dtype=np.float32)
    segments = [PlannedSegment(2 * i, 2 * i + 1.5) for i in range(n)]
    cells = [encode_flac(x[int(s.start * 24000):int(s.end * 24000)], 24000) for s in segments]
    return build_segment_rows(ctx, segments, 24000, cells, [None] * n)


def test_interrupted_commit_leaves_nothing_visible_and_recover_deletes_orphans(s3):
    layout = CorpusLayout(f"s3://{BUCKET}/out", "k", s3["storage"])
    ledger = Ledger(layout)
    # A run killed after its workers wrote shards, before the ledger commit object exists.
    written = write_shards(_segments(5), layout, "run1", ShardLimits(2, 10**9))
    keys = [layout.rel(p) for p, _ in written]
    assert len(keys) == 3 and all(s3["fs"].exists(str(p)) for p, _ in written)
    assert ledger.read().num_rows == 0 and ledger.shard_files() == [] and read_segments(layout).num_rows == 0
    report = ledger.recover()
    assert sorted(report.discarded) == sorted(keys)
    assert not any(s3["fs"].exists(str(p)) for p, _ in written)
    # The full protocol: shards, then the commit object; recover keeps what is committed.
    written = write_shards(_segments(2, "r2"), layout, "run2", ShardLimits(100, 10**9))
    rel = [layout.rel(p) for p, _ in written]
    row = {"source_uri": "s3://x/r2.wav", "sha256": "s2", "recording_id": "r2", "corpus": "k", "run_id": "run2",
           "config_hash": "h", "status": "done", "segments": 2, "staged_paths": rel, "shard_paths": rel}
    path = ledger.commit("run2", 0, [row])
    assert s3["fs"].exists(str(path)) and ledger.recover().discarded == []
    assert [layout.rel(p) for p in ledger.shard_files()] == rel and read_segments(layout).num_rows == 2
    assert ledger.index("h").done == {"s2": "run2"}
    # A run that lost its lease does not commit.
    def lost():
        raise CorpusLocked("lease lost")
    with pytest.raises(CorpusLocked):
        Ledger(layout, fence=lost).commit("run2", 1, [row])
    assert not s3["fs"].exists(str(layout.ledger_commit_path("run2", 1)))


def test_lease_lock_refuses_a_second_holder_and_allows_takeover_after_expiry(s3):
    layout = CorpusLayout(f"s3://{BUCKET}/out", "lease", s3["storage"])
    first = LeaseLock(layout.fs, layout.lock_path, "first", ttl_s=1.0, renew=False).acquire()
    with pytest.raises(CorpusLocked, match="being written by another run.*run first"):
        lock_corpus(layout, "second").acquire()
    time.sleep(1.2)  # the first holder died without renewing: its lease expires
    with pytest.raises(CorpusLocked, match="lease expired"):
        first.check()
    second = LeaseLock(layout.fs, layout.lock_path, "second", ttl_s=1.5).acquire()
    first.release()  # the old holder must not delete the new holder's lease
    assert b'"second"' in s3["fs"].cat_file(str(layout.lock_path))
    time.sleep(2.0)  # a live holder renews: still held past its first expiry
    second.check()
    with pytest.raises(CorpusLocked, match="run second"):
        LeaseLock(layout.fs, layout.lock_path, "third").acquire()
    second.release()
    assert not s3["fs"].exists(str(layout.lock_path))
    LeaseLock(layout.fs, layout.lock_path, "fourth", renew=False).acquire().release()


def test_discover_lists_prefixes_globs_and_single_objects(s3, clips):
    from sources.discovery import discover

    found = discover([f"s3://{BUCKET}/in/libri.wav", f"s3://{BUCKET}/in/*.flac", f"s3://{BUCKET}/in"], s3["storage"])
    uris = [f.uri for f in found]
    assert uris == [f"s3://{BUCKET}/in/{n}" for n in ("libri.wav", "jfk_a.flac", "bad.wav", "jfk_b.wav")]
    assert all(f.path == f.uri and f.error is None for f in found)  # notes.txt and .hidden/ are left out
    nobucket = discover(["s3://no-such-bucket/x/"], s3["storage"])
    assert nobucket[0].error and "not found" in nobucket[0].error


def test_object_reads_fail_with_clear_reasons_and_leave_no_temp_files(s3, clips, tmp_path):
    def with_storage(**storage):
        cfg = load_config()
        cfg.storage = StorageConfig(**storage)
        return cfg, RunContext(out_dir=str(tmp_path), corpus="c", run_id="r", config_hash=cfg.config_hash())

    decoder = DecodeStage(*with_storage(**s3["storage"], temp_dir=str(tmp_path)))
    ok = decoder.decode_row({"source_uri": "u", "path": f"s3://{BUCKET}/in/libri.wav"})
    assert ok["status"] == "ok" and ok["duration_s"] == pytest.approx(6.0, abs=0.01)
    gone = decoder.decode_row({"source_uri": "u", "path": f"s3://{BUCKET}/in/gone.wav"})
    assert gone["status"] == "failed" and gone["error"] == "cannot read the object: not found"
    assert list(tmp_path.iterdir()) == []  # temporary copies are removed, on success and failure
    fingerprinter = FingerprintStage(*with_storage(endpoint_url=s3["endpoint"], anon=True))
    denied = fingerprinter.fingerprint_row({"path": f"s3://{BUCKET}/in/libri.wav"})
    assert denied["sha256"] is None and denied["error"].startswith("cannot read the object: access denied")


def test_file_uris_for_input_and_output(ray_session, clips, tmp_path):
    from pipeline.run import run_pipeline

    listing = tmp_path / "list.txt"
    listing.write_text(f"file://{clips / 'libri.wav'}\n")
    summary = run_pipeline([f"file://{clips}", f"@file://{listing}"], "f", f"file://{tmp_path}/out",
                           load_config(None, FAST))
    assert summary.out_dir == str((tmp_path / "out").resolve())
    assert (summary.sources, summary.done, summary.failed) == (4, 3, 1)  # libri.wav named twice: one source
    layout = CorpusLayout(tmp_path / "out", "f")
    visible = sorted(layout.rel(p) for p in layout.segments_dir.glob("run=*/part-*.parquet"))
    assert visible and visible == sorted({p for r in Ledger(layout).read().to_pylist() for p in r["shard_paths"] or []})
