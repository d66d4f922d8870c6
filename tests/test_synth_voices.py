"""The voice library and the assistant voice, on segment shards written by the real writers
(shards + ledger commit) with real FLAC audio cut from the shared clips.

The tiny output: corpus ``calls`` holds the pyannote sample call (segments on the reference
RTTM's turns, overlap ratios computed from that RTTM, text from its STM), the LibriSpeech clip
and the JFK clip; corpus ``zh`` two Mandarin clips; corpus ``dlg`` is a dialogues corpus, never
read as voices.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audio_io.flac import decode_flac, encode_flac
from audio_io.resample import resample
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.planned_segment import PlannedSegment
from manifests.segment_rows import RecordingContext, build_segment_rows, ordered
from manifests.shards import ShardLimits, write_shards
from synthesis.vc.world import f0_stats
from synthesis.voices.assistant import (DEFAULT_DIR, default_assistant_voice_dir, load_assistant_voice)
from synthesis.voices.library import (VoiceLibraryParams, add_reference_voices, build_record, build_voice_library,
                                      load_voice_library, pick_voice, voice_id_for, write_voice_library)
from tests.conftest import real_clip

PYANNOTE = ("diarization", "pyannote_sample")


def _rttm() -> list[tuple[float, float, str]]:
    turns = []
    for line in real_clip(*PYANNOTE, "sample.rttm").read_text().splitlines():
        f = line.split()
        turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


def _overlap_ratio(start: float, end: float, speaker: str) -> float:
    """Share of [start, end] that another speaker's reference turn covers."""
    others = sorted((max(a, start), min(b, end)) for a, b, s in _rttm() if s != speaker and b > start and a < end)
    covered, reach = 0.0, start
    for a, b in others:
        a = max(a, reach)
        if b > a:
            covered, reach = covered + b - a, b
    return round(covered / (end - start), 4)


def _read(parts: tuple[str, ...]) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(real_clip(*parts), dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)


def _commit(out: Path, corpus: str, recordings: list[tuple[str, tuple[str, ...], list[PlannedSegment]]]) -> None:
    """Each recording's segments as shards of one run (3 rows a shard), committed through the ledger."""
    layout = CorpusLayout(out, corpus, kind="segments")
    layout.claim_kind()
    ledger = Ledger(layout)
    for index, (rec, parts, segments) in enumerate(recordings):
        audio, rate = _read(parts)
        segs = ordered(segments)
        cells = [encode_flac(audio[int(round(s.start * rate)): int(round(s.end * rate))], rate) for s in segs]
        ctx = RecordingContext(rec, str(real_clip(*parts)), corpus, "run1", "h")
        rows = build_segment_rows(ctx, segs, rate, cells, [None] * len(segs))
        staged = write_shards(rows, layout, "run1", ShardLimits(max_rows=3, max_bytes=10**9))
        finals = [layout.rel(layout.shard_path("run1", 10 * index + i)) for i in range(len(staged))]
        ledger.commit("run1", index, [{
            "source_uri": ctx.source_uri, "sha256": rec, "recording_id": rec, "corpus": corpus, "run_id": "run1",
            "config_hash": "h", "status": "done", "segments": len(rows),
            "staged_paths": [layout.rel(p) for p, _ in staged], "shard_paths": finals}])


def _seg(start, end, speaker, text, language="en", dnsmos=None, overlap=None, drop=None) -> PlannedSegment:
    if overlap is None and speaker.startswith("sample/"):
        overlap = _overlap_ratio(start, end, speaker.split("/")[1])
    return PlannedSegment(start, end, speaker=speaker, overlap_ratio=0.0 if overlap is None else overlap,
                          language=language, text=text, drop_reason=drop, dnsmos_ovrl=dnsmos)


