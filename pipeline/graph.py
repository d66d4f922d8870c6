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

import numpy as np
import pyarrow as pa
import ray

from manifests.planned_segment import MODELS_TYPE, SEGMENTS_TYPE
from stages.base import Placement, RunContext, Stage

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
    "stage_seconds": pa.list_(pa.struct([("stage", pa.string()), ("seconds", pa.float64())])),
}
# Rides through every stage: the busy seconds each stage spent per row, summed per run.
TIMING_FIELD = "stage_seconds"


@dataclass(frozen=True)
class PlannedStage:
    stage: type[Stage]
    placement: Placement
    keep: frozenset[str] | None  # fields kept after the stage; None: all (the last stage)


def plan_graph(stages: tuple[type[Stage], ...], cfg: Any, cluster_cpus: float | None) -> list[PlannedStage]:
    """The enabled stages with their (fitted) placement and the fields each must pass on."""
    enabled = [s for s in stages if s.enabled(cfg)]
    placements = fit_to_cluster([s.placement(cfg) for s in enabled], cluster_cpus)
    planned = []
    for i, (stage, placement) in enumerate(zip(enabled, placements)):
        later = enabled[i + 1:]
        keep = frozenset(f for s in later for f in s.inputs()) | {TIMING_FIELD} if later else None
        planned.append(PlannedStage(stage, placement, keep))
    return planned


def fit_to_cluster(placements: list[Placement], cluster_cpus: float | None) -> list[Placement]:
    """Scale CPU requests so that every actor pool at its minimum size plus the largest task fit.

    Actors keep their CPUs for the whole run; with more pools than CPUs, the later pools
    would never start while the earlier ones wait on back-pressure. Scaling every request
    by one factor keeps their proportions; threads are set by each stage's own config.
    """
    if not cluster_cpus:
        return placements
    held = sum(p.resources.num_cpus * p.pool.min_size for p in placements if p.pool is not None)
    task = max((p.resources.num_cpus for p in placements if p.pool is None), default=0.0)
    need = held + task
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
        elif values and all(isinstance(v, np.ndarray) for v in values):
            arrays.append(convert_to_pyarrow_array(values, name))  # a (variable-shaped) tensor column
        else:
            arrays.append(convert_to_pyarrow_array(values, name))
    return pa.Table.from_arrays(arrays, names=names)


def _run_stage(stage: Stage, table: pa.Table, keep: frozenset[str] | None) -> pa.Table:
    rows = _table_to_rows(table)
    t0 = time.perf_counter()
    out = stage.process_batch(rows)
    share = (time.perf_counter() - t0) / max(1, len(out))  # a call's time, split over its rows
    for row in out:
        row[TIMING_FIELD] = list(row.get(TIMING_FIELD) or []) + [{"stage": stage.name, "seconds": round(share, 4)}]
    return _rows_to_table(out, keep)


class _StageActor:
    """Hosts a model stage on an actor: constructed once (the model loads), called per batch."""

    def __init__(self, stage_cls: type[Stage], cfg: Any, run: RunContext, keep: frozenset[str] | None) -> None:
        self.stage = stage_cls(cfg, run)
        self.keep = keep

    def __call__(self, table: pa.Table) -> pa.Table:
        return _run_stage(self.stage, table, self.keep)


def _stage_task(table: pa.Table, stage_cls: type[Stage], cfg: Any, run: RunContext,
                keep: frozenset[str] | None) -> pa.Table:
    return _run_stage(stage_cls(cfg, run), table, keep)


def apply_stage(ds: "ray.data.Dataset", planned: PlannedStage, cfg: Any, run: RunContext) -> "ray.data.Dataset":
    res = planned.placement.resources
    ray_args: dict[str, Any] = {"num_cpus": res.num_cpus}
    if res.num_gpus:
        ray_args["num_gpus"] = res.num_gpus
    if res.memory_gb:
        ray_args["memory"] = int(res.memory_gb * 1024**3)
    batch_size = planned.placement.rows_per_call or 1
    if planned.stage.uses_model:
        pool = planned.placement.pool
        assert pool is not None, f"model stage {planned.stage.name} declares no pool"
        return ds.map_batches(
            _StageActor,
            fn_constructor_kwargs={"stage_cls": planned.stage, "cfg": cfg, "run": run, "keep": planned.keep},
            batch_size=batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=pool.min_size, max_size=pool.max_size),
            **ray_args,
        )
    return ds.map_batches(
        _stage_task, fn_kwargs={"stage_cls": planned.stage, "cfg": cfg, "run": run, "keep": planned.keep},
        batch_size=batch_size, batch_format="pyarrow", **ray_args,
    )


def cluster_cpus() -> float | None:
    return ray.cluster_resources().get("CPU")
