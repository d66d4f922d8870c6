"""Building segment rows (the shard schema) from a recording, its segments and their audio cells."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from manifests.ids import segment_id
from manifests.planned_segment import PlannedSegment
from manifests.schema import FIGURE_COLUMNS


@dataclass(frozen=True)
class RecordingContext:
    recording_id: str
    source_uri: str
    corpus: str
    run_id: str
    config_hash: str
    models: tuple[tuple[str, str], ...] = ()


def ordered(segments: list[PlannedSegment]) -> list[PlannedSegment]:
    """The order rows are written in: by time, then speaker."""
    return sorted(segments, key=lambda s: (s.start, s.end, s.speaker or ""))


def segment_row_id(ctx: RecordingContext, seg: PlannedSegment) -> str:
    sid = segment_id(ctx.recording_id, seg.start, seg.end)
    if seg.speaker is not None:
        sid = f"{sid}-{seg.speaker.rsplit('/', 1)[-1]}"  # overlapping turns of two speakers
    return sid


def build_segment_rows(ctx: RecordingContext, segments: list[PlannedSegment], output_rate: int,
                       audio: list[bytes | None], audio_enhanced: list[bytes | None]) -> list[dict]:
    """One row per segment of ``ordered(segments)``; ``audio``/``audio_enhanced`` hold each
    segment's FLAC bytes in that order (None: the variant is not written). Dropped segments
    keep their audio and say why."""
    rows = []
    for seg, raw, enh in zip(ordered(segments), audio, audio_enhanced, strict=True):
        sid = segment_row_id(ctx, seg)
        figures = asdict(seg)
        rows.append(
            {
                "segment_id": sid,
                "recording_id": ctx.recording_id,
                "source_uri": ctx.source_uri,
                "corpus": ctx.corpus,
                "run_id": ctx.run_id,
                "config_hash": ctx.config_hash,
                "start": round(seg.start, 3),
                "end": round(seg.end, 3),
                "duration": round(seg.end - seg.start, 3),
                "speaker": seg.speaker,
                "overlap_ratio": seg.overlap_ratio,
                "language": seg.language,
                "language_prob": seg.language_prob,
                "text": seg.text,
                "words": seg.words,
                "kept": seg.kept,
                "drop_reason": seg.drop_reason,
                "audio": None if raw is None else {"bytes": raw, "path": f"{sid}.flac"},
                "audio_enhanced": None if enh is None else {"bytes": enh, "path": f"{sid}.enhanced.flac"},
                "sample_rate": output_rate,
                "snr_db": seg.snr_db,
                "dnsmos_ovrl": seg.dnsmos_ovrl,
                "dnsmos_sig": seg.dnsmos_sig,
                "dnsmos_bak": seg.dnsmos_bak,
                "models": [{"stage": k, "model": v} for k, v in ctx.models],
                **{name: figures[name] for name in FIGURE_COLUMNS},
            }
        )
    return rows
