"""`refinery synth run` end to end, offline: the shipped demo dialogues, spoken by Kokoro-82M (en, and
zh through its pinyin front end), converted by WORLD to voice-library speakers (user) and the shipped assistant voice,
gated by the pipeline's Whisper, CAM++ and DNSMOS, written as dialogue shards through the ledger.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
import soundfile as sf
from click.testing import CliRunner

from audio_io.flac import decode_flac
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from pipeline.cli import main as cli
from tests.conftest import REPO, real_clip

pytestmark = pytest.mark.slow

DEMO = REPO / "examples" / "dialogues" / "demo.jsonl"
# Measured bounds the shipped output must meet (the gates' defaults): WER of kept English turns,
# CER of kept Chinese turns.
MAX_WER_EN, MAX_CER_ZH = 0.10, 0.25

# Real speakers of the shared clips as the voice library of user turns: (clip, seconds, transcript file).
REFERENCES = [
    (("asr_en", "librispeech-1995-1837-0001.wav"), 8.7, ("asr_en", "librispeech-1995-1837-0001.txt")),
    (("asr_en", "jfk.flac"), 10.0, ("asr_en", "jfk.txt")),
    (("asr_zh", "BAC009S0764W0121.wav"), 4.2, ("asr_zh", "BAC009S0764W0121.txt")),
    (("asr_zh", "funasr_asr_example.wav"), 5.5, ("asr_zh", "funasr_asr_example.txt")),
]


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> Path:
    refs = tmp_path_factory.mktemp("refs")
    for clip, seconds, text in REFERENCES:
        audio, rate = sf.read(real_clip(*clip), dtype="float32", always_2d=True)
        stem = Path(clip[1]).stem
        sf.write(refs / f"{stem}.wav", audio[: int(seconds * rate), 0], rate)
        (refs / f"{stem}.txt").write_text(real_clip(*text).read_text(encoding="utf-8").strip(), encoding="utf-8")
    out = tmp_path_factory.mktemp("voices")
    res = CliRunner().invoke(cli, ["synth", "voices", "build", str(out / "none"), "--to", str(out / "lib"),
                                   "--add", str(refs)])
    assert res.exit_code == 0, res.output
    assert "4 voice(s) from 4 speaker(s) (en 2, zh 2)" in res.output
    return out / "lib"


@pytest.fixture(scope="module")
def synth(ray_session, voices, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    args = ["synth", "run", str(DEMO), "--corpus", "sft", "--out", str(out), "--voices", str(voices),
            "--address", ray_session]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    rows = pads.dataset([str(p) for p in Ledger(CorpusLayout(out, "sft")).shard_files()],
                        format="parquet").to_table().to_pylist()
    return {"out": out, "args": args, "first": first.output, "rows": rows}


def _spoken(rows):
    return [r for r in rows if r["role"] != "system" and r["audio"] is not None]


def test_every_kept_turn_is_heard_as_its_text(synth):
    kept = [r for r in synth["rows"] if r["kept"] and r["dialogue_kept"] and r["role"] != "system"
            and r["audio"] is not None]
    by_lang = Counter(r["language"] for r in kept)
    assert by_lang["en"] >= 10 and by_lang["zh"] >= 3, by_lang
    for r in kept:
        bound = MAX_CER_ZH if r["language"] == "zh" else MAX_WER_EN
        assert r["asr_error"] is not None and r["asr_error"] <= bound, (r["spoken_text"], r["asr_text"])
        audio, rate = decode_flac(r["audio"]["bytes"])
        assert rate == r["sample_rate"] == 24000 and abs(len(audio) / rate - r["duration"]) < 0.01


def test_conversion_moves_every_converted_turn_toward_its_target(synth):
    spoken = [r for r in _spoken(synth["rows"]) if r["speaker_similarity"] is not None]
    converted = [r for r in spoken if r["vc_backend"] == "world"]
    unused = [r for r in spoken if r["vc_note"]]
    # Every assistant turn ships converted, and user turns where WORLD got nearer to the library voice;
    # a conversion that moved away from its target was not used, and says so with both figures
    # (measured: WORLD never got nearer to the LibriSpeech reader from a Kokoro voice).
    assert all(r["vc_backend"] == "world" for r in spoken if r["role"] == "assistant")
    assert sum(r["role"] == "user" for r in converted) >= 3, [r["vc_note"] for r in unused]
    for r in converted:
        assert r["speaker_similarity"] > r["speaker_similarity_before_vc"], r["dialogue_id"]
    for r in unused:
        assert r["vc_backend"] == "none" and "conversion not used: similarity" in r["vc_note"]
    gains = [r["speaker_similarity"] - r["speaker_similarity_before_vc"] for r in converted
             if r["role"] == "assistant"]
    assert np.mean(gains) > 0.1, gains


def test_assistant_sounds_like_one_voice_and_users_like_several(synth):
    from diarization.embedding import load_embedder

    from audio_io.resample import resample

    kept = [r for r in _spoken(synth["rows"]) if r["kept"]]
    assistant = [r for r in kept if r["role"] == "assistant"]
    users = [r for r in kept if r["role"] == "user"]
    assert len({r["voice_id"] for r in assistant}) == 1
    assert len({r["voice_id"] for r in users}) >= 2  # voices drawn per dialogue from the library
    embedder = load_embedder("campplus")

    def embed(rs):
        waves = []
        for r in rs:
            audio, rate = decode_flac(r["audio"]["bytes"])
            waves.append(resample(audio.astype(np.float32), rate, 16000))
        return embedder.embed(waves)

    e_a, e_u = embed(assistant), embed(users)
    within_assistant = [float(e_a[i] @ e_a[j]) for i, j in itertools.combinations(range(len(assistant)), 2)]
    across_users = [float(e_u[i] @ e_u[j]) for i, j in itertools.combinations(range(len(users)), 2)
                    if users[i]["voice_id"] != users[j]["voice_id"]]
    assert within_assistant and across_users
    assert np.mean(within_assistant) > np.mean(across_users) + 0.1, (np.mean(within_assistant), np.mean(across_users))


def test_every_drop_has_a_reason_and_the_filters_drop_what_cannot_be_spoken(synth):
    rows = synth["rows"]
    for r in rows:
        if r["role"] != "system" and not r["kept"]:
            assert r["drop_reason"], r
        if not r["dialogue_kept"]:
            assert r["dialogue_drop_reason"] and r["dialogue_form"] is None
        else:
            assert r["dialogue_form"] in ("speech", "audio_to_text")
    reasons = " ".join(r["drop_reason"] or "" for r in rows)
    for check in ("code:", "math:", "table:", "url:", "turn_length:", "mixed_script:"):
        assert check in reasons, check
    forms = Counter(r["dialogue_form"] for r in rows if r["turn_index"] == 0)
    # How many of the 15 demo dialogues pass every round-trip gate as speech moves with borderline
    # WERs (CI after the float64 log-mel: 5 speech, 6 audio_to_text; before it, 6 or more speech).
    assert forms["speech"] >= 5 and forms["audio_to_text"] >= 1, forms


def test_the_ledger_has_one_row_per_dialogue_and_a_rerun_does_nothing(synth):
    out = synth["out"]
    ledger = Ledger(CorpusLayout(out, "sft")).read().to_pylist()
    lines = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert Counter(r["status"] for r in ledger) == {"done": len(lines)}
    turns = Counter(r["dialogue_id"] for r in synth["rows"])
    for r in ledger:
        assert turns[r["recording_id"]] == r["segments"]
    again = CliRunner().invoke(cli, synth["args"])
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output
    stats = CliRunner().invoke(cli, ["manifest", "stats", str(out), "--corpus", "sft", "--json"])
    assert stats.exit_code == 0, stats.output
    verify = CliRunner().invoke(cli, ["manifest", "verify", str(out), "--corpus", "sft"])
    assert verify.exit_code == 0, verify.output
