"""Stage 2, enhance: BSRNN (or DeepFilterNet3) over each recording, raw signal kept (an actor pool stage).

Each actor loads the enhancer once; recordings of a call are enhanced together (their
windows share forward passes). Out: ``audio_enhanced`` (the whole recording as FLAC at the
output rate, for the writer) and, unless ``enhance.analysis_variant = raw``, the 16 kHz
``analysis`` signal made from the enhanced one.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from audio_io.signals import analysis_signal, encode_variant
from enhancement_bsrnn.params import EnhanceParams
from stages.base import MODEL_PLACEMENT, ActorPool, Placement, Resources, RunContext, Section, Stage, model_placement
from stages.output import OutputSection


class EnhanceSection(EnhanceParams, Section):
    """Pretraining samples raw and enhanced audio 1:1 (Kimi-Audio), so by default both are
    written. The later stages (diarization, language ID, ASR) hear the raw signal by
    default: on the shared clips (`refinery eval pipeline --compare
    enhance.analysis_variant=enhanced`) the enhanced one lowers DER 0.489 -> 0.473 but
    raises English WER 0.000 -> 0.038 and Chinese CER 0.049 -> 0.066."""

    placement_fields: ClassVar[frozenset[str]] = MODEL_PLACEMENT
    enabled: bool = True
    variants: Literal["both", "raw", "enhanced"] = Field("both", description="which audio the shards carry: "
                                                         "`audio` (raw), `audio_enhanced`, or both")
    analysis_variant: Literal["raw", "enhanced"] = Field("raw", description="the signal diarization, language ID "
                                                         "and ASR hear (chosen by `refinery eval pipeline --compare`)")
    device: str = "cpu"
    batch_size: int = Field(8, ge=1, description="windows per forward pass, across recordings")
    recordings_per_call: int = Field(4, ge=1, description="recordings an actor enhances together")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class EnhanceStage(Stage):
    name = "enhance"
    sections = {"enhance": EnhanceSection, "output": OutputSection}
    uses_model = True

    def __init__(self, cfg: Any, run: RunContext) -> None:
        from enhancement_bsrnn.inference import load_enhancer_from

        super().__init__(cfg, run)
        p: EnhanceSection = cfg.enhance
        self.params = p
        self.output = cfg.output
        self.enhancer = load_enhancer_from(p, p.device, p.batch_size)

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return cfg.enhance.enabled

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return model_placement(cfg.enhance, cfg.enhance.recordings_per_call)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("status", "samples", "sample_rate", "models")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("status", "error", "analysis", "audio_enhanced", "models")

    def model_ids(self) -> list[tuple[str, str]]:
        return [("enhance", self.enhancer.name)]

    def process_batch(self, rows: list[dict]) -> list[dict]:
        from enhancement_bsrnn.inference import enhance_signals

        out = [dict(r, audio_enhanced=None) for r in self.with_models(rows)]
        by_rate: dict[int, list[int]] = {}
        for i, r in enumerate(out):
            if r["status"] == "ok" and len(r["samples"]):
                by_rate.setdefault(int(r["sample_rate"]), []).append(i)
        for rate, indices in by_rate.items():
            try:
                enhanced = enhance_signals(self.enhancer, [out[i]["samples"] for i in indices], rate,
                                           self.params.sample_rate)
                for i, signal in zip(indices, enhanced):
                    if self.params.variants != "raw":
                        out[i]["audio_enhanced"] = encode_variant(signal, rate, self.output.sample_rate,
                                                                  self.output.flac_subtype)
                    if self.params.analysis_variant == "enhanced":
                        out[i]["analysis"] = analysis_signal(signal, rate)
            except Exception as exc:  # noqa: BLE001 - a model error fails these sources, the run goes on
                for i in indices:
                    out[i].update(status="failed", error=f"enhancement failed: {type(exc).__name__}: {exc}")
        return out
