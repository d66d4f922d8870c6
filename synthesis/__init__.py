"""Spoken SFT dialogue synthesis: text preparation, voice library, TTS, voice conversion and
round-trip gates (the logic; the stages live in ``stages/synth_*.py``)."""
