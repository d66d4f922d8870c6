"""`refinery manifest show|query|verify|runs|diff` on real outputs of two pipeline runs.

The pipeline runs twice, once for the whole module, on the two short English clips, with
the cheap stages only (decode, VAD segmentation, language ID; no diarization, transcription
or text filters) and one segment per shard. The second run goes through `refinery run`
with `--set` overrides (language ID off, segments shorter than 9 s dropped): a new config
hash that processes both sources again, repeats their segment ids and drops the 8.5 s
clip. Each check compares the CLI's answer with what pyarrow reads from the shards and
the ledger.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner

from audio_io.flac import decode_flac
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from pipeline.cli import main as cli
from pipeline.config import load_config
from pipeline.run import run_pipeline
from tests.conftest import real_clip

pytestmark = pytest.mark.slow

CORPUS = "en"
FAST = ["output.max_shard_rows=1", "diarization.enabled=false", "transcribe.enabled=false", "filters.enabled=false"]
CHANGED = {"language_id.enabled": {"a": True, "b": False}, "segment.min_duration_s": {"a": 1.0, "b": 9.0}}


@pytest.fixture(scope="module")
def outputs(ray_session, tmp_path_factory):
    """OUT after two runs; (out, first run id, second run id)."""
    out = tmp_path_factory.mktemp("manifest_out")
    inputs = [str(real_clip("asr_en"))]
    first = run_pipeline(inputs, CORPUS, out, load_config(None, FAST))
    assert first.done == 2
    overrides = [a for key, v in CHANGED.items() for a in ("--set", f"{key}={str(v['b']).lower()}")]
    second = CliRunner().invoke(cli, ["run", *inputs, "--corpus", CORPUS, "--out", str(out),
                                      *[a for item in FAST for a in ("--set", item)], *overrides])
    assert second.exit_code == 0, second.output
    runs = sorted({r["run_id"] for r in _ledger(out)})
    assert len(runs) == 2 and first.run_id == runs[0]
    return out, runs[0], runs[1]


def _shards(out: Path) -> list[Path]:
    return sorted((out / CORPUS / "segments").glob("run=*/part-*.parquet"))


def _segments(out: Path, columns: list[str] | None = None) -> list[dict]:
    return pads.dataset([str(p) for p in _shards(out)], format="parquet").to_table(columns=columns).to_pylist()


def _ledger(out: Path) -> list[dict]:
    return Ledger(CorpusLayout(out, CORPUS)).read().to_pylist()


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["manifest", *[str(a) for a in args]])


# ---- show ------------------------------------------------------------------------------------
def test_show_a_segment_prints_every_column_and_summarises_audio(outputs):
    out, first, _ = outputs
    truth = next(r for r in _segments(out) if r["run_id"] == first and r["kept"])
    result = _invoke("show", out, truth["segment_id"], "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["kind"] == "segment"
    rows = {r["run_id"]: r for r in shown["segments"]}
    assert len(rows) == 2  # the same content under the second config hash repeats the id
    row = rows[first]
    assert set(row) == set(truth)
    for key, value in truth.items():
        if key not in ("audio", "audio_enhanced"):
            assert row[key] == value, key
    samples, rate = decode_flac(truth["audio"]["bytes"])
    assert row["audio"]["bytes"] == len(truth["audio"]["bytes"])
    assert row["audio"]["sample_rate"] == rate == truth["sample_rate"]
    assert row["audio"]["frames"] == len(samples)
    # enhancement is on by default: the enhanced cell covers the same span at the same rate
    assert row["audio_enhanced"]["frames"] == len(samples) and row["audio_enhanced"]["sample_rate"] == rate
    text = _invoke("show", out, truth["segment_id"])
    assert text.exit_code == 0
    assert truth["segment_id"] in text.output and f"{rate} Hz" in text.output and "bytes" in text.output


def test_show_a_source_lists_its_ledger_rows_across_runs_and_its_segments(outputs):
    out, first, second = outputs
    clip = str(real_clip("asr_en", "jfk.flac").resolve())
    ledger = [r for r in _ledger(out) if r["source_uri"] == clip]
    segments = sorted(r["segment_id"] for r in _segments(out, ["segment_id", "source_uri"]) if r["source_uri"] == clip)
    for ident in (clip, ledger[0]["recording_id"], ledger[0]["sha256"][:10]):
        result = _invoke("show", out, ident, "--json")
        assert result.exit_code == 0, result.output
        (src,) = json.loads(result.output)["sources"]
        assert src["source_uri"] == clip and src["sha256"] == ledger[0]["sha256"]
        assert sorted(r["run_id"] for r in src["ledger"]) == [first, second]
        assert all(r["status"] == "done" for r in src["ledger"])
        assert sorted(s["segment_id"] for s in src["segments"]) == segments
    text = _invoke("show", out, clip)
    assert f"run {first}: done" in text.output and f"run {second}: done" in text.output
    missing = _invoke("show", out, "no-such-thing")
    assert missing.exit_code != 0 and "no segment_id, recording_id" in missing.output


def test_show_wav_writes_the_segment_audio(outputs, tmp_path):
    out, first, _ = outputs
    truth = next(r for r in _segments(out) if r["run_id"] == first)
    wav = tmp_path / "seg.wav"
    result = _invoke("show", out, truth["segment_id"], "--wav", wav, "--run", first)
    assert result.exit_code == 0, result.output
    info = sf.info(str(wav))
    samples, rate = decode_flac(truth["audio"]["bytes"])
    assert info.format == "WAV" and info.samplerate == rate == truth["sample_rate"]
    assert info.frames == len(samples)
    assert abs(info.frames / rate - truth["duration"]) <= 1 / rate + 0.0005
    written, _ = sf.read(str(wav), dtype="float32")
    assert abs(written - samples).max() < 1e-4
    enhanced = _invoke("show", out, truth["segment_id"], "--wav", tmp_path / "e.wav", "--enhanced", "--run", first)
    assert enhanced.exit_code == 0, enhanced.output
    written_enh, rate_enh = sf.read(str(tmp_path / "e.wav"), dtype="float32")
    expected, _ = decode_flac(truth["audio_enhanced"]["bytes"])
    assert rate_enh == rate and len(written_enh) == len(samples)
    assert abs(written_enh - expected).max() < 1e-4 and abs(written_enh - samples).max() > 1e-3
    raw_only = tmp_path / "raw_only"
    shutil.copytree(out, raw_only)
    for shard in raw_only.glob("*/segments/run=*/part-*.parquet"):
        table = pq.read_table(shard)
        i = table.schema.get_field_index("audio_enhanced")
        pq.write_table(table.set_column(i, table.schema.field(i), pa.nulls(len(table), table.schema.field(i).type)), shard)
    refused = _invoke("show", raw_only, truth["segment_id"], "--wav", tmp_path / "e2.wav", "--enhanced", "--run", first)
    assert refused.exit_code != 0 and "no audio_enhanced" in refused.output


# ---- query -----------------------------------------------------------------------------------
SQL = "SELECT segment_id, run_id, duration, kept, language FROM segments ORDER BY segment_id, run_id"


def _truth_rows(out: Path) -> list[dict]:
    rows = _segments(out, ["segment_id", "run_id", "duration", "kept", "language"])
    return sorted(rows, key=lambda r: (r["segment_id"], r["run_id"]))


def test_query_csv_and_json_match_pyarrow(outputs):
    out, _, _ = outputs
    truth = _truth_rows(out)
    as_csv = _invoke("query", out, SQL, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    parsed = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [(r["segment_id"], r["run_id"], float(r["duration"]), r["kept"] == "true", r["language"] or None)
            for r in parsed] == [(t["segment_id"], t["run_id"], t["duration"], t["kept"], t["language"]) for t in truth]
    as_json = _invoke("query", out, SQL, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == truth
    limited = json.loads(_invoke("query", out, SQL, "--format", "json", "--limit", "1").output)
    assert limited == truth[:1]
    # aggregates over the ledger and the runs view
    per_run = json.loads(_invoke("query", out, "SELECT run_id, segments, done FROM runs ORDER BY run_id",
                                 "--format", "json").output)
    for r in per_run:
        assert r["segments"] == sum(t["run_id"] == r["run_id"] for t in truth) and r["done"] == 2
    ledger = json.loads(_invoke("query", out, "SELECT count(*) AS n FROM ledger", "--format", "json").output)
    assert ledger == [{"n": len(_ledger(out))}]


def test_query_table_audio_columns_and_errors(outputs):
    out, _, _ = outputs
    truth = _truth_rows(out)
    table = CliRunner(env={"COLUMNS": "250"}).invoke(cli, ["manifest", "query", str(out), SQL])  # no folded ids
    assert table.exit_code == 0, table.output
    for t in truth:
        assert t["segment_id"] in table.output
    assert f"{len(truth)} row(s)" in table.output
    no_audio = _invoke("query", out, "SELECT audio FROM segments")
    assert no_audio.exit_code != 0 and "query failed" in no_audio.output and "audio" in no_audio.output
    sizes = json.loads(_invoke("query", out, "SELECT segment_id, run_id, octet_length(audio['bytes']) AS n FROM segments",
                               "--audio", "--format", "json").output)
    want = {(r["segment_id"], r["run_id"]): len(r["audio"]["bytes"]) for r in _segments(out)}
    assert {(r["segment_id"], r["run_id"]): r["n"] for r in sizes} == want
    bad = _invoke("query", out, "SELEC nonsense")
    assert bad.exit_code == 1 and "query failed" in bad.output and "Traceback" not in bad.output
    no_corpus = _invoke("query", out, "SELECT 1", "--corpus", "nope")
    assert no_corpus.exit_code == 1 and "no corpus 'nope'" in no_corpus.output


def test_commands_refuse_an_output_without_corpora(tmp_path):
    for args in (["query", tmp_path, "SELECT 1"], ["verify", tmp_path], ["runs", tmp_path]):
        result = _invoke(*args)
        assert result.exit_code == 1 and "no corpus under" in result.output


# ---- verify ----------------------------------------------------------------------------------
def test_verify_passes_on_the_clean_output(outputs):
    out, _, _ = outputs
    rows = _segments(out, ["segment_id", "config_hash"])
    ids = [r["segment_id"] for r in rows]
    assert len(set(ids)) < len(ids)  # ids repeat across the two config hashes, legitimately
    result = _invoke("verify", out)
    assert result.exit_code == 0, result.output
    assert result.output.strip().startswith(f"ok: {len(_shards(out))} shards, {len(rows)} segments")


def _rewrite(shard: Path, change) -> None:
    table = pq.read_table(shard)
    rows = change(table.to_pylist())
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)


def _damage_audio(rows: list[dict]) -> list[dict]:
    data = bytearray(rows[0]["audio"]["bytes"])
    data[len(data) // 2] ^= 0xFF
    rows[0]["audio"] = {**rows[0]["audio"], "bytes": bytes(data)}
    return rows


def _delete_shard(corpus: Path) -> str:
    shard = sorted((corpus / "segments").glob("run=*/part-*.parquet"))[0]
    shard.unlink()
    return f"shard {shard.relative_to(corpus).as_posix()} is missing"


def _corrupt_audio(corpus: Path) -> str:
    shard = sorted((corpus / "segments").glob("run=*/part-*.parquet"))[-1]
    seg_id = pq.read_table(shard, columns=["segment_id"]).column(0)[0].as_py()
    _rewrite(shard, _damage_audio)
    return f"({seg_id}): audio "


def _duplicate_row(corpus: Path) -> str:
    shard = sorted((corpus / "segments").glob("run=*/part-*.parquet"))[0]
    seg_id = pq.read_table(shard, columns=["segment_id"]).column(0)[0].as_py()
    _rewrite(shard, lambda rows: rows + rows[:1])
    return f"segment_id {seg_id} appears 2 times under config"


def _orphans(corpus: Path) -> str:
    shard = sorted((corpus / "segments").glob("run=*/part-*.parquet"))[0]
    shutil.copy(shard, shard.with_name("part-99999.parquet"))
    staging = corpus / "_staging" / "run=x"
    staging.mkdir(parents=True)
    (staging / "leftover.parquet").write_bytes(b"partial")
    return "orphan file segments/"


@pytest.mark.parametrize("damage", [_delete_shard, _corrupt_audio, _duplicate_row, _orphans],
                         ids=["deleted-shard", "corrupt-audio", "duplicate-id", "orphan-file"])
def test_verify_detects_damage(outputs, tmp_path, damage):
    out, _, _ = outputs
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    expected = damage(copy / CORPUS)
    result = _invoke("verify", copy)
    assert result.exit_code == 1, result.output
    assert "problem(s)" in result.output and expected in result.output, result.output
    if damage is _orphans:
        assert "left in _staging" in result.output
    if damage is _delete_shard:
        assert "the ledger counts 1 segment(s), the shards hold 0" in result.output


# ---- runs and diff ---------------------------------------------------------------------------
def test_runs_lists_both_runs_with_counts(outputs):
    out, first, second = outputs
    result = _invoke("runs", out, "--json")
    assert result.exit_code == 0, result.output
    runs = [json.loads(line) for line in result.output.splitlines()]
    assert [r["run_id"] for r in runs] == [first, second]
    segs = _segments(out, ["run_id", "config_hash", "kept"])
    for r in runs:
        mine = [s for s in segs if s["run_id"] == r["run_id"]]
        assert r["config_hash"] == mine[0]["config_hash"]
        assert (r["done"], r["failed"], r["skipped"]) == (2, 0, 0)
        assert r["segments"] == len(mine) and r["segments_kept"] == sum(s["kept"] for s in mine)
        assert r["wall_seconds"] > 0 and r["throughput"] == pytest.approx(r["audio_seconds"] / r["wall_seconds"])
    assert runs[0]["config_hash"] != runs[1]["config_hash"]
    text = _invoke("runs", out)
    assert first in text.output and second in text.output and "audio s/s" in text.output


def test_diff_shows_the_config_change_and_its_effect(outputs):
    out, first, second = outputs
    result = _invoke("diff", out, first, second, "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    assert d["config"]["changed"] == CHANGED
    assert d["sources"]["added"] == d["sources"]["removed"] == d["sources"]["changed"] == []
    assert d["sources"]["unchanged"] == 2
    segs = _segments(out, ["run_id", "kept", "duration", "drop_reason"])
    for side, run in (("a", first), ("b", second)):
        mine = [s for s in segs if s["run_id"] == run]
        assert d["segments"]["segments"][side] == len(mine)
        assert d["segments"]["segments_kept"][side] == sum(s["kept"] for s in mine)
        assert d["segments"]["hours_kept"][side] == pytest.approx(sum(s["duration"] for s in mine if s["kept"]) / 3600)
    assert d["segments"]["segments_kept"] == {"a": 2, "b": 1}  # the 8.5 s clip is dropped
    (reason,) = {s["drop_reason"] for s in segs if s["run_id"] == second and not s["kept"]}
    assert "segment.min_duration_s" in reason
    assert d["dropped"][reason]["a"]["segments"] == 0 and d["dropped"][reason]["b"]["segments"] == 1
    assert d["languages"]["en"]["a"]["segments"] == 2 and d["languages"]["en"]["b"]["segments"] == 0
    assert d["languages"]["unknown"]["b"]["segments"] == 1  # no language ID in the second run
    text = _invoke("diff", out, first[:-2], second)
    assert text.exit_code == 0, text.output
    assert "segment.min_duration_s: 1.0 -> 9.0" in text.output and "language_id.enabled: True -> False" in text.output
    assert f"{reason}: 0 seg" in text.output
