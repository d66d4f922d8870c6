"""The Ray Data adapter: turns ``StageSpec`` declarations into dataset operations.

Stages see plain row dicts (numpy arrays for audio); this module alone knows about
Ray Data's batch formats, actor pools and resource arguments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import ray

from stages.base import StageSpec


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
    return [dict(zip(columns, vals)) for vals in zip(*columns.values())] if columns else [{} for _ in range(table.num_rows)]


def _rows_to_batch(rows: list[dict]) -> dict[str, list[Any]]:
    keys: list[str] = []
    for row in rows:
        for k in row:
            if k not in keys:
                keys.append(k)
    batch = {k: [row.get(k) for row in rows] for k in keys}
    for k, vals in batch.items():
        if vals and all(isinstance(v, np.ndarray) for v in vals):
            batch[k] = vals  # Ray builds a (variable-shaped) tensor column from a list of arrays
    return batch


class _BatchActor:
    """Hosts a stage class on an actor: constructed once, called per batch of rows."""

    def __init__(self, stage_cls: type, init_kwargs: dict[str, Any]) -> None:
        self.stage = stage_cls(**init_kwargs)

    def __call__(self, table: pa.Table) -> dict[str, list[Any]]:
        return _rows_to_batch(self.stage(_table_to_rows(table)))


def _batch_task(table: pa.Table, fn: Any, kwargs: dict[str, Any]) -> dict[str, list[Any]]:
    return _rows_to_batch(fn(_table_to_rows(table), **kwargs))


def apply_stage(ds: "ray.data.Dataset", spec: StageSpec) -> "ray.data.Dataset":
    res = spec.resources
    ray_args: dict[str, Any] = {"num_cpus": res.num_cpus}
    if res.num_gpus:
        ray_args["num_gpus"] = res.num_gpus
    if res.memory_gb:
        ray_args["memory"] = int(res.memory_gb * 1024**3)
    if spec.is_actor:
        return ds.map_batches(
            _BatchActor,
            fn_constructor_kwargs={"stage_cls": spec.fn, "init_kwargs": spec.init_kwargs},
            batch_size=spec.batch_size or 1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=spec.pool.min_size, max_size=spec.pool.max_size),
            **ray_args,
        )
    if spec.batch_size is None:
        return ds.map(spec.fn, fn_kwargs=spec.call_kwargs, **ray_args)
    return ds.map_batches(
        _batch_task,
        fn_kwargs={"fn": spec.fn, "kwargs": spec.call_kwargs},
        batch_size=spec.batch_size,
        batch_format="pyarrow",
        **ray_args,
    )