# Why each segment is or is not a voice (defaults: 3-10 s, no overlap, DNSMOS >= 2.5 when
# present, K = 2 per speaker, en + zh).
CALL = [
    _seg(10.78, 14.184, "sample/speaker90", "I heard a beep. This is Diane in New Jersey."),  # overlap
    _seg(11.03, 14.49, "sample/speaker90", "I heard a beep. This is Diane in New Jersey."),  # voice
    _seg(14.70, 17.92, "sample/speaker91", "And I'm Sheila in Texas, originally from Chicago.", dnsmos=2.0),  # DNSMOS
    _seg(17.789, 21.475, "sample/speaker90", "Oh, I'm originally from Chicago also."),  # overlap
    _seg(21.78, 27.38, "sample/speaker91", "Well, there isn't that much difference.", dnsmos=3.2),  # voice
    _seg(22.0, 27.0, "sample/speaker91", "There isn't that much difference.", dnsmos=3.9,
         drop="filters: dropped for the test"),  # dropped
    _seg(8.436, 9.798, "sample/speaker90", "Oh, hello. I didn't know you were there."),  # too short
]
LIBRI = [
    _seg(0.0, 4.0, "libri/S0", "It was the first great sorrow of his life.", dnsmos=3.0),  # voice (2nd)
    _seg(4.0, 8.7, "libri/S0", "It was not so much the loss of the cotton itself.", dnsmos=3.5),  # voice (1st)
    _seg(0.5, 8.6, "libri/S0", "It was the first great sorrow of his life.", dnsmos=2.9),  # K per speaker
]
JFK = [
    _seg(0.0, 11.0, "jfk/S0", "And so my fellow Americans, ask not what your country can do for you."),  # too long
    _seg(0.3, 5.5, "jfk/S0", "   "),  # no text
    _seg(0.4, 5.5, "jfk/S0", "And so my fellow Americans.", language="ja"),  # language
    _seg(5.5, 10.8, "jfk/S0", "Ask what you can do for your country."),  # voice
]
ZH = [("bac", ("asr_zh", "BAC009S0764W0121.wav"), [_seg(0.0, 4.2, "bac/S0", "甚至出现交易几乎停滞的情况", "zh")]),
      ("funasr", ("asr_zh", "funasr_asr_example.wav"),
       [_seg(0.0, 5.5, "funasr/S0", "欢迎大家来体验达摩院推出的语音识别模型", "zh", dnsmos=3.0)]),
      ("it", ("asr_zh", "IT0011W0001.wav"), [_seg(0.0, 1.99, "it/S0", "换一首歌", "zh")])]  # too short
VOICE_SEGMENTS = {("calls", "sample", 11.03), ("calls", "sample", 21.78), ("calls", "libri", 0.0),
                  ("calls", "libri", 4.0), ("calls", "jfk", 5.5), ("zh", "bac", 0.0), ("zh", "funasr", 0.0)}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("refinery-out")
    _commit(out, "calls", [("sample", PYANNOTE + ("sample.wav",), CALL),
                           ("libri", ("asr_en", "librispeech-1995-1837-0001.wav"), LIBRI),
                           ("jfk", ("asr_en", "jfk.flac"), JFK)])
    _commit(out, "zh", ZH)
    dialogues = CorpusLayout(out, "dlg", kind="dialogues")
    dialogues.claim_kind()
    Path(dialogues.ledger_dir).mkdir(parents=True)
    return out


@pytest.fixture(scope="module")
def embedder():
    from diarization.embedding import load_embedder

    return load_embedder("campplus")


@pytest.fixture(scope="module")
def library(out, embedder):
    return build_voice_library(out, None, VoiceLibraryParams(), embedder)


def _segments(out: Path) -> dict[str, dict]:
    rows = {}
    for corpus in ("calls", "zh"):
        layout = CorpusLayout(out, corpus)
        for f in Ledger(layout).shard_files():
            for r in pq.read_table(f).to_pylist():
                rows[r["segment_id"]] = {**r, "corpus": corpus}
    return rows


def test_selection_follows_every_rule(out, library):
    segs = _segments(out)
    rows = library.to_pylist()
    chosen = {(r["source_corpus"], segs[r["source_segment_id"]]["recording_id"], segs[r["source_segment_id"]]["start"])
              for r in rows}
    assert chosen == VOICE_SEGMENTS
    params = VoiceLibraryParams()
    for r in rows:
        seg = segs[r["source_segment_id"]]
        assert seg["kept"] and seg["overlap_ratio"] <= params.max_overlap_ratio
        assert params.min_duration_s <= seg["duration"] <= params.max_duration_s
        assert seg["dnsmos_ovrl"] is None or seg["dnsmos_ovrl"] >= params.min_dnsmos_ovrl
        assert r["prompt_text"] == seg["text"].strip() != "" and r["language"] == seg["language"] in params.languages
    # The RTTM-derived overlap really excluded the segments that cross the other speaker's turns.
    assert _overlap_ratio(10.78, 14.184, "speaker90") > 0 and _overlap_ratio(11.03, 14.49, "speaker90") == 0
    assert all(segs[r["source_segment_id"]]["drop_reason"] is None for r in rows)
    assert sum(not s["kept"] for s in segs.values()) == 1
    speakers = [r["speaker"] for r in rows]
    assert max(speakers.count(s) for s in speakers) == 2 == speakers.count("calls/libri/S0")
    # The two best-ranked LibriSpeech segments (DNSMOS 3.5 and 3.0), not the 2.9 one.
    assert sorted(segs[r["source_segment_id"]]["dnsmos_ovrl"] for r in rows if r["speaker"] == "calls/libri/S0") == [3.0, 3.5]
    record = build_record(library)
    assert record["corpora"] == ["calls", "zh"]  # the dialogues corpus is not a voice source
    for wrong in ("dlg", "nope"):  # a dialogues corpus, a missing one: refused by name
        with pytest.raises(ValueError, match=f"no segment corpus {wrong} under"):
            build_voice_library(out, ["calls", wrong], VoiceLibraryParams(), None)
    assert record["segments_read"] == len(segs) and record["speakers_qualifying"] == 6 and record["qualifying"] == 8


