"""A corpus of bad (and awkward but good) inputs, generated at test time.

``make_bad_corpus(directory)`` writes the files into ``directory`` and returns, per file
name, what a run must make of it: ``segments`` (ledger status ``done`` with at least one
kept segment) or ``failed`` (ledger status ``failed`` whose ``error`` holds a clear
reason). It also says what ``audio_io.decode.decode`` alone does with the file.

Nothing binary is committed: the speech comes from the real clips under
``../shared/data/real`` (read through ``tests.conftest.real_clip``) and is re-encoded, cut,
corrupted or remixed here. Every file is at most ~11 s long and every file's bytes are
distinct (a duplicate would be skipped as "same content", which is not under test here).
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.conftest import real_clip

SEGMENTS = "segments"
FAILED = "failed"


@dataclass(frozen=True)
class Expected:
    outcome: str  # SEGMENTS or FAILED
    # FAILED: a substring the ledger row's ``error`` must contain.
    error: str | None = None
    # What ``audio_io.decode.decode`` alone does: None when it returns audio, else a
    # substring of the DecodeError it raises. (Some sources decode fine and are failed by
    # the decode *stage*, e.g. a clip that is too short.)
    decode_error: str | None = None
    # When decode() returns audio: its duration in seconds (mono, any rate).
    duration_s: float | None = None
    # The source's channel count and rate as probed (checked in the ledger when set).
    channels: int | None = None
    source_rate: int | None = None
    # A substring the ledger row's ``warning`` must contain (ffmpeg's complaint).
    warning: str | None = None
    # For multi-channel sources: the channels at the source rate (float32, (n, ch)), so
    # a test can check that decode() at that rate returns their plain average.
    multichannel: np.ndarray | None = field(default=None, repr=False)
    why: str = ""

    @property
    def good(self) -> bool:
        return self.outcome == SEGMENTS


# The names make_bad_corpus writes, so tests can parametrize before generating.
ZERO_BYTE = "zero_byte.wav"
TRUNCATED = "truncated_mid_data.wav"
HEADER_ONLY = "truncated_to_header.wav"
TEXT_AS_WAV = "notes_renamed.wav"
VIDEO_NO_AUDIO = "video_no_audio.mp4"
NAN_INF = "nan_inf_float.wav"
TOO_SHORT = "short_0.3s.wav"
EIGHT_CHANNEL = "eight_channel_float32.wav"
HIFI_FLAC = "hifi_44k1_24bit_stereo.flac"
UNICODE_NAME = "my talk é 中文.wav"
SPACE_NAME = "with space.flac"
PLAIN_WAV = "plain_good.wav"
MP3 = "good_speech.mp3"
OPUS = "good_speech_zh.opus"

CASE_NAMES = (
    ZERO_BYTE, TRUNCATED, HEADER_ONLY, TEXT_AS_WAV, VIDEO_NO_AUDIO, NAN_INF, TOO_SHORT,
    EIGHT_CHANNEL, HIFI_FLAC, UNICODE_NAME, SPACE_NAME, PLAIN_WAV, MP3, OPUS,
)

_LIBRISPEECH = ("asr_en", "librispeech-1995-1837-0001.wav")  # 8.73 s, 16 kHz mono PCM_16
_JFK = ("asr_en", "jfk.flac")  # 11.0 s, 44.1 kHz stereo 24-bit
_ZH_A = ("asr_zh", "funasr_asr_example.wav")  # 5.55 s, 16 kHz mono
_ZH_B = ("asr_zh", "funasr_llamacpp_sample.wav")  # 6.0 s
_ZH_C = ("asr_zh", "BAC009S0764W0121.wav")  # 4.2 s
_ZH_D = ("asr_zh", "IT0011W0001.wav")  # 2.0 s


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"generating the bad-input corpus: {' '.join(cmd)} failed: {proc.stderr.decode(errors='replace')}")


def _read(clip: tuple[str, str]) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(real_clip(*clip)), dtype="float32", always_2d=False)
    return data, sr


def make_bad_corpus(directory: Path) -> dict[str, Expected]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Expected] = {}

    # -- a zero-byte file: the stage fails it before ffmpeg runs; ffprobe alone calls it unreadable.
    (directory / ZERO_BYTE).write_bytes(b"")
    out[ZERO_BYTE] = Expected(FAILED, error="empty file (0 bytes)", decode_error="not a readable media file",
                              why="zero bytes")

    # -- a WAV cut mid-data (an interrupted copy), at an odd byte so the last sample is half there.
    # The header still claims the full 8.73 s; ffmpeg decodes the 5.24 s that are present, exits 0
    # and complains about the half sample ("Invalid data found when processing input"). That is
    # 5 s of real speech, so it must become segments, with ffmpeg's complaint kept as the warning.
    wav = real_clip(*_LIBRISPEECH).read_bytes()
    assert wav[36:40] == b"data", "librispeech clip: expected a canonical 44-byte WAV header"
    data_bytes = len(wav) - 44
    keep = 44 + (int(data_bytes * 0.6) // 2) * 2 + 1
    (directory / TRUNCATED).write_bytes(wav[:keep])
    out[TRUNCATED] = Expected(
        SEGMENTS, duration_s=(keep - 44) // 2 / 16000, channels=1, source_rate=16000, warning="Invalid data",
        why="header claims 8.73 s, 5.24 s present: the present part is decoded and segmented; ffmpeg's complaint is the warning",
    )

    # -- a WAV cut right after its header: a valid header, no samples at all.
    (directory / HEADER_ONLY).write_bytes(wav[:44])
    out[HEADER_ONLY] = Expected(FAILED, error="decodes to no samples", decode_error="decodes to no samples",
                                why="44-byte header, no data")

    # -- text renamed to .wav.
    (directory / TEXT_AS_WAV).write_text("Meeting notes, 3 March.\nThis is text, not audio, whatever the name says.\n" * 20,
                                         encoding="utf-8")
    out[TEXT_AS_WAV] = Expected(FAILED, error="not a readable media file", decode_error="not a readable media file",
                                why="ffprobe finds no format")

    # -- a video container with a video track and no audio track.
    _ffmpeg("-f", "lavfi", "-i", "testsrc=duration=1:size=160x120:rate=10", "-pix_fmt", "yuv420p", "-an",
            str(directory / VIDEO_NO_AUDIO))
    out[VIDEO_NO_AUDIO] = Expected(FAILED, error="no audio stream", decode_error="no audio stream",
                                   why="mp4 with only a video stream")

    # -- a float WAV of speech holding NaN and +/-inf samples (decode.non_finite defaults to 'fail').
    zh_d, sr_d = _read(_ZH_D)
    poisoned = zh_d.copy()
    poisoned[[1000, 5000]] = np.nan
    poisoned[8000] = np.inf
    poisoned[12000] = -np.inf
    sf.write(str(directory / NAN_INF), poisoned, sr_d, subtype="FLOAT")
    out[NAN_INF] = Expected(FAILED, error="non-finite", decode_error="non-finite", why="NaN and inf samples")

    # -- 0.3 s of speech: decodes, then fails the stage's minimum duration (decode.min_duration_s = 0.5).
    libri, sr_l = _read(_LIBRISPEECH)
    short = libri[int(1.0 * sr_l): int(1.3 * sr_l)]
    sf.write(str(directory / TOO_SHORT), short, sr_l, subtype="PCM_16")
    out[TOO_SHORT] = Expected(FAILED, error="too short", duration_s=0.3, channels=1, source_rate=sr_l,
                              why="0.3 s < decode.min_duration_s")

    # -- 8-channel float32 WAV of speech (a mic array): every channel carries the speech at its own
    # gain, the loudest on channel 3, which a 7.1 guess would treat as LFE. No channel mask.
    zh_a, sr_a = _read(_ZH_A)
    gains = np.array([0.2, 0.5, 0.1, 1.0, 0.3, 0.6, 0.4, 0.8], dtype=np.float32)
    eight = (zh_a[:, None] * gains[None, :]).astype(np.float32)
    sf.write(str(directory / EIGHT_CHANNEL), eight, sr_a, subtype="FLOAT")
    out[EIGHT_CHANNEL] = Expected(SEGMENTS, duration_s=len(zh_a) / sr_a, channels=8, source_rate=sr_a,
                                  multichannel=eight, why="8 channels averaged to mono")

    # -- 44.1 kHz 24-bit stereo FLAC of speech (JFK, first 9 s; near-identical channels peaking at 0.78).
    jfk, sr_j = _read(_JFK)
    hifi = jfk[: 9 * sr_j].astype(np.float32)
    sf.write(str(directory / HIFI_FLAC), hifi, sr_j, format="FLAC", subtype="PCM_24")
    hifi_back, _ = sf.read(str(directory / HIFI_FLAC), dtype="float32")
    out[HIFI_FLAC] = Expected(SEGMENTS, duration_s=len(hifi) / sr_j, channels=2, source_rate=sr_j,
                              multichannel=hifi_back, why="hi-res stereo FLAC")

    # -- good speech under names with spaces and non-ASCII characters.
    zh_c, sr_c = _read(_ZH_C)
    sf.write(str(directory / UNICODE_NAME), zh_c, sr_c, subtype="PCM_16")
    out[UNICODE_NAME] = Expected(SEGMENTS, duration_s=len(zh_c) / sr_c, channels=1, source_rate=sr_c,
                                 why="spaces, accent and CJK in the name")
    sf.write(str(directory / SPACE_NAME), libri, sr_l, format="FLAC", subtype="PCM_16")
    out[SPACE_NAME] = Expected(SEGMENTS, duration_s=len(libri) / sr_l, channels=1, source_rate=sr_l,
                               why="space in the name")

    # -- plain good files: a PCM WAV, an MP3 and an Ogg Opus, both encoded by ffmpeg.
    sf.write(str(directory / PLAIN_WAV), libri * np.float32(0.9), sr_l, subtype="PCM_16")
    out[PLAIN_WAV] = Expected(SEGMENTS, duration_s=len(libri) / sr_l, channels=1, source_rate=sr_l, why="plain WAV")
    _ffmpeg("-i", str(real_clip(*_JFK)), "-c:a", "libmp3lame", "-b:a", "96k", "-ar", "22050", str(directory / MP3))
    out[MP3] = Expected(SEGMENTS, duration_s=len(jfk) / sr_j, channels=2, source_rate=22050, why="stereo MP3")
    zh_b, sr_b = _read(_ZH_B)
    _ffmpeg("-i", str(real_clip(*_ZH_B)), "-c:a", "libopus", "-b:a", "32k", str(directory / OPUS))
    out[OPUS] = Expected(SEGMENTS, duration_s=len(zh_b) / sr_b, channels=1, source_rate=48000, why="Ogg Opus")

    assert tuple(out) == CASE_NAMES, "make_bad_corpus and CASE_NAMES disagree"
    digests = {hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in out}
    assert len(digests) == len(out), "two generated files have the same bytes (one would be skipped as a duplicate)"
    return out
