"""asr_batching: Whisper on the input's English segments, batched vs one segment at a time."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.harness import Context, benchmark
from benchmarks.inputs import _segmented_row, bench_run


@benchmark(
    "asr_batching",
    "Whisper (transcribe.en_model) on the input's English segments: batched across segments vs one segment at a time",
    needs_decoded=True,
)
def bench_asr_batching(ctx: Context) -> dict[str, Any]:
    from manifests import planned_segment
    from pipeline.config import load_config
    from stages.language_id import LanguageIdStage
    from transcription.asr import whisper_policy
    from transcription.models import load_whisper
    from transcription.rows import open_rows
    from transcription.whisper_asr import WhisperTranscriber

    cfg = load_config(None, [])
    row = LanguageIdStage(cfg, bench_run(ctx, cfg)).process_batch([_segmented_row(ctx, cfg)])[0]
    rec = open_rows([row])[0]
    assert rec is not None
    english = [s for s in planned_segment.from_rows(row["segments"]) if s.kept and s.language == "en"]
    audios = [rec.cut(s, cfg.transcribe.context_pad_s) for s in english]
    audio_s = sum(len(a) for a in audios) / 16000
    tc = cfg.transcribe
    batch = max(8, tc.segments_per_batch())  # the GPU default: what batching buys on this CPU
    t0 = time.perf_counter()
    transcriber = WhisperTranscriber(load_whisper(tc.en_model, tc.device, tc.precision, tc.cpu_threads), whisper_policy(tc))
    load_s = time.perf_counter() - t0
    transcriber.transcribe(audios[:1], "en", batch_size=1)  # warm-up
    t0 = time.perf_counter()
    batched = transcriber.transcribe(audios, "en", batch_size=batch)
    batched_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = transcriber.transcribe(audios, "en", batch_size=1)
    single_s = time.perf_counter() - t0
    return {
        "asr_model": tc.en_model,
        "device": tc.device,
        "precision": tc.precision,
        "segments": len(audios),
        "segment_audio_s": audio_s,
        "model_load_s": load_s,
        "batch_size": batch,
        "batched_wall_s": batched_s,
        "one_at_a_time_wall_s": single_s,
        "rtf_batched": batched_s / audio_s,
        "rtf_one_at_a_time": single_s / audio_s,
        "batched_speedup": single_s / batched_s,
        "retried_segments": sum(1 for r in batched if r.retried),
        "identical_text": all(a.text == b.text for a, b in zip(batched, single)),
        "note": ("RTF = wall time / audio time (lower is faster); batched_speedup = one-at-a-time wall / batched wall. "
                 "Each segment is one 30 s Whisper window either way; on CPU the encoder already keeps the cores busy, "
                 "so batching pays off mainly on a GPU"),
    }
