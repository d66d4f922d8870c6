"""The fixed assistant voice: one speaker, a few reference recordings by speaking style.

A folder holds ``<style>_<level>.wav`` with a same-stem ``.txt`` transcript (UTF-8) and, as an
option, a same-stem ``.lang`` (else the language is read off the transcript's script), e.g.
``neutral_1.wav``, ``cheerful_2.wav``. Every reference shares one voice id,
``assistant:<folder name>``: a style changes the delivery, not the voice.

``AssistantVoice.reference(style)`` resolves a style, in this order:

1. an exact ``<style>_<level>`` name (``"cheerful_2"``);
2. a bare style (``"cheerful"``): its lowest level;
3. None, or a style the folder lacks: the default style, ``"neutral"`` when present, else the
   alphabetically first style, at its lowest level (logged once per unknown style).

The shipped default (``assistant_default/``) carries its transcript and provenance but no
audio: ``default_assistant_voice_dir(cache_dir)`` cuts the recording out of the sample clip
inside the installed pyannote.audio wheel and checks it against the recorded sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import soundfile as sf

from diarization.embedding import installed_package_dir
from synthesis.speech import Speech, VoiceReference
from synthesis.voices.library import language_of_text

log = logging.getLogger(__name__)

DEFAULT_STYLE = "neutral"
DEFAULT_DIR = Path(__file__).with_name("assistant_default")
PROVENANCE = "provenance.json"
_NAME = re.compile(r"^(?P<style>[a-z][a-z0-9-]*)_(?P<level>\d+)$")


@dataclass(frozen=True)
class AssistantVoice:
    """The references of one assistant voice, by ``<style>_<level>`` name."""

    voice_id: str
    references: dict[str, VoiceReference]  # "neutral_1" -> reference
    _warned: set[str] = field(default_factory=set, compare=False, repr=False)

    @property
    def styles(self) -> list[str]:
        return sorted({_NAME.match(n)["style"] for n in self.references})

    @property
    def default_style(self) -> str:
        return DEFAULT_STYLE if DEFAULT_STYLE in self.styles else self.styles[0]

    def _lowest(self, style: str) -> VoiceReference:
        names = [n for n in self.references if _NAME.match(n)["style"] == style]
        return self.references[min(names, key=lambda n: int(_NAME.match(n)["level"]))]

    def reference(self, style: str | None = None) -> VoiceReference:
        """The reference for ``style`` (resolution order: the module docstring)."""
        if style in self.references:
            return self.references[style]
        if style is not None and style in self.styles:
            return self._lowest(style)
        if style is not None and style not in self._warned:
            self._warned.add(style)
            log.info("assistant voice %s has no style %r; using %r", self.voice_id, style, self.default_style)
        return self._lowest(self.default_style)


def load_assistant_voice(folder) -> AssistantVoice:
    """The assistant voice of ``folder`` (``<style>_<level>.wav`` + ``.txt``)."""
    folder = Path(folder)
    wavs = sorted(w for w in folder.glob("*.wav") if _NAME.match(w.stem))
    if not wavs:
        raise ValueError(f"{folder}: no assistant reference recordings named <style>_<level>.wav")
    missing = [w.name for w in wavs if not w.with_suffix(".txt").is_file()]
    if missing:
        raise ValueError(f"{folder}: no transcript (same-stem .txt) for {', '.join(missing)}")
    voice_id = f"assistant:{folder.name}"
    refs = {}
    for wav in wavs:
        text = wav.with_suffix(".txt").read_text(encoding="utf-8").strip()
        lang_file = wav.with_suffix(".lang")
        language = lang_file.read_text(encoding="utf-8").strip() if lang_file.is_file() else language_of_text(text)
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
        refs[wav.stem] = VoiceReference(voice_id, Speech(audio.mean(axis=1), int(rate)), text, language,
                                        source=str(wav.resolve()))
    return AssistantVoice(voice_id, refs)


# ---- the shipped default ----------------------------------------------------------------------


def _pcm_sha256(pcm: np.ndarray) -> str:
    """sha256 of int16 little-endian samples: independent of the WAV header libsndfile writes."""
    return hashlib.sha256(np.ascontiguousarray(pcm, dtype="<i2").tobytes()).hexdigest()


def default_assistant_voice_dir(cache_dir) -> Path:
    """``cache_dir/assistant_default/`` holding ``neutral_1.wav`` (cut from the pyannote.audio
    wheel's sample clip, as ``provenance.json`` records), its transcript and the provenance.
    Made once; a cut whose samples differ from the recorded sha256 is refused."""
    prov = json.loads((DEFAULT_DIR / PROVENANCE).read_text(encoding="utf-8"))
    out = Path(cache_dir) / DEFAULT_DIR.name
    out.mkdir(parents=True, exist_ok=True)
    for name in (PROVENANCE, *(f"{stem}.txt" for stem in prov["files"])):
        shutil.copyfile(DEFAULT_DIR / name, out / name)
    for stem, cut in prov["files"].items():
        wav = out / f"{stem}.wav"
        if not _matches(wav, cut["sha256_pcm16le"]):
            _materialise(prov["source"], cut, wav)
    return out


def _matches(wav: Path, sha256: str) -> bool:
    """The cached cut is there and intact (a damaged or foreign file is made again)."""
    try:
        return wav.is_file() and _pcm_sha256(sf.read(wav, dtype="int16")[0]) == sha256
    except (sf.LibsndfileError, RuntimeError):
        return False


def _materialise(source: dict, cut: dict, wav: Path) -> None:
    package = installed_package_dir(source["module"])
    clip = package / source["file"]
    if not clip.is_file():
        raise FileNotFoundError(f"{clip}: the sample clip the default assistant voice is cut from is missing "
                                f"(install {source['package']}=={source['version']})")
    pcm, rate = sf.read(clip, dtype="int16")
    if rate != cut["sample_rate"]:
        raise RuntimeError(f"{clip}: {rate} Hz, provenance says {cut['sample_rate']} Hz")
    piece = pcm[int(round(cut["start_s"] * rate)): int(round(cut["end_s"] * rate))]
    digest = _pcm_sha256(piece)
    if digest != cut["sha256_pcm16le"]:
        have = version(source["package"])
        raise RuntimeError(f"default assistant voice: the cut of {clip} ({source['package']}=={have}) has sha256 "
                           f"{digest}, provenance.json records {cut['sha256_pcm16le']} (from =={source['version']})")
    tmp = wav.with_name(f".{wav.name}.{uuid.uuid4().hex[:8]}.tmp")
    sf.write(tmp, piece, rate, format="WAV", subtype="PCM_16")
    os.replace(tmp, wav)
