"""Facts about the machine, and the results table (a figure's key suffix names its unit)."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    import psutil

    try:
        ffmpeg_line = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        ffmpeg_line = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = "", False
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "ray": _version("ray"),
        "numpy": _version("numpy"),
        "onnxruntime": _version("onnxruntime"),
        "silero_vad": _version("silero-vad"),
        "ffmpeg": ffmpeg_line,
        "git_commit": commit or None,
        "git_dirty": dirty,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


UNITS = (  # key suffix -> unit shown in the table, longest first
    ("_audio_s_per_wall_s", "audio s / wall s"),
    ("_s_per_audio_h", "s / audio h"),
    ("_s_per_spoken_s", "s / spoken s"),
    ("_s_per_spoken_h", "s / spoken h"),
    ("_rtf", "RTF (s / audio s)"),
    ("_mib", "MiB"),
    ("_hz", "Hz"),
    ("_s", "s"),
)


def _label_unit(key: str) -> tuple[str, str]:
    for suffix, unit in UNITS:
        if key.endswith(suffix):
            return key[: -len(suffix)].replace("_", " "), unit
    return key.replace("_", " "), ""


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def print_table(results: dict[str, Any], names: list[str]) -> None:
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    for name in names:
        entry = results.get(name, {})
        if "error" in entry:
            rows.append((name, "FAILED", "see below", ""))
            notes.append(f"{name} failed: {entry['error']}")
            continue
        for key, value in entry.get("figures", {}).items():
            if key == "note":
                notes.append(f"{name}: {value}")
                continue
            label, unit = _label_unit(key)
            rows.append((name, label, _fmt(value), unit))
    widths = [max(len(r[i]) for r in rows + [("benchmark", "figure", "value", "unit")]) for i in range(4)]
    header = ("benchmark", "figure", "value", "unit")
    line = f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:>{widths[2]}}  {header[3]}"
    print(line)
    print("-" * len(line))
    previous = None
    for bench, label, value, unit in rows:
        shown = bench if bench != previous else ""
        if previous is not None and bench != previous:
            print()
        print(f"{shown:<{widths[0]}}  {label:<{widths[1]}}  {value:>{widths[2]}}  {unit}")
        previous = bench
    for note in notes:
        print(f"\nnote, {note}")


def streaming_over_sequential(results: dict[str, Any]) -> tuple[float, float, float, int] | None:
    """(ratio, pipeline, sequential throughput, input files) when both ran and succeeded, else None."""
    pipe, seq = results.get("pipeline", {}), results.get("sequential", {})
    if "error" in pipe or "error" in seq or "figures" not in pipe or "figures" not in seq:
        return None
    a = pipe["figures"].get("throughput_end_to_end_audio_s_per_wall_s")
    b = seq["figures"].get("throughput_audio_s_per_wall_s")
    if not a or not b:
        return None
    files = seq["figures"].get("input_files", pipe["figures"].get("input_files", 1))
    return a / b, a, b, files


def describe_comparison(ratio: float, pipeline: float, sequential: float, files: int) -> str:
    return (f"streaming_over_sequential: {ratio:.2f} (pipeline {pipeline:.2f} s/s over sequential "
            f"{sequential:.2f} s/s, same {files}-file input)")
