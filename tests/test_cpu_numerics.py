"""Whisper's output does not move with the batch a segment is decoded in or with the thread count,
the things that differ between a test process, a Ray actor and another node: CTranslate2's CPU
path is pinned (transcription.cpu_numerics) and the log-mel input does not depend on how many
threads OpenBLAS uses (transcription.whisper_features)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, real_clip
from transcription.cpu_numerics import pinned_environment

_SCORES = """
import json, subprocess, sys
import numpy as np
import transcription  # pins the CPU path before ctranslate2 loads
import os
from transcription.asr import TranscribeParams, whisper_policy
from transcription.models import load_whisper
from transcription.whisper_asr import WhisperTranscriber

def load(path, start, dur):
    cmd = ["ffmpeg", "-v", "error", "-ss", str(start), "-t", str(dur), "-i", path, "-ac", "1", "-ar", "16000",
           "-f", "f32le", "-"]
    return np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, dtype=np.float32).copy()

jfk, call = sys.argv[1], sys.argv[2]
clips = [load(jfk, 0, 11), load(call, 8.2, 1.8), load(call, 12, 4), load(call, 20, 3.5)]
out = {"env": {k: os.environ.get(k) for k in ("CT2_USE_MKL", "CT2_FORCE_CPU_ISA", "ONEDNN_MAX_CPU_ISA")}}
asr = WhisperTranscriber(load_whisper("whisper-tiny.en-offline", "cpu", "int8"), whisper_policy(TranscribeParams()))
for batch in (1, 4):  # cpu_threads 0: CTranslate2 follows OMP_NUM_THREADS, as in a Ray actor
    out[f"batch {batch}"] = [[r.text, r.avg_logprob, [w["start"] for w in r.words]]
                             for r in asr.transcribe(clips, "en", batch_size=batch)]
print(json.dumps(out))
"""


def test_the_pinned_path_is_avx2_onednn_unless_native_or_unavailable() -> None:
    assert pinned_environment("AVX2", has_avx2=True) == {"CT2_USE_MKL": "0", "CT2_FORCE_CPU_ISA": "AVX2",
                                                          "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert pinned_environment("native", has_avx2=True) == {}
    assert pinned_environment("AVX2", has_avx2=False) == {}  # forcing AVX2 there would crash
    with pytest.raises(ValueError, match="REFINERY_CPU_NUMERICS"):
        pinned_environment("avx512", has_avx2=True)


def test_the_log_mel_does_not_depend_on_blas_threads() -> None:
    import numpy as np
    from faster_whisper.feature_extractor import FeatureExtractor
    from threadpoolctl import threadpool_limits

    from transcription.whisper_features import log_mel

    extractor = FeatureExtractor()
    audio = np.random.default_rng(0).standard_normal(16000 * 11).astype(np.float32)
    with threadpool_limits(1, user_api="blas"):
        one = log_mel(extractor, audio)
    with threadpool_limits(2, user_api="blas"):
        two = log_mel(extractor, audio)
    assert one.dtype == np.float32 and one.shape == (80, 1101)
    assert np.array_equal(one, two)
    assert np.abs(one - extractor(audio)).max() < 1e-5  # Whisper's log-mel, to float32 rounding


@pytest.mark.slow
def test_whisper_output_does_not_depend_on_batch_or_threads() -> None:
    env = {k: v for k, v in os.environ.items() if k not in (
        "CT2_USE_MKL", "CT2_FORCE_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "REFINERY_CPU_NUMERICS", "OPENBLAS_NUM_THREADS")}
    runs = {}
    for threads in ("1", "2"):  # a Ray actor of a fractional CPU gets 1, this process 2
        got = subprocess.run([sys.executable, "-c", _SCORES, str(real_clip("asr_en", "jfk.flac")),
                              str(real_clip("diarization", "pyannote_sample", "sample.wav"))],
                             capture_output=True, text=True, cwd=REPO, timeout=600,
                             env={**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": threads})
        assert got.returncode == 0, got.stderr[-2000:]
        out = json.loads(got.stdout.strip().splitlines()[-1])
        assert out.pop("env") == pinned_environment()  # importing the package set them
        runs.update({f"{threads} thread(s), {k}": v for k, v in out.items()})
    first = next(iter(runs.values()))
    assert first[0][0].startswith("And so my fellow Americans")
    assert all(run == first for run in runs.values()), runs  # text, score and word times, to the last digit kept
