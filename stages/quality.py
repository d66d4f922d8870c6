"""Stage 10b, quality: SNR estimate and DNSMOS P.835 of every kept segment, on the raw audio
(an actor pool stage over ``audio_io.quality``; each actor loads the DNSMOS ONNX session once).

It reads ``audio_raw`` (the whole recording as FLAC at the output rate, as the writer
cuts it), so the figures describe the shard's ``audio`` cell: the raw signal, never the
enhanced one. Segments dropped before this stage are not scored (their figures stay null)
and cost nothing; a kept segment below ``quality.min_dnsmos_ovrl`` / ``quality.min_snr_db``
(off by default), or with a noise floor above ``quality.max_noise_floor_dbfs`` (on: full-scale
noise, such as mu-law bytes behind a PCM header, on which Whisper still writes sentences), is
dropped with the reason.

With ``enhance.variants=enhanced`` the shards carry no raw audio, but decode still makes
``audio_raw`` while this stage is on (one FLAC encode, 0.04 s per 30 s of audio, and
about a sixth of the float signal's bytes riding to here), and this stage then drops it,
so the writer sees what it saw before: the figures stay those of the raw signal whatever
the variants, rather than silently becoming figures of the enhanced one.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from audio_io.quality import DnsmosP835, QualityParams, dnsmos_model_id, score_segments
from audio_io.signals import read_variant_float
from manifests.planned_segment import from_rows, to_rows
from stages.base import ActorPool, Placement, Resources, RunContext, Section, Stage, model_placement
from stages.enhance import EnhanceSection
from stages.output import OutputSection


class QualitySection(QualityParams, Section):
    """Stage 10b: quality figures of the kept segments (raw audio); thresholds off by default."""

    placement_fields: ClassVar[frozenset[str]] = frozenset({"batch_size", "resources", "pool", "cpu_threads"})
    enabled: bool = True
    batch_size: int = Field(1, ge=1, description="recordings per call (DNSMOS takes about 0.3 s per 9 s window on "
                            "one core: one recording at a time keeps none waiting behind another)")
    cpu_threads: int = Field(1, ge=0, description="onnxruntime intra-op threads; 0: onnxruntime's default "
                             "(one per core)")
    resources: Resources = Resources()
    pool: ActorPool = ActorPool()


class QualityStage(Stage):
    name = "quality"
    sections = {"quality": QualitySection, "output": OutputSection, "enhance": EnhanceSection}
    uses_model = True

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        p: QualitySection = cfg.quality
        self.params = p
        self.subtype = cfg.output.flac_subtype
        enhance = cfg.enhance
        self.writes_raw = not (enhance.enabled and enhance.variants == "enhanced")
        self.scorer = DnsmosP835(num_threads=p.cpu_threads, hop_s=p.dnsmos_hop_s) if p.dnsmos else None

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return cfg.quality.enabled

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return model_placement(cfg.quality, cfg.quality.batch_size)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("status", "segments", "audio_raw", "models")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("status", "error", "segments", "audio_raw", "models")

    def model_ids(self) -> list[tuple[str, str]]:
        return [("quality", dnsmos_model_id())] if self.scorer is not None else []

    def process_batch(self, rows: list[dict]) -> list[dict]:
        out = [self.score_row(r) for r in self.with_models(rows)]
        if not self.writes_raw:  # made for this stage only (see the module docstring)
            out = [dict(r, audio_raw=None) for r in out]
        return out

    def score_row(self, row: dict) -> dict:
        if row.get("status") != "ok":
            return row
        try:
            segments = from_rows(row.get("segments"))
            if not any(s.kept for s in segments):
                return row
            if row.get("audio_raw") is None:
                raise ValueError("the recording has no audio_raw signal")
            audio, rate = read_variant_float(row["audio_raw"], self.subtype)
            score_segments(audio, rate, segments, self.params, self.scorer)
            return dict(row, segments=to_rows(segments))
        except Exception as exc:  # noqa: BLE001 - one bad recording must not stop the run
            return dict(row, status="failed", error=f"quality failed: {type(exc).__name__}: {exc}")
