"""Building segment rows (the shard schema) from a recording, its spans and its audio."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_io.flac import encode_flac
from audio_io.resample import resample
from manifests.ids import segment_id
from manifests.span import Span


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
    kept: list[Span],
    dropped: list[tuple[Span, str]],
    output_rate: int,
    flac_subtype: str = "PCM_16",
) -> list[dict]:
    """One row per span, in time order. Dropped spans keep their audio and say why."""
    audio = resample(samples, sample_rate, output_rate)
    entries = [(s, None) for s in kept] + list(dropped)
    entries.sort(key=lambda e: (e[0].start, e[0].end))
    rows = []
    for span, reason in entries:
        a, b = int(round(span.start * output_rate)), int(round(span.end * output_rate))
        piece = audio[a : max(b, a + 1)]
        sid = segment_id(ctx.recording_id, span.start, span.end)
        rows.append(
            {
                "segment_id": sid,
                "recording_id": ctx.recording_id,
                "source_uri": ctx.source_uri,
                "corpus": ctx.corpus,
                "run_id": ctx.run_id,
                "config_hash": ctx.config_hash,
                "start": round(span.start, 3),
                "end": round(span.end, 3),
                "duration": round(span.end - span.start, 3),
                "speaker": span.speaker,
                "overlap_ratio": None,
                "language": None,
                "language_prob": None,
                "text": None,
                "words": None,
                "kept": reason is None,
                "drop_reason": reason,
                "audio": {"bytes": encode_flac(piece, output_rate, flac_subtype), "path": f"{sid}.flac"},
                "audio_enhanced": None,
                "sample_rate": output_rate,
                "snr_db": None,
                "dnsmos_ovrl": None,
                "dnsmos_sig": None,
                "dnsmos_bak": None,
                "models": [{"stage": k, "model": v} for k, v in ctx.models],
            }
        )
    return rows
