"""The base of every typed parameter class: closed (unknown keys refused), validated on assignment.

Each logic package declares its algorithm parameters as one subclass (the single place of
each default); a stage's config section is that class plus placement fields
(``stages.base.Section``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
