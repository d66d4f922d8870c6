"""Kokoro-82M training speech (enhancement_bsrnn/data/kokoro.py): joined model hash, deterministic 24 kHz output."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from enhancement_bsrnn.data import kokoro
from enhancement_bsrnn.data.kokoro import KOKORO_RATE, Kokoro, KokoroModelError, joined_model, kokoro_utterances


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kokoro_cache")


@pytest.fixture(scope="module")
def model(cache) -> Kokoro:
    return Kokoro(cache, threads=1)


def test_joined_model_matches_the_published_hash(cache):
    path = joined_model(cache)
    assert path.parent == cache and path.name == kokoro.MODEL_NAME
    assert hashlib.sha256(path.read_bytes()).hexdigest() == kokoro.expected_sha256()
    assert len(kokoro.expected_sha256()) == 64


def test_joined_model_hash_is_checked(cache, tmp_path):
    with pytest.raises(KokoroModelError, match="sha256"):
        joined_model(cache, expected="0" * 64)
    (tmp_path / kokoro.MODEL_NAME).write_bytes(b"not the model")  # a corrupt cached copy is refused, not used
    with pytest.raises(KokoroModelError):
        joined_model(tmp_path)


def test_synthesis_is_deterministic_24k_and_not_silent(model):
    voice = model.random_voice(np.random.default_rng(7))
    assert voice.style.shape == (510, 256) and voice.a != voice.b
    a = model.synthesize("The cat sat on the mat.", voice, speed=1.1)
    b = model.synthesize("The cat sat on the mat.", voice, speed=1.1)
    assert a.dtype == np.float32 and a.ndim == 1
    np.testing.assert_array_equal(a, b)
    assert KOKORO_RATE == 24000
    assert 0.5 < len(a) / KOKORO_RATE < 5.0
    assert np.sqrt(np.mean(a ** 2)) > 0.01 and np.abs(a).max() <= 1.5
    other = model.synthesize("The cat sat on the mat.", model.random_voice(np.random.default_rng(8)), speed=1.1)
    assert not (len(other) == len(a) and np.allclose(other, a))  # another blend is another voice


def test_utterances_are_a_pure_function_of_the_seed(cache):
    texts = ["One short line.", "And another one."]
    first = kokoro_utterances(texts, seed=3, cache_dir=cache)
    second = kokoro_utterances(texts, seed=3, cache_dir=cache)
    assert [k for k, _ in first] == [k for k, _ in second]
    for (_, x), (_, y) in zip(first, second):
        np.testing.assert_array_equal(x, y)
