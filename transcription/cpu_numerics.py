"""One CPU code path for CTranslate2, so Whisper's text is the same on every x86 machine.

CTranslate2 picks its GEMM backend and kernels by the CPU it finds: Intel MKL on Intel CPUs,
oneDNN elsewhere, AVX-512 kernels where they exist. The last bits of the scores differ between
those paths, and beam search turns a last-bit difference into a different word now and then
("you, ask" on one machine, "you. Ask" on another; MKL's results also move with the batch and
the thread count). A cluster of mixed nodes would then ship text that depends on which node a
segment landed on. Pinned, every x86 CPU with AVX2 runs the same oneDNN AVX2 kernels (checked
here: identical scores for batch 1, 3 and 8 and for 1 or 2 threads).

The variables are read when the library loads (``CT2_USE_MKL``) or at first use (the ISA), so
they are set when this package is imported, before anything imports ``ctranslate2``. A value
the user set is kept; ``REFINERY_CPU_NUMERICS=native`` leaves CTranslate2 its own choice (the
fastest path on a given CPU, at the price of machine-dependent text).
"""

from __future__ import annotations

import logging
import os
import platform
import sys

log = logging.getLogger(__name__)

PINNED_ISA = "AVX2"
NATIVE = "native"


def _has_avx2() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return False


def pinned_environment(mode: str | None = None, has_avx2: bool | None = None) -> dict[str, str]:
    """The variables that pin CTranslate2's CPU code path; empty where nothing can be pinned
    (``native`` asked for, or no AVX2 on this CPU)."""
    mode = os.environ.get("REFINERY_CPU_NUMERICS", PINNED_ISA) if mode is None else mode
    if mode.lower() == NATIVE:
        return {}
    if mode.upper() != PINNED_ISA:
        raise ValueError(f"REFINERY_CPU_NUMERICS must be {PINNED_ISA} or {NATIVE}, not {mode!r}")
    if not (_has_avx2() if has_avx2 is None else has_avx2):
        return {}
    return {"CT2_USE_MKL": "0", "CT2_FORCE_CPU_ISA": PINNED_ISA, "ONEDNN_MAX_CPU_ISA": PINNED_ISA}


def pin_cpu_numerics() -> None:
    """Set the pinned variables in this process (keeping any the user set), before CTranslate2 loads."""
    wanted = pinned_environment()
    if "ctranslate2" in sys.modules and any(os.environ.get(k) != v for k, v in wanted.items()):
        log.warning("CTranslate2 was loaded before its CPU path was pinned: Whisper's text may differ "
                    "from other machines' in this run")
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
