"""The benchmark registry and the measuring helpers every benchmark module uses.

A benchmark is a function registered with ``@benchmark``; it gets a ``Context`` and
returns a flat dict of figures whose key suffix names the unit (see ``report.UNITS``).
"""

from __future__ import annotations

import resource
import statistics
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]

# ---- registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a benchmark gets: the generated input and run settings (JSON to the child)."""

    flac_path: str  # the whole generated input as one file (benchmarks that need one signal)
    audio_duration_s: float
    repeats: int
    work_dir: str
    input_paths: list[str]  # the same input cut into --files files of equal length (a corpus)
    decoded_path: str | None = None  # mono float32 .npy at decoded_rate, when the benchmark needs it
    decoded_rate: int | None = None


@dataclass(frozen=True)
class Benchmark:
    name: str
    func: Callable[[Context], dict[str, Any]]
    description: str
    needs_decoded: bool = False  # the parent decodes the input once and hands the signal over
    rss_key: str = "peak_rss_mib"  # what the peak RSS of the benchmark's own process is called
    timeout_s: float = 600.0  # its child process is stopped after this long


BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str, description: str, **kwargs: Any) -> Callable:
    def register(func: Callable[[Context], dict[str, Any]]) -> Callable[[Context], dict[str, Any]]:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = Benchmark(name, func, description, **kwargs)
        return func

    return register


# ---- measuring helpers ------------------------------------------------------------------


def peak_rss_mib() -> float:
    """Peak RSS of this process since it started (its own, not inherited).

    ``getrusage(RUSAGE_SELF).ru_maxrss`` survives fork and execve on Linux, so a process
    started from a big parent reports the parent's peak; VmHWM in /proc/self/status is
    the high-water mark of this process's own address space. ru_maxrss where there is no
    /proc.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def current_rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _median_throughput(audio_s: float, walls: list[float]) -> dict[str, Any]:
    med = statistics.median(walls)
    return {
        "wall_runs_s": [round(w, 3) for w in walls],
        "wall_median_s": med,
        "throughput_median_audio_s_per_wall_s": audio_s / med,
        "throughput_best_audio_s_per_wall_s": audio_s / min(walls),
    }


def busy_figures(stage_seconds: dict[str, float], audio_s: float, order: list[str] | None = None) -> dict[str, float]:
    """``busy_<stage>_s_per_audio_h``: a stage's busy seconds (summed over sources) per hour of audio.

    Stages in ``order`` (the pipeline's) first, in that order; any other after them.
    """
    if audio_s <= 0:
        return {}
    rank = {name: i for i, name in enumerate(order or [])}
    names = sorted(stage_seconds, key=lambda n: (rank.get(n, len(rank)), list(stage_seconds).index(n)))
    return {f"busy_{n}_s_per_audio_h": stage_seconds[n] * 3600 / audio_s for n in names}


def _is_ray_worker(name: str, cmdline: str) -> bool:
    return "default_worker.py" in cmdline or name.startswith("ray::")


class DescendantSampler:
    """Samples the RSS of this process's descendants in a thread, while the block runs.

    ``workers`` are the descendants ``is_worker(name, cmdline)`` picks (for a local Ray:
    the workers, children of the raylet that the driver starts; for decode: ffmpeg); ``all``
    is every descendant. Sampling can miss a short peak. RSS sums count pages shared
    between processes (the object store mapping, shared libraries) once per process, so
    they overstate the memory really used.
    """

    def __init__(self, interval_s: float = 0.25, is_worker: Callable[[str, str], bool] = _is_ray_worker) -> None:
        self.interval_s = interval_s
        self.is_worker = is_worker
        self.peak_workers_mib = 0.0
        self.peak_all_mib = 0.0
        self.peak_single_worker_mib = 0.0
        self.max_workers = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "DescendantSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            workers = total = 0.0
            n_workers = 0
            for proc in me.children(recursive=True):
                try:
                    rss = proc.memory_info().rss / 2**20
                    cmd = " ".join(proc.cmdline())
                    name = proc.name()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                total += rss
                if self.is_worker(name, cmd):
                    workers += rss
                    n_workers += 1
                    self.peak_single_worker_mib = max(self.peak_single_worker_mib, rss)
            self.peak_workers_mib = max(self.peak_workers_mib, workers)
            self.peak_all_mib = max(self.peak_all_mib, total)
            self.max_workers = max(self.max_workers, n_workers)
            self.samples += 1
            self._stop.wait(self.interval_s)
