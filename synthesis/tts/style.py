"""Speaking styles the TTS backends understand: a rate factor each (1.0 = the backend's normal pace).

A style is kept to tempo because every backend here can honour it the same way (Kokoro and
CosyVoice/F5 ``speed``, piper ``length_scale``, espeak-ng words per minute); emotion or
timbre styles would mean different things per backend. An unknown style is refused, not
read as neutral, so a typo in a config cannot pass unnoticed.
"""

from __future__ import annotations

from synthesis.tts.base import TtsError

STYLE_RATE: dict[str, float] = {"neutral": 1.0, "calm": 0.92, "slow": 0.85, "lively": 1.08, "fast": 1.15}


def style_rate(style: str | None, backend: str) -> float:
    """The rate factor of ``style`` (None: neutral); TtsError naming the known styles otherwise."""
    key = style or "neutral"
    if key not in STYLE_RATE:
        raise TtsError(f"{backend}: unknown style {style!r}; known: {', '.join(STYLE_RATE)}")
    return STYLE_RATE[key]
