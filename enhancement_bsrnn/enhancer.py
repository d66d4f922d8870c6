"""The interface every speech enhancer implements (DESIGN.md: `Enhancer`)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Enhancer(Protocol):
    """Maps a noisy mono signal to an enhanced one of the same rate and length."""

    #: model id recorded in the segment's ``models`` column, e.g. ``bsrnn:<path>@<sha8>``
    name: str

    def enhance(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """float32 mono in [-1, 1] at ``sample_rate`` -> float32 mono, same rate and length."""
        ...