def test_order_spreads_speakers_then_alternates_languages(out, library, embedder):
    rows = library.to_pylist()
    first_round = [r["speaker"] for r in rows[:6]]
    assert len(set(first_round)) == 6  # every speaker once before anyone's second voice
    assert [r["language"] for r in rows[:4]] == ["en", "zh", "en", "zh"]
    cut = build_voice_library(out, None, VoiceLibraryParams(max_voices=4, min_dnsmos_ovrl=None, f0_method="dio"), embedder)
    assert cut.num_rows == 4 and sorted(cut.column("language").to_pylist()) == ["en", "en", "zh", "zh"]
    assert len(set(cut.column("speaker").to_pylist())) == 4
    # Without the DNSMOS bound Sheila's 14.7 s segment qualifies too: she keeps two voices.
    loose = build_voice_library(out, ["calls"], VoiceLibraryParams(min_dnsmos_ovrl=None, f0_method="dio"), embedder)
    assert loose.column("speaker").to_pylist().count("calls/sample/speaker91") == 2
    assert set(loose.column("language").to_pylist()) == {"en"}
    again = build_voice_library(out, None, VoiceLibraryParams(seed=1, f0_method="dio"), embedder)
    assert set(again.column("voice_id").to_pylist()) == set(library.column("voice_id").to_pylist())
    only_zh = build_voice_library(out, None, VoiceLibraryParams(languages=["zh"], f0_method="dio"), embedder)
    assert set(only_zh.column("language").to_pylist()) == {"zh"} and only_zh.num_rows == 2
    enhanced = build_voice_library(out, None, VoiceLibraryParams(audio_variant="enhanced"), embedder)
    assert enhanced.num_rows == 0 and build_record(enhanced)["left_out"]["no_audio_variant"] == 8  # 7 + the K-capped one


def test_rows_carry_the_segment_audio_embedding_and_f0(out, library, embedder):
    segs = _segments(out)
    rows = library.to_pylist()
    for r in rows:
        seg = segs[r["source_segment_id"]]
        assert r["voice_id"] == voice_id_for(f"{r['source_corpus']}/{r['source_segment_id']}")
        assert r["voice_id"].startswith("v-") and len(r["voice_id"]) == 14
        assert r["prompt_audio"]["bytes"] == seg["audio"]["bytes"] and r["sample_rate"] == seg["sample_rate"]
        assert abs(r["duration"] - seg["duration"]) < 2e-3 and r["source_uri"] == seg["source_uri"]
        audio, rate = decode_flac(r["prompt_audio"]["bytes"])
        emb = np.asarray(r["speaker_embedding"], np.float32)
        assert len(emb) == embedder.dim == 192 and abs(np.linalg.norm(emb) - 1) < 1e-4
        assert r["embedder"] == embedder.model_id
        alone = embedder.embed([resample(audio, rate, 16000)])[0]
        assert float(alone @ emb) > 0.999
        assert 80 < r["f0_mean_hz"] < 350 and r["f0_std_hz"] > 0 and 0 < r["logf0_std"] < 1
        assert abs(np.exp(r["logf0_mean"]) - r["f0_mean_hz"]) < 0.1 * r["f0_mean_hz"]
        assert r["logf0_mean"] == pytest.approx(f0_stats(audio, rate).logf0_mean)
    # Same speaker: the two LibriSpeech voices are closer to each other than to anyone else.
    e = {r["voice_id"]: np.asarray(r["speaker_embedding"]) for r in rows}
    libri = [r["voice_id"] for r in rows if r["speaker"] == "calls/libri/S0"]
    same = float(e[libri[0]] @ e[libri[1]])
    assert all(same > float(e[libri[0]] @ e[v]) for v in e if v not in libri)


