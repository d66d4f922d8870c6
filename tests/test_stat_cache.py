"""The stat cache: a rerun over unchanged inputs reads none of their bytes; a changed file is hashed
and processed again."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.stat_cache import StatCache, local_stamp, object_stamp
from pipeline.config import load_config
from pipeline.run import run_pipeline
from tests.conftest import real_clip

N_INPUTS = 1000
# The cache is under test, not the models: the lighter graph.
LIGHT = ["enhance.enabled=false", "diarization.enabled=false"]


class _MediaOpens:
    """Counts every open() of the corpus's media files in this process (an audit hook: it sees
    Python's open, io.open and os.open, whoever calls them)."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder) + os.sep
        self.paths: list[str] = []
        self.active = False
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if path.startswith(self.folder) and path.endswith(".wav"):
                self.paths.append(path)

    def __enter__(self) -> "_MediaOpens":
        self.paths, self.active = [], True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """1,000 files of one short real clip: the first run processes one and skips 999 as the same content."""
    folder = tmp_path_factory.mktemp("many")
    speech, sr = sf.read(real_clip("diarization", "pyannote_sample", "sample.wav"), dtype="float32")
    clip = folder / "f0000.wav"
    sf.write(clip, speech[int(3 * sr): int(6 * sr)], sr)
    data = clip.read_bytes()
    for i in range(1, N_INPUTS):
        (folder / f"f{i:04d}.wav").write_bytes(data)
    return folder


@pytest.mark.slow
def test_rerun_over_unchanged_inputs_reads_no_audio_bytes(ray_session, inputs, tmp_path):
    out = tmp_path / "out"
    opens = _MediaOpens(inputs)
    with opens:
        first = run_pipeline([str(inputs)], "many", out, load_config(None, LIGHT))
    assert (first.sources, first.processed, first.skipped) == (N_INPUTS, 1, N_INPUTS - 1)
    assert len(set(opens.paths)) == N_INPUTS  # each hashed once, by this driver
    layout = CorpusLayout(out, "many")
    assert len(StatCache.load(layout).entries) == N_INPUTS

    with opens:
        second = run_pipeline([str(inputs)], "many", out, load_config(None, LIGHT))
    assert opens.paths == [], f"{len(opens.paths)} media file(s) opened by a rerun over unchanged inputs"
    assert (second.processed, second.skipped) == (0, N_INPUTS)

    # One file gets other content (same size even: a different 3 s of the call): hashed and processed.
    speech, sr = sf.read(real_clip("diarization", "pyannote_sample", "sample.wav"), dtype="float32")
    changed = inputs / "f0500.wav"
    sf.write(changed, speech[int(12 * sr): int(15 * sr)], sr)
    with opens:
        third = run_pipeline([str(inputs)], "many", out, load_config(None, LIGHT))
    assert set(opens.paths) == {str(changed)}
    assert (third.processed, third.done, third.skipped) == (1, 1, N_INPUTS - 1)
    done = [r for r in Ledger(layout).read(["source_uri", "status"]).to_pylist() if r["status"] == "done"]
    assert sorted(r["source_uri"] for r in done) == [str(inputs / "f0000.wav"), str(changed)]


def test_a_stamp_changes_when_a_file_is_rewritten_with_its_old_mtime(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"x" * 100)
    st = os.stat(path)
    before = local_stamp(st)
    path.write_bytes(b"y" * 100)  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old mtime put back
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert local_stamp(os.stat(path)) != before  # ctime moved: the cache misses


def test_objects_without_a_version_get_no_stamp():
    assert object_stamp({"size": 10, "ETag": '"abc"'}) == "object:10:abc"
    assert object_stamp({"size": 10}) is None
    assert object_stamp({"ETag": "abc"}) is None


def test_cache_lookup_and_save_roundtrip(tmp_path):
    layout = CorpusLayout(tmp_path, "c")
    cache = StatCache(layout)
    cache.update([("/a.wav", "local:1:2:3:4", 1, "f" * 64), ("/b.wav", None, 1, "e" * 64)])
    assert cache.save() and not cache.save()  # nothing new: not written again
    loaded = StatCache.load(layout)
    assert loaded.lookup("/a.wav", "local:1:2:3:4").sha256 == "f" * 64
    assert loaded.lookup("/a.wav", "local:1:2:3:5") is None and loaded.lookup("/b.wav", None) is None
    (layout.root / "stat_cache.parquet").write_bytes(b"not parquet")
    assert StatCache.load(layout).entries == {}  # unreadable: costs hashing, never a wrong hash
