"""cluster.yaml: Ray's own launcher checks accept it, offline (no cloud call)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]


def _validated(cfg: dict) -> dict:
    """What `ray up` checks before it starts anything: defaults filled in, then the schema."""
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_validation(cluster):
    prepared = _validated(cluster)
    types = prepared["available_node_types"]
    assert set(types) == {"head", "cpu_worker", "gpu_worker"}
    assert prepared["head_node_type"] == "head"
    assert types["cpu_worker"]["resources"].get("cpu_node") == 1 and "GPU" not in types["cpu_worker"]["resources"]
    assert types["gpu_worker"]["resources"].get("gpu_node") == 1
    assert types["gpu_worker"]["resources"]["GPU"] == 8


def test_cluster_yaml_installs_with_the_projects_own_setup(cluster):
    commands = " && ".join(cluster["setup_commands"])
    assert "make setup" in commands
    assert all(".venv/bin/ray start" in c for c in cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]
               if "ray start" in c)


@pytest.mark.parametrize("breakage", ["wrong type", "unknown head type", "unknown key"])
def test_a_broken_cluster_yaml_is_refused(cluster, breakage):
    bad = copy.deepcopy(cluster)
    if breakage == "wrong type":
        bad["max_workers"] = "many"
    elif breakage == "unknown head type":
        bad["head_node_type"] = "gpu_head"
    else:
        bad["available_node_types"]["cpu_worker"]["min_wrokers"] = 1
    with pytest.raises(Exception):
        _validated(bad)
