"""Shared fixtures: one Ray session for the whole suite, paths to the real clips."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITE_RAY_CPUS = 2
SHARED_REAL = Path(os.environ.get("REFINERY_SHARED_DATA", REPO.parent / "shared" / "data" / "real"))


def real_clip(*parts: str) -> Path:
    path = SHARED_REAL.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared test clip missing: {path} (tests read real audio from ../shared/data/real)")
    return path


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the suite; its address lets subprocess drivers attach to it."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from pipeline.config import RayConfig
    from pipeline.run import ensure_ray

    # Two logical CPUs, fewer than the graph has actor pools: the pools reserve fractions of a
    # CPU (pipeline.graph.fit_to_cluster); every pipeline test in the suite runs on this.
    ensure_ray(RayConfig(num_cpus=SUITE_RAY_CPUS, object_store_memory_gb=2.5))
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_wav() -> Path:
    import pyannote.audio.sample as sample

    return Path(sample.__file__).parent / "sample.wav"


@pytest.fixture(scope="module", autouse=True)
def _drop_speechbrain_lazy_redirects():
    """Leave no unloaded speechbrain lazy modules in sys.modules after a test module.

    Importing speechbrain (the ECAPA backend, pyannote.audio.pipelines) registers lazy
    redirect modules whose attribute access raises ImportError when an optional
    dependency such as k2 is missing; hypothesis reads ``__file__`` of every module in
    sys.modules, so every later hypothesis test in the process would fail.
    """
    yield
    for name, module in list(sys.modules.items()):
        if type(module).__module__ == "speechbrain.utils.importutils" and vars(module).get("lazy_module") is None:
            del sys.modules[name]
