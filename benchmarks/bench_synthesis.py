"""synthesis: real-time factors of every offline TTS and VC backend, and the gate cost per spoken second.

RTF = processing seconds / seconds of speech produced (lower is faster), the median of ``repeats``
passes over the same sentences after one warm-up call (model loading is reported apart). The gate
cost is ``synthesis.gates.TurnGates.measure`` (the pipeline's Whisper, CAM++ twice, DNSMOS) per
second of spoken turn, with the run's default models.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.harness import Context, benchmark

EN = ["How far is it from Paris to Lyon by fast train?",
      "Old videos often take two gigabytes or more, so start there.",
      "Each tower rises about two hundred and twenty-seven meters above the water."]
ZH = ["今天北京的最高气温是二十五摄氏度。", "这件外套现在打八折，只要二百三十九元。", "每周上一到两次课就够了。"]


def _timed(fn, repeats: int) -> tuple[float, Any]:
    walls, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), out


@benchmark("synthesis", "TTS and VC real-time factors per offline backend, and the round-trip gate cost per "
           "spoken second (synthesis.tts, synthesis.vc, synthesis.gates)")
def bench_synthesis(ctx: Context) -> dict[str, Any]:
    from pipeline.config import SynthConfig, load_config
    from stages.synth_speak import load_assistant, load_gates
    from synthesis.tts.registry import load_tts
    from synthesis.vc.world import WorldConverter, WorldParams

    cfg = load_config(None, [], model=SynthConfig)
    repeats = max(1, ctx.repeats)
    figures: dict[str, Any] = {"repeats": repeats}
    speech = {}
    for backend, language, texts in (("kokoro", "en", EN), ("kokoro", "zh", ZH), ("piper", "en", EN),
                                     ("espeak-ng", "en", EN), ("espeak-ng", "zh", ZH)):
        t0 = time.perf_counter()
        tts = load_tts(backend, cfg.tts)
        load_s = time.perf_counter() - t0
        voice = tts.voice_for(1)
        tts.synthesize(texts[0], language, voice=voice, seed=1)  # warm-up
        wall, outs = _timed(lambda: [tts.synthesize(t, language, voice=voice, seed=1) for t in texts], repeats)
        audio_s = sum(o.duration for o in outs)
        key = f"tts_{backend.replace('-', '_')}_{language}"
        figures[f"{key}_load_s"] = round(load_s, 3)
        figures[f"{key}_rtf"] = round(wall / audio_s, 4)
        speech[(backend, language)] = outs
    target = load_assistant(None, cfg.tts).reference(None)
    sources = speech[("kokoro", "en")]
    source_s = sum(s.duration for s in sources)
    for method in ("harvest", "dio"):
        vc = WorldConverter(WorldParams(f0_method=method))
        t0 = time.perf_counter()
        vc.profile(target)
        figures[f"vc_world_{method}_target_profile_s"] = round(time.perf_counter() - t0, 3)
        wall, _ = _timed(lambda: [vc.convert(s, target) for s in sources], repeats)
        figures[f"vc_world_{method}_rtf"] = round(wall / source_s, 4)
    gates = load_gates(cfg, cfg.synth_speak)
    converted = [WorldConverter(cfg.vc.world).convert(s, target) for s in sources]
    gates.measure(EN[0], "en", converted[0], sources[0], target, True)  # warm-up (target embedding)
    wall, _ = _timed(lambda: [gates.measure(t, "en", c, s, target, True) for t, c, s in zip(EN, converted, sources)],
                     repeats)
    figures["gate_s_per_spoken_s"] = round(wall / source_s, 4)
    figures["gate_s_per_spoken_h"] = round(3600 * wall / source_s, 1)
    figures["spoken_audio_s"] = round(source_s, 2)
    return figures
