"""Paraformer-zh through FunASR with seeded random weights: loading, decoding, character timestamps.

The weights are meaningless, so the text is too; what is tested is that FunASR's real
model class (SeacoParaformer with the CifPredictorV3 timestamp predictor) loads from a
model directory like the hub one, runs on real audio, and gives one monotonic timestamp
per character, which the gap rule then punctuates.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from audio_io.decode import decode
from tests.conftest import real_clip
from transcription.asr import SegmentTranscriber, TranscribeParams
from transcription.paraformer import ParaformerTranscriber, is_local_path
from transcription.paraformer_assets import ASSETS, build_random_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_random_model_dir(tmp_path_factory.mktemp("paraformer") / "tiny-random", seed=0)


@pytest.fixture(scope="module")
def paraformer(model_dir: Path) -> ParaformerTranscriber:
    return ParaformerTranscriber(str(model_dir), device="cpu", cpu_threads=2)


@pytest.fixture(scope="module")
def zh_audio() -> list[np.ndarray]:
    return [decode(str(p), 16000).samples for p in sorted(real_clip("asr_zh").glob("*.wav"))]


def test_the_model_is_funasrs_own_paraformer(paraformer: ParaformerTranscriber, model_dir: Path) -> None:
    import torch
    from funasr.models.bicif_paraformer.cif_predictor import CifPredictorV3
    from funasr.models.seaco_paraformer.model import SeacoParaformer

    model = paraformer.model.model
    assert isinstance(model, SeacoParaformer)
    assert isinstance(model.predictor, CifPredictorV3)
    # every saved tensor arrived (funasr skips mismatched shapes silently)
    saved = torch.load(model_dir / "model.pt", map_location="cpu")
    loaded = model.state_dict()
    assert set(saved) == set(loaded)
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert {p.name for p in model_dir.iterdir()} >= {"config.yaml", "tokens.json", "am.mvn", "model.pt"}
    assert not list(ASSETS.glob("*.pt"))  # no weights in the repository


def test_decodes_real_audio_with_monotonic_character_timestamps(paraformer: ParaformerTranscriber, zh_audio) -> None:
    results = paraformer.transcribe(zh_audio)
    assert len(results) == len(zh_audio)
    for res, audio in zip(results, zh_audio):
        assert res.text and res.words, res
        assert len(res.words) == len(res.text.split())
        duration = len(audio) / 16000
        prev_end = 0.0
        for w in res.words:
            assert len(w["token"]) == 1  # one character per token
            assert prev_end <= w["start"] < w["end"] <= duration + 0.1
            prev_end = w["end"]


def test_decoding_is_deterministic(paraformer: ParaformerTranscriber, zh_audio) -> None:
    a = paraformer.transcribe(zh_audio[:2])
    b = paraformer.transcribe(zh_audio[:2])
    assert [(r.text, r.words) for r in a] == [(r.text, r.words) for r in b]


def test_too_short_input_gives_an_empty_result_not_a_shifted_batch(paraformer: ParaformerTranscriber, zh_audio) -> None:
    results = paraformer.transcribe([np.zeros(800, np.float32), zh_audio[0]])  # 0.05 s, then a real clip
    assert results[0].text == "" and results[0].words == []
    assert results[1].text == paraformer.transcribe([zh_audio[0]])[0].text


def test_segment_transcriber_punctuates_paraformer_output(model_dir: Path, zh_audio) -> None:
    params = TranscribeParams(zh_backend="paraformer", paraformer_model=str(model_dir))
    tr = SegmentTranscriber(params, cpu_threads=2)
    results = tr.transcribe(zh_audio[:2], "zh")
    for res in results:
        assert res.text.endswith("。")
        assert [w["token"] for w in res.words] == [c for c in res.text if c not in "，。"]
        assert res.raw_text is not None
    assert dict(tr.models())["transcribe_zh"] == f"{model_dir}@funasr==1.4.16"


def test_missing_local_model_fails_at_once_with_a_clear_message(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="not found"):
        ParaformerTranscriber(str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks config.yaml, model.pt"):
        ParaformerTranscriber(str(tmp_path / "empty"))
    assert time.perf_counter() - t0 < 2.0  # no hub retries


def test_hub_ids_and_paths_are_told_apart(tmp_path: Path) -> None:
    assert not is_local_path("paraformer-zh")
    assert not is_local_path("iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch")
    assert is_local_path("./models/paraformer") and is_local_path("/opt/models/pf") and is_local_path("a/b/c")
    assert is_local_path(str(tmp_path))
    assert TranscribeParams().paraformer_model == "paraformer-zh"  # the hub path stays the configured name
