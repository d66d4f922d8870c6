"""What a stage declares, and the placement types it declares it with.

A stage is a class with class-level declarations (as NeMo Curator's ``ProcessingStage``):

- ``name``: how logs, progress and the executor call it;
- ``sections``: the config sections it reads, by YAML key -> section type. A section type
  is the logic package's typed parameters (the one place of each default) plus the
  placement fields of this stage (device, batch size, resources, pool);
- ``uses_model``: True for a stage that loads a model once per worker (an actor);
  False for a plain task;
- ``inputs()`` / ``outputs()``: the row fields it reads and writes. The executor uses them
  to drop a field after its last reader, so nothing heavy rides further than it must;
- ``placement(cfg)``: resources, rows per call and pool size, read from its section;
- ``enabled(cfg)``: whether the stage is part of this run's graph;
- ``process_batch(rows)``: the work, over plain row dicts (numpy arrays for signals).

Stage code never imports an executor: ``pipeline.graph`` turns these declarations into
Ray Data calls, and a plain loop (``benchmarks/bench_sequential.py``) calls the same stages
one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """A closed, typed config section. ``placement_fields`` never change what a run writes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    placement_fields: ClassVar[frozenset[str]] = frozenset()

    def hashed(self) -> dict[str, Any]:
        """The part of the section that can change a run's output (for ``config_hash``)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.placement_fields}


class Resources(Section):
    """What one worker of a stage asks Ray for."""

    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    memory_gb: float | None = Field(None, gt=0, description="Ray memory reservation per worker")
    custom: dict[str, float] = Field(default_factory=dict, description="Ray custom resources per worker, e.g. "
                                     "{gpu_node: 0.01} to keep a stage on the node type cluster.yaml names so")


class ActorPool(Section):
    """Size of a model stage's actor pool (each actor loads the model once)."""

    min_size: int = Field(1, ge=1)
    max_size: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "ActorPool":
        if self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) < min_size ({self.min_size})")
        return self


# Placement fields every model stage section has; each section adds its own (threads, ...).
MODEL_PLACEMENT = frozenset({"device", "batch_size", "recordings_per_call", "resources", "pool", "cpu_threads"})


@dataclass(frozen=True)
class Placement:
    """How the executor runs one stage: per-worker resources, rows per call, pool size."""

    resources: Resources
    rows_per_call: int | None = None  # None: one row at a time (a task stage only)
    pool: ActorPool | None = None  # actor stages only


@dataclass(frozen=True)
class RunContext:
    """What every stage of one run may know about the run (not the config)."""

    out_dir: str
    corpus: str
    run_id: str
    config_hash: str


class Stage:
    """Base of every stage; see the module docstring for what a subclass declares."""

    name: ClassVar[str]
    sections: ClassVar[dict[str, type[Section]]] = {}
    uses_model: ClassVar[bool] = False

    def __init__(self, cfg: Any, run: RunContext) -> None:
        """``cfg`` is the run's composed config; a stage reads only its declared sections."""
        self.cfg = cfg
        self.run = run

    @classmethod
    def enabled(cls, cfg: Any) -> bool:
        return True

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        raise NotImplementedError

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ()

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ()

    def process_batch(self, rows: list[dict]) -> list[dict]:
        raise NotImplementedError

    def model_ids(self) -> list[tuple[str, str]]:
        """[stage, model id@revision] pairs this stage adds to each row's ``models``."""
        return []

    def with_models(self, rows: list[dict]) -> list[dict]:
        """``rows`` with this stage's ``model_ids`` added to each one's ``models``."""
        return [dict(r, models=append_models(r.get("models"), self.model_ids())) for r in rows]


def model_placement(section: Any, rows_per_call: int) -> Placement:
    """The placement of an actor stage whose section has ``resources`` and ``pool``."""
    return Placement(section.resources, rows_per_call=rows_per_call, pool=section.pool)


def append_models(models: list[dict] | None, pairs: list[tuple[str, str]]) -> list[dict]:
    """A row's ``models`` ({stage, model} structs) with ``pairs`` added once each."""
    out = list(models or [])
    for stage, model in pairs:
        entry = {"stage": stage, "model": model}
        if entry not in out:
            out.append(entry)
    return out
