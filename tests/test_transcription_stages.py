"""The three stages (language ID, transcribe, text filters) on real clips, segmented by the pipeline's
VAD stage, with the offline default models: directly (as the eval command runs them) and on Ray."""

from __future__ import annotations

import json

import pytest

from manifests import planned_segment
from pipeline.config import PipelineConfig, load_config
from stages.decode import decode_row
from stages.language_id import LanguageIdStage
from stages.text_filter import TextFilterStage
from stages.transcribe import TranscribeStage
from stages.vad_segment import VadSegmenter
from tests.conftest import real_clip
from transcription.scoring import score


def _clips() -> dict[str, list]:
    return {
        "en": [real_clip("asr_en", "jfk.flac"), real_clip("asr_en", "librispeech-1995-1837-0001.wav")],
        "zh": sorted(real_clip("asr_zh").glob("*.wav")),
        "call": [real_clip("diarization", "pyannote_sample", "sample.wav")],
    }


def _segmented_rows(cfg: PipelineConfig) -> tuple[list[str], list[dict]]:
    groups, rows = [], []
    segmenter = VadSegmenter(cfg.vad, cfg.segment)
    for group, paths in _clips().items():
        for path in paths:
            row = decode_row({"path": str(path), "source_uri": str(path), "recording_id": path.stem}, cfg.decode)
            rows.append(segmenter.segment_row(row))
            groups.append(group)
    return groups, rows


@pytest.fixture(scope="module")
def cfg() -> PipelineConfig:
    return load_config()


@pytest.fixture(scope="module")
def stages(cfg: PipelineConfig):
    return [LanguageIdStage(cfg.language_id), TranscribeStage(cfg.transcribe), TextFilterStage(cfg.filters)]


@pytest.fixture(scope="module")
def processed(cfg: PipelineConfig, stages) -> tuple[list[str], list[dict]]:
    groups, rows = _segmented_rows(cfg)
    rows.append({"status": "failed", "error": "decode failed: test", "recording_id": "broken", "source_uri": "x"})
    groups.append("failed")
    for stage in stages:
        rows = stage(rows)
    return groups, rows


def _segments(row: dict):
    return planned_segment.loads(row["segments_json"])


def test_stages_are_enabled_by_default(cfg: PipelineConfig) -> None:
    assert cfg.language_id.enabled and cfg.transcribe.enabled and cfg.filters.enabled


def test_every_segment_has_a_language_and_kept_ones_a_configured_one(cfg: PipelineConfig, processed) -> None:
    groups, rows = processed
    seen = 0
    for group, row in zip(groups, rows):
        if group == "failed":
            continue
        assert row["status"] == "ok", row.get("error")
        for seg in _segments(row):
            seen += 1
            assert seg.language and seg.language_prob is not None  # dropped ones too
            if seg.kept:
                assert seg.language in cfg.language_id.languages
                assert seg.text and seg.words
    assert seen >= len(rows) - 1


def test_chinese_clips_are_chinese(processed) -> None:
    groups, rows = processed
    zh_rows = [r for g, r in zip(groups, rows) if g == "zh"]
    assert len(zh_rows) == 5
    for row in zh_rows:
        segs = _segments(row)
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
    assert failed == {"status": "failed", "error": "decode failed: test", "recording_id": "broken", "source_uri": "x"}
    stages = [stage for stage, _ in json.loads(rows[0]["models_json"])]
    assert stages == ["vad", "language_id", "transcribe_en", "transcribe_zh", "text_filter"]


def test_a_model_error_fails_the_rows_not_the_job(cfg: PipelineConfig, stages, monkeypatch) -> None:
    _, rows = _segmented_rows(cfg)
    lid = stages[0]

    def boom(audios):
        raise RuntimeError("device lost")

    monkeypatch.setattr(lid.lid, "probabilities", boom)
    out = lid(rows[:2])
    assert [r["status"] for r in out] == ["failed", "failed"]
    assert out[0]["error"] == "language ID failed: RuntimeError: device lost"


@pytest.mark.slow
def test_stages_on_ray_give_the_same_segments(cfg: PipelineConfig, processed, ray_session) -> None:
    import ray

    from pipeline.graph import apply_stage
    from stages.base import StageSpec

    groups, rows = processed
    _, fresh = _segmented_rows(cfg)
    picked = [fresh[groups.index("zh")], fresh[groups.index("en")]]
    expected = {r["recording_id"]: r["segments_json"] for r in rows if r.get("segments_json")}
    ds = ray.data.from_items(picked)
    for spec in (
        StageSpec("language_id", LanguageIdStage, cfg.language_id.resources, batch_size=cfg.language_id.batch_size,
                  pool=cfg.language_id.pool, init_kwargs={"language_id": cfg.language_id}),
        StageSpec("transcribe", TranscribeStage, cfg.transcribe.resources, batch_size=cfg.transcribe.batch_size,
                  pool=cfg.transcribe.pool, init_kwargs={"transcribe": cfg.transcribe}),
        StageSpec("text_filter", TextFilterStage, cfg.filters.resources, batch_size=cfg.filters.batch_size,
                  pool=cfg.filters.pool, init_kwargs={"filters": cfg.filters}),
    ):
        ds = apply_stage(ds, spec)
    out = ds.take_all()
    assert len(out) == 2
    for row in out:
        assert row["status"] == "ok"
        got, want = _segments(row), planned_segment.loads(expected[row["recording_id"]])
        # Same decisions and text. Figures may differ in the last digits: a Ray actor asking for one
        # CPU runs CTranslate2 on one thread (OMP_NUM_THREADS=1), this process on several.
        assert [(g.text, g.language, g.drop_reason, [w["token"] for w in g.words or []]) for g in got] == \
            [(w.text, w.language, w.drop_reason, [x["token"] for x in w.words or []]) for w in want]
        for g, w in zip(got, want):
            assert g.language_prob == pytest.approx(w.language_prob, abs=0.01)
