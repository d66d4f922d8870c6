"""The real pipeline on real clips: golden output, schema, bounds, raw + enhanced audio, determinism,
incremental reruns, datasets. Every run here is on the suite's Ray of 2 logical CPUs, fewer than
the graph has actor pools."""

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
from tests.conftest import SUITE_RAY_CPUS, real_clip
from tests.golden import GOLDEN_INPUTS, golden_records, load_golden

pytestmark = pytest.mark.slow
SOURCES = 12  # the sample call, 4 AMI clips, 2 English and 5 Chinese clips


@pytest.fixture(scope="module")
def inputs():
    return [str(real_clip(*p.split("/"))) for p in GOLDEN_INPUTS]


@pytest.fixture(scope="module")
def sample_wav():
    return real_clip("diarization", "pyannote_sample", "sample.wav")


@pytest.fixture(scope="module")
def first_run(ray_session, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    summary = run_pipeline(inputs, "real", out, load_config(None, ["output.max_shard_rows=3"]))
    return out, summary


def _segments(out, corpus="real", columns=None):
    files = sorted(str(p) for p in (out / corpus / "segments").glob("run=*/part-*.parquet"))
    return pads.dataset(files, format="parquet").to_table(columns=columns)


def test_every_source_is_done_with_segments_on_two_logical_cpus(first_run):
    import ray

    out, summary = first_run
    assert ray.cluster_resources()["CPU"] == SUITE_RAY_CPUS == 2  # fewer CPUs than the graph's 5 actor pools
    assert summary.processed == summary.sources == SOURCES
    assert summary.done == SOURCES and summary.failed == 0
    ledger = Ledger(CorpusLayout(out, "real")).read().to_pylist()
    assert len(ledger) == SOURCES and all(r["status"] == "done" and r["segments_kept"] >= 1 for r in ledger)
    assert {"decode", "enhance", "diarize", "language_id", "transcribe", "text_filter", "write"} <= set(summary.stage_seconds)


def test_output_matches_the_golden_run(first_run):
    """Ids, boundaries, speakers, languages, text and drop reasons as recorded in the golden file
    (``python -m tests.golden.record`` after an intended change of output)."""
    out, _ = first_run
    got = golden_records(out, "real")
    want = load_golden()
    assert [r["segment_id"] for r in got] == [r["segment_id"] for r in want]
    for g, w in zip(got, want):
        assert g == w, g["segment_id"]


def test_every_per_segment_figure_is_a_typed_column(first_run):
    from manifests.schema import FIGURE_COLUMNS

    out, _ = first_run
    table = _segments(out)
    assert {"language_runner_up", "asr_avg_logprob", "asr_compression_ratio", "asr_no_speech_prob",
            "filter_chars_per_s", "filter_failures"} <= set(FIGURE_COLUMNS) <= set(table.column_names)
    rows = table.select(["kept", "text", "language", "language_runner_up", "asr_avg_logprob", "asr_no_speech_prob",
                         "filter_chars_per_s", "filter_compression_ratio", "drop_reason", "filter_failures"]).to_pylist()
    transcribed = [r for r in rows if r["text"]]
    assert transcribed
    for r in transcribed:
        assert r["language_runner_up"] and r["language_runner_up"] != r["language"]
        assert r["asr_avg_logprob"] < 0 and 0 <= r["asr_no_speech_prob"] <= 1
        if r["kept"] or (r["drop_reason"] or "").split(":")[0] in ("text_lid", "charset", "chars_per_s"):
            assert r["filter_chars_per_s"] > 0 and r["filter_compression_ratio"] > 0
    filtered = [r for r in rows if r["filter_failures"]]
    assert all(r["drop_reason"].startswith(r["filter_failures"][0]) for r in filtered)


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

    assert again.done == SOURCES
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
    assert len(latest) == SOURCES and all("already done" in r["error"] for r in latest)
    assert len(list((out / "real" / "segments").glob("run=*"))) == 1  # no new shards


def test_stats_json_has_stable_keys_and_consistent_counts(first_run):
    out, summary = first_run
    result = CliRunner().invoke(cli, ["manifest", "stats", str(out), "--corpus", "real", "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert {"sources_done", "sources_failed", "segments", "hours"} <= s.keys()
    assert s["sources_done"] == SOURCES and s["sources_failed"] == 0
    assert s["segments"] == _segments(out, columns=["segment_id"]).num_rows
    kept = [r for r in _segments(out, columns=["duration", "kept"]).to_pylist() if r["kept"]]
    assert s["hours"] == pytest.approx(sum(r["duration"] for r in kept) / 3600)
    rows = _segments(out, columns=["recording_id", "kept"]).to_pylist()
    with_kept = {r["recording_id"] for r in rows if r["kept"]}
    empty = SOURCES - len(with_kept)
    nk = s["corpora"]["real"]["recordings_without_kept"]
    assert nk["recordings"] == empty and sum(nk["why"].values()) == empty
    text = CliRunner().invoke(cli, ["manifest", "stats", str(out)])
    assert f"{SOURCES} done, 0 failed" in text.output


def test_datasets_reads_a_shard_and_decodes_audio(first_run):
    import datasets

    out, _ = first_run
    # every shard of the run (which shard holds a kept, transcribed segment depends on the order
    # recordings finish in)
    # as the README loads them: the shards the ledger names
    from manifests.layout import CorpusLayout
    from manifests.ledger import Ledger

    shards = [str(p) for p in Ledger(CorpusLayout(out, "real")).shard_files()]
    assert shards == sorted(str(p) for p in (out / "real" / "segments").glob("run=*/part-*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=shards, split="train")
    row = ds[0]
    for column in ("audio", "audio_enhanced"):
        decoded = row[column].get_all_samples()
        assert decoded.sample_rate == 24000
        assert abs(decoded.data.shape[-1] / 24000 - row["duration"]) < 0.01
    # the per-segment figures load with their types
    from manifests.schema import FIGURE_COLUMNS

    assert set(FIGURE_COLUMNS) <= set(ds.column_names)
    assert ds.features["asr_avg_logprob"].dtype == "float64"
    assert ds.features["filter_ngram_repeats"].dtype == "int32"
    assert ds.features["language_tie_break"].dtype == "bool"
    kept = [r for r in ds if r["kept"] and r["text"]]
    assert kept and all(isinstance(r["asr_avg_logprob"], float) for r in kept)


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


def test_rows_carry_speakers_languages_and_the_ledger_counts_speakers(first_run, sample_wav):
    out, _ = first_run
    ledger = {r["source_uri"]: r for r in Ledger(CorpusLayout(out, "real")).read().to_pylist() if r["status"] == "done"}
    assert ledger[str(sample_wav.resolve())]["speakers"] == 2
    rows = _segments(out, columns=["source_uri", "recording_id", "speaker", "overlap_ratio", "kept", "language",
                                   "text", "models"]).to_pylist()
    for r in rows:
        assert r["speaker"].startswith(r["recording_id"] + "/S")
        assert 0.0 <= r["overlap_ratio"] <= 1.0
        stages = {m["stage"] for m in r["models"]}
        assert {"diarization", "speaker_embedding"} <= stages
        if r["kept"]:
            assert r["language"] in ("en", "zh") and r["text"]
    sample = [r for r in rows if r["source_uri"] == str(sample_wav.resolve()) and r["kept"]]
    assert len({r["speaker"] for r in sample}) == 2
