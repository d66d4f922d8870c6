"""Round-trip gates of a spoken turn: is the synthetic speech what it should be?

Each spoken turn is measured, and every figure is written to its row:

- ``asr_error``: the pipeline's own recogniser (``transcription.asr.SegmentTranscriber``) hears
  the turn, scored against the text it was made from, spoken or written form, whichever is
  closer (WER for English, CER for Chinese, with the scorer of ``refinery eval asr``);
- ``speaker_similarity``: cosine of the configured speaker embedder between the turn and its
  target voice (and the same before voice conversion, to show what conversion did);
- ``dnsmos_ovrl``: DNSMOS P.835 overall quality;
- ``chars_per_second``: spoken characters (letters and digits; Chinese characters) per second
  of speech, leading and trailing silence left out: too fast or too slow reads badly;
- ``clipping_ratio``: share of samples at full scale in the TTS output or the converted speech.

``gate_reason`` compares the figures with ``GateParams`` and names the first bound missed, as
``<gate>: <figure> <op> <bound>`` (``asr_error: WER 0.25 > 0.10``). A bound set to None is off,
and its figure is still written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from audio_io.quality import DnsmosP835, quality_signal
from audio_io.resample import resample
from manifests.params import Params
from synthesis.speech import Speech, VoiceReference

ASR_RATE = 16000  # what the recogniser hears
FULL_SCALE = 0.999
SILENCE_DB = -40.0  # below the turn's peak: leading / trailing silence for the speaking rate


class GateParams(Params):
    """Bounds of the round-trip gates (None: off); the figures are written either way."""

    max_wer_en: float | None = Field(0.10, ge=0, description="English turns: WER of the ASR transcript")
    max_cer_zh: float | None = Field(0.25, ge=0, description="Chinese turns: CER of the ASR transcript")
    min_speaker_similarity: float | None = Field(
        0.3, ge=-1, le=1, description="cosine to the target voice; CAM++ cosines of different real speakers lie "
        "around 0.0-0.5, of one speaker 0.55-0.9; WORLD conversion of Kokoro speech reached 0.22-0.65 (demo)")
    min_dnsmos_ovrl: float | None = Field(2.0, ge=1, le=5, description="DNSMOS P.835 overall quality")
    min_chars_per_second: dict[str, float] = Field({"en": 6.0, "zh": 2.0}, description="per language")
    max_chars_per_second: dict[str, float] = Field({"en": 25.0, "zh": 9.0}, description="per language")
    max_clipping_ratio: float | None = Field(0.001, ge=0, le=1, description="share of samples at full scale")
    min_vc_gain: float | None = Field(0.0, description="a conversion must raise the similarity to the target by more "
                                      "than this, else the turn ships unconverted (vc_note says why); None: always "
                                      "ship the conversion")
    max_attempts: int = Field(3, ge=1, description="tries per turn (a new seed and TTS voice each), then dropped")
    embedder: str = Field("campplus", description="speaker embedder for the similarity gate "
                          "(diarization.embedding.load_embedder names)")
    dnsmos: bool = Field(True, description="compute DNSMOS (0.3 s per 9 s window on one core)")


@dataclass(frozen=True)
class TurnFigures:
    asr_text: str | None = None
    asr_error: float | None = None
    speaker_similarity: float | None = None
    speaker_similarity_before_vc: float | None = None
    dnsmos_ovrl: float | None = None
    chars_per_second: float | None = None
    clipping_ratio: float | None = None


def spoken_units(text: str, language: str) -> int:
    """What the speaking rate counts: Chinese characters (zh), letters and digits (other languages)."""
    from transcription.text import is_cjk

    if language == "zh":
        return sum(1 for c in text if is_cjk(c) or c.isdigit())
    return sum(1 for c in text if c.isalnum())


def voiced_span(audio: np.ndarray, sample_rate: int, frame_s: float = 0.02) -> float:
    """Seconds from the first to the last 20 ms frame within ``SILENCE_DB`` of the peak frame."""
    n = int(frame_s * sample_rate)
    if len(audio) < n or n == 0:
        return len(audio) / sample_rate if sample_rate else 0.0
    frames = audio[: len(audio) // n * n].reshape(-1, n).astype(np.float64)
    power = (frames ** 2).mean(axis=1)
    peak = float(power.max())
    if peak <= 0:
        return 0.0
    loud = np.flatnonzero(10 * np.log10(np.maximum(power, 1e-20) / peak) > SILENCE_DB)
    return (loud[-1] - loud[0] + 1) * frame_s


def clipping_ratio(*signals: np.ndarray) -> float:
    """The largest share of full-scale samples among ``signals``."""
    return max((float(np.mean(np.abs(s) >= FULL_SCALE)) for s in signals if len(s)), default=0.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


def gate_reason(f: TurnFigures, language: str, p: GateParams) -> str | None:
    """The first gate ``f`` fails, as ``<gate>: <figure> <op> <bound>``; None when it passes all."""
    bound = p.max_cer_zh if language == "zh" else p.max_wer_en
    metric = "CER" if language == "zh" else "WER"
    if bound is not None and f.asr_error is not None and f.asr_error > bound:
        return f"asr_error: {metric} {f.asr_error:.3f} > {bound:.2f} (heard {f.asr_text!r})"
    if p.min_speaker_similarity is not None and f.speaker_similarity is not None \
            and f.speaker_similarity < p.min_speaker_similarity:
        return f"speaker_similarity: {f.speaker_similarity:.3f} < {p.min_speaker_similarity:.2f}"
    if p.min_dnsmos_ovrl is not None and f.dnsmos_ovrl is not None and f.dnsmos_ovrl < p.min_dnsmos_ovrl:
        return f"dnsmos_ovrl: {f.dnsmos_ovrl:.2f} < {p.min_dnsmos_ovrl:.2f}"
    if f.chars_per_second is not None:
        lo, hi = p.min_chars_per_second.get(language), p.max_chars_per_second.get(language)
        if lo is not None and f.chars_per_second < lo:
            return f"chars_per_second: {f.chars_per_second:.1f} < {lo:g}"
        if hi is not None and f.chars_per_second > hi:
            return f"chars_per_second: {f.chars_per_second:.1f} > {hi:g}"
    if p.max_clipping_ratio is not None and f.clipping_ratio is not None and f.clipping_ratio > p.max_clipping_ratio:
        return f"clipping_ratio: {f.clipping_ratio:.4f} > {p.max_clipping_ratio:g}"
    return None


class TurnGates:
    """The models of the gates, loaded once: recogniser, speaker embedder, DNSMOS.

    ``transcriber`` is anything with ``transcribe(audios_16k, language) -> [AsrResult]``
    (the pipeline's ``SegmentTranscriber``); ``embedder`` a ``SpeakerEmbedder``.
    """

    def __init__(self, params: GateParams, transcriber, embedder, dnsmos: DnsmosP835 | None) -> None:
        self.params = params
        self.transcriber = transcriber
        self.embedder = embedder
        self.dnsmos = dnsmos
        self._target_embeddings: dict[str, np.ndarray] = {}

    def target_embedding(self, target: VoiceReference) -> np.ndarray:
        """The embedding of a target voice, computed once per voice id with this gate's embedder
        (a library row's stored embedding may come from another embedder, so it is not reused)."""
        key = f"{target.voice_id}|{target.source}"
        if key not in self._target_embeddings:
            self._target_embeddings[key] = self.embed(target.speech)
        return self._target_embeddings[key]

    def embed(self, speech: Speech) -> np.ndarray:
        return self.embedder.embed([to_rate(speech, self.embedder.sample_rate)])[0]

    def measure(self, text: str, language: str, final: Speech, tts_output: Speech,
                target: VoiceReference | None, converted: bool, written: str | None = None) -> TurnFigures:
        """``text``: the spoken form the TTS read; ``written``: the turn as written. The recogniser
        may write either ("March 5, 2024" for "March fifth, twenty twenty-four"): the error is
        the lower of the two."""
        audio16 = to_rate(final, ASR_RATE)
        heard = self.transcriber.transcribe([audio16], language)[0].text if self.transcriber else None
        error = None
        if heard is not None:
            refs = [text] + ([written] if written and written != text else [])
            error = min(round_trip_error(heard, ref, language) for ref in refs)
        similarity = before = None
        if target is not None and self.embedder is not None:
            ref = self.target_embedding(target)
            similarity = cosine(self.embed(final), ref)
            before = cosine(self.embed(tts_output), ref) if converted else similarity
        mos = None
        if self.dnsmos is not None and len(audio16):
            mos = self.dnsmos(np.clip(quality_signal(final.audio, final.sample_rate), -1, 1))["ovrl"]
        span = voiced_span(final.audio, final.sample_rate)
        cps = spoken_units(text, language) / span if span > 0 else None
        return TurnFigures(
            asr_text=heard, asr_error=None if error is None else round(error, 4),
            speaker_similarity=_round(similarity), speaker_similarity_before_vc=_round(before),
            dnsmos_ovrl=_round(mos), chars_per_second=_round(cps),
            clipping_ratio=round(clipping_ratio(tts_output.audio, final.audio), 6))


_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_TIME = re.compile(r"\b(\d{1,2}) (\d{2})\b")


def round_trip_error(heard: str, reference: str, language: str) -> float:
    """WER (en) / CER (zh) of ``heard`` against ``reference``, scored as ``refinery eval asr`` scores,
    except that an English ordinal and its number ("5th" / "5"), a clock time with or without its
    colon ("930" / "9 30") and Chinese numbers in digits or characters ("20" / "二十") count as the
    same: the speech said both the same way."""
    from transcription.scoring import normalize_en, score

    if language == "zh":  # numbers as characters on both sides: "20" and "二十" are the same speech
        import cn2an

        def zh(t: str) -> str:
            try:
                return cn2an.transform(t, "an2cn")
            except (ValueError, KeyError):  # cn2an refuses some digit strings: keep them as they are
                return t

        return score(zh(heard), zh(reference), language).rate
    if language != "en":
        return score(heard, reference, language).rate

    def norm(t: str) -> str:
        return _TIME.sub(r"\1\2", _ORDINAL.sub(r"\1", normalize_en(t)))

    return score(norm(heard), norm(reference), "en").rate


def to_rate(speech: Speech, rate: int) -> np.ndarray:
    audio = np.asarray(speech.audio, dtype=np.float32)
    return audio if speech.sample_rate == rate else resample(audio, speech.sample_rate, rate).astype(np.float32)


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)