def test_write_load_round_trip_and_pick(library, tmp_path):
    path = write_voice_library(library, tmp_path / "lib")
    assert path == tmp_path / "lib" / "voices.parquet"
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == ["build.json", "voices.parquet"]  # no temp left
    build = json.loads((tmp_path / "lib" / "build.json").read_text())
    assert build["voices_per_language"] == {"en": 5, "zh": 2} and build["voices"] == 7 and build["speakers"] == 6
    assert build["params"]["max_per_speaker"] == 2 and build["corpora"] == ["calls", "zh"]
    voices = load_voice_library(tmp_path / "lib")
    assert [v.voice_id for v in voices] == library.column("voice_id").to_pylist()
    assert [v.voice_id for v in load_voice_library(path)] == [v.voice_id for v in voices]
    for v, r in zip(voices, library.to_pylist()):
        audio, rate = decode_flac(r["prompt_audio"]["bytes"])
        assert v.speech.sample_rate == rate and np.array_equal(v.speech.audio, audio)
        assert v.text == r["prompt_text"] and v.language == r["language"] and v.source == r["source_segment_id"]
        assert np.array_equal(v.embedding, np.asarray(r["speaker_embedding"], np.float32))
    picks = [pick_voice(voices, "zh", seed) for seed in range(12)]
    assert all(p.language == "zh" for p in picks) and len({p.voice_id for p in picks}) == 2
    shuffled = voices[:]
    random.Random(3).shuffle(shuffled)
    assert all(pick_voice(shuffled, "en", s) == pick_voice(voices, "en", s) for s in range(12))
    assert {pick_voice(voices, "fr", s).voice_id for s in range(30)} - {v.voice_id for v in voices} == set()
    assert len({pick_voice(voices, "fr", s).voice_id for s in range(30)}) > 2  # no French: any voice
    with pytest.raises(ValueError, match="empty"):
        pick_voice([], "en", 0)


