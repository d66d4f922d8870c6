"""Throughput and memory benchmarks of the pipeline, on a 10-minute input built at run time.

    .venv/bin/python benchmarks/run_benchmarks.py --out bench_out            # all benchmarks
    .venv/bin/python benchmarks/run_benchmarks.py --out bench_out --only decode
    .venv/bin/python benchmarks/run_benchmarks.py --only pipeline --only sequential --duration 120

The input is real speech (the clips under ../shared/data/real) joined by seeded silences
of 0.5-3 s, with low-level noise over the whole file, 44.1 kHz stereo FLAC, so decoding
it does real work (FLAC decode, resample to the working rate, downmix); see
``benchmarks/inputs.py``. The same input is also cut into ``--files`` files of equal
length (a corpus is many files), which ``pipeline`` and ``sequential`` run on; the others
take the whole file. It is built in a temporary folder and removed afterwards; nothing is
written into the repository.

Each benchmark is a function registered with ``@benchmark`` (``benchmarks/harness.py``)
in its own ``benchmarks/bench_*.py`` module; it returns a flat dict of figures whose key
suffix names the unit (``_s`` seconds, ``_mib`` MiB, ``_audio_s_per_wall_s`` seconds of
audio per second of wall time, ``_s_per_audio_h`` seconds per hour of audio, none: a
count). Each one runs in a fresh Python process, so its peak RSS (VmHWM of that process,
see ``peak_rss_mib``) is its own and not left over from another benchmark. Results are
merged into OUT/bench.json (a benchmark not run this time keeps its earlier entry) with
facts about the machine, and printed as a table. When ``pipeline`` and ``sequential``
both ran in the same invocation, ``comparisons.streaming_over_sequential`` is the ratio
of their throughputs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script, sys.path[0] is benchmarks/
    sys.path.insert(0, str(REPO))

# Every benchmark module, imported so that it registers; the order is the run order.
import benchmarks.bench_decode  # noqa: E402,F401
import benchmarks.bench_segmentation  # noqa: E402,F401
import benchmarks.bench_pipeline  # noqa: E402,F401
import benchmarks.bench_sequential  # noqa: E402,F401
import benchmarks.bench_language_id  # noqa: E402,F401
import benchmarks.bench_asr_batching  # noqa: E402,F401
import benchmarks.bench_diarization  # noqa: E402,F401
import benchmarks.bench_enhancement  # noqa: E402,F401
import benchmarks.bench_synthesis  # noqa: E402,F401
import benchmarks.bench_scale  # noqa: E402,F401
import benchmarks.bench_soak  # noqa: E402,F401
from benchmarks.harness import BENCHMARKS, Context, peak_rss_mib  # noqa: E402
from benchmarks.inputs import INPUT_RATE, SHARED_REAL, build_input, decode_for_children, split_input  # noqa: E402
from benchmarks.report import describe_comparison, machine_info, print_table, streaming_over_sequential  # noqa: E402


# ---- running ----------------------------------------------------------------------------


def run_child(name: str, ctx_path: Path, result_path: Path) -> int:
    """In the fresh process: run one benchmark, add its peak RSS, write the result."""
    bench = BENCHMARKS[name]
    ctx = Context(**json.loads(ctx_path.read_text()))
    t0 = time.perf_counter()
    figures = bench.func(ctx)
    figures[bench.rss_key] = peak_rss_mib()
    result = {"description": bench.description, "figures": figures, "benchmark_wall_s": time.perf_counter() - t0}
    result_path.write_text(json.dumps(result, indent=1))
    return 0


def run_in_fresh_process(name: str, ctx: Context, out: Path) -> dict[str, Any]:
    work = Path(ctx.work_dir)
    ctx_path, result_path = work / f"{name}.ctx.json", work / f"{name}.result.json"
    ctx_path.write_text(json.dumps(ctx.__dict__))
    log_path = out / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--ctx", str(ctx_path),
           "--result", str(result_path)]
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=BENCHMARKS[name].timeout_s)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    wall = time.perf_counter() - t0
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if rc == 0 and result_path.exists():
        return {**json.loads(result_path.read_text()), "date": date, "log": str(log_path)}
    tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
    why = f"timed out after {BENCHMARKS[name].timeout_s:.0f} s" if rc is None else f"exit status {rc}"
    return {"error": f"{why} after {wall:.0f} s; see {log_path}\n" + "\n".join(tail), "date": date, "log": str(log_path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_out", help="folder for bench.json and the logs (default: bench_out)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions where a benchmark repeats (default 3)")
    parser.add_argument("--duration", type=float, default=600.0, help="length of the generated input in s (default 600)")
    parser.add_argument("--files", type=int, default=10,
                        help="cut the input into this many files of equal length for the corpus benchmarks "
                             "(pipeline, sequential; default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated input (default 0)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ctx", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        return run_child(args.child, Path(args.ctx), Path(args.result))
    if args.list:
        for b in BENCHMARKS.values():
            print(f"{b.name:<17} {b.description}")
        return 0
    if args.repeats < 1 or args.duration <= 0 or args.files < 1:
        parser.error("--repeats and --files must be >= 1 and --duration > 0")

    names = list(dict.fromkeys(args.only)) if args.only else list(BENCHMARKS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bench_json = out / "bench.json"
    report: dict[str, Any] = {}
    if bench_json.exists():
        try:
            report = json.loads(bench_json.read_text())
        except json.JSONDecodeError:
            report = {}
    results: dict[str, Any] = report.get("benchmarks", {})
    comparisons: dict[str, Any] = report.get("comparisons", {})
    machine = machine_info()
    same = ("cpu_count", "cpu_model", "memory_gib", "python", "torch", "ray")
    if results and any(report.get("machine", {}).get(k) != machine[k] for k in same):
        print(f"{bench_json} holds results from another machine or setup; they are replaced, not merged", flush=True)
        results, comparisons = {}, {}

    work = Path(tempfile.mkdtemp(prefix="refinery-bench-"))
    t_start = time.perf_counter()
    try:
        flac = work / f"bench_{int(args.duration)}s_{INPUT_RATE}hz_stereo.flac"
        print(f"building a {args.duration:.0f} s input from the clips in {SHARED_REAL} ...", flush=True)
        t0 = time.perf_counter()
        input_info = build_input(flac, args.duration, args.seed)
        print(f"  {input_info['speech_clips_placed']} speech clips, {input_info['speech_s']:.0f} s of speech, "
              f"{input_info['size_bytes'] / 2**20:.1f} MiB FLAC, built in {time.perf_counter() - t0:.1f} s", flush=True)
        parts_dir = work / "files"
        parts_dir.mkdir()
        parts = split_input(flac, args.files, parts_dir)
        input_info["files"] = len(parts)
        input_info["file_duration_s"] = input_info["duration_s"] / len(parts)
        if len(parts) > 1:
            print(f"  cut into {len(parts)} files of {input_info['file_duration_s']:.1f} s", flush=True)
        ctx = Context(flac_path=str(flac), audio_duration_s=input_info["duration_s"], repeats=args.repeats,
                      work_dir=str(work), input_paths=[str(p) for p in parts])
        if any(BENCHMARKS[n].needs_decoded for n in names):
            ctx = decode_for_children(ctx)
        for name in names:
            print(f"running {name} ...", flush=True)
            t0 = time.perf_counter()
            results[name] = {**run_in_fresh_process(name, ctx, out), "input": input_info}
            state = "failed" if "error" in results[name] else "done"
            print(f"  {state} in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # The comparison needs both halves from this invocation (same input); an earlier one is kept
    # only while neither of its halves was rerun.
    comparison = None
    if "pipeline" in names and "sequential" in names:
        comparison = streaming_over_sequential(results)
    if comparison is not None:
        comparisons["streaming_over_sequential"] = comparison[0]
    elif "pipeline" in names or "sequential" in names:
        comparisons.pop("streaming_over_sequential", None)

    report = {"machine": {**machine, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")},
              "benchmarks": results}
    if comparisons:
        report["comparisons"] = comparisons
    bench_json.write_text(json.dumps(report, indent=1) + "\n")
    print()
    m = report["machine"]
    print(f"{m['cpu_count']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, "
          f"torch {m['torch']}, ray {m['ray']}; {m['date']}")
    files = f", cut into {len(parts)} files for pipeline and sequential" if len(parts) > 1 else ""
    print(f"input: {input_info['duration_s']:.0f} s, {INPUT_RATE} Hz stereo FLAC, "
          f"{input_info['speech_s']:.0f} s of speech from {input_info['speech_clips_available']} real clips{files}\n")
    print_table(results, names)
    if comparison is not None:
        print("\n" + describe_comparison(*comparison))
    print(f"\nwrote {bench_json} (total {time.perf_counter() - t_start:.0f} s)")
    return 1 if any("error" in results[n] for n in names) else 0


if __name__ == "__main__":
    sys.exit(main())
