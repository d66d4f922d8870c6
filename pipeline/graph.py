"""The Ray Data adapter: turns stage declarations into dataset operations.

Stages see plain row dicts (numpy arrays for signals); this module alone knows about Ray
Data's batch formats, actor pools and resource arguments. Three things happen here:

- **placement**: each enabled stage's ``placement(cfg)``, scaled so that the graph fits
  the cluster (``fit_to_cluster``): every actor pool holds its CPUs while it lives, so on
  a cluster with fewer CPUs than pools, the pools and tasks reserve fractions of a CPU
  and share the cores instead of waiting on each other forever;
- **typed rows**: declared columns (segments, models, variants) leave a stage as Arrow
  columns of their declared types, never as JSON text;
- **pruning**: after each stage, a field no later stage reads (``Stage.inputs``) is
  dropped, so a signal rides only as far as its last reader.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import ray

from manifests.planned_segment import MODELS_TYPE, SEGMENTS_TYPE
from manifests.schema import TURN_TYPE
from stages.base import ActorPool, Placement, RunContext, Stage

log = logging.getLogger("refinery")

# Row fields whose Arrow type is declared, not inferred (a batch whose values are all
# None would otherwise become a null column, and a list of dicts a struct of whatever keys
# the first row had).
ROW_TYPES: dict[str, pa.DataType] = {
    "segments": SEGMENTS_TYPE,
    "models": MODELS_TYPE,
    "audio_raw": pa.binary(),
    "audio_enhanced": pa.binary(),
    "staged_paths": pa.list_(pa.string()),
    "error": pa.string(),
    "warning": pa.string(),
    "stage_seconds": pa.list_(pa.struct([("stage", pa.string()), ("seconds", pa.float64()), ("node", pa.string())])),
    "turns": pa.list_(TURN_TYPE),  # synthesis: the turns of a dialogue
    "dialogue_kept": pa.bool_(),
    "dialogue_form": pa.string(),
    "dialogue_drop_reason": pa.string(),
}
# Rides through every stage: the busy seconds each stage spent per row (summed per run) and the
# Ray node it ran on (the ledger's ``worker_nodes``: where each source's work happened).
TIMING_FIELD = "stage_seconds"


@dataclass(frozen=True)
class PlannedStage:
    """One operator of the graph: a stage, or consecutive model stages fused into one actor."""

    members: tuple[type[Stage], ...]
    placement: Placement
    keeps: tuple[frozenset[str] | None, ...]  # fields kept after each member; None: all (the last stage)
    task_limit: int | None = None  # a task stage's concurrent tasks; None: as many as the resources allow

    @property
    def stage(self) -> type[Stage]:
        return self.members[0]

    @property
    def keep(self) -> frozenset[str] | None:
        return self.keeps[-1]

    @property
    def name(self) -> str:
        return "+".join(m.name for m in self.members)

    @property
    def tasks_in_flight(self) -> int | None:
        """Calls queued per actor. Fused actors take a recording through every model, seconds to
        minutes each: queueing several per actor would tie recordings to a busy actor while
        another one idles. None: Ray Data's default (a queue that hides transfer time)."""
        return 1 if len(self.members) > 1 else None

    @property
    def uses_model(self) -> bool:
        return self.members[0].uses_model


