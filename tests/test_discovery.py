"""Discovery of sources: files that are not regular files (a FIFO, a device) become failed
sources instead of hanging the run, a glob that matches nothing is an error, a folder scan
says what it left out, and every extension taken as media decodes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from audio_io.decode import decode
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from pipeline.cli import main as cli
from pipeline.config import load_config
from pipeline.run import run_pipeline
from sources.discovery import MEDIA_EXTENSIONS, discover, fingerprint
from sources.fetch import sidecar_path

FIFO_REASON = "not a regular file: a named pipe (FIFO)"

# ffmpeg writes these only when told the format or a rate their codec takes.
WRITE_ARGS = {".wave": ["-f", "wav"], ".mpga": ["-f", "mp3"], ".snd": ["-f", "au"], ".weba": ["-f", "webm"],
              ".rmvb": ["-f", "rm"], ".flv": ["-ar", "44100"], ".gsm": ["-ar", "8000"],
              ".dts": ["-strict", "-2", "-ar", "48000"]}
# ffmpeg reads these (its demuxer named here) but cannot write them: no muxer, or no AMR encoder.
READ_ONLY = {".sph": "nistsphere", ".dsf": "dsf", ".ape": "ape", ".tak": "tak", ".mpc": "mpc",
             ".amr": "amr", ".3gp": "3gp"}


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: the bug this guards against is a read that never returns."""
    def _raise(*_):
        raise TimeoutError(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _tone(path: Path, extra: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                           "sine=frequency=440:duration=1:sample_rate=16000", "-ac", "1", *(extra or []), str(path)],
                          capture_output=True, text=True)


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    return path


def test_a_fifo_in_a_list_or_as_an_argument_is_a_failed_source(tmp_path, fifo):
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"{fifo}\n{tmp_path / 'missing.wav'}\n")
    with deadline(20):
        from_list = discover([f"@{listing}"])
        as_argument = discover([str(fifo)])
    assert [(s.uri, s.path, s.error) for s in from_list] == [(str(fifo), None, FIFO_REASON),
                                                             (str(tmp_path / "missing.wav"), None, "file not found")]
    assert [(s.path, s.error) for s in as_argument] == [(None, FIFO_REASON)]


def test_a_run_over_a_fifo_records_it_as_failed_and_ends(tmp_path, fifo):
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"{fifo}\n")
    with deadline(60):
        summary = run_pipeline([f"@{listing}", str(fifo)], "c", tmp_path / "out", load_config())
    assert summary.failures == [(str(fifo), FIFO_REASON)]
    rows = Ledger(CorpusLayout(tmp_path / "out", "c")).read().to_pylist()
    assert [(r["source_uri"], r["status"], r["error"]) for r in rows] == [(str(fifo), "failed", FIFO_REASON)]


def test_fingerprint_refuses_a_fifo_without_blocking(fifo):
    # The file may become a FIFO after discovery: the read itself must not wait for a writer.
    with deadline(20), pytest.raises(OSError, match="named pipe"):
        fingerprint(str(fifo))


def test_a_glob_that_matches_nothing_is_an_error(tmp_path):
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "nothing-*.wav"), "--corpus", "c",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "matched no files" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_folder_scan_logs_what_it_left_out(tmp_path, caplog):
    (tmp_path / "a.w64").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / ".hidden.wav").write_bytes(b"")
    os.mkfifo(tmp_path / "c.wav")
    with caplog.at_level(logging.INFO, logger="sources.discovery"), deadline(20):
        found = discover([str(tmp_path)])
    assert [(Path(s.uri).name, s.error) for s in found] == [("a.w64", None), ("c.wav", FIFO_REASON)]
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "left out 3 file(s)" in message
    assert "1 extension .txt not taken as media" in message and "1 extension .json not taken as media" in message
    assert "1 hidden" in message


def test_a_fetched_file_whose_id_starts_with_a_dot_is_media(tmp_path):
    """`refinery fetch` names a download by its id, and an id may start with '.': with its sidecar
    beside it the file is taken; a hidden file without one, or under a hidden folder, is not."""
    media = tmp_path / "media" / "youtube"
    media.mkdir(parents=True)
    (media / ".x9Kd-abc.m4a").write_bytes(b"audio")
    sidecar_path(media / ".x9Kd-abc.m4a").write_text('{"id": ".x9Kd-abc"}')
    (media / ".DS_Store.wav").write_bytes(b"junk")
    (tmp_path / "media" / ".trash").mkdir()
    (tmp_path / "media" / ".trash" / "old.wav").write_bytes(b"audio")
    sidecar_path(tmp_path / "media" / ".trash" / "old.wav").write_text("{}")
    found = discover([str(tmp_path / "media")])
    assert [Path(s.uri).name for s in found] == [".x9Kd-abc.m4a"]


def test_every_media_extension_decodes(tmp_path):
    demuxers = subprocess.run(["ffmpeg", "-hide_banner", "-demuxers"], capture_output=True, text=True).stdout
    names = {n for line in demuxers.splitlines()[4:] if line.strip() for n in line.split()[1].split(",")}
    written = []
    for ext in sorted(MEDIA_EXTENSIONS):
        if ext in READ_ONLY:
            assert READ_ONLY[ext] in names, f"{ext}: ffmpeg has no {READ_ONLY[ext]} demuxer"
            continue
        path = tmp_path / f"tone{ext}"
        made = _tone(path, WRITE_ARGS.get(ext))
        assert made.returncode == 0, f"{ext}: {made.stderr.strip()[-200:]}"
        audio = decode(str(path), 16000)
        assert abs(audio.duration_s - 1.0) < 0.12, (ext, audio.duration_s)
        written.append(ext)
    assert len(written) + len(READ_ONLY) == len(MEDIA_EXTENSIONS)
    assert {".w64", ".wv", ".tta", ".voc", ".rm", ".ra"} <= set(written)
