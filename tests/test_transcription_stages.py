"""The three stages (language ID, transcribe, text filters) on real clips, segmented by the pipeline's
VAD stage, with the offline default models: directly (as the eval command runs them) and on Ray."""

from __future__ import annotations

import copy

import pytest

from manifests.planned_segment import PlannedSegment, from_rows
from pipeline.config import PipelineConfig, load_config
from stages.base import RunContext
from stages.decode import DecodeStage
from stages.language_id import LanguageIdStage
from stages.text_filter import TextFilterStage
from stages.transcribe import TranscribeStage
from stages.vad_segment import VadSegmentStage
from tests.conftest import real_clip
from transcription.scoring import score

TRANSCRIPTION_STAGES = (LanguageIdStage, TranscribeStage, TextFilterStage)
FAILED_ROW = {"status": "failed", "error": "decode failed: test", "recording_id": "broken", "source_uri": "x"}


def _clips() -> dict[str, list]:
    return {
        "en": [real_clip("asr_en", "jfk.flac"), real_clip("asr_en", "librispeech-1995-1837-0001.wav")],
        "zh": sorted(real_clip("asr_zh").glob("*.wav")),
        "call": [real_clip("diarization", "pyannote_sample", "sample.wav")],
    }


def _segmented_rows(cfg: PipelineConfig, run: RunContext) -> tuple[list[str], list[dict]]:
    groups, rows = [], []
    decoder, segmenter = DecodeStage(cfg, run), VadSegmentStage(cfg, run)
    for group, paths in _clips().items():
        for path in paths:
            row = decoder.decode_row({"path": str(path), "source_uri": str(path), "recording_id": path.stem})
            assert row["status"] == "ok" and len(row["analysis"]), (path, row["error"])
            rows.append(segmenter.segment_row(row))
            groups.append(group)
    return groups, rows


@pytest.fixture(scope="module")
def cfg() -> PipelineConfig:
    # No enhancement: decode makes the 16 kHz analysis signal from the raw audio, as the eval command does.
    return load_config(None, ["enhance.enabled=false"])


@pytest.fixture(scope="module")
def run(cfg: PipelineConfig, tmp_path_factory) -> RunContext:
    return RunContext(out_dir=str(tmp_path_factory.mktemp("out")), corpus="c", run_id="run",
                      config_hash=cfg.config_hash())


@pytest.fixture(scope="module")
def stages(cfg: PipelineConfig, run: RunContext):
    return [stage(cfg, run) for stage in TRANSCRIPTION_STAGES]


@pytest.fixture(scope="module")
def segmented(cfg: PipelineConfig, run: RunContext) -> tuple[list[str], list[dict]]:
    """The rows as the VAD stage leaves them (never edited: tests copy what they change)."""
    groups, rows = _segmented_rows(cfg, run)
    return groups + ["failed"], rows + [dict(FAILED_ROW)]


@pytest.fixture(scope="module")
def processed(segmented, stages) -> tuple[list[str], list[dict]]:
    groups, rows = segmented
    rows = copy.deepcopy(rows)
    for stage in stages:
        rows = stage.process_batch(rows)
    return groups, rows


def _segments(row: dict) -> list[PlannedSegment]:
    return from_rows(row["segments"])


def test_stages_are_enabled_by_default(cfg: PipelineConfig) -> None:
    assert cfg.language_id.enabled and cfg.transcribe.enabled and cfg.filters.enabled
    assert all(stage.enabled(cfg) for stage in TRANSCRIPTION_STAGES)


def test_every_heard_segment_has_a_language_and_kept_ones_a_configured_one(cfg: PipelineConfig, segmented,
                                                                            processed) -> None:
    """Segments kept when language ID runs get a language (those it drops too); segments
    dropped before it are not heard and keep language None."""
    groups, rows = processed
    _, before = segmented
    seen = 0
    for group, row, prior in zip(groups, rows, before):
        if group == "failed":
            continue
        assert row["status"] == "ok", row.get("error")
        segs, prior_segs = _segments(row), _segments(prior)
        assert [(s.start, s.end) for s in segs] == [(p.start, p.end) for p in prior_segs]
        for seg, was in zip(segs, prior_segs):
            seen += 1
            if was.kept:
                assert seg.language and seg.language_prob is not None  # dropped by language ID or later too
            else:
                assert seg.drop_reason == was.drop_reason
                assert seg.language is None and seg.language_prob is None
            if seg.kept:
                assert seg.language in cfg.language_id.languages
                assert seg.text and seg.words
    assert seen >= len(rows) - 1


def test_segments_dropped_before_language_id_are_not_heard(segmented, stages) -> None:
    groups, rows = segmented
    dropped, heard = copy.deepcopy([r for g, r in zip(groups, rows) if g == "en"])
    assert dropped["segments"] and heard["segments"]
    for seg in dropped["segments"]:
        seg["drop_reason"] = "test: dropped upstream"
    out_dropped, out_heard = stages[0].process_batch([dropped, heard])
    assert all(s.language is None and s.language_prob is None and s.drop_reason == "test: dropped upstream"
               for s in _segments(out_dropped))
    assert all(s.language == "en" and s.language_prob is not None for s in _segments(out_heard))


def test_chinese_clips_are_chinese(processed) -> None:
    groups, rows = processed
    zh_rows = [r for g, r in zip(groups, rows) if g == "zh"]
    assert len(zh_rows) == 5
    for row in zh_rows:
        segs = [s for s in _segments(row) if s.language is not None]
        assert segs and all(s.language == "zh" for s in segs), [(s.language, s.language_prob) for s in segs]
        for s in segs:
            if s.kept:
                assert s.text.endswith("。")