def test_add_reference_folder_and_refuse_a_wav_without_transcript(library, embedder, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    shutil.copyfile(real_clip("asr_zh", "BAC009S0764W0121.wav"), refs / "bac.wav")
    (refs / "bac.txt").write_text("甚至出现交易几乎停滞的情况\n", encoding="utf-8")
    audio, rate = _read(PYANNOTE + ("sample.wav",))
    sf.write(refs / "diane.wav", audio[int(11.03 * rate): int(14.49 * rate)], rate)
    (refs / "diane.txt").write_text("This is Diane in New Jersey.", encoding="utf-8")
    shutil.copyfile(real_clip("asr_zh", "funasr_asr_example.wav"), refs / "pinyin.wav")
    (refs / "pinyin.txt").write_text("huan ying da jia lai ti yan", encoding="utf-8")
    (refs / "pinyin.lang").write_text("zh\n")  # the .lang file wins over the (Latin) script
    table = add_reference_voices(library, refs, embedder)
    added = {r["speaker"]: r for r in table.to_pylist()[library.num_rows:]}
    assert table.num_rows == library.num_rows + 3
    assert {k: r["language"] for k, r in added.items()} == {"ref:refs/bac": "zh", "ref:refs/diane": "en",
                                                           "ref:refs/pinyin": "zh"}
    assert all(r["source_segment_id"] is None and Path(r["source_uri"]).parent == refs.resolve() for r in added.values())
    assert added["ref:refs/diane"]["voice_id"] == "v-" + hashlib.sha256(
        ("ref:" + hashlib.sha256((refs / "diane.wav").read_bytes()).hexdigest()).encode()).hexdigest()[:12]
    assert len(added["ref:refs/bac"]["speaker_embedding"]) == 192 and added["ref:refs/bac"]["f0_mean_hz"] > 80
    # Diane's reference recording and her library voice (the same stretch) embed alike.
    diane = next(r for r in library.to_pylist() if r["speaker"] == "calls/sample/speaker90")
    assert float(np.dot(diane["speaker_embedding"], added["ref:refs/diane"]["speaker_embedding"])) > 0.99
    assert add_reference_voices(table, refs, embedder).num_rows == table.num_rows  # adding again replaces
    assert build_record(table)["added"][0]["voices"] == 3
    from_scratch = add_reference_voices(None, refs, embedder)
    assert from_scratch.num_rows == 3
    (refs / "lonely.wav").write_bytes((refs / "bac.wav").read_bytes())
    with pytest.raises(ValueError, match=r"no transcript \(same-stem \.txt\) for lonely\.wav"):
        add_reference_voices(table, refs, embedder)


def test_default_assistant_voice_materialises_with_the_recorded_sha256(tmp_path):
    prov = json.loads((DEFAULT_DIR / "provenance.json").read_text())
    assert not list(DEFAULT_DIR.glob("*.wav"))  # the package ships no audio
    cut = prov["files"]["neutral_1"]
    folder = default_assistant_voice_dir(tmp_path)
    wav = folder / "neutral_1.wav"
    pcm, rate = sf.read(wav, dtype="int16")
    assert hashlib.sha256(pcm.astype("<i2").tobytes()).hexdigest() == cut["sha256_pcm16le"]
    assert rate == cut["sample_rate"] and abs(len(pcm) / rate - (cut["end_s"] - cut["start_s"])) < 1e-3
    # The stretch: 4-8 s inside one reference turn of its speaker, crossing no other speaker's turn.
    assert 4.0 <= cut["end_s"] - cut["start_s"] <= 8.0
    turns = _rttm()
    assert any(s == cut["speaker"] and a <= cut["start_s"] and cut["end_s"] <= b for a, b, s in turns)
    assert _overlap_ratio(cut["start_s"], cut["end_s"], cut["speaker"]) == 0.0
    # Its samples are the shared copy of the same clip's, and the transcript is the STM's words.
    audio, _ = sf.read(real_clip(*PYANNOTE, "sample.wav"), dtype="int16")
    assert np.array_equal(pcm, audio[int(round(cut["start_s"] * rate)): int(round(cut["end_s"] * rate))])
    stm = " ".join(line.split(maxsplit=5)[5] for line in real_clip(*PYANNOTE, "sample.stm").read_text().splitlines()
                   if line.split()[2] == cut["speaker_name_in_stm"] and 21.0 < float(line.split()[3]) < 27.38)
    text = (folder / "neutral_1.txt").read_text().strip()
    assert stm.startswith(text.rstrip(".")) and len(text.split()) >= 15
    mtime = wav.stat().st_mtime_ns
    assert default_assistant_voice_dir(tmp_path) == folder and wav.stat().st_mtime_ns == mtime  # made once
    wav.write_bytes(b"damaged")
    default_assistant_voice_dir(tmp_path)
    assert hashlib.sha256(sf.read(wav, dtype="int16")[0].astype("<i2").tobytes()).hexdigest() == cut["sha256_pcm16le"]
    voice = load_assistant_voice(folder)
    assert voice.voice_id == "assistant:assistant_default" and voice.styles == ["neutral"]
    ref = voice.reference(None)
    assert ref.text == text and ref.language == "en" and ref.speech.sample_rate == 16000
    assert voice.reference("cheerful") is ref  # unknown style: the default style


def test_assistant_styles_resolve_and_share_one_voice_id(tmp_path):
    folder = tmp_path / "ava"
    folder.mkdir()
    audio, rate = _read(PYANNOTE + ("sample.wav",))
    for name, (a, b) in {"neutral_1": (21.78, 27.38), "neutral_2": (14.7, 17.92), "cheerful_1": (11.03, 14.49)}.items():
        sf.write(folder / f"{name}.wav", audio[int(a * rate): int(b * rate)], rate)
        (folder / f"{name}.txt").write_text(f"text of {name}")
    voice = load_assistant_voice(folder)
    assert voice.styles == ["cheerful", "neutral"] and voice.default_style == "neutral"
    assert {r.voice_id for r in voice.references.values()} == {"assistant:ava"}
    assert voice.reference("cheerful").text == "text of cheerful_1"
    assert voice.reference("neutral_2").text == "text of neutral_2"
    assert voice.reference("neutral").text == voice.reference(None).text == "text of neutral_1"
    assert voice.reference("whisper").text == "text of neutral_1"
    (folder / "sad_1.wav").write_bytes((folder / "neutral_1.wav").read_bytes())
    with pytest.raises(ValueError, match="sad_1.wav"):
        load_assistant_voice(folder)
