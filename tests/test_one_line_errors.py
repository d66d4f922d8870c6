"""One clear line and a non-zero exit where a traceback used to be (issue 14, item 9).

Each case goes through the real CLI on real files: small corpora written by the shard and
ledger writers (FLAC cut from a shared real clip), a ledger commit or shard overwritten with
garbage, a read-only or full file system (a small tmpfs: these tests need root and skip
without it). The end-to-end test runs the pipeline itself: a disk that fills in a writer,
then at a ledger commit, and a ledger commit damaged and repaired; after each the same
command finishes the corpus with every source done exactly once.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from manifests.layout import CorpusLayout
from manifests.ledger import Ledger, UnreadableLedger
from manifests.shards import ShardLimits, segments_table, write_shards
from manifests.storage import os_error_line
from pipeline.cli import main as cli
from tests.conftest import real_clip
from tests.test_manifest_dialogues import EN, _flac

RUN_1 = "20250101T000000Z-aaaa01"
RUN_2 = "20250201T000000Z-bbbb02"
CLIP = ("asr_en", "librispeech-1995-1837-0001.wav")
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d ")  # `refinery run`'s progress log, not an error


# ---- helpers -----------------------------------------------------------------------------------
def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line(result, *words: str) -> str:
    """The command failed with exactly one `Error: ...` line (log lines aside) holding ``words``."""
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # a message, not a crash
    lines = [line for line in result.output.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _commit_source(out: Path, run_id: str, uri: str, sha: str, name: str = "speech", segments: int = 2) -> None:
    """One source of a segment corpus, written and committed as `refinery run` does: its segments
    in a staged shard, then one ledger commit file of its own (``ledger/run=<run_id>/commit-00000``)."""
    layout = CorpusLayout(out, name, kind="segments")
    layout.claim_kind()
    data, rate, seconds = _flac(EN, 0.0, 2.0)
    rec = f"rec-{sha[:6]}"
    rows = [{"segment_id": f"{rec}-{i}", "recording_id": rec, "source_uri": uri, "corpus": name, "run_id": run_id,
             "config_hash": "cfg", "start": 2.0 * i, "end": 2.0 * i + seconds, "duration": seconds, "speaker": "S0",
             "language": "en", "text": "hello", "kept": True, "drop_reason": None,
             "audio": {"bytes": data, "path": None}, "sample_rate": rate} for i in range(segments)]
    staged = write_shards(rows, layout, run_id, ShardLimits(max_rows=10, max_bytes=10**9), table_of=segments_table)
    now = datetime.now(timezone.utc)
    Ledger(layout).commit(run_id, 0, [{
        "source_uri": uri, "sha256": sha, "recording_id": rec, "corpus": name, "run_id": run_id, "config_hash": "cfg",
        "status": "done", "duration_s": 8.0, "segments": segments, "segments_kept": segments,
        "kept_seconds": segments * seconds, "staged_paths": [layout.rel(p) for p, _ in staged],
        "shard_paths": [layout.rel(layout.shard_path(run_id, 0))], "started_at": now, "finished_at": now}])


def _two_runs(out: Path) -> Path:
    """A corpus `speech` of two sources, one per run; the path of the second run's commit file."""
    _commit_source(out, RUN_1, "/data/a.wav", "aa" * 32)
    _commit_source(out, RUN_2, "/data/b.wav", "bb" * 32)
    return out / "speech" / "ledger" / f"run={RUN_2}" / "commit-00000.parquet"


def _damage(path: Path, keep: int = 100) -> None:
    """Cut a Parquet file short: its footer (and magic bytes) gone, as a torn copy or a disk fault leaves it."""
    path.write_bytes(path.read_bytes()[:keep])


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, size, ro) -> a fresh tmpfs folder; skips the test where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "16m", ro: bool = False) -> Path:
        d = tmp_path / name
        d.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}" + (",ro" if ro else ""), "tmpfs", str(d)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _remount(d: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(d)], check=True, capture_output=True)


def _fill(d: Path) -> Path:
    """Take every free byte of the file system at ``d``: a real ENOSPC for the next write."""
    filler = d / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def _files(d: Path) -> set[str]:
    return {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}


# ---- an unreadable ledger commit -----------------------------------------------------------------
def test_run_on_an_unreadable_ledger_commit_names_it_and_the_repair(tmp_path):
    out = tmp_path / "out"
    bad = _two_runs(out)
    _damage(bad)
    before = _files(out)
    line = _one_line(_invoke("run", real_clip(*CLIP), "--corpus", "speech", "--out", out),
                     f"ledger commit {bad}", "cannot be read", "Parquet magic bytes not found",
                     f"refinery manifest repair {out} --corpus speech")
    assert "run=" in line and len(line) < 500
    assert _files(out) - before <= {"speech/.lock"}  # nothing written but the lock
    assert not (out / "speech" / "runs").exists() and not (out / "speech" / "quarantine").exists()


