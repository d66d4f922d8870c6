"""What a stage declares: how to call it, what it needs, how it is batched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.config import ActorPool, Resources


@dataclass(frozen=True)
class StageSpec:
    """A stage as the executor sees it.

    ``fn`` is a row function (``dict -> dict``) when ``batch_size`` is None, otherwise a
    batch function over a list of row dicts. A class with ``pool`` set runs on an actor
    pool: constructed once per actor with ``init_kwargs`` (the model loads there), then
    called per batch.
    """

    name: str
    fn: Callable[..., Any] | type
    resources: Resources
    batch_size: int | None = None
    pool: ActorPool | None = None
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    call_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_actor(self) -> bool:
        return self.pool is not None
