"""Issue 14 item 11: a file replaced at its path keeps its old content's segments visible until
`refinery manifest retire` retires them, exactly once.

The rules and the commit on generated ledgers (fast), then the pipeline on real clips: a file
is replaced by another real clip, retired, then its first content is put back and processed again.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

import manifests.ledger as ledger_module
from inspection.cli import manifest
from inspection.stats import stats
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.lock import lock_corpus
from manifests.retire import retire
from manifests.schema import LEDGER_SCHEMA
from tests.conftest import real_clip

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _row(uri: str, sha: str, run: int, status: str = "done", segments: int = 2) -> dict:
    return {"source_uri": uri, "sha256": sha * 64, "recording_id": f"{Path(uri).stem}-{sha * 12}", "corpus": "c",
            "run_id": f"run{run}", "config_hash": "h", "status": status, "segments": segments if status == "done" else 0,
            "segments_kept": segments if status == "done" else 0, "kept_seconds": 1.5 * segments if status == "done" else 0.0,
            "duration_s": 10.0, "error": "cannot decode" if status == "failed" else None,
            "shard_paths": [], "staged_paths": [], "finished_at": T0 + timedelta(hours=run)}


def _commit(layout: CorpusLayout, run: int, rows: list[dict]) -> None:
    Ledger(layout).commit_table(f"run{run}", 0, pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA))


@pytest.fixture
def layout(tmp_path) -> CorpusLayout:
    """Run 1 did a, b, c, d; run 2 saw a replaced (x), b unchanged, c moved to e, d replaced by a
    broken file; d2 was deleted before run 2 (no row)."""
    layout = CorpusLayout(tmp_path / "out", "c")
    _commit(layout, 1, [_row("/in/a.wav", "a", 1), _row("/in/b.wav", "b", 1), _row("/in/c.wav", "c", 1),
                        _row("/in/d.wav", "d", 1), _row("/in/d2.wav", "f", 1)])
    _commit(layout, 2, [_row("/in/a.wav", "x", 2), _row("/in/b.wav", "b", 2, "skipped"),
                        _row("/in/e.wav", "c", 2, "skipped"), _row("/in/d.wav", "y", 2, "failed")])
    return layout


def _retired(layout: CorpusLayout) -> list[tuple[str, str]]:
    return sorted(zip(*(Ledger(layout).retired().column(c).to_pylist() for c in ("recording_id", "run_id"))))


def test_retire_takes_replaced_content_only_and_once(layout):
    dry = retire(Ledger(layout), dry_run=True)
    assert [(r["source_uri"], r["sha256"][0], r["by_sha256"][0], r["by_status"]) for r in dry.retired] == [
        ("/in/a.wav", "a", "x", "done"), ("/in/d.wav", "d", "y", "failed")]  # not moved c, unchanged b, deleted d2
    assert dry.commit_file is None and _retired(layout) == []
    files = layout.files(layout.ledger_dir, "run=*/commit-*.parquet")

    report = retire(Ledger(layout))
    assert (report.sources, report.segments, report.segments_kept) == (2, 4, 4)
    assert report.commit_file.startswith("ledger/run=_retired/commit-")
    assert len(layout.files(layout.ledger_dir, "run=*/commit-*.parquet")) == len(files) + 1
    assert _retired(layout) == [("a-" + "a" * 12, "run1"), ("d-" + "d" * 12, "run1")]
    rows = [r for r in Ledger(layout).read().to_pylist() if r["status"] == "retired"]
    assert {r["error"] for r in rows} == {f"superseded by {'x' * 12} (done in run run2)",
                                          f"superseded by {'y' * 12} (failed in run run2)"}
    assert all(r["segments"] is None and r["shard_paths"] == [] for r in rows)

    again = retire(Ledger(layout))
    assert again.retired == [] and again.retired_before == 2 and again.commit_file is None
    assert "nothing to retire" in again.describe()[0]
    assert len(layout.files(layout.ledger_dir, "run=*/commit-*.parquet")) == len(files) + 1

    # stats: the retired content is a source of its own status, the rest unchanged
    s = stats(layout.out_dir, "c")["corpora"]["c"]
    assert (s["sources_done"], s["sources_retired"], s["sources_failed"]) == (4, 2, 1)  # b c x f; a d; y


def test_retired_content_counts_as_not_done_and_runs_again(layout):
    retire(Ledger(layout))
    done = Ledger(layout).index("h").done
    assert "a" * 64 not in done and "d" * 64 not in done and done["x" * 64] == "run2" and done["c" * 64] == "run1"
    # a put back at its path (run 3 processes it again): current again, x now superseded
    _commit(layout, 3, [_row("/in/a.wav", "a", 3)])
    assert Ledger(layout).index("h").done["a" * 64] == "run3"
    report = retire(Ledger(layout))
    assert [(r["sha256"][0], r["run_id"]) for r in report.retired] == [("x", "run2")]
    assert ("a-" + "a" * 12, "run3") not in _retired(layout)
    s = stats(layout.out_dir, "c")["corpora"]["c"]
    assert (s["sources_done"], s["sources_retired"]) == (4, 2)  # a done again (b c f too); x and d retired


def test_a_kill_before_the_retire_commit_lands_changes_nothing(layout, monkeypatch):
    before = Ledger(layout).read().to_pylist()

    def torn_write(table, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ledger_module, "write_parquet_atomic", torn_write)
    with pytest.raises(OSError):
        retire(Ledger(layout))
    assert Ledger(layout).read().to_pylist() == before
    monkeypatch.undo()
    assert retire(Ledger(layout)).sources == 2 and _retired(layout) == [("a-" + "a" * 12, "run1"),
                                                                        ("d-" + "d" * 12, "run1")]
    Ledger(layout).compact()  # compaction folds the retired rows in like any other
    assert len(_retired(layout)) == 2 and retire(Ledger(layout)).retired == []


def test_cli_refuses_unknown_dialogue_and_locked_corpora(layout, tmp_path):
    out = str(layout.out_dir)
    missing = CliRunner().invoke(manifest, ["retire", out, "--corpus", "nope"])
    assert missing.exit_code == 1 and missing.output.startswith("Error: ") and "no corpus 'nope'" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    with lock_corpus(layout, "a-running-run"):
        locked = CliRunner().invoke(manifest, ["retire", out, "--corpus", "c"])
        dry = CliRunner().invoke(manifest, ["retire", out, "--corpus", "c", "--dry-run"])  # reads only
    assert locked.exit_code == 1 and "a-running-run" in locked.output and len(locked.output.strip().splitlines()) == 1
    assert dry.exit_code == 0 and "would retire" in dry.output and _retired(layout) == []
    dialogues = CorpusLayout(layout.out_dir, "talks", kind="dialogues")
    dialogues.claim_kind()
    _commit(dialogues, 1, [_row("/in/t.jsonl#L1", "t", 1)])
    refused = CliRunner().invoke(manifest, ["retire", out, "--corpus", "talks"])
    assert refused.exit_code == 1 and "retire works on segment corpora" in refused.output


def test_retire_on_an_object_store(tmp_path):
    """The same rows on S3 (moto): the retire commit is one conditional PUT under the corpus lease."""
    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        storage = {"endpoint_url": f"http://{host}:{port}", "options": {"key": "testing", "secret": "testing"}}
        # moto keeps its buckets per process, not per server: a bucket of this test's own
        # (test_object_store's "refinery" may exist already in the suite's process).
        s3fs.S3FileSystem(endpoint_url=storage["endpoint_url"], key="testing", secret="testing").mkdir("retire-test")
        layout = CorpusLayout("s3://retire-test/out", "c", storage)
        _commit(layout, 1, [_row("/in/a.wav", "a", 1), _row("/in/b.wav", "b", 1)])
        _commit(layout, 2, [_row("/in/a.wav", "x", 2), _row("/in/b.wav", "b", 2, "skipped")])
        with lock_corpus(layout, "retire-test") as lock:
            report = retire(Ledger(layout, fence=lock.check))
        assert [(r["sha256"][0], r["run_id"]) for r in report.retired] == [("a", "run1")]
        assert report.commit_file.startswith("ledger/run=_retired/commit-")
        assert _retired(layout) == [("a-" + "a" * 12, "run1")] and retire(Ledger(layout)).retired == []
        assert "a" * 64 not in Ledger(layout).index("h").done
    finally:
        server.stop()


# ---- the pipeline on real clips -----------------------------------------------------------------
CORPUS = "swap"
LEAN = ["output.max_shard_rows=2", "enhance.enabled=false", "diarization.enabled=false", "language_id.enabled=false",
        "transcribe.enabled=false", "filters.enabled=false"]
FIRST = real_clip("asr_en", "librispeech-1995-1837-0001.wav")  # what talk.wav holds first
SECOND = real_clip("asr_zh", "BAC009S0764W0121.wav")  # what replaces it
OTHER = real_clip("asr_zh", "funasr_asr_example.wav")  # a file nobody touches


def _invoke(*args) -> object:
    return CliRunner().invoke(manifest, [str(a) for a in args])


def _run(src: Path, out: Path):
    from pipeline.cli import main as cli

    result = CliRunner().invoke(cli, ["run", str(src), "--corpus", CORPUS, "--out", str(out),
                                      *[a for item in LEAN for a in ("--set", item)]])
    assert result.exit_code == 0, result.output
    return result


def _live_ledger(out: Path) -> dict:
    """The ledger's own account of what is live: done rows no retired row names."""
    rows = Ledger(CorpusLayout(out, CORPUS)).read().to_pylist()
    retired = {(r["recording_id"], r["run_id"]) for r in rows if r["status"] == "retired"}
    live = [r for r in rows if r["status"] == "done" and (r["recording_id"], r["run_id"]) not in retired]
    return {"segments": sum(r["segments"] for r in live), "kept": sum(r["segments_kept"] for r in live),
            "recordings": sorted((r["recording_id"], r["run_id"]) for r in live), "retired": len(retired)}


