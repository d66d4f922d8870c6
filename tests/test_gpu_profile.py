"""configs/gpu.yaml: it loads, its placement stays out of the config hash, its GPU shares
pack onto one GPU, and the planned graph never fuses its GPU stages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from pipeline.config import RUNTIME_SECTIONS, PipelineConfig, load_config
from pipeline.graph import plan_graph
from pipeline.stage_order import PIPELINE

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "configs" / "gpu.yaml"

# The hashed settings the profile changes on purpose: models and precision. Any other hashed
# difference (a threshold, a rate) would make GPU corpora differ from CPU ones for no reason.
MODEL_CHOICES = {
    ("enhance", "precision"), ("diarization", "pipeline_model"), ("language_id", "model"),
    ("language_id", "precision"), ("transcribe", "en_model"), ("transcribe", "zh_backend"),
    ("transcribe", "multilingual_model"), ("transcribe", "precision"),
}


@pytest.fixture(scope="module")
def profile():
    return load_config(PROFILE)


def _placement_reset(cfg):
    """``cfg`` with every placement field (and the runtime sections) back at its default."""
    tree = cfg.model_dump(mode="json")
    defaults = PipelineConfig().model_dump(mode="json")
    reset = 0
    for key in type(cfg).model_fields:
        section = getattr(cfg, key)
        fields = type(section).model_fields if key in RUNTIME_SECTIONS else section.placement_fields
        for name in fields:
            if name in tree[key] and tree[key][name] != defaults[key][name]:  # MODEL_PLACEMENT names more than some have
                tree[key][name] = defaults[key][name]
                reset += 1
    return PipelineConfig.model_validate(tree), reset


def _gpu_stages(cfg):
    """(stage, section key, placement) of every enabled stage that asks for a GPU."""
    out = []
    for stage in PIPELINE:
        if not stage.enabled(cfg):
            continue
        placement = stage.placement(cfg)
        if placement.resources.num_gpus > 0:
            keys = [k for k in stage.sections if getattr(getattr(cfg, k), "resources", None) is placement.resources]
            assert len(keys) == 1, f"{stage.name}: cannot tell which section places it"
            out.append((stage, keys[0], placement))
    return out


def test_the_profile_loads_and_sets_the_gpu_models(profile):
    assert profile.language_id.model == "large-v3" and profile.transcribe.en_model == "large-v3"
    assert profile.language_id.precision == "float16" and profile.transcribe.precision == "float16"
    assert profile.transcribe.zh_backend == "paraformer"
    assert profile.diarization.backend == "pyannote_pipeline"
    assert profile.diarization.pipeline_model == "pyannote/speaker-diarization-community-1"
    assert profile.enhance.enabled and profile.enhance.precision == "bfloat16"


def test_only_models_and_precision_differ_from_the_default_among_hashed_settings(profile):
    default = PipelineConfig()
    changed = set()
    for key in type(profile).model_fields:
        if key in RUNTIME_SECTIONS:
            continue
        ours, theirs = getattr(profile, key).hashed(), getattr(default, key).hashed()
        changed |= {(key, name) for name in ours if ours[name] != theirs[name]}
    assert changed == MODEL_CHOICES
    assert profile.config_hash() != default.config_hash()


def test_placement_fields_do_not_change_the_hash(profile):
    reset, count = _placement_reset(profile)
    assert count >= 20  # devices, batch sizes, resources and pools of several sections were reset
    assert reset.enhance.device == "cpu" and reset.transcribe.resources.num_gpus == 0
    assert reset.config_hash() == profile.config_hash()


@pytest.mark.parametrize("override", ["enhance.precision=float32", "transcribe.en_model=medium",
                                      "diarization.pipeline_model=assembled", "language_id.min_probability=0.6"])
def test_a_hashed_change_to_the_profile_changes_the_hash(profile, override):
    assert load_config(PROFILE, [override]).config_hash() != profile.config_hash()


def test_one_actor_of_every_gpu_stage_packs_onto_one_gpu(profile):
    gpu = _gpu_stages(profile)
    assert {stage.name for stage, _, _ in gpu} == {"enhance", "diarize", "language_id", "transcribe"}
    assert math.fsum(p.resources.num_gpus for _, _, p in gpu) <= 1.0
    for stage, key, placement in gpu:
        section = getattr(profile, key)
        devices = {name: getattr(section, name) for name in type(section).model_fields
                   if name == "device" or name.endswith("_device")}
        assert devices and all(str(d).startswith("cuda") for d in devices.values()), (stage.name, devices)
        assert placement.resources.custom.get("gpu_node", 0) > 0, stage.name
    # one actor per stage per GPU: the GPU pools are sized alike
    assert len({(p.pool.min_size, p.pool.max_size) for _, _, p in gpu}) == 1


def test_the_profile_names_only_resources_the_cluster_has(profile):
    cluster_path = REPO / "cluster.yaml"
    if not cluster_path.exists():
        pytest.skip("no cluster.yaml")
    types = yaml.safe_load(cluster_path.read_text())["available_node_types"]
    known = {name for t in types.values() for name in (t.get("resources") or {})} - {"CPU", "GPU"}
    gpu_nodes = [t for t in types.values() if (t.get("resources") or {}).get("GPU")]
    gpus = sum(t["resources"]["GPU"] * t.get("max_workers", 0) for t in gpu_nodes)
    for _, _, placement in _gpu_stages(profile):
        assert set(placement.resources.custom) <= known
        assert placement.pool.max_size <= gpus  # no more actors of a stage than GPUs


@pytest.mark.parametrize("cluster_cpus", [2.0, 36.0, 4 + 32 + 192 * 30.0])
@pytest.mark.parametrize("fuse", ["auto", "always"])
def test_the_graph_plan_never_fuses_gpu_stages(profile, cluster_cpus, fuse):
    ops = plan_graph(PIPELINE, profile, cluster_cpus, fuse=fuse)
    asked = {stage.name: p.resources.num_gpus for stage, _, p in _gpu_stages(profile)}
    placed = {}
    for op in ops:
        gpu_members = [m.name for m in op.members if m.name in asked]
        if gpu_members:
            assert len(op.members) == 1, f"{op.name} fuses a GPU stage"
            placed[op.name] = op.placement.resources.num_gpus
    assert placed == asked  # every GPU stage is its own operator, its GPU request unscaled
    if fuse == "always":  # the CPU model stages do fuse, so the check above could fail
        assert any(len(op.members) > 1 for op in ops)
