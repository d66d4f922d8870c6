"""The ``espeak-ng`` backend: formant synthesis through the Debian ``espeak-ng`` binary, English and Mandarin.

Robotic, but tiny, instant (RTF ~0.005 here) and deterministic: the same argv and text give
the same samples. Voices are the variants ``m1``..``m7`` and ``f1``..``f5`` at a pitch
(``-p``, 0-99), written ``espeak-ng:f3@p55``; the language picks the base voice (``en-us``
or the Mandarin voice), so one voice id speaks both languages.

Mandarin, measured here (Whisper base via faster-whisper, language="zh", beam 5,
temperature 0; CER after ``transcription.scoring`` normalisation; 8 short sentences, 83
characters; corpus CER, with Whisper's repetition loops counted as they come):

- ``-v cmn`` with Han characters: CER 1.66. Debian's espeak-ng 1.51 turns the characters
  into pinyin with tone digits and then reads that pinyin as English ("latin as English"),
  digits and all: unusable.
- ``-v cmn-latn-pinyin`` with pypinyin TONE3 syllables (``jin1 tian1``): CER 0.30 with the
  ``+f3`` variant, 0.35 ``+f2``, 0.48-0.52 ``+m1``/``+m7``/``+f4``; others 0.85-2.97, driven by
  Whisper looping on one or two sentences (per-sentence CER mostly 0.2-0.6 for every
  variant). pypinyin's tone sandhi changed nothing (espeak-ng applies its own third-tone
  sandhi), so syllables are passed with their dictionary tones. Latin-script words inside
  Mandarin text are read as pinyin by this voice: normalise them upstream.

On the three sentences of tests/test_synth_tts.py ``+f3`` scored 0.17. Over ``voice_for``'s
random variants (4 sentences) the corpus CER was 0.39; English
WER 0.073 (Whisper tiny.en, 4 sentences); RTF 0.004-0.01.

So the default Mandarin voice is ``cmn-latn-pinyin``. A voice id is language-free, so
``voice_for`` draws from every variant; a caller that wants the best Mandarin figures picks
from ``MANDARIN_VOICES``. Expect a CER near a third on Whisper: the round-trip gate will drop
many espeak-ng Mandarin turns.

Text reaches espeak-ng on stdin (``--stdin``), argv is a list and no shell is involved, so a
text starting with '-' is spoken, never parsed as an option. Output: what espeak-ng writes,
16-bit WAV at 22050 Hz, read with soundfile into float32.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from synthesis.speech import Speech, VoiceReference
from synthesis.tts.base import TtsError
from synthesis.tts.style import style_rate

ESPEAK_RATE = 22050
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
MANDARIN_VOICES = ("espeak-ng:f3@p50", "espeak-ng:f2@p50")  # the best measured variants (module docstring)
BASE_WPM = 160  # words per minute at style rate 1.0 (espeak-ng's own default, 175, is hurried)
PITCH_RANGE = (30, 70)
ZH_VOICES = ("cmn-latn-pinyin", "cmn")

_VOICE = re.compile(r"espeak-ng:(m[1-7]|f[1-5])@p(\d{1,2})")
# Chinese punctuation to the ASCII marks espeak-ng pauses on
_ZH_PUNCT = str.maketrans({"，": ", ", "、": ", ", "；": "; ", "：": ": ", "。": ". ", "！": "! ", "？": "? ",
                           "…": "... ", "“": " ", "”": " ", "‘": " ", "’": " ", "（": " ", "）": " ", "《": " ", "》": " "})


def parse_voice(voice: str) -> tuple[str, int]:
    """``espeak-ng:f3@p55`` -> ("f3", 55); TtsError on any other form."""
    m = _VOICE.fullmatch(voice)
    if not m:
        raise TtsError(f"not an espeak-ng voice id: {voice!r} (expected espeak-ng:<m1..m7|f1..f5>@p<0-99>)")
    return m.group(1), int(m.group(2))


def to_pinyin(text: str) -> str:
    """Han characters to TONE3 pinyin syllables (neutral tone 5); other characters kept, punctuation made ASCII."""
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text.translate(_ZH_PUNCT), style=Style.TONE3, neutral_tone_with_five=True,
                            errors=lambda run: [run])
    return " ".join(" ".join(syllables).split())


@lru_cache(maxsize=1)
def _espeak_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "missing"
    m = re.search(r"text-to-speech:\s*([0-9][\w.\-]*)", out)
    return m.group(1) if m else "unknown"


class EspeakTts:
    """``EspeakTts(zh_voice="cmn-latn-pinyin", en_voice="en-us", binary="espeak-ng")``."""

    name = "espeak-ng"
    sample_rate = ESPEAK_RATE
    languages = frozenset({"en", "zh"})

    def __init__(self, zh_voice: str = "cmn-latn-pinyin", en_voice: str = "en-us", binary: str = "espeak-ng") -> None:
        if zh_voice not in ZH_VOICES:
            raise ValueError(f"zh_voice must be one of {ZH_VOICES}, not {zh_voice!r}")
        path = shutil.which(binary)
        if path is None:
            raise TtsError(f"{binary} is not installed: run `make setup` (it installs Debian's espeak-ng)")
        self.binary = path
        self.zh_voice = zh_voice
        self.en_voice = en_voice

    def model_id(self) -> str:
        return f"espeak-ng:{self.en_voice}+{self.zh_voice}@{_espeak_version(self.binary)}"

    def voice_for(self, seed: int) -> str:
        rng = np.random.default_rng([seed, 0x6573])
        variant = VARIANTS[int(rng.integers(len(VARIANTS)))]
        return f"espeak-ng:{variant}@p{int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))}"

    def argv(self, language: str, voice: str, style: str | None, wav: Path) -> list[str]:
        """The espeak-ng command line for one request (the text itself goes on stdin)."""
        if language not in self.languages:
            raise TtsError(f"espeak-ng speaks {sorted(self.languages)}, not {language!r}")
        variant, pitch = parse_voice(voice)
        base = self.en_voice if language == "en" else self.zh_voice
        wpm = int(round(BASE_WPM * style_rate(style, self.name)))
        return [self.binary, "-v", f"{base}+{variant}", "-p", str(pitch), "-s", str(wpm), "-w", str(wav), "--stdin"]

    def synthesize(self, text: str, language: str, *, voice: str | None = None, style: str | None = None,
                   seed: int = 0, prompt: VoiceReference | None = None) -> Speech:
        spoken = to_pinyin(text) if language == "zh" and self.zh_voice == "cmn-latn-pinyin" else text
        if not spoken.strip():
            raise TtsError(f"espeak-ng: nothing to say in {text!r}")
        with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
            wav = Path(tmp) / "out.wav"
            argv = self.argv(language, voice or self.voice_for(seed), style, wav)
            res = subprocess.run(argv, input=spoken, capture_output=True, text=True, timeout=120)
            if res.returncode != 0 or not wav.exists():
                raise TtsError(f"espeak-ng failed ({res.returncode}): {res.stderr.strip()[:200]}")
            audio, rate = sf.read(wav, dtype="float32", always_2d=False)
        if rate != ESPEAK_RATE:
            raise TtsError(f"espeak-ng wrote {rate} Hz, expected {ESPEAK_RATE}")
        if audio.ndim != 1 or audio.size == 0:
            raise TtsError(f"espeak-ng: no audio for {text!r}")
        return Speech(np.ascontiguousarray(audio, dtype=np.float32), ESPEAK_RATE)
