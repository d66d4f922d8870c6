"""`refinery eval diarization`: DER after each diarization step, purity/coverage of the final segments.

Scoring uses pyannote.metrics with overlapped speech scored and a configurable collar
(0 by default). DER is reported after raw diarization, after cluster merging and after
chunk reassignment; purity and coverage (pyannote.metrics' segmentation purity and
coverage, on speaker labels) are reported for the final merged segments, which is
what the training data is made of. Totals accumulate components over all files, as
pyannote.metrics does (not a mean of per-file rates).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from manifests.span import Span

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


def load_rttm(path: Path):
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=path.stem)
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[0] != "SPEAKER":
            continue
        start, dur = float(fields[3]), float(fields[4])
        ann[Segment(start, start + dur)] = fields[7]
    return ann


def to_annotation(spans: list[Span], uri: str = "hyp"):
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=uri)
    for i, s in enumerate(spans):
        if s.end > s.start:
            ann[Segment(s.start, s.end), i] = s.speaker or "speech"
    return ann


class DiarizationScorer:
    """Accumulates DER per step and purity/coverage over files."""

    STEPS = ("raw", "merged", "reassigned")

    def __init__(self, collar: float = 0.0) -> None:
        from pyannote.metrics.diarization import DiarizationErrorRate
        from pyannote.metrics.segmentation import SegmentationCoverage, SegmentationPurity

        self.collar = collar
        self._der = {s: DiarizationErrorRate(collar=collar, skip_overlap=False) for s in self.STEPS}
        self._purity = SegmentationPurity()
        self._coverage = SegmentationCoverage()

    def add(self, reference, steps: dict[str, list[Span]], final: list[Span]) -> dict[str, float]:
        out = {}
        for step in self.STEPS:
            out[f"der_{step}"] = float(self._der[step](reference, to_annotation(steps[step]), uem=None))
        hyp = to_annotation(final)
        out["purity"] = float(self._purity(reference, hyp))
        out["coverage"] = float(self._coverage(reference, hyp))
        return out

    def total(self) -> dict[str, float]:
        out = {f"der_{s}": float(abs(self._der[s])) for s in self.STEPS}
        out["purity"] = float(abs(self._purity))
        out["coverage"] = float(abs(self._coverage))
        return out


def evaluate(audio_dir: Path, rttm_dir: Path, collar: float, diarizer) -> dict:
    from audio_io.decode import decode

    scorer = DiarizationScorer(collar)
    files = {}
    pairs = sorted((p, rttm_dir / f"{p.stem}.rttm") for p in audio_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
    pairs = [(a, r) for a, r in pairs if r.exists()]
    if not pairs:
        raise click.ClickException(f"no audio file in {audio_dir} has a same-stem .rttm in {rttm_dir}")
    for audio, rttm in pairs:
        samples = decode(str(audio), diarizer.sample_rate).samples
        t0 = time.perf_counter()
        result = diarizer.diarize(samples)
        elapsed = time.perf_counter() - t0
        final = [Span(s.start, s.end, s.speaker) for s in result.segments if s.kept]
        steps = {"raw": result.raw_turns, "merged": result.merged_turns, "reassigned": result.reassigned_turns}
        figures = scorer.add(load_rttm(rttm), steps, final)
        figures.update(
            speakers_ref=len(load_rttm(rttm).labels()),
            speakers_raw=len({s.speaker for s in result.raw_turns}),
            speakers_final=len({s.speaker for s in final}),
            segments=len(final),
            max_segment_s=max((s.duration for s in final), default=0.0),
            rtf=elapsed / (len(samples) / diarizer.sample_rate),
        )
        files[audio.stem] = figures
    return {"files": files, "total": scorer.total(), "collar": collar}


def _table(report: dict) -> str:
    cols = ("der_raw", "der_merged", "der_reassigned", "purity", "coverage")
    lines = [f"{'file':<12}" + "".join(f"{c:>15}" for c in cols) + f"{'spk ref/raw/final':>19}{'segs':>6}{'rtf':>7}"]
    for stem, f in report["files"].items():
        lines.append(f"{stem:<12}" + "".join(f"{f[c]:>15.3f}" for c in cols)
                     + f"{f['speakers_ref']:>9}/{f['speakers_raw']}/{f['speakers_final']:<5}{f['segments']:>6}{f['rtf']:>7.3f}")
    t = report["total"]
    lines.append(f"{'total':<12}" + "".join(f"{t[c]:>15.3f}" for c in cols))
    lines.append(f"(DER with collar {report['collar']} s, overlapped speech scored; fractions)")
    return "\n".join(lines)


@click.command("diarization")
@click.option("--audio", "audio_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--rttm", "rttm_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--collar", default=0.0, show_default=True, help="forgiveness collar around reference boundaries, seconds")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
@click.option("--json", "as_json", is_flag=True)
def diarization_cmd(audio_dir: Path, rttm_dir: Path, collar: float, config_path, overrides, as_json: bool) -> None:
    """Diarize every audio file that has a same-stem .rttm and score each step."""
    from pipeline.config import ConfigError, load_config

    try:
        cfg = load_config(config_path, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    report = evaluate(audio_dir, rttm_dir, collar, diarizer_of(cfg))
    if as_json:
        click.echo(json.dumps({"files": report["files"], "total": report["total"]}, indent=1, default=float))
    else:
        click.echo(_table(report))


def diarizer_of(cfg: Any) -> Any:
    """The diarizer the pipeline's diarize stage builds from this config (its placement included)."""
    from stages.base import RunContext
    from stages.diarize import DiarizeStage

    return DiarizeStage(cfg, RunContext(out_dir="", corpus="eval", run_id="eval", config_hash=cfg.config_hash())).diarizer