def test_verify_lists_an_unreadable_commit_as_a_problem(tmp_path):
    out = tmp_path / "out"
    bad = _two_runs(out)
    _damage(bad)
    result = _invoke("manifest", "verify", out)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is not None and isinstance(result.exception, SystemExit)
    problems = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert problems[0] == (f"  - speech: ledger commit ledger/run={RUN_2}/commit-00000.parquet cannot be read (Parquet "
                           f"magic bytes not found in footer); `refinery manifest repair {out} --corpus speech` moves "
                           f"it to quarantine (its sources are processed again by the next run)")
    # the readable commit is still checked; the damaged one's shard is named by no readable row
    assert any(f"orphan file segments/run={RUN_2}/part-00000.parquet" in p for p in problems)
    assert len(problems) == 2 and "problem(s) in 1 shards, 2 segments, 2 audio cells, 1 sources" in result.output
    as_json = _invoke("manifest", "verify", out, "--json")
    assert as_json.exit_code == 1 and '"ok": false' in as_json.output


def test_readers_of_an_unreadable_ledger_say_one_line(tmp_path):
    out = tmp_path / "out"
    bad = _two_runs(out)
    _damage(bad, keep=0)  # an empty file
    for args in (["stats"], ["stats", "--json"], ["ls"], ["runs"], ["query", "SELECT count(*) FROM ledger"],
                 ["show", "/data/a.wav"], ["export", "--format", "nemo", "--to", tmp_path / "x"]):
        _one_line(_invoke("manifest", args[0], out, *args[1:]), f"ledger commit {bad}", "0 bytes",
                  f"refinery manifest repair {out} --corpus speech")


def test_repair_quarantines_the_commit_and_its_shards_and_the_rest_reads_again(tmp_path):
    out = tmp_path / "out"
    bad = _two_runs(out)
    layout = CorpusLayout(out, "speech")
    done_before = Ledger(layout).index("cfg").done
    _damage(bad)
    with pytest.raises(UnreadableLedger):
        Ledger(layout).index("cfg")
    result = _invoke("manifest", "repair", out, "--corpus", "speech")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    moved = re.match(rf"speech: moved unreadable ledger commit ledger/run={RUN_2}/commit-00000\.parquet to "
                     rf"(quarantine/\d{{8}}T\d{{12}}Z)/ledger/run={RUN_2}/commit-00000\.parquet "
                     rf"\(Parquet magic bytes not found in footer\)$", lines[0])
    assert moved, lines
    folder = moved.group(1)
    assert lines[1] == (f"speech: recovery: moved 1 file(s) under the shard folder that no ledger row names to {folder} "
                        f"(not part of the corpus)")
    assert "next `refinery run` over the same inputs processes them again" in lines[2] and len(lines) == 3
    # kept, not deleted: the commit and the shard only it named, side by side in one quarantine folder
    assert _files(out / "speech" / folder) == {f"ledger/run={RUN_2}/commit-00000.parquet",
                                               f"segments/run={RUN_2}/part-00000.parquet"}
    assert not bad.exists() and not list((out / "speech" / "segments").glob(f"run={RUN_2}/*"))
    # the first run is untouched; the second source is no longer done, so a run does it again (once)
    assert Ledger(layout).index("cfg").done == {"aa" * 32: done_before["aa" * 32]}
    verified = _invoke("manifest", "verify", out)
    assert verified.exit_code == 0 and verified.output.startswith("ok: 1 shards, 2 segments"), verified.output
    again = _invoke("manifest", "repair", out)
    assert again.exit_code == 0, again.output
    assert again.stdout == "speech: every ledger commit file is readable; recovery: nothing to recover\n"


def test_repair_of_a_damaged_compaction_file(tmp_path):
    """A compacted ledger (one file holding both runs' rows) cut short: every reader stops with one
    line; repair quarantines it and both shards, and the corpus is empty (both sources to redo)."""
    out = tmp_path / "out"
    _two_runs(out)
    layout = CorpusLayout(out, "speech")
    compacted = _invoke("manifest", "compact", out)
    assert compacted.exit_code == 0 and "compacted 2 commit files" in compacted.output, compacted.output
    (folded,) = map(Path, Ledger(layout).commit_files())
    assert folded.parent.name == "run=_compacted"
    _damage(folded)
    _one_line(_invoke("manifest", "stats", out), f"ledger commit {folded}", "refinery manifest repair")
    result = _invoke("manifest", "repair", out)
    assert result.exit_code == 0, result.output
    assert "moved unreadable ledger commit ledger/run=_compacted/" in result.stdout
    assert "moved 2 file(s) under the shard folder" in result.stdout
    assert Ledger(layout).read().num_rows == 0 and not Ledger(layout).shard_files()
    assert _invoke("manifest", "verify", out).exit_code == 0


