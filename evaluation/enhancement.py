"""`refinery eval enhancement`: score enhancers on clean/noisy pairs, side by side.

A pairs folder holds ``<stem>_noisy.wav`` + ``<stem>_clean.wav`` (same rate; a stereo file
is averaged to mono). Each system enhances the noisy file; ``noisy`` is the input itself,
the baseline every enhancer has to beat. Scored against the clean file, all at 16 kHz
(``metrics``): SI-SDR and its improvement over the noisy input, PESQ-WB, STOI, DNSMOS
P.835 OVRL/SIG/BAK, and the real-time factor (enhancement wall time / audio duration, after
one warm-up call on 1 s of silence; null for ``noisy``).

Means are arithmetic means over the files of each metric; a NaN (PESQ found no speech) is
left out of its mean and written as null in JSON.

``--blind DIR`` also scores a folder of noisy-only recordings (``*.wav``, no clean
reference): DNSMOS OVRL/SIG/BAK of each system's output and its RTF (``blind`` in JSON).
``--rtf-rate 48000`` also times every enhancer on the pairs' noisy files resampled to that
rate (``rtf_at`` in JSON: mean RTF per system). ``--model`` may be given several times as
``NAME=PATH``: each is a BSRNN system ``bsrnn:NAME`` (side by side, e.g. old and new weights).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import click
import numpy as np

from enhancement_bsrnn.enhancer import Enhancer
from enhancement_bsrnn.metrics import METRIC_RATE, MetricSet, resample, score, si_sdr

log = logging.getLogger(__name__)

SYSTEMS = ("noisy", "bsrnn", "deepfilternet3")
NOISY_SUFFIX, CLEAN_SUFFIX = "_noisy.wav", "_clean.wav"
METRICS = ("si_sdr", "si_sdr_improvement", "pesq_wb", "stoi", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "rtf")
BLIND_METRICS = ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "rtf")
_LABELS = {"si_sdr": "SI-SDR [dB]", "si_sdr_improvement": "SI-SDR impr. [dB]", "pesq_wb": "PESQ-WB",
           "stoi": "STOI", "dnsmos_ovrl": "DNSMOS OVRL", "dnsmos_sig": "DNSMOS SIG", "dnsmos_bak": "DNSMOS BAK",
           "rtf": "RTF"}


class PairsError(ValueError):
    """The pairs folder is empty or holds a noisy file without its clean one (or the reverse)."""


def find_pairs(pairs_dir: Path) -> list[tuple[str, Path, Path]]:
    """``(stem, noisy, clean)`` for each ``<stem>_noisy.wav`` / ``<stem>_clean.wav`` pair, by stem."""
    pairs_dir = Path(pairs_dir)
    if not pairs_dir.is_dir():
        raise PairsError(f"{pairs_dir} is not a folder")
    noisy = {p.name[: -len(NOISY_SUFFIX)]: p for p in pairs_dir.iterdir() if p.name.endswith(NOISY_SUFFIX)}
    clean = {p.name[: -len(CLEAN_SUFFIX)]: p for p in pairs_dir.iterdir() if p.name.endswith(CLEAN_SUFFIX)}
    unmatched = sorted([noisy[s].name for s in noisy.keys() - clean.keys()]
                       + [clean[s].name for s in clean.keys() - noisy.keys()])
    if unmatched:
        raise PairsError(f"unmatched files in {pairs_dir} (each <stem>{NOISY_SUFFIX} needs a <stem>{CLEAN_SUFFIX} "
                         f"and the reverse): {', '.join(unmatched)}")
    if not noisy:
        raise PairsError(f"no <stem>{NOISY_SUFFIX} / <stem>{CLEAN_SUFFIX} pairs in {pairs_dir}")
    return [(s, noisy[s], clean[s]) for s in sorted(noisy)]


def find_blind(blind_dir: Path) -> list[tuple[str, Path]]:
    """``(stem, path)`` of each ``*.wav`` in a folder of noisy-only recordings, by name."""
    blind_dir = Path(blind_dir)
    if not blind_dir.is_dir():
        raise PairsError(f"{blind_dir} is not a folder")
    files = sorted(p for p in blind_dir.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
    if not files:
        raise PairsError(f"no .wav files in {blind_dir}")
    return [(p.stem, p) for p in files]


def _read_mono(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1).astype(np.float32), int(sr)


def _run(enhancer: Enhancer, system: str, audio: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = enhancer.enhance(audio, sr)
    elapsed = time.perf_counter() - t0
    out = np.asarray(out)
    if out.shape != audio.shape:
        raise ValueError(f"{system} ({enhancer.name}) returned shape {out.shape} for input {audio.shape}")
    if not np.isfinite(out).all():
        raise ValueError(f"{system} ({enhancer.name}) returned NaN or inf samples")
    return out.astype(np.float32, copy=False), elapsed


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else None


def evaluate_pairs(pairs_dir: Path | str, enhancers: dict[str, Enhancer], include_noisy: bool = True) -> dict:
    """Score every enhancer (and the noisy input) on every pair in ``pairs_dir``.

    Returns ``{"files": {stem: {system: {metric: value}}}, "mean": {system: {metric: value}}}``
    with systems in the order ``noisy`` (when ``include_noisy``), then ``enhancers``' order.
    Values are floats, NaN where a metric could not be computed, ``rtf`` None for noisy.
    """
    pairs = find_pairs(Path(pairs_dir))
    if "noisy" in enhancers:
        raise ValueError("'noisy' is the unprocessed input, not an enhancer name")
    warmed: set[str] = set()
    files: dict[str, dict[str, dict]] = {}
    for stem, noisy_path, clean_path in pairs:
        noisy, sr = _read_mono(noisy_path)
        clean, clean_sr = _read_mono(clean_path)
        if clean_sr != sr:
            raise PairsError(f"{stem}: noisy is {sr} Hz but clean is {clean_sr} Hz")
        duration = len(noisy) / sr
        if duration == 0:
            raise PairsError(f"{stem}: empty noisy file")
        ref16 = resample(clean.astype(np.float64), sr, METRIC_RATE)
        noisy16 = resample(noisy.astype(np.float64), sr, METRIC_RATE)
        noisy_sdr = si_sdr(noisy16, ref16)
        row: dict[str, dict] = {}
        if include_noisy:
            row["noisy"] = score(noisy16, ref16, METRIC_RATE).as_dict()
        for system, enhancer in enhancers.items():
            if system not in warmed:  # first-call costs (lazy loads, JIT) are not the steady-state RTF
                enhancer.enhance(np.zeros(sr, dtype=np.float32), sr)
                warmed.add(system)
            out, elapsed = _run(enhancer, system, noisy, sr)
            out16 = resample(out.astype(np.float64), sr, METRIC_RATE)
            metrics: MetricSet = score(out16, ref16, METRIC_RATE, noisy_si_sdr=noisy_sdr, rtf=elapsed / duration)
            row[system] = metrics.as_dict()
            log.info("%s %s: SI-SDR %.2f dB, RTF %.3f", stem, system, metrics.si_sdr, elapsed / duration)
        files[stem] = row
    systems = list(next(iter(files.values())))
    mean = {s: {m: _mean([files[f][s][m] for f in files]) for m in METRICS} for s in systems}
    return {"files": files, "mean": mean}


def _warm(enhancer: Enhancer, sr: int) -> None:
    enhancer.enhance(np.zeros(sr, dtype=np.float32), sr)


def evaluate_blind(blind_dir: Path | str, enhancers: dict[str, Enhancer], include_noisy: bool = True) -> dict:
    """DNSMOS (and RTF) of every enhancer's output on noisy-only recordings; same layout as ``evaluate_pairs``."""
    from enhancement_bsrnn.metrics import dnsmos

    files: dict[str, dict[str, dict]] = {}
    warmed: set[str] = set()
    for stem, path in find_blind(Path(blind_dir)):
        noisy, sr = _read_mono(path)
        duration = len(noisy) / sr
        if duration == 0:
            raise PairsError(f"{stem}: empty file")
        row: dict[str, dict] = {}
        if include_noisy:
            mos = dnsmos(resample(noisy.astype(np.float64), sr, METRIC_RATE), METRIC_RATE)
            row["noisy"] = {"dnsmos_ovrl": mos["ovrl"], "dnsmos_sig": mos["sig"], "dnsmos_bak": mos["bak"], "rtf": None}
        for system, enhancer in enhancers.items():
            if system not in warmed:
                _warm(enhancer, sr)
                warmed.add(system)
            out, elapsed = _run(enhancer, system, noisy, sr)
            mos = dnsmos(resample(out.astype(np.float64), sr, METRIC_RATE), METRIC_RATE)
            row[system] = {"dnsmos_ovrl": mos["ovrl"], "dnsmos_sig": mos["sig"], "dnsmos_bak": mos["bak"],
                           "rtf": elapsed / duration}
            log.info("%s %s: DNSMOS OVRL %.2f, RTF %.3f", stem, system, mos["ovrl"], elapsed / duration)
        files[stem] = row
    systems = list(next(iter(files.values())))
    mean = {s: {m: _mean([files[f][s][m] for f in files]) for m in BLIND_METRICS} for s in systems}
    return {"files": files, "mean": mean}


