"""The real pipeline on real clips: schema, bounds, raw + enhanced audio, determinism, incremental reruns, datasets."""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.lock import CorpusLock, CorpusLocked
from manifests.schema import SEGMENT_SCHEMA
from pipeline.cli import main as cli
from pipeline.config import load_config
from pipeline.run import run_pipeline
from tests.conftest import real_clip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(demo_wav):
    return [str(demo_wav), str(real_clip("diarization", "ami_pyannote_debug")), str(real_clip("asr_en"))]


@pytest.fixture(scope="module")
def first_run(ray_session, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    summary = run_pipeline(inputs, "real", out, load_config(None, ["output.max_shard_rows=3"]))
    return out, summary


def _segments(out, corpus="real", columns=None):
    files = sorted(str(p) for p in (out / corpus / "segments").glob("run=*/part-*.parquet"))
    return pads.dataset(files, format="parquet").to_table(columns=columns)


def test_every_source_is_done_with_segments(first_run):
    out, summary = first_run
    assert summary.processed == summary.sources == 7  # sample + 4 AMI + 2 English clips
    assert summary.done == 7 and summary.failed == 0
    ledger = Ledger(CorpusLayout(out, "real")).read().to_pylist()
    assert len(ledger) == 7 and all(r["status"] == "done" and r["segments_kept"] >= 1 for r in ledger)


def test_shards_have_the_segment_schema_and_bounded_size(first_run):
    out, _ = first_run
    files = list((out / "real" / "segments").glob("run=*/part-*.parquet"))
    assert len(files) >= 3
    for f in files:
        schema = pq.read_schema(f)
        assert schema.remove_metadata().equals(SEGMENT_SCHEMA)
        assert b"huggingface" in schema.metadata
        assert pq.read_metadata(f).num_rows <= 3  # output.max_shard_rows


def test_segments_lie_inside_their_source_and_within_27s(first_run):
    out, _ = first_run
    durations = {r["source_uri"]: r["duration_s"] for r in Ledger(CorpusLayout(out, "real")).read().to_pylist()}
    rows = _segments(out, columns=["segment_id", "source_uri", "start", "end", "duration", "kept", "sample_rate",
                                   "config_hash", "run_id", "corpus", "recording_id"]).to_pylist()
    assert rows
    for r in rows:
        assert 0 <= r["start"] < r["end"] <= durations[r["source_uri"]] + 1e-3
        assert r["duration"] <= 27.0 + 1e-6
        assert r["sample_rate"] == 24000 and r["corpus"] == "real"
        assert r["segment_id"].startswith(r["recording_id"])
    assert len({r["segment_id"] for r in rows}) == len(rows)
    assert len({r["config_hash"] for r in rows}) == 1


def test_audio_cells_decode_to_the_segment_length(first_run):
    from audio_io.flac import decode_flac

    out, _ = first_run
    rows = _segments(out, columns=["audio", "audio_enhanced", "duration", "models"]).to_pylist()
    for r in rows:
        samples, rate = decode_flac(r["audio"]["bytes"])
        enhanced, rate_e = decode_flac(r["audio_enhanced"]["bytes"])  # variants=both by default: same span, same rate
        assert rate == rate_e == 24000
        assert len(enhanced) == len(samples)
        assert abs(len(samples) / rate - r["duration"]) < 0.01
        assert any(m["stage"] == "enhance" and m["model"].startswith("bsrnn:") for m in r["models"])
    # the enhanced audio is a different signal, not a copy of the raw one
    assert sum(r["audio"]["bytes"] != r["audio_enhanced"]["bytes"] for r in rows) == len(rows)


def test_same_input_and_config_give_the_same_output(first_run, inputs, tmp_path):
    out, _ = first_run
    again = run_pipeline(inputs, "real", tmp_path, load_config())

    def digest(o):
        t = _segments(o, columns=["segment_id", "start", "end", "audio"]).to_pylist()
        return sorted((r["segment_id"], r["start"], r["end"], hashlib.sha256(r["audio"]["bytes"]).hexdigest()) for r in t)

    assert again.done == 7
    assert digest(out) == digest(tmp_path)


def test_second_run_processes_nothing(first_run, inputs):
    out, _ = first_run
    result = CliRunner().invoke(cli, ["run", *inputs, "--corpus", "real", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output
    ledger = Ledger(CorpusLayout(out, "real")).read().to_pylist()
    runs = {r["run_id"] for r in ledger}
    assert len(runs) == 2
    latest = [r for r in ledger if r["status"] == "skipped"]
    assert len(latest) == 7 and all("already done" in r["error"] for r in latest)
    assert len(list((out / "real" / "segments").glob("run=*"))) == 1  # no new shards


def test_stats_json_has_stable_keys_and_consistent_counts(first_run):
    out, summary = first_run
    result = CliRunner().invoke(cli, ["manifest", "stats", str(out), "--corpus", "real", "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert {"sources_done", "sources_failed", "segments", "hours"} <= s.keys()
    assert s["sources_done"] == 7 and s["sources_failed"] == 0
    assert s["segments"] == _segments(out, columns=["segment_id"]).num_rows
    kept = [r for r in _segments(out, columns=["duration", "kept"]).to_pylist() if r["kept"]]
    assert s["hours"] == pytest.approx(sum(r["duration"] for r in kept) / 3600)
    text = CliRunner().invoke(cli, ["manifest", "stats", str(out)])
    assert "7 done, 0 failed" in text.output


def test_datasets_reads_a_shard_and_decodes_audio(first_run):
    import datasets

    out, _ = first_run
    shard = sorted((out / "real" / "segments").glob("run=*/part-*.parquet"))[0]
    ds = datasets.load_dataset("parquet", data_files=str(shard), split="train")
    row = ds[0]
    for column in ("audio", "audio_enhanced"):
        decoded = row[column].get_all_samples()
        assert decoded.sample_rate == 24000
        assert abs(decoded.data.shape[-1] / 24000 - row["duration"]) < 0.01


def test_a_second_run_on_a_locked_corpus_is_refused(first_run, inputs):
    out, _ = first_run
    with CorpusLock(CorpusLayout(out, "real").lock_path, "someone-else"):
        with pytest.raises(CorpusLocked, match="someone-else"):
            run_pipeline(inputs, "real", out, load_config())
        result = CliRunner().invoke(cli, ["run", *inputs, "--corpus", "real", "--out", str(out)])
        assert result.exit_code != 0 and "being written by another run" in result.output


def test_failed_sources_are_skipped_until_retried(ray_session, tmp_path, demo_wav):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(demo_wav, src / "good.wav")
    (src / "bad.wav").write_text("this is not audio")
    out = tmp_path / "out"
    first = run_pipeline([str(src)], "c", out, load_config())
    assert (first.done, first.failed) == (1, 1)
    second = run_pipeline([str(src)], "c", out, load_config())
    assert second.processed == 0 and second.skipped == 2
    third = run_pipeline([str(src)], "c", out, load_config(), retry_failed=True)
    assert third.processed == 1 and third.failed == 1
    result = CliRunner().invoke(cli, ["manifest", "ls", str(out), "--status", "failed"])
    assert "bad.wav" in result.output and "good.wav" not in result.output
    # a changed config processes everything again
    fourth = run_pipeline([str(src)], "c", out, load_config(None, ["segment.max_gap_s=1.0"]))
    assert fourth.processed == 2 and fourth.done == 1


def test_rows_carry_speakers_languages_and_the_ledger_counts_speakers(first_run, demo_wav):
    out, _ = first_run
    ledger = {r["source_uri"]: r for r in Ledger(CorpusLayout(out, "real")).read().to_pylist() if r["status"] == "done"}
    assert ledger[str(demo_wav.resolve())]["speakers"] == 2
    rows = _segments(out, columns=["source_uri", "recording_id", "speaker", "overlap_ratio", "kept", "language",
                                   "text", "models"]).to_pylist()
    for r in rows:
        assert r["speaker"].startswith(r["recording_id"] + "/S")
        assert 0.0 <= r["overlap_ratio"] <= 1.0
        stages = {m["stage"] for m in r["models"]}
        assert {"diarization", "speaker_embedding"} <= stages
        if r["kept"]:
            assert r["language"] in ("en", "zh") and r["text"]
    sample = [r for r in rows if r["source_uri"] == str(demo_wav.resolve()) and r["kept"]]
    assert len({r["speaker"] for r in sample}) == 2
