"""`refinery eval asr`: JSON and text reports on the real clips, scoring rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from tests.conftest import real_clip
from transcription.scoring import normalize_en, normalize_zh, reference_language, score, total_rate


def _eval(*args: str) -> dict:
    result = CliRunner().invoke(main, ["eval", "asr", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_english_clips_json() -> None:
    d = str(real_clip("asr_en"))
    report = json.loads(_eval("--audio", d, "--ref", d, "--json").stdout)
    assert set(report["files"]) == {"jfk", "librispeech-1995-1837-0001"}
    for entry in report["files"].values():
        assert entry["language"] == "en" and set(entry) >= {"hyp", "ref", "wer"} and "cer" not in entry
    assert report["total"]["wer"] <= 0.30
    assert report["total"]["cer"] is None  # no Chinese file given


def test_chinese_clips_json() -> None:
    d = str(real_clip("asr_zh"))
    report = json.loads(_eval("--audio", d, "--ref", d, "--json").stdout)
    assert len(report["files"]) == 5  # the .vad_ms.txt sidecar has no audio of its stem: ignored
    assert all(e["language"] == "zh" and "cer" in e for e in report["files"].values())
    assert report["total"]["wer"] is None
    assert report["total"]["cer"] <= 0.15


def test_mixed_folder_text_report_with_the_call(tmp_path: Path) -> None:
    # audio and references in different folders; the 30 s call is one segment (<= 30 s)
    audio, ref = tmp_path / "audio", tmp_path / "ref"
    audio.mkdir()
    ref.mkdir()
    for src in (real_clip("diarization", "pyannote_sample", "sample.wav"), real_clip("asr_zh", "IT0011W0001.wav")):
        (audio / src.name).symlink_to(src)
        (ref / f"{src.stem}.txt").symlink_to(src.with_suffix(".txt"))
    (audio / "no_reference.wav").symlink_to(real_clip("asr_en", "librispeech-1995-1837-0001.wav"))
    out = _eval("--audio", str(audio), "--ref", str(ref)).stdout
    lines = out.splitlines()
    assert any(line.startswith("sample ") and " en " in line and "WER" in line for line in lines)
    assert any(line.startswith("IT0011W0001 ") and " zh " in line and "CER" in line for line in lines)
    assert any(line.startswith("total") and "WER" in line for line in lines)
    assert any(line.startswith("total") and "CER" in line for line in lines)
    assert "no_reference" not in out
    report = json.loads(_eval("--audio", str(audio), "--ref", str(ref), "--json").stdout)
    assert report["files"]["sample"]["wer"] <= 0.35


def test_no_pairs_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", "asr", "--audio", str(tmp_path), "--ref", str(tmp_path)])
    assert result.exit_code != 0 and "no audio file" in result.output


def test_normalisation() -> None:
    assert normalize_en("Mr. Smith paid twenty-five dollars!") == normalize_en("mister smith paid $25")
    assert normalize_en("IT WAS THE FIRST") == normalize_en("It was the first.")
    assert normalize_zh("甚至  出现，交易。") == "甚至出现交易"
    assert normalize_zh("換一首歌") == "换一首歌"
    assert reference_language("甚至  出现  交易") == "zh" and reference_language("Hello there") == "en"


def test_totals_are_corpus_level() -> None:
    a = score("a b c d", "a b c d", "en")  # 0/4
    b = score("x", "y z", "en")  # 2/2
    assert total_rate([a, b], "wer") == pytest.approx(2 / 6)
    assert total_rate([a, b], "cer") is None
    assert score("", "你好", "zh").rate == 1.0
