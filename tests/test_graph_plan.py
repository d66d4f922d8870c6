"""The executor's plan: fitting actor pools to small clusters, pruning fields after their last reader."""

from __future__ import annotations

import pytest

from pipeline.config import load_config
from pipeline.graph import fit_to_cluster, plan_graph
from pipeline.stage_order import PIPELINE
from stages.base import ActorPool, Placement, Resources


def _placements(actors: int, cpus: float = 1.0, task_cpus: float = 1.0, min_size: int = 1) -> list[Placement]:
    out = [Placement(Resources(num_cpus=task_cpus), rows_per_call=1)]
    out += [Placement(Resources(num_cpus=cpus), rows_per_call=1, pool=ActorPool(min_size=min_size, max_size=min_size))
            for _ in range(actors)]
    return out + [Placement(Resources(num_cpus=task_cpus), rows_per_call=4)]


@pytest.mark.parametrize("cluster, actors, min_size", [(2, 5, 1), (1, 5, 1), (3, 7, 2), (2, 1, 3), (16, 5, 1)])
def test_pools_and_the_largest_task_fit_the_cluster(cluster, actors, min_size):
    fitted = fit_to_cluster(_placements(actors, min_size=min_size), cluster)
    held = sum(p.resources.num_cpus * p.pool.min_size for p in fitted if p.pool)
    task = max(p.resources.num_cpus for p in fitted if p.pool is None)
    assert held + task <= cluster
    if actors * min_size + 1 <= cluster:  # it already fits: nothing is scaled
        assert fitted == _placements(actors, min_size=min_size)
    else:  # scaled by one factor: proportions kept, the cluster used in full (to the rounding)
        assert held + task == pytest.approx(cluster, abs=1e-3)
        assert len({p.resources.num_cpus for p in fitted}) == 1


def test_gpus_are_never_scaled():
    gpu = Placement(Resources(num_cpus=1, num_gpus=0.5), rows_per_call=8, pool=ActorPool())
    fitted = fit_to_cluster([gpu, gpu, gpu], 1)
    assert all(p.resources.num_gpus == 0.5 for p in fitted)


MODEL_STAGES = ["enhance", "diarize", "language_id", "transcribe", "text_filter", "quality"]


def test_on_a_big_cluster_each_model_stage_has_its_own_pool():
    plan = plan_graph(PIPELINE, load_config(), 16)
    assert [p.name for p in plan] == ["decode", *MODEL_STAGES, "write"]
    assert all(p.placement.resources.num_cpus == 1 for p in plan)  # nothing scaled: it fits


def test_on_two_cpus_the_model_stages_share_one_actor_per_cpu():
    plan = plan_graph(PIPELINE, load_config(), 2)
    assert [p.name for p in plan] == ["decode", "+".join(MODEL_STAGES), "write"]
    fused = plan[1]
    assert [m.name for m in fused.members] == MODEL_STAGES and fused.placement.pool.min_size == 2
    assert fused.placement.rows_per_call == 1  # the smallest of its members': each recording streams on alone
    held = fused.placement.resources.num_cpus * 2 + max(plan[0].placement.resources.num_cpus,
                                                        plan[2].placement.resources.num_cpus)
    assert held <= 2
    # forced apart, every pool still starts on two CPUs
    apart = plan_graph(PIPELINE, load_config(), 2, fuse="never")
    assert [p.name for p in apart] == ["decode", *MODEL_STAGES, "write"]
    task = max(p.placement.resources.num_cpus for p in apart if not p.placement.pool)
    assert task == pytest.approx(2 / (len(MODEL_STAGES) + 1), abs=1e-3)  # every request scaled by one factor
    assert sum(p.placement.resources.num_cpus for p in apart if p.placement.pool) + task <= 2


def test_a_stage_on_a_gpu_is_not_fused():
    plan = plan_graph(PIPELINE, load_config(None, ["transcribe.resources.num_gpus=0.5"]), 2)
    assert [p.name for p in plan] == ["decode", "enhance+diarize+language_id", "transcribe", "text_filter+quality", "write"]


def test_default_graph_prunes_signals_after_their_last_reader():
    cfg = load_config()
    plan = plan_graph(PIPELINE, cfg, 16)
    names = [p.stage.name for p in plan]
    assert names == ["decode", *MODEL_STAGES, "write"]
    keep = {p.stage.name: p.keep for p in plan}
    assert "samples" in keep["decode"] and "samples" not in keep["enhance"]  # only enhance reads the working-rate signal
    assert "analysis" not in keep["transcribe"]  # after ASR nothing hears the signal
    assert "analysis" not in keep["text_filter"]
    assert {"audio_raw", "audio_enhanced", "segments", "models"} <= keep["text_filter"]  # the writer's inputs
    assert {"audio_raw", "audio_enhanced", "segments", "models"} <= keep["quality"]  # quality scores audio_raw
    assert "analysis" not in keep["quality"]
    assert keep["write"] is None


def test_without_enhancement_nothing_reads_the_working_rate_signal():
    plan = plan_graph(PIPELINE, load_config(None, ["enhance.enabled=false"]), None)
    assert [p.stage.name for p in plan][:2] == ["decode", "diarize"]
    assert "samples" not in plan[0].keep and "analysis" in plan[0].keep and "audio_raw" in plan[0].keep


def test_vad_replaces_diarization_when_it_is_off():
    plan = plan_graph(PIPELINE, load_config(None, ["diarization.enabled=false"]), None)
    assert "segment" in [p.stage.name for p in plan] and "diarize" not in [p.stage.name for p in plan]


def _a_task_fits_on_some_node(fitted: list[Placement], nodes: int, node_cpus: float) -> bool:
    """Whatever way the actors land on the nodes (each node within its CPUs), one node has a task's share free."""
    import itertools

    actors = [p.resources.num_cpus for p in fitted if p.pool for _ in range(p.pool.min_size)]
    task = max(p.resources.num_cpus for p in fitted if p.pool is None)
    for where in itertools.product(range(nodes), repeat=len(actors)):
        load = [sum(a for a, n in zip(actors, where) if n == node) for node in range(nodes)]
        if all(x <= node_cpus + 1e-9 for x in load) and not any(node_cpus - x >= task - 1e-9 for x in load):
            return False
    return True


@pytest.mark.parametrize("nodes, node_cpus, actors", [(2, 2, 6), (2, 1, 5), (3, 2, 7), (4, 1, 3)])
def test_on_several_nodes_a_task_always_finds_room(nodes, node_cpus, actors):
    placements = _placements(actors)
    assert _a_task_fits_on_some_node(fit_to_cluster(placements, nodes * node_cpus, nodes), nodes, node_cpus)


def test_fitting_as_if_one_node_can_leave_no_room_for_a_task():
    # Two 2-CPU nodes, six pools: three actors per node leave each 0.29 CPU for a 0.57-CPU task.
    assert not _a_task_fits_on_some_node(fit_to_cluster(_placements(6), 4, 1), 2, 2)
