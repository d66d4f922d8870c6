"""Building segment rows (the shard schema) from a recording, its spans and its audio."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_io.flac import encode_flac
from audio_io.resample import resample
from manifests.ids import segment_id
from manifests.planned_segment import PlannedSegment


@dataclass(frozen=True)
class RecordingContext:
    recording_id: str
    source_uri: str
    corpus: str
    run_id: str
    config_hash: str
    models: tuple[tuple[str, str], ...] = ()


def build_segment_rows(
    ctx: RecordingContext,
    samples: np.ndarray,
    sample_rate: int,
    segments: list[PlannedSegment],
    output_rate: int,
    flac_subtype: str = "PCM_16",
    *,
    enhanced: np.ndarray | None = None,
    variants: str = "both",
) -> list[dict]:
    """One row per segment, in time order. Dropped segments keep their audio and say why.

    ``enhanced`` (same rate and length as ``samples``) fills ``audio_enhanced`` over the same
    span; ``variants`` (both | raw | enhanced) says which of the two columns are written.
    """
    if enhanced is not None and len(enhanced) != len(samples):
        raise ValueError(f"enhanced signal has {len(enhanced)} samples, raw has {len(samples)}")
    if variants == "enhanced" and enhanced is None:
        raise ValueError("variants=enhanced but the recording has no enhanced signal (is enhance.enabled off?)")
    audio = resample(samples, sample_rate, output_rate) if variants != "enhanced" else None
    audio_enh = resample(enhanced, sample_rate, output_rate) if enhanced is not None and variants != "raw" else None

    def cell(signal: np.ndarray | None, a: int, b: int, name: str) -> dict | None:
        if signal is None:
            return None
        return {"bytes": encode_flac(signal[a: max(b, a + 1)], output_rate, flac_subtype), "path": name}

    rows = []
    for seg in sorted(segments, key=lambda s: (s.start, s.end, s.speaker or "")):
        a, b = int(round(seg.start * output_rate)), int(round(seg.end * output_rate))
        sid = segment_id(ctx.recording_id, seg.start, seg.end)
        if seg.speaker is not None:
            sid = f"{sid}-{seg.speaker.rsplit('/', 1)[-1]}"  # overlapping turns of two speakers
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
                "audio": cell(audio, a, b, f"{sid}.flac"),
                "audio_enhanced": cell(audio_enh, a, b, f"{sid}.enhanced.flac"),
                "sample_rate": output_rate,
                "snr_db": None,
                "dnsmos_ovrl": None,
                "dnsmos_sig": None,
                "dnsmos_bak": None,
                "models": [{"stage": k, "model": v} for k, v in ctx.models],
            }
        )
    return rows
