"""Who speaks what, and whether the result ships: one prepared dialogue -> its spoken turns.

- **User turns**: a TTS voice speaks, then (with ``convert_user``) voice conversion moves it to a
  voice-library speaker drawn per dialogue, so user timbres come from real people of our corpus.
  Each try of the dialogue's first user turn draws a new TTS voice and library voice; once a user
  turn is kept, the user keeps that pair for the rest of the dialogue. Without a voice library
  the TTS voice itself is the user's voice and no similarity is measured.
- **Assistant turns**: one fixed TTS voice speaks, then conversion moves it to the one assistant
  voice (its reference recording for the configured style).
- Every spoken turn passes the round-trip gates (``synthesis.gates``); a turn that fails is tried
  again (a new seed; for a first user turn also new voices), up to ``gates.max_attempts`` tries,
  then dropped with the reason of its last try. A conversion that lowers the similarity to the
  target (``gates.min_vc_gain``) is not used: the turn ships as the TTS spoke it, and says why.
- **What ships**: a dialogue whose user turns are all kept and whose assistant turns are all kept
  ships as ``speech``. If a user turn cannot be spoken (text filter or gates) the dialogue is
  dropped, and nothing after that turn is synthesised. If only assistant turns cannot be spoken,
  the dialogue ships as ``audio_to_text`` (user speech, assistant text) when ``audio_to_text`` is on,
  and its other assistant turns are not synthesised; otherwise it is dropped.

Seeds are a pure function of (``seed``, dialogue key, turn, try), so a dialogue comes out the same
on every run and on any worker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from pydantic import Field

from manifests.params import Params
from synthesis.gates import GateParams, TurnFigures, TurnGates, gate_reason
from synthesis.speech import Speech, VoiceReference
from synthesis.text.prepare import PreparedDialogue, PreparedTurn
from synthesis.tts.base import TtsError
from synthesis.vc.base import VcError

FORMS = ("speech", "audio_to_text")


class SpeakParams(Params):
    """Voices and forms of the spoken dialogues."""

    seed: int = Field(0, description="base of every seed: voices drawn, TTS sampling, retries")
    convert_user: bool = Field(True, description="convert user turns to a voice-library speaker (needs --voices)")
    convert_assistant: bool = Field(True, description="convert assistant turns to the assistant voice")
    assistant_style: str | None = Field(None, description="the assistant reference recording's style "
                                        "(e.g. neutral, neutral_1); None: the voice's default")
    assistant_tts_seed: int = Field(7, description="picks the one TTS voice every assistant turn starts from")
    audio_to_text: bool = Field(True, description="keep a dialogue whose assistant turns cannot be spoken as "
                                "user speech + assistant text")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class SpokenTurn:
    turn: PreparedTurn
    speech: Speech | None = None
    voice_id: str | None = None
    tts_voice: str | None = None
    tts_backend: str | None = None
    vc_backend: str | None = None
    vc_note: str | None = None  # why a conversion was not used
    target: VoiceReference | None = field(default=None, repr=False)
    style: str | None = None
    seed: int | None = None
    attempts: int = 0
    figures: TurnFigures = field(default_factory=TurnFigures)
    kept: bool = False
    drop_reason: str | None = None


@dataclass
class SpokenDialogue:
    turns: list[SpokenTurn]
    kept: bool
    form: str | None
    drop_reason: str | None
    models: list[tuple[str, str]] = field(default_factory=list)


class DialogueSpeaker:
    """Speaks prepared dialogues with the loaded backends (one per worker).

    ``tts``: a ``TtsSet`` (``for_language(lang) -> TextToSpeech``); ``vc``: a ``VoiceConverter`` or
    None; ``voices``: the voice library's references (may be empty); ``assistant``: an
    ``AssistantVoice`` (``reference(style) -> VoiceReference``) or None.
    """

    def __init__(self, params: SpeakParams, gate_params: GateParams, tts, vc, gates: TurnGates,
                 voices: list[VoiceReference], assistant) -> None:
        self.params, self.gate_params = params, gate_params
        self.tts, self.vc, self.gates = tts, vc, gates
        self.voices, self.assistant = voices, assistant

    # ---- one dialogue ------------------------------------------------------------------
    def speak(self, key: str, prepared: PreparedDialogue) -> SpokenDialogue:
        turns = [SpokenTurn(t, drop_reason=t.drop_reason) for t in prepared.turns]
        if prepared.drop_reason:
            return self._dropped(turns, prepared.drop_reason, "dialogue dropped before speaking")
        for s in turns:
            if s.turn.role == "user" and not s.turn.speakable:
                reason = f"user_turn: turn {s.turn.index} {s.turn.drop_reason}"
                return self._dropped(turns, reason, "dialogue dropped before speaking")
        unspeakable = [s for s in turns if s.turn.role == "assistant" and not s.turn.speakable]
        if unspeakable and not self.params.audio_to_text:
            first = unspeakable[0].turn
            return self._dropped(turns, f"assistant_turn: turn {first.index} {first.drop_reason}",
                                 "dialogue dropped before speaking")
        text_only = bool(unspeakable)  # the assistant will ship as text: do not synthesise it
        form_reason = (f"assistant_turn: turn {unspeakable[0].turn.index} {unspeakable[0].turn.drop_reason}"
                       if text_only else None)
        user_language = next((t.language for t in prepared.turns if t.role == "user" and t.language), "en")
        user_voice: tuple[str, VoiceReference | None] | None = None  # fixed by the first kept user turn
        assistant_target = self.assistant.reference(self.params.assistant_style) if self.assistant else None
        for s in turns:
            t = s.turn
            if t.role == "system":
                s.kept = True
                continue
            if t.role == "assistant" and (text_only or form_reason):
                s.drop_reason = t.drop_reason or f"not spoken: the dialogue ships as audio_to_text ({form_reason})"
                continue
            if t.role == "user":
                tts = self.tts.for_language(t.language)
                if user_voice is None:  # each try of the first user turn draws a new TTS voice and library voice
                    def choose(k: int, tts=tts) -> tuple[str, VoiceReference | None]:
                        return (tts.voice_for(derive_seed(self.params.seed, key, "user-tts", k)),
                                self._user_target(key, user_language, k))
                else:  # later turns keep the user's voice; a retry changes only the seed
                    fixed = user_voice

                    def choose(k: int) -> tuple[str, VoiceReference | None]:
                        return fixed
                self._speak_turn(key, s, choose, self.params.convert_user)
                if s.kept and user_voice is None:
                    user_voice = (s.tts_voice, s.target)
                if not s.kept:
                    reason = f"user_turn: turn {t.index} {s.drop_reason}"
                    for later in turns[t.index + 1:]:
                        later.drop_reason = later.drop_reason or f"not spoken: {reason}"
                    return SpokenDialogue(turns, False, None, reason, self._models())
            else:  # one TTS voice and one target for every assistant turn; a retry changes only the seed
                voice = self.tts.for_language(t.language).voice_for(derive_seed(self.params.assistant_tts_seed,
                                                                                "assistant-tts"))
                self._speak_turn(key, s, lambda k, v=voice: (v, assistant_target), self.params.convert_assistant)
                if not s.kept:
                    form_reason = f"assistant_turn: turn {t.index} {s.drop_reason}"
                    if not self.params.audio_to_text:
                        for later in turns[t.index + 1:]:
                            later.drop_reason = later.drop_reason or f"not spoken: {form_reason}"
                        return SpokenDialogue(turns, False, None, form_reason, self._models())
        if form_reason:
            for s in turns:  # spoken before an assistant turn failed: the audio stays in the row, unshipped
                if s.turn.role == "assistant" and s.kept:
                    s.kept, s.drop_reason = False, f"not shipped: the dialogue ships as audio_to_text ({form_reason})"
            return SpokenDialogue(turns, True, "audio_to_text", None, self._models())
        return SpokenDialogue(turns, True, "speech", None, self._models())

    def _dropped(self, turns: list[SpokenTurn], reason: str, note: str) -> SpokenDialogue:
        for s in turns:
            if s.turn.role != "system":
                s.drop_reason = s.turn.drop_reason or f"not spoken: {note}"
        return SpokenDialogue(turns, False, None, reason, self._models())

    def _user_target(self, key: str, language: str, attempt: int) -> VoiceReference | None:
        if not self.voices:
            return None
        from synthesis.voices.library import pick_voice

        return pick_voice(self.voices, language, derive_seed(self.params.seed, key, "user-voice", attempt))

    # ---- one turn, with retries --------------------------------------------------------
    def _speak_turn(self, key: str, s: SpokenTurn,
                    choose: Callable[[int], tuple[str, VoiceReference | None]], convert: bool) -> None:
        """Try ``gates.max_attempts`` times; ``choose(k)`` gives try k's TTS voice and target voice."""
        t = s.turn
        tts = self.tts.for_language(t.language)
        s.tts_backend = tts.name
        reason = None
        for attempt in range(self.gate_params.max_attempts):
            seed = derive_seed(self.params.seed, key, t.index, attempt)
            voice, target = choose(attempt)
            converter = self.vc if convert and target is not None else None
            s.attempts, s.seed, s.tts_voice, s.target = attempt + 1, seed, voice, target
            s.voice_id = target.voice_id if target is not None else voice
            s.style = _style_of(target) if t.role == "assistant" else None
            try:
                raw = tts.synthesize(t.spoken_text, t.language, voice=voice, style=_tts_style(s.style), seed=seed,
                                     prompt=target)
                final = converter.convert(raw, target) if converter is not None else raw
            except (TtsError, VcError) as exc:
                reason = f"{'tts' if isinstance(exc, TtsError) else 'vc'}: {exc}"
                continue
            s.speech, s.vc_backend, s.vc_note = final, converter.name if converter is not None else "none", None
            s.figures = self.gates.measure(t.spoken_text, t.language, final, raw, target, converter is not None,
                                           written=t.text)
            gain = self.gate_params.min_vc_gain
            f = s.figures
            if converter is not None and gain is not None and f.speaker_similarity is not None \
                    and f.speaker_similarity - f.speaker_similarity_before_vc <= gain:
                # The conversion moved away from the target (WORLD's resynthesis costs similarity when
                # the TTS voice is close already): the TTS speech itself is the nearer voice.
                s.vc_note = (f"{converter.name} conversion not used: similarity {f.speaker_similarity_before_vc:.3f} "
                             f"-> {f.speaker_similarity:.3f}")
                s.speech, s.vc_backend = raw, "none"
                s.figures = self.gates.measure(t.spoken_text, t.language, raw, raw, target, False, written=t.text)
            reason = gate_reason(s.figures, t.language, self.gate_params)
            if reason is None:
                s.kept, s.drop_reason = True, None
                return
        tries = self.gate_params.max_attempts
        s.kept, s.drop_reason = False, f"{reason} (after {tries} tr{'y' if tries == 1 else 'ies'})"

    def _models(self) -> list[tuple[str, str]]:
        out = [("synth_tts", m) for m in self.tts.models()]
        if self.vc is not None:
            out.append(("synth_vc", self.vc.model_id()))
        return out


def _tts_style(style: str | None) -> str | None:
    """The TTS delivery of a reference style: ``cheerful_2`` -> ``cheerful`` when the backends know it
    (``synthesis.tts.style``), else the neutral delivery: the reference still sets the voice."""
    from synthesis.tts.style import STYLE_RATE

    base = style.rsplit("_", 1)[0] if style else None
    return base if base in STYLE_RATE else None


def _style_of(target: VoiceReference | None) -> str | None:
    """The style of an assistant reference: its file stem (``neutral_1``) when it has one."""
    if target is None or not target.source:
        return None
    from pathlib import PurePath

    return PurePath(target.source).stem
