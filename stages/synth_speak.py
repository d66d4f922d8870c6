"""Synthesis stage 2, speak: TTS, voice conversion and the round-trip gates of every turn
(an actor pool stage over ``synthesis.speak``; each actor loads the TTS voices, the converter,
the pipeline's recogniser, the speaker embedder and DNSMOS once).

A dialogue in, its spoken turns out: the ``turns`` column gains FLAC audio at the output rate,
the voices, the gate figures, ``kept`` and ``drop_reason``; the row gains the dialogue's form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from audio_io.flac import encode_flac
from audio_io.resample import resample
from stages.base import MODEL_PLACEMENT, ActorPool, Placement, Resources, RunContext, Section, Stage, model_placement
from stages.synth_output import SynthOutputSection
from stages.synth_prepare import prepared_turn
from stages.transcribe import TranscribeSection
from synthesis.gates import GateParams, TurnGates
from synthesis.speak import DialogueSpeaker, SpeakParams, SpokenTurn
from synthesis.text.prepare import PreparedDialogue
from synthesis.tts.registry import TtsParams, TtsSet
from synthesis.vc.registry import VcParams, load_vc


class SpeakSection(SpeakParams, Section):
    """Voices, forms and placement of the speak stage. ``voices`` / ``assistant_voice`` name
    where the voices are; what they hold enters the run's config hash by content."""

    placement_fields: ClassVar[frozenset[str]] = MODEL_PLACEMENT | {"voices", "assistant_voice"}
    voices: str | None = Field(None, description="voice library (refinery synth voices build); None: user turns "
                               "keep the TTS voice")
    assistant_voice: str | None = Field(None, description="folder of <style>_<level>.wav + .txt references; None: "
                                        "the shipped default (synthesis/voices/assistant_default)")
    device: str = "cpu"
    cpu_threads: int = Field(1, ge=0, description="threads of the TTS / embedder / DNSMOS sessions")
    batch_size: int = Field(1, ge=1, description="dialogues per call")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class TtsSection(TtsParams, Section):
    placement_fields: ClassVar[frozenset[str]] = frozenset({"cache_dir", "device", "threads"})


class VcSection(VcParams, Section):
    pass


class GateSection(GateParams, Section):
    pass


class SynthSpeakStage(Stage):
    name = "synth_speak"
    sections = {"synth_speak": SpeakSection, "tts": TtsSection, "vc": VcSection, "gates": GateSection,
                "transcribe": TranscribeSection, "synth_output": SynthOutputSection}
    uses_model = True

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        p: SpeakSection = cfg.synth_speak
        self.output: SynthOutputSection = cfg.synth_output
        self.speaker = DialogueSpeaker(p, cfg.gates, TtsSet(cfg.tts, device=p.device, threads=p.cpu_threads),
                                       load_vc(cfg.vc), load_gates(cfg, p), load_voices(p.voices),
                                       load_assistant(p.assistant_voice, cfg.tts))

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return model_placement(cfg.synth_speak, cfg.synth_speak.batch_size)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("status", "recording_id", "turns", "dialogue_drop_reason", "models")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("status", "error", "turns", "dialogue_kept", "dialogue_form", "dialogue_drop_reason", "models")

    def process_batch(self, rows: list[dict]) -> list[dict]:
        out = []
        for row in rows:
            if row.get("status") != "ok":
                out.append(row)
                continue
            try:
                out.append(self.speak_row(row))
            except Exception as exc:  # noqa: BLE001 - a model error fails this dialogue, not the run
                out.append(dict(row, status="failed", error=f"speaking failed: {type(exc).__name__}: {exc}"))
        return out

    def speak_row(self, row: dict) -> dict:
        prepared = PreparedDialogue(tuple(prepared_turn(t) for t in row["turns"]), row.get("dialogue_drop_reason"))
        spoken = self.speaker.speak(row["recording_id"], prepared)
        turns = [self.turn_cell(cell, s) for cell, s in zip(row["turns"], spoken.turns)]
        models = list(row.get("models") or []) + [{"stage": s, "model": m} for s, m in spoken.models]
        return dict(row, turns=turns, dialogue_kept=spoken.kept, dialogue_form=spoken.form,
                    dialogue_drop_reason=spoken.drop_reason, models=models)

    def turn_cell(self, cell: dict, s: SpokenTurn) -> dict:
        f = s.figures
        audio = duration = None
        if s.speech is not None and len(s.speech.audio):
            rate = self.output.sample_rate
            samples = s.speech.audio if s.speech.sample_rate == rate else resample(s.speech.audio, s.speech.sample_rate, rate)
            audio = encode_flac(samples, rate, self.output.flac_subtype)
            duration = round(len(samples) / rate, 4)
        return dict(cell, audio=audio, duration=duration, voice_id=s.voice_id, tts_voice=s.tts_voice,
                    tts_backend=s.tts_backend, vc_backend=s.vc_backend, vc_note=s.vc_note, style=s.style, seed=s.seed, attempts=s.attempts,
                    asr_text=f.asr_text, asr_error=f.asr_error, speaker_similarity=f.speaker_similarity,
                    speaker_similarity_before_vc=f.speaker_similarity_before_vc, dnsmos_ovrl=f.dnsmos_ovrl,
                    chars_per_second=f.chars_per_second, clipping_ratio=f.clipping_ratio, kept=s.kept,
                    drop_reason=s.drop_reason)


def load_gates(cfg: Any, p: SpeakSection) -> TurnGates:
    from audio_io.quality import DnsmosP835
    from diarization.embedding import load_embedder
    from transcription.asr import SegmentTranscriber

    g: GateSection = cfg.gates
    t: TranscribeSection = cfg.transcribe
    transcriber = SegmentTranscriber(t, device=t.device, cpu_threads=t.cpu_threads, batch_size=t.segments_per_batch())
    embedder = load_embedder(g.embedder, device=p.device)
    return TurnGates(g, transcriber, embedder, DnsmosP835(num_threads=p.cpu_threads) if g.dnsmos else None)


def load_voices(path: str | None) -> list:
    if not path:
        return []
    from synthesis.voices.library import load_voice_library

    return load_voice_library(Path(path))


def load_assistant(folder: str | None, tts: TtsParams):
    from synthesis.voices.assistant import default_assistant_voice_dir, load_assistant_voice

    from synthesis.tts.registry import cache_root

    return load_assistant_voice(Path(folder) if folder else default_assistant_voice_dir(cache_root(tts) / "voices"))