def test_repair_of_no_corpus_or_a_locked_corpus_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line(_invoke("manifest", "repair", tmp_path / "empty"), "no corpus under")
    out = tmp_path / "out"
    _two_runs(out)
    _one_line(_invoke("manifest", "repair", out, "--corpus", "other"), "no corpus 'other'", "found: speech")
    from manifests.lock import lock_corpus

    with lock_corpus(CorpusLayout(out, "speech"), "20250301T000000Z-cccc03"):
        _one_line(_invoke("manifest", "repair", out, "--corpus", "speech"), "20250301T000000Z-cccc03")


# ---- stats, ls ------------------------------------------------------------------------------------
def test_stats_on_an_unreadable_shard_is_one_line(tmp_path):
    out = tmp_path / "out"
    _two_runs(out)
    shard = out / "speech" / "segments" / f"run={RUN_1}" / "part-00000.parquet"
    shard.write_bytes(os.urandom(shard.stat().st_size))  # overwritten with garbage
    for args in ([], ["--json"], ["--corpus", "speech"]):
        _one_line(_invoke("manifest", "stats", out, *args), f"shard {shard}", "of corpus 'speech' cannot be read",
                  "Parquet magic bytes not found", f"refinery manifest verify {out} --corpus speech")
    shard.unlink()  # named by the ledger, gone
    _one_line(_invoke("manifest", "stats", out), f"shard {shard}", "it is missing")


def test_stats_on_an_output_with_no_corpus_exits_non_zero_like_verify(tmp_path):
    for command in ("stats", "verify"):
        _one_line(_invoke("manifest", command, tmp_path), f"no corpus under {tmp_path}")
        _one_line(_invoke("manifest", command, tmp_path, "--json"), f"no corpus under {tmp_path}")
    (tmp_path / "notes").mkdir()  # a folder, but no <corpus>/ledger
    _one_line(_invoke("manifest", "stats", tmp_path), "no corpus under")


def test_ls_escapes_control_characters_in_names(tmp_path):
    out = tmp_path / "out"
    _commit_source(out, RUN_1, "/data/ok.wav", "aa" * 32)
    layout = CorpusLayout(out, "speech")
    now = datetime.now(timezone.utc)
    evil = "/data/a\nspeech\tdone  /data/fake.wav\x1b[2J\x1b[31mred\r.wav"
    Ledger(layout).commit(RUN_2, 0, [{
        "source_uri": evil, "sha256": None, "corpus": "speech", "run_id": RUN_2, "config_hash": "cfg",
        "status": "failed", "error": "decode failed:\nline two\x07", "segments": 0, "staged_paths": [],
        "shard_paths": [], "started_at": now, "finished_at": now}])
    result = _invoke("manifest", "ls", out)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2, lines  # one line per source: a name cannot start a line of its own
    assert lines[0].endswith("/data/a\\nspeech\\tdone  /data/fake.wav\\x1b[2J\\x1b[31mred\\r.wav  "
                             "decode failed:\\nline two\\x07"), lines[0]
    assert "\x1b" not in result.output and "\r" not in result.output and "\x07" not in result.output
    assert lines[1].endswith("/data/ok.wav")
    # JSON lines carry the names as they are (JSON escapes them itself)
    import json

    rows = [json.loads(line) for line in _invoke("manifest", "ls", out, "--json").output.splitlines()]
    assert {r["source_uri"] for r in rows} == {evil, "/data/ok.wav"}


# ---- names, SQL -----------------------------------------------------------------------------------
def test_a_300_character_corpus_name_is_refused_up_front(tmp_path):
    out = tmp_path / "out"
    name = "c" * 300
    _one_line(_invoke("run", real_clip(*CLIP), "--corpus", name, "--out", out),
              "invalid corpus name", "300 bytes long, the limit is 255")
    assert not out.exists()  # refused before anything was written
    _one_line(_invoke("fetch", "https://example.invalid/x", "--corpus", name, "--out", out), "300 bytes long")
    assert not out.exists()
    with pytest.raises(ValueError, match="the limit is 255"):
        CorpusLayout(out, "é" * 128)  # 256 bytes in UTF-8
    CorpusLayout(out, "c" * 255)  # the longest a folder name may be is fine
    with pytest.raises(ValueError, match="control character"):
        CorpusLayout(out, "a\nb")


