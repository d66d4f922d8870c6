"""`refinery eval asr`: transcribe audio that has reference transcripts, report WER / CER.

Every audio file in --audio with a same-stem .txt in --ref is decoded and run through the
same stage classes the pipeline uses, without Ray: language ID (``LanguageIdStage``), then
the language's recogniser (``TranscribeStage``); text filters are not applied (they drop,
they do not change text). A file of at most 30 s is one segment; a longer one is cut by
the VAD segmenter (``VadSegmenter``) as the pipeline cuts it.

Scoring (``transcription.scoring``): a reference mostly in CJK characters is scored by CER
(simplified, no punctuation or spaces), any other by WER after Whisper's English
normaliser. The hypothesis is the text of the file's kept segments in time order; a
segment that language ID dropped contributes nothing (and so counts as deletions).
Totals are corpus-level (all errors / all reference units).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from pipeline.config import ConfigError, load_config
from stages.base import RunContext
from sources.discovery import MEDIA_EXTENSIONS
from transcription.scoring import Score, reference_language, score, total_rate

WHOLE_FILE_MAX_S = 30.0


@dataclass
class FileResult:
    stem: str
    language: str | None  # detected (majority of the kept segments' seconds)
    hyp: str
    ref: str
    score: Score
    segments: int
    dropped: list[str]


def find_pairs(audio_dir: Path, ref_dir: Path) -> list[tuple[Path, Path]]:
    """(audio, reference) for each media file in audio_dir with a same-stem .txt in ref_dir."""
    pairs = []
    for audio in sorted(p for p in audio_dir.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS):
        ref = ref_dir / f"{audio.stem}.txt"
        if ref.is_file():
            pairs.append((audio, ref))
    return pairs


def _run(cfg: Any) -> RunContext:
    return RunContext(out_dir="", corpus="eval", run_id="eval", config_hash=cfg.config_hash())


def _rows(pairs: list[tuple[Path, Path]], cfg: Any) -> list[dict]:
    """Decoded rows (raw analysis signal, no enhancement): the whole file as one segment, or VAD
    segments for a file longer than one Whisper window."""
    from manifests.planned_segment import PlannedSegment, to_rows
    from stages.decode import DecodeStage
    from stages.vad_segment import VadSegmentStage

    raw = cfg.model_copy(update={"enhance": cfg.enhance.model_copy(update={"enabled": False})})
    decoder = DecodeStage(raw, _run(cfg))
    rows = [decoder.decode_row({"path": str(a), "source_uri": str(a), "recording_id": a.stem}) for a, _ in pairs]
    long_rows = [i for i, r in enumerate(rows) if r["status"] == "ok" and r["duration_s"] > WHOLE_FILE_MAX_S]
    for i, r in enumerate(rows):
        if r["status"] == "ok" and i not in long_rows:
            r["segments"] = to_rows([PlannedSegment(0.0, r["duration_s"])])
            r["models"] = []
    if long_rows:
        segmenter = VadSegmentStage(cfg, _run(cfg))
        for i in long_rows:
            rows[i] = segmenter.segment_row(rows[i])
    return rows


def evaluate_asr(audio_dir: Path, ref_dir: Path, cfg: Any) -> list[FileResult]:
    """Component eval of language ID + ASR on whole clips (not what `refinery run` ships)."""
    from manifests import planned_segment
    from stages.language_id import LanguageIdStage
    from stages.transcribe import TranscribeStage

    pairs = find_pairs(audio_dir, ref_dir)
    rows = _rows(pairs, cfg)
    rows = LanguageIdStage(cfg, _run(cfg)).process_batch(rows)
    rows = TranscribeStage(cfg, _run(cfg)).process_batch(rows)
    results = []
    for (audio, ref_path), row in zip(pairs, rows):
        ref = ref_path.read_text(encoding="utf-8").strip()
        ref_lang = reference_language(ref)
        if row["status"] != "ok":
            raise click.ClickException(f"{audio}: {row.get('error')}")
        segs = sorted(planned_segment.from_rows(row["segments"]), key=lambda s: s.start)
        kept = [s for s in segs if s.kept and s.text]
        seconds: dict[str, float] = defaultdict(float)
        for s in kept:
            seconds[s.language or ""] += s.duration
        language = max(seconds, key=lambda k: seconds[k]) if seconds else (segs[0].language if segs else None)
        hyp = ("" if ref_lang == "zh" else " ").join(s.text for s in kept)
        results.append(FileResult(audio.stem, language, hyp, ref, score(hyp, ref, ref_lang), len(segs),
                                  [s.drop_reason for s in segs if not s.kept and s.drop_reason]))
    return results


def report_json(results: list[FileResult]) -> dict:
    files = {}
    for r in results:
        files[r.stem] = {"language": r.language, "hyp": r.hyp, "ref": r.ref, r.score.metric: round(r.score.rate, 4)}
        if r.dropped:
            files[r.stem]["dropped_segments"] = r.dropped
    scores = [r.score for r in results]
    totals = {m: (None if (v := total_rate(scores, m)) is None else round(v, 4)) for m in ("wer", "cer")}
    return {"files": files, "total": totals}


def report_text(results: list[FileResult]) -> str:
    width = max([len(r.stem) for r in results] + [5])
    lines = [f"{'file':<{width}}  lang  metric   rate  errors/units", "-" * (width + 36)]
    for r in results:
        s = r.score
        lines.append(f"{r.stem:<{width}}  {r.language or '-':<4}  {s.metric.upper():<6} {s.rate:6.3f}  {s.errors}/{s.units}")
        lines.append(f"{'':<{width}}    hyp: {r.hyp}")
        lines.append(f"{'':<{width}}    ref: {r.ref}")
        for reason in r.dropped:
            lines.append(f"{'':<{width}}    dropped segment: {reason}")
    scores = [r.score for r in results]
    for metric in ("wer", "cer"):
        chosen = [s for s in scores if s.metric == metric]
        rate = total_rate(scores, metric)
        if rate is not None:
            lines.append(f"{'total':<{width}}        {metric.upper():<6} {rate:6.3f}  {sum(s.errors for s in chosen)}/"
                         f"{sum(s.units for s in chosen)} over {len(chosen)} file(s)")
    return "\n".join(lines)


@click.command("asr")
@click.option("--audio", "audio_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="folder of audio files")
@click.option("--ref", "ref_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="folder of reference transcripts <stem>.txt")
@click.option("--json", "as_json", is_flag=True, help="print JSON: {files: {stem: {...}}, total: {wer, cer}}")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config file")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key (repeatable)")
def asr_cmd(audio_dir: Path, ref_dir: Path, as_json: bool, config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Transcribe AUDIO files that have a reference in REF; print per-file and total WER (en) / CER (zh)."""
    try:
        cfg = load_config(config_path, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not find_pairs(audio_dir, ref_dir):
        raise click.ClickException(f"no audio file in {audio_dir} has a same-stem .txt reference in {ref_dir}")
    results = evaluate_asr(audio_dir, ref_dir, cfg)
    if as_json:
        click.echo(json.dumps(report_json(results), ensure_ascii=False, indent=1))
    else:
        click.echo(report_text(results))
