"""Issue 14 item 2: a source replaced between its hash and its decode is never stored under the
old content's hash. Decode checks the stamp its hash was computed under; the row fails as
'changed while being read', and the next run hashes and processes the new content once."""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pyarrow.dataset as pads

import pipeline.run as run_module
from manifests.incremental import CHANGED_WHILE_READ, FingerprintedSource, plan_run
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger, LedgerIndex
from manifests.stat_cache import source_stamp
from pipeline.config import load_config
from pipeline.run import run_pipeline
from sources.discovery import fingerprint
from stages.base import RunContext
from stages.decode import DecodeStage
from stages.fingerprint import FingerprintStage
from tests.conftest import real_clip

JFK = real_clip("asr_en", "jfk.flac")
LIBRI = real_clip("asr_en", "librispeech-1995-1837-0001.wav")


def _stages(tmp_path):
    cfg = load_config()
    run = RunContext(out_dir=str(tmp_path / "out"), corpus="c", run_id="r", config_hash=cfg.config_hash())
    return FingerprintStage(cfg, run), DecodeStage(cfg, run)


def _hashed(fingerprint: FingerprintStage, path) -> dict:
    row = fingerprint.fingerprint_row({"path": str(path), "error": None})
    assert row["sha256"] and row["stamp"]
    return {"path": str(path), "source_uri": str(path), "size_bytes": row["size_bytes"], "sha256": row["sha256"],
            "stamp": row["stamp"]}


def test_an_unchanged_source_decodes(tmp_path):
    fingerprint, decode = _stages(tmp_path)
    src = tmp_path / "a.flac"
    shutil.copy(JFK, src)
    out = decode.decode_row(_hashed(fingerprint, src))
    assert out["status"] == "ok" and out["duration_s"] > 10


def test_a_source_replaced_after_its_hash_fails_as_changed(tmp_path):
    fingerprint, decode = _stages(tmp_path)
    src = tmp_path / "a.wav"
    shutil.copy(LIBRI, src)
    row = _hashed(fingerprint, src)
    other = tmp_path / "other.flac"
    shutil.copy(JFK, other)
    os.replace(other, src)  # a new file under the old name, as an editor or a sync tool does
    out = decode.decode_row(row)
    assert out["status"] == "failed"
    assert out["error"].startswith(CHANGED_WHILE_READ) and str(src) in out["error"]


def test_a_source_rewritten_in_place_with_its_old_mtime_put_back_fails_as_changed(tmp_path):
    fingerprint, decode = _stages(tmp_path)
    src = tmp_path / "a.wav"
    shutil.copy(LIBRI, src)
    row = _hashed(fingerprint, src)
    st = os.stat(src)
    data = bytearray(src.read_bytes())
    data[-1000:] = bytes(1000)  # same size, other samples
    src.write_bytes(bytes(data))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(src).st_mtime_ns == st.st_mtime_ns and os.stat(src).st_size == st.st_size
    out = decode.decode_row(row)
    assert out["status"] == "failed" and out["error"].startswith(CHANGED_WHILE_READ)


def test_a_changed_source_is_not_a_failure_that_sticks():
    src = FingerprintedSource("/x.wav", "/x.wav", "a" * 64, 10)
    index = LedgerIndex(failed={"a" * 64: f"{CHANGED_WHILE_READ}: /x.wav was modified"})
    assert plan_run([src], index, retry_failed=False).process == [src]
    sticky = LedgerIndex(failed={"a" * 64: "cannot decode: invalid data"})
    assert plan_run([src], sticky, retry_failed=False).process == []


def test_a_file_replaced_between_hash_and_decode_is_ingested_once_under_its_own_hash(ray_session, tmp_path,
                                                                                    monkeypatch):
    """End to end: the file is swapped right after the run planned it (the moment the race
    needs). The run fails the row; the rerun processes the new content once; nothing of the old
    content's hash is stored with the new content's segments."""
    src = tmp_path / "in" / "talk.wav"
    src.parent.mkdir()
    shutil.copy(LIBRI, src)
    out = tmp_path / "out"
    real_plan = run_module.plan_run
    old_stamp = source_stamp(str(src))

    def plan_then_replace(*args, **kwargs):
        plan = real_plan(*args, **kwargs)
        replacement = tmp_path / "new.wav"
        shutil.copy(JFK, replacement)  # other content, other length
        os.replace(replacement, src)
        return plan

    monkeypatch.setattr(run_module, "plan_run", plan_then_replace)
    first = run_pipeline([str(src)], "c", out, load_config())
    monkeypatch.setattr(run_module, "plan_run", real_plan)
    assert source_stamp(str(src)) != old_stamp
    assert (first.done, first.failed) == (0, 1)
    assert first.failures[0][1].startswith(CHANGED_WHILE_READ)

    second = run_pipeline([str(src)], "c", out, load_config())
    assert (second.processed, second.done) == (1, 1)
    third = run_pipeline([str(src)], "c", out, load_config())
    assert third.processed == 0

    layout = CorpusLayout(out, "c")
    ledger = Ledger(layout).read().to_pylist()
    done = [r for r in ledger if r["status"] == "done"]
    assert len(done) == 1 and done[0]["sha256"] == fingerprint(str(src))[0]
    # The JFK clip is 11 s; the LibriSpeech one is not: the segments are the new content's.
    assert 10.5 < done[0]["duration_s"] < 11.5
    segments = pads.dataset([str(p) for p in Ledger(layout).shard_files()], format="parquet").to_table(
        columns=["segment_id", "recording_id"]).to_pylist()
    assert segments and {s["recording_id"] for s in segments} == {done[0]["recording_id"]}
    assert max(Counter(s["segment_id"] for s in segments).values()) == 1