def test_export_where_with_several_statements_is_one_line(tmp_path):
    out = tmp_path / "out"
    _commit_source(out, RUN_1, "/data/a.wav", "aa" * 32)
    _one_line(_invoke("manifest", "export", out, "--format", "nemo", "--to", tmp_path / "x",
                      "--where", "kept; DROP VIEW segments; SELECT 1"), "refused --where", "';'")
    assert not (tmp_path / "x").exists()


# ---- read-only and full file systems ----------------------------------------------------------------
def test_run_on_a_read_only_output_is_one_line(tmp_path, tmpfs):
    fresh = tmpfs("ro", ro=True)
    _one_line(_invoke("run", real_clip(*CLIP), "--corpus", "speech", "--out", fresh),
              "read-only file system", f"cannot write {fresh}/speech", "run the same command again")
    existing = tmpfs("was_rw")
    _two_runs(existing)
    before = {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()}
    _remount(existing, "ro")
    _one_line(_invoke("run", real_clip(*CLIP), "--corpus", "speech", "--out", existing),
              "read-only file system", f"cannot write {existing}/speech/.lock")
    _one_line(_invoke("manifest", "repair", existing), "read-only file system", "refinery manifest repair")
    assert {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()} == before


def test_a_ledger_commit_on_a_full_disk_names_the_file_and_leaves_the_ledger_as_it_was(tmpfs):
    out = tmpfs("full", size="1m")
    _commit_source(out, RUN_1, "/data/a.wav", "aa" * 32)
    layout = CorpusLayout(out, "speech")
    rows = Ledger(layout).read().to_pylist()
    _fill(out)
    now = datetime.now(timezone.utc)
    with pytest.raises(OSError) as caught:
        Ledger(layout).commit(RUN_2, 0, [{"source_uri": "/data/b.wav", "corpus": "speech", "run_id": RUN_2,
                                          "config_hash": "cfg", "status": "failed", "error": "e", "segments": 0,
                                          "staged_paths": [], "shard_paths": [], "started_at": now,
                                          "finished_at": now}])
    target = out / "speech" / "ledger" / f"run={RUN_2}" / "commit-00000.parquet"
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert os_error_line(caught.value) == (f"no space left on device while writing {target}: free space and run the "
                                           f"same command again (nothing committed is lost)")
    assert not target.exists() and not [p for p in (out / "speech" / "ledger").rglob("*.tmp")]
    assert Ledger(layout).read().to_pylist() == rows


def test_a_shard_write_on_a_full_disk_fails_no_source_and_stops_the_run(tmpfs):
    from pipeline.run import _Committer
    from stages.write import stage_shards

    out = tmpfs("full", size="256k")
    layout = CorpusLayout(out, "speech", kind="segments")
    data, rate, seconds = _flac(EN, 0.0, 8.0)  # ~8 s of FLAC per row: 4 rows are more than the disk holds
    rows = [{"segment_id": f"r-{i}", "recording_id": "r", "source_uri": "/data/a.wav", "corpus": "speech",
             "run_id": RUN_1, "config_hash": "cfg", "start": 0.0, "end": seconds, "duration": seconds,
             "kept": True, "audio": {"bytes": data, "path": None}, "sample_rate": rate} for i in range(4)]
    results = [{"source_uri": f"/data/{s}.wav", "status": "done", "staged_paths": [], "batch_id": "b",
                "batch_size": 2} for s in "ab"]
    out_rows = stage_shards(results, rows, [0, 0, 1, 1], layout, RUN_1, ShardLimits(max_rows=1, max_bytes=10**9),
                            segments_table)
    assert [r["status"] for r in out_rows] == ["done", "done"]  # the sources did nothing wrong
    for r in out_rows:
        assert r["write_errno"] == errno.ENOSPC and r["staged_paths"] == []
        assert r["write_path"].startswith(f"{out}/speech/_staging/run={RUN_1}/")
    assert _files(out) == set()  # the shards written before the disk filled were given back too
    committer = _Committer(Ledger(layout), layout, RUN_1)
    with pytest.raises(OSError) as caught:
        committer.add(out_rows[0])
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == out_rows[0]["write_path"]
    assert not Ledger(layout).commit_files()


# ---- end to end: the pipeline on a disk that fills, a damaged commit, and the same command again ---------
FAST = ["output.max_shard_rows=1", "output.sources_per_write=1", "diarization.enabled=false",
        "transcribe.enabled=false", "filters.enabled=false", "language_id.enabled=false", "enhance.enabled=false",
        "quality.enabled=false"]


