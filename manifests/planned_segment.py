"""A segment as it travels between stages, before it is written: times plus what stages found.

Recording rows in the graph carry their segments as the typed column ``segments`` (an
Arrow ``list<struct>`` of ``SEGMENT_STRUCT``; a list of dicts in a stage's hands), so
each stage reads the list (``from_rows``), fills in its fields and writes it back
(``to_rows``). Every figure a stage computes per segment is a typed field here and reaches
the shards as a column of the same name (see ``manifests.schema`` and docs/columns.md).
Any stage may drop a segment by setting ``drop_reason``; the first reason stays (``drop``),
and the row is still written with ``kept=false``.
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, fields

import pyarrow as pa

WORD_TYPE = pa.struct([("token", pa.string()), ("start", pa.float64()), ("end", pa.float64()), ("prob", pa.float64())])
MODEL_TYPE = pa.struct([("stage", pa.string()), ("model", pa.string())])
MODELS_TYPE = pa.list_(MODEL_TYPE)


@dataclass
class PlannedSegment:
    start: float
    end: float
    speaker: str | None = None
    drop_reason: str | None = None
    overlap_ratio: float | None = None
    # language ID (Whisper's language head)
    language: str | None = None
    language_prob: float | None = None
    language_runner_up: str | None = None  # the second most probable language
    language_runner_up_prob: float | None = None
    language_tie_break: bool | None = None  # language taken from the recording's majority
    # transcription
    text: str | None = None
    words: list[dict] | None = None  # {token, start, end, prob}, times relative to the segment
    asr_model: str | None = None
    asr_avg_logprob: float | None = None
    asr_no_speech_prob: float | None = None
    asr_compression_ratio: float | None = None
    asr_decode_pass: int | None = None  # 1, or 2 after the deterministic retry
    asr_retried: bool | None = None
    asr_failed_checks: list[str] | None = None  # retry checks the chosen text still fails
    asr_pass1_failed_checks: list[str] | None = None
    asr_raw_text: str | None = None  # zh: the recogniser's text before punctuation and conversion
    asr_note: str | None = None  # why a segment was not transcribed, or a recogniser warning
    # text filters: the measured figures (thresholds are in the run's config)
    filter_compression_ratio: float | None = None
    filter_ngram_repeats: int | None = None  # back-to-back copies of the most repeated n-gram
    filter_ngram_n: int | None = None  # its n
    filter_chars_per_s: float | None = None
    filter_charset_ratio: float | None = None
    filter_text_lid_language: str | None = None
    filter_text_lid_prob: float | None = None
    filter_text_lid_skipped: str | None = None  # why the text was not judged (too short)
    filter_failures: list[str] | None = None  # every check that failed, in check order
    # quality, on the raw audio of the segments kept when the quality stage runs (audio_io.quality)
    snr_db: float | None = None
    noise_floor_dbfs: float | None = None  # the SNR estimate's noise floor
    dnsmos_ovrl: float | None = None  # DNSMOS P.835
    dnsmos_sig: float | None = None
    dnsmos_bak: float | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def kept(self) -> bool:
        return self.drop_reason is None

    def drop(self, reason: str) -> None:
        if self.drop_reason is None:
            self.drop_reason = reason


_SCALARS = {float: pa.float64(), int: pa.int32(), str: pa.string(), bool: pa.bool_()}


def _arrow_type(name: str, hint: object) -> pa.DataType:
    if name == "words":
        return pa.list_(WORD_TYPE)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if isinstance(hint, types.UnionType) else hint
    if typing.get_origin(base) is list:
        return pa.list_(_SCALARS[typing.get_args(base)[0]])
    return _SCALARS[base]


_HINTS = typing.get_type_hints(PlannedSegment)
SEGMENT_FIELDS: tuple[tuple[str, pa.DataType], ...] = tuple(
    (f.name, _arrow_type(f.name, _HINTS[f.name])) for f in fields(PlannedSegment))
SEGMENT_STRUCT = pa.struct(list(SEGMENT_FIELDS))
SEGMENTS_TYPE = pa.list_(SEGMENT_STRUCT)
_NAMES = frozenset(name for name, _ in SEGMENT_FIELDS)


def to_rows(segments: list[PlannedSegment]) -> list[dict]:
    """The ``segments`` cell of a recording row."""
    return [asdict(s) for s in segments]


def from_rows(rows: list[dict] | None) -> list[PlannedSegment]:
    return [PlannedSegment(**{k: v for k, v in r.items() if k in _NAMES}) for r in rows or []]