def plan_graph(stages: tuple[type[Stage], ...], cfg: Any, cluster_cpus: float | None,
               fuse: str = "auto", nodes: int = 1) -> list[PlannedStage]:
    """The enabled stages with their (fitted) placement and the fields each must pass on.

    ``fuse``: ``auto`` fuses the consecutive CPU model stages into one actor (a pool of one
    per CPU) when the cluster has fewer CPUs than those stages have pools plus one task:
    each pool would otherwise hold a fraction of a core, every actor process would load its
    own copy of the stack, and the slowest stage would set the pace while others idle. Fused,
    each actor takes a recording through all model stages, and the actors work on different
    recordings. ``always`` / ``never`` force it. Stages that ask for GPUs are never fused.
    ``nodes``: how many nodes share ``cluster_cpus`` (see ``fit_to_cluster``).
    """
    enabled = [s for s in stages if s.enabled(cfg)]
    placements = [s.placement(cfg) for s in enabled]
    keeps = []
    for i in range(len(enabled)):
        later = enabled[i + 1:]
        keeps.append(frozenset(f for s in later for f in s.inputs()) | {TIMING_FIELD} if later else None)
    groups: list[list[int]] = []
    fusable = [_fusable(stage, placement) for stage, placement in zip(enabled, placements)]
    for i in range(len(enabled)):
        if groups and fusable[i] and fusable[groups[-1][-1]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    model_pools = sum(fusable)
    do_fuse = fuse == "always" or (fuse == "auto" and cluster_cpus is not None and cluster_cpus < model_pools + 1)
    if not do_fuse:
        groups = [[i] for i in range(len(enabled))]
    ops: list[tuple[tuple[type[Stage], ...], Placement, tuple]] = []
    for group in groups:
        members = tuple(enabled[i] for i in group)
        if len(group) == 1:
            placement = placements[group[0]]
        else:  # one actor per CPU, each holding every member's model once
            size = max(1, int(cluster_cpus or 1))
            cpus = max(placements[i].resources.num_cpus for i in group)
            placement = Placement(placements[group[0]].resources.model_copy(update={"num_cpus": cpus}),
                                  rows_per_call=min(placements[i].rows_per_call or 1 for i in group),
                                  pool=ActorPool(min_size=size, max_size=size))
        ops.append((members, placement, tuple(keeps[i] for i in group)))
    fitted = fit_to_cluster([placement for _, placement, _ in ops], cluster_cpus, nodes)
    # Scaled-down tasks would otherwise run many at once, each in a worker process of its own
    # (memory), for work that was sized for one CPU each: keep them to one per CPU.
    task_limit = max(1, int(cluster_cpus)) if cluster_cpus else None
    return [PlannedStage(members, placement, op_keeps, None if members[0].uses_model else task_limit)
            for (members, _, op_keeps), placement in zip(ops, fitted)]


def _fusable(stage: type[Stage], placement: Placement) -> bool:
    return stage.uses_model and not placement.resources.num_gpus


def fit_to_cluster(placements: list[Placement], cluster_cpus: float | None, nodes: int = 1) -> list[Placement]:
    """Scale CPU requests so that every actor pool at its minimum size plus the largest task fit.

    Actors keep their CPUs for the whole run; with more pools than CPUs, the later pools
    would never start while the earlier ones wait on back-pressure. Scaling every request
    by one factor keeps their proportions; threads are set by each stage's own config.

    On ``nodes`` nodes the CPUs are not one pool: actors spread over the nodes, and a task
    needs its share free on one node. Reserving a task's share per node guarantees it: the
    CPUs left after the actors average at least one task's share per node, so one node has it
    (two 2-CPU nodes with six 1-CPU pools would otherwise leave each node 0.29 CPU for a
    0.57-CPU decode task, and the run would wait forever).
    """
    if not cluster_cpus:
        return placements
    held = sum(p.resources.num_cpus * p.pool.min_size for p in placements if p.pool is not None)
    task = max((p.resources.num_cpus for p in placements if p.pool is None), default=0.0)
    need = held + task * max(1, nodes)
    if need <= cluster_cpus:
        return placements
    factor = cluster_cpus / need
    log.info("%g CPUs for %g CPUs of actor pools and tasks: each stage reserves %.0f%% of its CPU request, "
             "and the stages share the cores", cluster_cpus, need, 100 * factor)
    # Rounded down: the shares must fit, never pass the cluster by a rounding error.
    return [replace(p, resources=p.resources.model_copy(
        update={"num_cpus": math.floor(p.resources.num_cpus * factor * 1e4) / 1e4})) for p in placements]


def _table_to_rows(table: pa.Table) -> list[dict]:
    columns: dict[str, list[Any]] = {}
    for name in table.column_names:
        col = table.column(name)
        if isinstance(col.type, pa.ExtensionType):  # Ray's tensor columns: keep numpy arrays
            values: list[Any] = []
            for chunk in col.chunks:
                values.extend(chunk.to_numpy(zero_copy_only=False))
            columns[name] = values
        else:
            columns[name] = col.to_pylist()
    if not columns:
        return [{} for _ in range(table.num_rows)]
    return [dict(zip(columns, vals)) for vals in zip(*columns.values())]


def _rows_to_table(rows: list[dict], keep: frozenset[str] | None) -> pa.Table:
    from ray.data._internal.tensor_extensions.arrow import convert_to_pyarrow_array

    names: list[str] = []
    for row in rows:
        for k in row:
            if k not in names and (keep is None or k in keep):
                names.append(k)
    arrays = []
    for name in names:
        values = [row.get(name) for row in rows]
        if name in ROW_TYPES:
            arrays.append(pa.array(values, type=ROW_TYPES[name]))
        else:  # inferred; numpy signals become (variable-shaped) tensor columns
            arrays.append(convert_to_pyarrow_array(values, name))
    return pa.Table.from_arrays(arrays, names=names)


def _run_stages(stages: list[Stage], keeps: tuple[frozenset[str] | None, ...], table: pa.Table) -> pa.Table:
    rows = _table_to_rows(table)
    for stage, keep in zip(stages, keeps):
        t0 = time.perf_counter()
        rows = stage.process_batch(rows)
        share = (time.perf_counter() - t0) / max(1, len(rows))  # a call's time, split over its rows
        entry = {"stage": stage.name, "seconds": round(share, 4), "node": _node_id()}
        for row in rows:
            row[TIMING_FIELD] = list(row.get(TIMING_FIELD) or []) + [entry]
        if keep is not None:
            rows = [{k: v for k, v in row.items() if k in keep} for row in rows]
    return _rows_to_table(rows, keeps[-1])


def _node_id() -> str | None:
    """The Ray node this worker runs on (None outside Ray)."""
    try:
        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - no runtime context: not on a Ray worker
        return None


class _StageActor:
    """Hosts model stages on an actor: constructed once (the models load), called per batch."""

    def __init__(self, members: tuple[type[Stage], ...], cfg: Any, run: RunContext,
                 keeps: tuple[frozenset[str] | None, ...]) -> None:
        self.stages = [member(cfg, run) for member in members]
        self.keeps = keeps

    def __call__(self, table: pa.Table) -> pa.Table:
        try:
            return _run_stages(self.stages, self.keeps, table)
        finally:
            _return_freed_memory()


def _return_freed_memory() -> None:
    """Hand the heap a batch freed back to the OS (glibc keeps it otherwise: a long-lived
    actor's RSS would stay at its largest recording's peak)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to do
        return None


_LIBC = _load_libc()


def _stage_task(table: pa.Table, members: tuple[type[Stage], ...], cfg: Any, run: RunContext,
                keeps: tuple[frozenset[str] | None, ...]) -> pa.Table:
    return _run_stages([member(cfg, run) for member in members], keeps, table)


def apply_stage(ds: "ray.data.Dataset", planned: PlannedStage, cfg: Any, run: RunContext) -> "ray.data.Dataset":
    res = planned.placement.resources
    ray_args: dict[str, Any] = {"num_cpus": res.num_cpus}
    if res.num_gpus:
        ray_args["num_gpus"] = res.num_gpus
    if res.memory_gb:
        ray_args["memory"] = int(res.memory_gb * 1024**3)
    if res.custom:
        ray_args["resources"] = dict(res.custom)
    batch_size = planned.placement.rows_per_call or 1
    if planned.uses_model:
        pool = planned.placement.pool
        assert pool is not None, f"model stage {planned.name} declares no pool"
        return ds.map_batches(
            _StageActor,
            fn_constructor_kwargs={"members": planned.members, "cfg": cfg, "run": run, "keeps": planned.keeps},
            batch_size=batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=pool.min_size, max_size=pool.max_size,
                                               max_tasks_in_flight_per_actor=planned.tasks_in_flight),
            **ray_args,
        )
    return ds.map_batches(
        _stage_task, fn_kwargs={"members": planned.members, "cfg": cfg, "run": run, "keeps": planned.keeps},
        batch_size=batch_size, batch_format="pyarrow", compute=ray.data.TaskPoolStrategy(size=planned.task_limit),
        **ray_args,
    )


def cluster_cpus() -> float | None:
    return ray.cluster_resources().get("CPU")


def cluster_nodes() -> int:
    """Alive nodes that offer CPUs (where actors and tasks can land)."""
    return max(1, sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")))