def _wait_for_idle_cpus(timeout_s: float = 60.0) -> None:
    """The failed run's graph gives its workers back (the suite shares one Ray)."""
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= ray.cluster_resources().get("CPU", 0):
            return
        time.sleep(0.5)
    raise AssertionError(f"Ray CPUs still taken after the failed run: {ray.available_resources()}")


def _done_once(out: Path) -> Counter:
    """Runs whose visible segments each source has: exactly one per source, or it was done twice."""
    layout = CorpusLayout(out, "k")
    files = [str(p) for p in Ledger(layout).shard_files()]
    rows = pads.dataset(files, format="parquet").to_table(columns=["source_uri", "run_id"]).to_pylist()
    runs_of: dict[str, set] = {}
    for r in rows:
        runs_of.setdefault(r["source_uri"], set()).add(r["run_id"])
    done = Counter(r["source_uri"] for r in Ledger(layout).read(["source_uri", "status"]).to_pylist()
                   if r["status"] == "done")
    assert all(len(runs) == 1 for runs in runs_of.values()), runs_of
    assert set(done.values()) == {1} and set(done) == set(runs_of), (done, runs_of)
    return done


@pytest.mark.slow
def test_disk_full_then_a_damaged_commit_then_the_same_command_finishes_exactly_once(ray_session, tmpfs, monkeypatch):
    import manifests.ledger as ledger_module

    out = tmpfs("out", size="64k")  # the run's own small files fit; no shard does
    inputs = [real_clip("asr_en", "librispeech-1995-1837-0001.wav"), real_clip("asr_en", "jfk.flac")]
    command = ["run", *inputs, "--corpus", "k", "--out", out, *[a for s in FAST for a in ("--set", s)]]
    layout = CorpusLayout(out, "k")

    # 1. the disk fills in a writer: one line, nothing committed, nothing staged left behind
    _one_line(_invoke(*command), "no space left on device while writing", f"{out}/k/_staging/run=",
              "free space and run the same command again (nothing committed is lost)")
    assert not Ledger(layout).commit_files() and not list((out / "k").glob("_staging/*/*"))
    _wait_for_idle_cpus()

    # 2. space freed: the same command does the whole corpus
    _remount(out, "size=64m")
    first = _invoke(*command)
    assert first.exit_code == 0, first.output
    assert "2 source(s) processed: 2 done, 0 failed" in first.output
    done = _done_once(out)
    assert len(done) == 2

    # 3. the disk fills at a ledger commit (a rerun commits its skipped rows): one line naming the commit
    commits_before = {p: p.read_bytes() for p in map(Path, Ledger(layout).commit_files())}
    real_write = ledger_module.write_parquet_atomic
    filler: list[Path] = []

    def fill_then_write(table, path):
        filler.append(_fill(out))
        real_write(table, path)

    monkeypatch.setattr(ledger_module, "write_parquet_atomic", fill_then_write)
    _one_line(_invoke(*command), "no space left on device while writing", f"{out}/k/ledger/run=", "commit-00000.parquet",
              "(nothing committed is lost)")
    monkeypatch.setattr(ledger_module, "write_parquet_atomic", real_write)
    filler[0].unlink()
    assert {p: p.read_bytes() for p in map(Path, Ledger(layout).commit_files())} == commits_before
    assert not list((out / "k" / "ledger").rglob("*.tmp"))
    nothing = _invoke(*command)
    assert nothing.exit_code == 0 and "nothing to do: all 2 source(s)" in nothing.output, nothing.output

    # 4. a commit that named shards is damaged: `refinery run` says to repair; repair; the same command redoes it
    damaged = next(p for p in map(Path, Ledger(layout).commit_files())
                   if sum(len(s or []) for s in pq.read_table(p, columns=["shard_paths"]).column(0).to_pylist()))
    lost = {r["source_uri"] for r in pq.read_table(damaged).to_pylist() if r["status"] == "done"}
    _damage(damaged)
    _one_line(_invoke(*command), f"ledger commit {damaged}", f"refinery manifest repair {out} --corpus k")
    repaired = _invoke("manifest", "repair", out, "--corpus", "k")
    assert repaired.exit_code == 0 and "moved unreadable ledger commit" in repaired.output, repaired.output
    redo = _invoke(*command)
    assert redo.exit_code == 0, redo.output
    assert f"{len(lost)} source(s) processed: {len(lost)} done" in redo.output
    assert _done_once(out) == done  # every source done, each exactly once
    verified = _invoke("manifest", "verify", out)
    assert verified.exit_code == 0, verified.output