def _query(out: Path, sql: str) -> list[dict]:
    result = _invoke("query", out, sql, "--corpus", CORPUS, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _views(out: Path) -> dict:
    """What stats and query see, to compare with the ledger."""
    s = json.loads(_invoke("stats", out, "--corpus", CORPUS, "--json").output)["corpora"][CORPUS]
    q = _query(out, "SELECT count(*) AS n, count(DISTINCT segment_id) AS ids, count(*) FILTER (WHERE kept) AS kept "
                    "FROM segments")[0]
    recs = _query(out, "SELECT DISTINCT recording_id, run_id FROM segments ORDER BY 1, 2")
    return {"stats": s, "query": q, "recordings": sorted((r["recording_id"], r["run_id"]) for r in recs)}


@pytest.mark.slow
def test_a_replaced_file_is_retired_exactly_once(ray_session, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    talk = src / "talk.wav"
    shutil.copyfile(FIRST, talk)
    shutil.copyfile(OTHER, src / "other.wav")
    _run(src, out)
    talk.unlink()  # the file is replaced at the same path by other content
    shutil.copyfile(SECOND, talk)
    _run(src, out)

    before, ledger = _views(out), _live_ledger(out)
    uri = str(talk.resolve())
    old = [r for r in Ledger(CorpusLayout(out, CORPUS)).read().to_pylist() if r["source_uri"] == uri and r["status"] == "done"]
    assert len(old) == 2 and old[0]["sha256"] != old[1]["sha256"]
    # before retiring, both contents of talk.wav count: 3 done sources, every segment of the 3 done rows
    assert before["stats"]["sources_done"] == 3 and before["stats"]["sources_retired"] == 0
    assert before["stats"]["segments"] == before["query"]["n"] == ledger["segments"] > 0
    assert before["recordings"] == ledger["recordings"] and len(ledger["recordings"]) == 3
    assert len(_query(out, f"SELECT DISTINCT recording_id FROM segments WHERE source_uri = '{uri}'")) == 2
    first_old = min(old, key=lambda r: r["finished_at"])
    old_ids = [r["segment_id"] for r in _query(out, f"SELECT segment_id FROM segments WHERE recording_id = "
                                                    f"'{first_old['recording_id']}'")]
    assert len(old_ids) == first_old["segments"] > 0
    print(f"before retire: stats {before['stats']['segments']} segments ({before['stats']['segments_kept']} kept), "
          f"{before['stats']['sources_done']} sources done; ledger {ledger['segments']}")

    commits = sorted(CorpusLayout(out, CORPUS).files(CorpusLayout(out, CORPUS).ledger_dir))
    dry = _invoke("retire", out, "--corpus", CORPUS, "--dry-run")
    assert dry.exit_code == 0 and "would retire" in dry.output and "dry run: nothing changed" in dry.output, dry.output
    assert sorted(CorpusLayout(out, CORPUS).files(CorpusLayout(out, CORPUS).ledger_dir)) == commits
    assert _views(out) == before

    done = _invoke("retire", out, "--corpus", CORPUS)
    assert done.exit_code == 0, done.output
    assert (f"retired the old content of 1 replaced source(s): 1 recording(s), {first_old['segments']} segment(s)"
            in done.output), done.output
    print(done.output)
    after, ledger = _views(out), _live_ledger(out)
    assert ledger["retired"] == 1 and (first_old["recording_id"], first_old["run_id"]) not in ledger["recordings"]
    assert after["stats"]["sources_done"] == 2 and after["stats"]["sources_retired"] == 1
    assert after["stats"]["segments"] == after["query"]["n"] == after["query"]["ids"] == ledger["segments"]
    assert after["stats"]["segments_kept"] == after["query"]["kept"] == ledger["kept"]
    assert after["stats"]["segments"] == before["stats"]["segments"] - first_old["segments"]
    assert after["recordings"] == ledger["recordings"]
    assert len(_query(out, f"SELECT DISTINCT recording_id FROM segments WHERE source_uri = '{uri}'")) == 1
    print(f"after retire: stats {after['stats']['segments']} segments, ledger {ledger['segments']}")
    # show, ls, verify and the README's `datasets` snippet agree
    hidden = _invoke("show", out, old_ids[0], "--corpus", CORPUS)
    assert hidden.exit_code == 1 and "is no segment_id" in hidden.output
    source = json.loads(_invoke("show", out, first_old["recording_id"], "--corpus", CORPUS, "--json").output)
    assert [r["status"] for r in source["sources"][0]["ledger"]] == ["done", "retired"]
    assert source["sources"][0]["segments"] and all(s["run_id"] != first_old["run_id"]
                                                    for s in source["sources"][0]["segments"])
    listed = _invoke("ls", out, "--corpus", CORPUS, "--status", "retired")
    assert listed.exit_code == 0 and len(listed.output.strip().splitlines()) == 1 and "superseded by" in listed.output
    verified = _invoke("verify", out, "--corpus", CORPUS, "--no-audio")
    assert verified.exit_code == 0 and "1 retired recording(s)" in verified.output, verified.output
    import datasets

    layout_ledger = Ledger(CorpusLayout(out, CORPUS))
    ds = datasets.load_dataset("parquet", data_files=[str(p) for p in layout_ledger.shard_files()],
                               filters=layout_ledger.live_filter(), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == ledger["segments"] and len(set(ds["segment_id"])) == len(ds)

    again = _invoke("retire", out, "--corpus", CORPUS)
    assert again.exit_code == 0 and "nothing to retire" in again.output and "1 recording(s) retired before" in again.output
    assert _views(out) == after

    # The first content comes back at the path: processed again (its retired row no longer counts as
    # done), its segment ids live once (the old run's copies stay hidden); retiring again takes the second.
    talk.unlink()
    shutil.copyfile(FIRST, talk)
    _run(src, out)
    back, ledger = _views(out), _live_ledger(out)
    assert (first_old["recording_id"], first_old["run_id"]) not in back["recordings"]
    assert any(rec == first_old["recording_id"] for rec, _ in back["recordings"])
    assert back["stats"]["segments"] == back["query"]["n"] == back["query"]["ids"] == ledger["segments"]
    assert _invoke("verify", out, "--corpus", CORPUS, "--no-audio").exit_code == 0
    last = _invoke("retire", out, "--corpus", CORPUS)
    assert last.exit_code == 0 and "1 recording(s)" in last.output, last.output
    final, ledger = _views(out), _live_ledger(out)
    # sources by content: the first content done again, the other file done, the second content retired
    assert ledger["retired"] == 2 and final["stats"]["sources_retired"] == 1 and final["stats"]["sources_done"] == 2
    assert final["stats"]["segments"] == final["query"]["n"] == final["query"]["ids"] == ledger["segments"]
    assert final["stats"]["segments"] == before["stats"]["segments"] - (
        sum(r["segments"] for r in old) - first_old["segments"])  # = the first content again, and other.wav
    print(f"after the put-back and a second retire: stats {final['stats']['segments']} segments, ledger {ledger['segments']}")