def rtf_at_rate(pairs_dir: Path | str, enhancers: dict[str, Enhancer], rate: int) -> dict[str, float]:
    """Mean real-time factor of each enhancer on the pairs' noisy files resampled to ``rate``."""
    noisy = []
    for _, noisy_path, _ in find_pairs(Path(pairs_dir)):
        audio, sr = _read_mono(noisy_path)
        noisy.append(resample(audio.astype(np.float64), sr, rate).astype(np.float32))
    out = {}
    for system, enhancer in enhancers.items():
        _warm(enhancer, rate)
        out[system] = float(np.mean([_run(enhancer, system, x, rate)[1] / (len(x) / rate) for x in noisy]))
        log.info("%s at %d Hz: RTF %.3f", system, rate, out[system])
    return out


def _json_safe(report: dict) -> dict:
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, float):
            return None if math.isnan(v) or math.isinf(v) else round(v, 4)
        return v

    return clean(report)


def _cell(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if metric in ("si_sdr", "si_sdr_improvement"):
        return f"{value:+.2f}" if metric == "si_sdr_improvement" else f"{value:.2f}"
    return f"{value:.3f}"


def _table(title: str, by_system: dict[str, dict], metrics: tuple[str, ...] = METRICS) -> list[str]:
    systems = list(by_system)
    width = max([15, *(len(s) + 1 for s in systems)])
    lines = [title, f"{'metric':<18}" + "".join(f"{s:>{width}}" for s in systems),
             "-" * (18 + width * len(systems))]
    for m in metrics:
        lines.append(f"{_LABELS[m]:<18}" + "".join(f"{_cell(m, by_system[s][m]):>{width}}" for s in systems))
    return lines


def report_text(report: dict, names: dict[str, str] | None = None) -> str:
    lines: list[str] = []
    for system, name in (names or {}).items():
        lines.append(f"{system}: {name}")
    if lines:
        lines.append("")
    for stem, by_system in report["files"].items():
        lines += _table(stem, by_system) + [""]
    lines += _table(f"mean over {len(report['files'])} file(s)", report["mean"])
    if "blind" in report:
        for stem, by_system in report["blind"]["files"].items():
            lines += [""] + _table(f"blind: {stem}", by_system, BLIND_METRICS)
        lines += [""] + _table(f"blind: mean over {len(report['blind']['files'])} file(s) (no reference: DNSMOS only)",
                               report["blind"]["mean"], BLIND_METRICS)
    if "rtf_at" in report:
        rate = report["rtf_at"]["rate"]
        lines += ["", f"RTF at {rate} Hz (pairs' noisy files resampled): "
                  + ", ".join(f"{s} {v:.3f}" for s, v in report["rtf_at"]["rtf"].items())]
    return "\n".join(lines)


def load_enhancers(systems: list[str], model: str | None | dict[str, str]) -> dict[str, Enhancer]:
    """The enhancers named in ``systems`` (``noisy`` is not one: it is the input itself).

    ``model``: one BSRNN weights file (None: the shipped one) for system ``bsrnn``, or
    ``{name: path}`` for several BSRNN systems ``bsrnn:name``.
    """
    enhancers: dict[str, Enhancer] = {}
    for system in systems:
        if system == "bsrnn":
            from enhancement_bsrnn.inference import load_enhancer

            if isinstance(model, dict):
                for name, path in model.items():
                    enhancers[f"bsrnn:{name}"] = load_enhancer(path, device="cpu")
            else:
                enhancers["bsrnn"] = load_enhancer(model, device="cpu")
        elif system == "deepfilternet3":
            from enhancement_bsrnn.deepfilternet import DeepFilterNet3Enhancer

            enhancers["deepfilternet3"] = DeepFilterNet3Enhancer()
    return enhancers


def _parse_models(values: tuple[str, ...]) -> str | None | dict[str, str]:
    """``--model`` values: none (shipped), one PATH (system ``bsrnn``), or NAME=PATH pairs (``bsrnn:NAME``)."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        path = values[0]
        if not Path(path).is_file():
            raise click.BadParameter(f"{path} is not a file", param_hint="--model")
        return path
    models: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not Path(path).is_file() or name in models:
            raise click.BadParameter(f"{v!r}: several models need distinct NAME=PATH with an existing file",
                                     param_hint="--model")
        models[name] = path
    return models


def _parse_systems(value: str) -> list[str]:
    chosen = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SYSTEMS]
    if unknown or not chosen:
        raise click.BadParameter(f"unknown system(s) {', '.join(unknown) or '(none given)'}; "
                                 f"choose from {', '.join(SYSTEMS)}", param_hint="--systems")
    return [s for s in SYSTEMS if s in chosen]  # fixed column order, duplicates dropped


@click.command("enhancement")
@click.option("--pairs", "pairs_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="folder of <stem>_noisy.wav + <stem>_clean.wav pairs")
@click.option("--systems", default=",".join(SYSTEMS), show_default=True,
              help="comma-separated subset of: noisy (the input itself), bsrnn, deepfilternet3")
@click.option("--model", "model_paths", multiple=True, default=(),
              help="BSRNN weights to load (default: the shipped weights); NAME=PATH, repeatable, for several "
                   "BSRNN systems bsrnn:NAME side by side")
@click.option("--blind", "blind_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="also score this folder of noisy-only .wav recordings (no reference: DNSMOS and RTF)")
@click.option("--rtf-rate", type=int, default=None,
              help="also time each enhancer on the pairs' noisy files resampled to this rate (e.g. 48000)")
@click.option("--json", "as_json", is_flag=True,
              help='print JSON: {"files": {stem: {system: {metric: value}}}, "mean": {system: {...}}}, '
                   'plus "blind" (same layout) and "rtf_at" when asked for')
def enhancement_cmd(pairs_dir: Path, systems: str, model_paths: tuple[str, ...], blind_dir: Path | None,
                    rtf_rate: int | None, as_json: bool) -> None:
    """Enhance the noisy file of each pair in PAIRS; print SI-SDR(i), PESQ-WB, STOI, DNSMOS and RTF per system."""
    chosen = _parse_systems(systems)
    try:
        find_pairs(pairs_dir)
        if blind_dir is not None:
            find_blind(blind_dir)
    except PairsError as exc:
        raise click.ClickException(str(exc)) from None
    model = _parse_models(model_paths)
    enhancers = load_enhancers(chosen, model)
    try:
        report = evaluate_pairs(pairs_dir, enhancers, include_noisy="noisy" in chosen)
        if blind_dir is not None:
            report["blind"] = evaluate_blind(blind_dir, enhancers, include_noisy="noisy" in chosen)
        if rtf_rate is not None:
            report["rtf_at"] = {"rate": rtf_rate, "rtf": rtf_at_rate(pairs_dir, enhancers, rtf_rate)}
    except PairsError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(_json_safe(report), indent=1))
    else:
        click.echo(report_text(report, {s: e.name for s, e in enhancers.items()}))