def test_english_wer_on_the_asr_en_clips_together(processed) -> None:
    groups, rows = processed
    errors = units = 0
    for row in (r for g, r in zip(groups, rows) if g == "en"):
        hyp = " ".join(s.text for s in sorted(_segments(row), key=lambda s: s.start) if s.kept)
        ref = real_clip("asr_en", f"{row['recording_id']}.txt").read_text()
        sc = score(hyp, ref, "en")
        errors, units = errors + sc.errors, units + sc.units
    assert errors / units <= 0.30


def test_the_call_is_english_and_transcribed(processed) -> None:
    groups, rows = processed
    (row,) = [r for g, r in zip(groups, rows) if g == "call"]
    kept = [s for s in _segments(row) if s.kept]
    assert kept and all(s.language == "en" for s in kept)
    hyp = " ".join(s.text for s in sorted(kept, key=lambda s: s.start))
    sc = score(hyp, real_clip("diarization", "pyannote_sample", "sample.txt").read_text(), "en")
    assert sc.rate <= 0.35, (sc.hyp_norm, sc.ref_norm)


def test_rows_record_the_models_and_failed_rows_pass_through(processed) -> None:
    groups, rows = processed
    failed = rows[groups.index("failed")]
    # A failed row keeps everything it had; the stages only record their models on it.
    assert {k: v for k, v in failed.items() if k != "models"} == FAILED_ROW
    assert [m["stage"] for m in failed["models"]] == ["language_id", "transcribe_en", "transcribe_zh", "text_filter"]
    stages = [m["stage"] for m in rows[0]["models"]]
    assert stages == ["vad", "language_id", "transcribe_en", "transcribe_zh", "text_filter"]
    assert all(m["model"] for m in rows[0]["models"])


def test_a_model_error_fails_the_rows_not_the_job(segmented, stages, monkeypatch) -> None:
    _, rows = segmented
    lid = stages[0]

    def boom(audios):
        raise RuntimeError("device lost")

    monkeypatch.setattr(lid.lid, "probabilities", boom)
    out = lid.process_batch(copy.deepcopy(rows[:2]))
    assert [r["status"] for r in out] == ["failed", "failed"]
    assert out[0]["error"] == "language ID failed: RuntimeError: device lost"


def _times(segments: list[PlannedSegment]) -> tuple:
    return tuple((s.start, s.end) for s in segments)


@pytest.mark.slow
@pytest.mark.parametrize("fuse", ["never", "always"])
def test_stages_on_ray_give_the_same_segments(cfg: PipelineConfig, run: RunContext, segmented, processed,
                                              ray_session, fuse) -> None:
    import ray

    from pipeline.graph import apply_stage, cluster_cpus, plan_graph

    groups, rows = processed
    _, before = segmented
    picked = [before[groups.index("zh")], before[groups.index("en")]]
    # Only what language ID reads rides into the graph, as in the full pipeline after pruning.
    picked = [{k: r[k] for k in LanguageIdStage.inputs()} for r in copy.deepcopy(picked)]
    # The graph prunes recording_id (no stage here reads it): match rows by their segment times.
    expected = {_times(_segments(r)): r for r in rows if r.get("segments")}

    plan = plan_graph(TRANSCRIPTION_STAGES, cfg, cluster_cpus(), fuse=fuse)
    if fuse == "never":
        assert [p.stage for p in plan] == list(TRANSCRIPTION_STAGES)
        assert plan[-1].keep is None and "analysis" in plan[0].keep and "analysis" not in plan[1].keep
    else:  # one operator: the three stages in one actor, one actor per CPU
        assert [p.members for p in plan] == [TRANSCRIPTION_STAGES] and plan[0].placement.pool.min_size == 2
        assert plan[0].keeps[-1] is None and "analysis" in plan[0].keeps[0] and "analysis" not in plan[0].keeps[1]
    # Three pools of one CPU on a two-CPU cluster reserve fractions so that all of them start;
    # fused, two actors of one CPU each fit as they are.
    held = sum(p.placement.resources.num_cpus * p.placement.pool.min_size for p in plan)
    assert cluster_cpus() - 1e-3 <= held <= cluster_cpus()
    assert all(p.placement.resources.num_cpus < 1 if fuse == "never" else p.placement.resources.num_cpus == 1
               for p in plan)
    ds = ray.data.from_items(picked)
    for planned in plan:
        ds = apply_stage(ds, planned, cfg, run)
    out = ds.take_all()
    assert len(out) == 2
    for row in out:
        assert row["status"] == "ok"
        got = _segments(row)
        want_row = expected[_times(got)]
        want = _segments(want_row)
        # Same decisions and text. Figures may differ in the last digits: a Ray actor runs
        # CTranslate2 on fewer threads (OMP_NUM_THREADS follows its CPU share) than this process.
        assert [(g.text, g.language, g.drop_reason, [w["token"] for w in g.words or []]) for g in got] == \
            [(w.text, w.language, w.drop_reason, [x["token"] for x in w.words or []]) for w in want]
        for g, w in zip(got, want):
            assert g.language_prob == (None if w.language_prob is None else pytest.approx(w.language_prob, abs=0.01))
        assert [m["stage"] for m in row["models"]] == [m["stage"] for m in want_row["models"]]
        assert [s["stage"] for s in row["stage_seconds"]] == ["language_id", "transcribe", "text_filter"]
