"""Which voice converter a synthesis run uses: ``VcParams`` and ``load_vc``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from manifests.params import Params
from synthesis.vc.base import VoiceConverter
from synthesis.vc.world import WorldConverter, WorldParams


class VcParams(Params):
    """Voice conversion: the backend and its settings."""

    backend: Literal["world", "seed-vc", "none"] = Field(
        "world", description="'world': WORLD analysis/synthesis (offline, CPU); 'seed-vc': Seed-VC (weights in the "
        "Hugging Face cache or a local directory, plus a checkout of its code); 'none': no conversion")
    seed_vc_model: str = Field("Plachta/Seed-VC", description="Seed-VC hub id (cache only) or local directory")
    seed_vc_code: str | None = Field(None, description="checkout of github.com/Plachtaa/seed-vc (None: importable)")
    seed_vc_steps: int = Field(10, ge=1, description="Seed-VC diffusion steps")
    seed_vc_cfg_rate: float = Field(0.7, ge=0.0, description="Seed-VC classifier-free guidance rate")
    world: WorldParams = Field(default_factory=WorldParams)


def load_vc(params: VcParams, device: str = "cpu") -> VoiceConverter | None:
    """The configured converter, loaded; None for ``backend: none``. Seed-VC failures are
    ``VcError`` naming what is missing (weights, files, code)."""
    if params.backend == "none":
        return None
    if params.backend == "world":
        return WorldConverter(params.world)
    from synthesis.vc.seed_vc import SeedVcConverter  # torch, transformers: only when chosen

    return SeedVcConverter(params.seed_vc_model, code_dir=params.seed_vc_code, device=device,
                           diffusion_steps=params.seed_vc_steps, cfg_rate=params.seed_vc_cfg_rate)
