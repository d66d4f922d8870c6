"""Bad input: every file of a generated bad-input corpus either becomes segments or a failed
ledger row with a clear reason; the run never crashes on them and never loses a good file.

(a) ``audio_io.decode.decode`` and the decode stage on each file, without Ray;
(b) the real pipeline, once, on the whole corpus as a directory input, then the ledger,
    the run summary and the segment shards.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from audio_io.decode import DecodeError, decode
from audio_io.flac import decode_flac
from audio_io.signals import ANALYSIS_RATE
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from inspection.stats import read_segments, source_status
from pipeline.config import load_config
from stages.base import RunContext
from stages.decode import DecodeStage
from tests.bad_inputs import CASE_NAMES, EIGHT_CHANNEL, HIFI_FLAC, Expected, make_bad_corpus

RATE = 24000  # the pipeline's default working rate (decode.sample_rate)
MAX_SEGMENT_S = 27.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Expected]]:
    directory = tmp_path_factory.mktemp("bad_corpus").resolve()
    return directory, make_bad_corpus(directory)


# ---- (a) decode, no Ray -------------------------------------------------------------------

@pytest.mark.parametrize("name", CASE_NAMES)
def test_decode_each_file(corpus, name):
    directory, expected = corpus
    exp = expected[name]
    path = str(directory / name)
    if exp.decode_error is not None:
        with pytest.raises(DecodeError) as err:
            decode(path, RATE)
        assert exp.decode_error in str(err.value), f"{name}: unclear reason {str(err.value)!r}"
        return
    audio = decode(path, RATE)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1, name
    assert audio.sample_rate == RATE
    assert audio.duration_s == pytest.approx(exp.duration_s, abs=0.05), name
    assert np.isfinite(audio.samples).all()
    assert np.abs(audio.samples).max() <= 1.0, f"{name}: the mono mix goes over full scale"
    assert audio.info.channels == exp.channels
    assert audio.info.sample_rate == exp.source_rate
    if exp.warning is not None:
        assert audio.warning is not None and exp.warning in audio.warning, f"{name}: warning {audio.warning!r}"


@pytest.mark.parametrize("name", [EIGHT_CHANNEL, HIFI_FLAC])
def test_multichannel_is_averaged_to_mono(corpus, name):
    """At the source rate (no resampling) the mono signal is the plain mean of the channels:
    no channel dropped (ffmpeg alone drops channel 4 of 8 as LFE), no surround gains."""
    directory, expected = corpus
    exp = expected[name]
    assert exp.multichannel is not None and exp.multichannel.shape[1] == exp.channels > 1
    audio = decode(str(directory / name), exp.source_rate)
    want = exp.multichannel.mean(axis=1)
    assert audio.samples.shape == want.shape
    np.testing.assert_allclose(audio.samples, want, atol=1e-5)


@pytest.fixture(scope="module")
def decode_stage(tmp_path_factory) -> DecodeStage:
    """The decode stage of the default config, but with the analysis signal made from the raw audio
    (enhance.analysis_variant=raw), so that decode makes every signal it can."""
    cfg = load_config(None, ["enhance.analysis_variant=raw"])
    assert cfg.decode.sample_rate == RATE
    run = RunContext(out_dir=str(tmp_path_factory.mktemp("decode_out")), corpus="bad", run_id="run",
                     config_hash=cfg.config_hash())
    return DecodeStage(cfg, run)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_decode_stage_each_file(corpus, decode_stage, name):
    """The decode stage turns every failure into a failed row with the reason, never an exception."""
    directory, expected = corpus
    exp = expected[name]
    path = directory / name
    (out,) = decode_stage.process_batch([{"source_uri": str(path), "path": str(path),
                                          "size_bytes": path.stat().st_size}])
    if exp.good:
        assert out["status"] == "ok", f"{name}: {out['error']}"
        assert out["samples"].dtype == np.float32 and out["samples"].ndim == 1
        assert out["sample_rate"] == RATE and abs(out["samples"].size - exp.duration_s * RATE) <= RATE * 0.05
        assert out["duration_s"] == pytest.approx(exp.duration_s, abs=0.05)
        assert out["analysis_rate"] == ANALYSIS_RATE and out["analysis"].dtype == np.float32
        assert abs(out["analysis"].size - out["duration_s"] * ANALYSIS_RATE) <= 1
        raw, raw_rate = decode_flac(out["audio_raw"])
        output_rate = decode_stage.output.sample_rate
        assert raw_rate == output_rate and abs(raw.size - out["duration_s"] * output_rate) <= 1
    else:
        assert out["status"] == "failed", name
        assert exp.error in (out["error"] or ""), f"{name}: unclear reason {out['error']!r}"
        assert out["samples"].size == 0 and out["analysis"].size == 0 and out["audio_raw"] is None


# ---- (b) the real pipeline, once, on the whole corpus --------------------------------------

@pytest.fixture(scope="module")
def bad_run(ray_session, corpus, tmp_path_factory):
    from pipeline.run import run_pipeline

    directory, expected = corpus
    out_dir = tmp_path_factory.mktemp("bad_out")
    try:
        summary = run_pipeline([str(directory)], "bad", out_dir, load_config(None, []))
    except Exception as exc:  # noqa: BLE001 - the point: it must not raise
        pytest.fail(f"run_pipeline raised on the bad-input corpus: {type(exc).__name__}: {exc}")
    layout = CorpusLayout(out_dir, "bad")
    ledger = Ledger(layout).read()
    segments = read_segments(layout, ["source_uri", "kept", "duration", "start", "end"]).to_pylist()
    return directory, expected, summary, ledger, segments


@pytest.mark.slow
def test_run_ledger_row_per_source(bad_run):
    directory, expected, _summary, ledger, _segments = bad_run
    rows = ledger.to_pylist()
    by_uri = defaultdict(list)
    for r in rows:
        by_uri[r["source_uri"]].append(r)
    want_uris = {str(directory / name): name for name in expected}
    assert set(by_uri) == set(want_uris), (
        f"missing from the ledger: {sorted(want_uris[u] for u in set(want_uris) - set(by_uri))}; "
        f"unexpected: {sorted(set(by_uri) - set(want_uris))}")
    assert all(len(v) == 1 for v in by_uri.values()), "one ledger row per source per run"

    status = {r["source_uri"]: r for r in source_status(ledger)}
    problems = []
    for uri, name in want_uris.items():
        exp, row = expected[name], status[uri]
        if exp.good:
            if row["status"] != "done" or not row["segments_kept"]:
                problems.append(f"{name}: want segments, got {row['status']} with {row['segments_kept']} kept "
                                f"(error {row['error']!r})")
            if exp.channels is not None and row["source_channels"] != exp.channels:
                problems.append(f"{name}: source_channels {row['source_channels']} != {exp.channels}")
            if exp.source_rate is not None and row["source_sample_rate"] != exp.source_rate:
                problems.append(f"{name}: source_sample_rate {row['source_sample_rate']} != {exp.source_rate}")
            if row["duration_s"] is None or abs(row["duration_s"] - exp.duration_s) > 0.05:
                problems.append(f"{name}: duration_s {row['duration_s']} != {exp.duration_s}")
            if exp.warning is not None and exp.warning not in (row["warning"] or ""):
                problems.append(f"{name}: warning {row['warning']!r} lacks {exp.warning!r}")
        else:
            if row["status"] != "failed" or exp.error not in (row["error"] or ""):
                problems.append(f"{name}: want failed with {exp.error!r}, got {row['status']} ({row['error']!r})")
            if row["segments"] or row["shard_paths"]:
                problems.append(f"{name}: failed source has segments or shards")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_run_summary_counts(bad_run):
    _directory, expected, summary, ledger, _segments = bad_run
    good = [n for n, e in expected.items() if e.good]
    bad = [n for n, e in expected.items() if not e.good]
    assert summary.sources == len(expected)
    assert summary.processed == len(expected)
    assert summary.skipped == 0
    assert summary.done == len(good)
    assert summary.failed == len(bad)
    assert sorted(Path(uri).name for uri, _ in summary.failures) == sorted(bad)
    rows = ledger.to_pylist()
    assert summary.segments == sum(r["segments"] for r in rows)
    assert summary.segments_kept == sum(r["segments_kept"] for r in rows) >= len(good)


@pytest.mark.slow
def test_run_segments_only_from_good_files(bad_run):
    directory, expected, _summary, ledger, segments = bad_run
    rows = {r["source_uri"]: r for r in ledger.to_pylist()}
    good_uris = {str(directory / n) for n, e in expected.items() if e.good}
    kept_by_uri = defaultdict(int)
    for s in segments:
        assert s["source_uri"] in good_uris, f"segment of a source that should have failed: {s['source_uri']}"
        duration_s = rows[s["source_uri"]]["duration_s"]
        assert 0.0 <= s["start"] < s["end"] <= duration_s + 1e-3, (s, duration_s)
        assert s["duration"] == pytest.approx(s["end"] - s["start"], abs=2e-3)
        assert s["duration"] <= MAX_SEGMENT_S
        kept_by_uri[s["source_uri"]] += bool(s["kept"])
    assert set(kept_by_uri) == good_uris, f"good files without segments: {sorted(good_uris - set(kept_by_uri))}"
    for uri in good_uris:
        assert kept_by_uri[uri] == rows[uri]["segments_kept"] >= 1, uri
