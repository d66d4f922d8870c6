"""The voice library: target voices cut from a refinery output's kept segments (plus reference
recordings added by hand), one Parquet file of prompts with their embeddings and F0 figures.

Selection (``build_voice_library``): from the segment shards of the chosen corpora (read through
``Ledger(layout).shard_files()``, less retired recordings, metadata columns first, audio only of
the chosen rows), a segment qualifies when it is kept, its overlap ratio is at most
``max_overlap_ratio`` (a segment without diarization has no overlap figure and qualifies), its duration lies in
[``min_duration_s``, ``max_duration_s``], its DNSMOS OVRL is at least ``min_dnsmos_ovrl`` when
the segment has that figure, its text is not empty, its language is one of ``languages`` and
the chosen audio variant is present. A speaker is ``<corpus>/<speaker>`` (a segment without a
speaker label stands for its recording's one voice).

Spread: each speaker's qualifying segments are ranked (highest DNSMOS first, then longest,
then segment id); speakers are visited in an order drawn from ``seed``; round r takes every
speaker's r-th segment (r < ``max_per_speaker``) and orders that round's picks alternating
across ``languages``; rounds follow one another; ``max_voices`` cuts the list. So a cut keeps
as many speakers, and as even a language mix, as the corpus allows.

A voice id is ``"v-"`` + 12 hex of a hash of ``<corpus>/<segment_id>`` (or, for an added
reference, of the file's content): the same segment gives the same id in every build.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import soundfile as sf
from pydantic import Field

from audio_io.flac import decode_flac, encode_flac
from audio_io.resample import resample
from diarization.embedding import SpeakerEmbedder
from manifests.layout import CorpusLayout, corpora
from manifests.ledger import Ledger
from manifests.params import Params
from manifests.schema import AUDIO_TYPE
from manifests.shards import write_parquet_atomic
from synthesis.speech import Speech, VoiceReference
from synthesis.vc.world import F0Method, F0Stats, f0_stats
from transcription.text import is_cjk

VOICES_FILE = "voices.parquet"
BUILD_FILE = "build.json"
_META_KEY = b"voice_library"  # the build record, carried in the table's schema metadata

VOICE_SCHEMA = pa.schema([
    ("voice_id", pa.string()),
    ("prompt_audio", AUDIO_TYPE),  # FLAC
    ("sample_rate", pa.int32()),
    ("prompt_text", pa.string()),
    ("language", pa.string()),
    ("speaker", pa.string()),
    ("speaker_embedding", pa.list_(pa.float32())),
    ("embedder", pa.string()),  # the embedding model's id
    ("f0_mean_hz", pa.float64()),
    ("f0_std_hz", pa.float64()),
    ("logf0_mean", pa.float64()),
    ("logf0_std", pa.float64()),
    ("duration", pa.float64()),
    ("source_segment_id", pa.string()),  # null for an added reference recording
    ("source_corpus", pa.string()),
    ("source_uri", pa.string()),
])

# Only these segment columns are read to select (the audio column follows for the chosen rows).
_SELECT_COLUMNS = ["segment_id", "recording_id", "run_id", "source_uri", "speaker", "overlap_ratio", "duration",
                   "language", "text", "kept", "sample_rate", "dnsmos_ovrl"]


class VoiceLibraryParams(Params):
    """Which segments become target voices (see the module docstring)."""

    min_duration_s: float = Field(3.0, gt=0)
    max_duration_s: float = Field(10.0, gt=0)
    max_overlap_ratio: float = Field(0.0, ge=0.0, le=1.0)
    min_dnsmos_ovrl: float | None = Field(2.5, description="applied only to segments that have the figure")
    max_per_speaker: int = Field(2, ge=1)
    max_voices: int | None = Field(None, ge=1)
    languages: list[str] = Field(default_factory=lambda: ["en", "zh"], min_length=1)
    audio_variant: Literal["raw", "enhanced"] = "raw"
    f0_method: F0Method = Field("harvest", description="F0 tracker of the voices' F0 figures")
    seed: int = 0


@dataclass(frozen=True)
class _Candidate:
    corpus: str
    shard: str  # the shard file it sits in
    row: int  # its row in that shard
    segment_id: str
    speaker: str
    language: str
    text: str
    duration: float
    dnsmos: float | None
    source_uri: str | None

    def rank(self) -> tuple:
        return (-(self.dnsmos if self.dnsmos is not None else -np.inf), -self.duration, self.segment_id)


def voice_id_for(key: str) -> str:
    return "v-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def language_of_text(text: str) -> str:
    """'zh' when the text holds a Han character, else 'en'."""
    return "zh" if any(is_cjk(c) for c in text) else "en"


def _seeded_rank(seed: int, key: str) -> str:
    # A hash, not a RNG stream: the order of one speaker does not depend on which others exist.
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


# ---- selection ------------------------------------------------------------------------------


def _qualifies(r: dict, params: VoiceLibraryParams) -> bool:
    if not r["kept"]:
        return False
    if r["overlap_ratio"] is not None and r["overlap_ratio"] > params.max_overlap_ratio:
        return False
    if r["duration"] is None or not params.min_duration_s <= r["duration"] <= params.max_duration_s:
        return False
    if params.min_dnsmos_ovrl is not None and r["dnsmos_ovrl"] is not None and r["dnsmos_ovrl"] < params.min_dnsmos_ovrl:
        return False
    return bool((r["text"] or "").strip()) and r["language"] in params.languages


def _candidates(out_dir, corpus: str, params: VoiceLibraryParams, counts: dict) -> list[_Candidate]:
    layout = CorpusLayout(out_dir, corpus)
    audio_col = "audio" if params.audio_variant == "raw" else "audio_enhanced"
    found = []
    ledger = Ledger(layout)
    # segments of retired recordings (content replaced at its path, manifests.retire) are no candidates
    retired = set(zip(*(ledger.retired().column(c).to_pylist() for c in ("recording_id", "run_id"))))
    for shard in ledger.shard_files():
        with layout.fs.open(str(shard), "rb") as fh:
            pf = pq.ParquetFile(fh)
            rows = pf.read(columns=_SELECT_COLUMNS).to_pylist()
            # Whether each row has the chosen variant, without reading the audio bytes.
            has_audio = pf.read(columns=[f"{audio_col}.path"]).column(audio_col).is_valid().to_pylist()
        live = [(r["recording_id"], r["run_id"]) not in retired for r in rows]
        counts["segments"] += sum(live)
        for i, (r, present) in enumerate(zip(rows, has_audio)):
            if not live[i] or not _qualifies(r, params):
                continue
            if not present:
                counts["no_audio_variant"] += 1
                continue
            found.append(_Candidate(corpus, str(shard), i, r["segment_id"], f"{corpus}/{r['speaker'] or r['recording_id']}",
                                    r["language"], r["text"].strip(), float(r["duration"]), r["dnsmos_ovrl"],
                                    r["source_uri"]))
    return found


def spread(candidates: list[_Candidate], params: VoiceLibraryParams) -> list[_Candidate]:
    """The chosen candidates in library order (module docstring: round-robin, alternating languages)."""
    by_speaker: dict[str, list[_Candidate]] = {}
    for c in candidates:
        by_speaker.setdefault(c.speaker, []).append(c)
    speakers = sorted(by_speaker, key=lambda s: _seeded_rank(params.seed, s))
    for s in speakers:
        by_speaker[s].sort(key=_Candidate.rank)
    chosen: list[_Candidate] = []
    for r in range(params.max_per_speaker):
        picks = [by_speaker[s][r] for s in speakers if r < len(by_speaker[s])]
        queues = {lang: [c for c in picks if c.language == lang] for lang in params.languages}
        while any(queues.values()):
            for lang in params.languages:
                if queues[lang]:
                    chosen.append(queues[lang].pop(0))
    return chosen[: params.max_voices] if params.max_voices is not None else chosen


def _segment_corpora(out_dir) -> list[str]:
    return [c for c in corpora(out_dir) if CorpusLayout(out_dir, c).kind == "segments"]


# ---- rows -----------------------------------------------------------------------------------


def _embed(embedder: SpeakerEmbedder, speech: list[tuple[np.ndarray, int]]) -> np.ndarray:
    if not speech:
        return np.zeros((0, embedder.dim), np.float32)
    return embedder.embed([resample(a, r, embedder.sample_rate) for a, r in speech])


def _row(voice_id: str, flac: bytes, audio: np.ndarray, rate: int, text: str, language: str, speaker: str,
         embedding: np.ndarray, embedder: SpeakerEmbedder, f0: F0Stats, segment_id: str | None,
         corpus: str | None, uri: str | None) -> dict:
    return {"voice_id": voice_id, "prompt_audio": {"bytes": flac, "path": f"{voice_id}.flac"}, "sample_rate": rate,
            "prompt_text": text, "language": language, "speaker": speaker,
            "speaker_embedding": embedding.astype(np.float32).tolist(), "embedder": embedder.model_id,
            "f0_mean_hz": f0.f0_mean_hz, "f0_std_hz": f0.f0_std_hz, "logf0_mean": f0.logf0_mean,
            "logf0_std": f0.logf0_std, "duration": round(len(audio) / rate, 3), "source_segment_id": segment_id,
            "source_corpus": corpus, "source_uri": uri}


def _with_record(table: pa.Table, record: dict) -> pa.Table:
    return table.replace_schema_metadata({_META_KEY: json.dumps(record, sort_keys=True).encode()})


def build_record(table: pa.Table) -> dict:
    """What the table was built from (``build_voice_library``/``add_reference_voices`` set it)."""
    meta = table.schema.metadata or {}
    return json.loads(meta[_META_KEY]) if _META_KEY in meta else {}


def build_voice_library(out_dir, corpora: list[str] | None, params: VoiceLibraryParams,
                        embedder: SpeakerEmbedder) -> pa.Table:
    """Voice rows (``VOICE_SCHEMA``) chosen from the segment corpora under ``out_dir`` (all of
    them when ``corpora`` is None). A chosen segment with under 0.1 s of voicing has no F0
    figures and is left out (counted in the build record as ``unvoiced``)."""
    available = _segment_corpora(out_dir)
    names = available if corpora is None else list(corpora)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"no segment corpus {', '.join(unknown)} under {out_dir} "
                         f"(segment corpora there: {', '.join(available) or 'none'})")
    counts = {"segments": 0, "no_audio_variant": 0, "unvoiced": 0}
    candidates = [c for name in names for c in _candidates(out_dir, name, params, counts)]
    chosen = spread(candidates, params)
    audio_col = "audio" if params.audio_variant == "raw" else "audio_enhanced"
    cells = _read_audio(out_dir, chosen, audio_col)
    decoded = [decode_flac(cells[(c.corpus, c.shard, c.row)]) for c in chosen]
    decoded = [(a if a.ndim == 1 else a.mean(axis=1), r) for a, r in decoded]
    stats = [f0_stats(a, r, params.f0_method) for a, r in decoded]
    keep = [i for i, s in enumerate(stats) if s is not None]
    counts["unvoiced"] = len(chosen) - len(keep)
    emb = _embed(embedder, [decoded[i] for i in keep])
    rows = []
    for j, i in enumerate(keep):
        c, (audio, rate) = chosen[i], decoded[i]
        rows.append(_row(voice_id_for(f"{c.corpus}/{c.segment_id}"), cells[(c.corpus, c.shard, c.row)], audio, rate,
                         c.text, c.language, c.speaker, emb[j], embedder, stats[i], c.segment_id, c.corpus,
                         c.source_uri))
    record = {"built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "out_dir": str(out_dir),
              "corpora": names, "params": params.model_dump(mode="json"), "embedder": embedder.model_id,
              "segments_read": counts["segments"], "qualifying": len(candidates),
              "speakers_qualifying": len({c.speaker for c in candidates}), "chosen": len(chosen),
              "left_out": {"no_audio_variant": counts["no_audio_variant"], "unvoiced": counts["unvoiced"]},
              "added": []}
    return _with_record(pa.Table.from_pylist(rows, schema=VOICE_SCHEMA), record)


def _read_audio(out_dir, chosen: list[_Candidate], audio_col: str) -> dict[tuple, bytes]:
    """FLAC bytes of the chosen rows, one read of the audio column per shard that holds any."""
    wanted: dict[tuple[str, str], set[int]] = {}
    for c in chosen:
        wanted.setdefault((c.corpus, c.shard), set()).add(c.row)
    out = {}
    for (corpus, shard), rows in wanted.items():
        layout = CorpusLayout(out_dir, corpus)
        with layout.fs.open(shard, "rb") as fh:
            col = pq.ParquetFile(fh).read(columns=[audio_col]).column(audio_col)
        for i in sorted(rows):
            out[(corpus, shard, i)] = col[i].as_py()["bytes"]
    return out


# ---- reference recordings (--add DIR) -------------------------------------------------------


def add_reference_voices(table: pa.Table | None, directory, embedder: SpeakerEmbedder,
                         f0_method: F0Method = "harvest") -> pa.Table:
    """``table`` plus one voice per ``*.wav`` of ``directory``, each with a same-stem ``.txt``
    (UTF-8 transcript) and optionally a same-stem ``.lang`` (the language; else 'zh' when the
    transcript holds a Han character, 'en' otherwise). Refuses, naming them, wavs without a
    transcript and wavs without voiced speech. A voice already in the table (same content) is
    replaced."""
    directory = Path(directory)
    wavs = sorted(directory.glob("*.wav"))
    if not wavs:
        raise ValueError(f"{directory}: no .wav reference recordings")
    missing = [w.name for w in wavs if not w.with_suffix(".txt").is_file()]
    if missing:
        raise ValueError(f"{directory}: no transcript (same-stem .txt) for {', '.join(missing)}")
    refs = []
    for wav in wavs:
        text = wav.with_suffix(".txt").read_text(encoding="utf-8").strip()
        if not text:
            raise ValueError(f"{wav.with_suffix('.txt')}: the transcript is empty")
        lang_file = wav.with_suffix(".lang")
        language = lang_file.read_text(encoding="utf-8").strip() if lang_file.is_file() else language_of_text(text)
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        stats = f0_stats(audio, rate, f0_method)
        if stats is None:
            raise ValueError(f"{wav}: under 0.1 s of voiced speech, no use as a voice")
        refs.append((wav, text, language, audio, int(rate), stats))
    emb = _embed(embedder, [(a, r) for _, _, _, a, r, _ in refs])
    rows = []
    for (wav, text, language, audio, rate, stats), e in zip(refs, emb):
        vid = voice_id_for("ref:" + hashlib.sha256(wav.read_bytes()).hexdigest())
        rows.append(_row(vid, encode_flac(audio, rate), audio, rate, text, language,
                         f"ref:{directory.name}/{wav.stem}", e, embedder, stats, None, None, str(wav.resolve())))
    new = pa.Table.from_pylist(rows, schema=VOICE_SCHEMA)
    record = build_record(table) if table is not None else {}
    record.setdefault("added", []).append({"dir": str(directory.resolve()), "voices": len(rows),
                                           "embedder": embedder.model_id})
    if table is None or table.num_rows == 0:
        return _with_record(new, record)
    others = set(table.column("embedder").to_pylist()) - {embedder.model_id}
    if others:
        # Cosines between embeddings of two models mean nothing: one library, one embedder.
        raise ValueError(f"the library's embeddings come from {', '.join(sorted(others))}, not "
                         f"{embedder.model_id}: add with the same embedder")
    added = set(new.column("voice_id").to_pylist())
    kept = table.filter(pc.invert(pc.is_in(table.column("voice_id"), pa.array(sorted(added)))))
    return _with_record(pa.concat_tables([kept.cast(VOICE_SCHEMA), new]), record)


# ---- writing, loading, picking --------------------------------------------------------------


def write_voice_library(table: pa.Table, to_dir) -> Path:
    """``to_dir/voices.parquet`` (atomic: temp + rename) and ``to_dir/build.json`` (the build
    record plus the counts per language and speakers); returns the parquet path."""
    to_dir = Path(to_dir)
    path = to_dir / VOICES_FILE
    write_parquet_atomic(table, path)
    langs = table.column("language").to_pylist()
    record = {**build_record(table), "voices": table.num_rows,
              "voices_per_language": {k: langs.count(k) for k in sorted(set(langs))},
              "speakers": len(set(table.column("speaker").to_pylist()))}
    tmp = to_dir / f".{BUILD_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, to_dir / BUILD_FILE)
    return path


def read_voice_library(path) -> pa.Table:
    path = Path(path)
    file = path / VOICES_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no voice library at {path} (expected {VOICES_FILE})")
    return pq.read_table(file)


def load_voice_library(path) -> list[VoiceReference]:
    """The library's voices (``path``: its directory or the parquet file), embeddings set, in table order."""
    voices = []
    for r in read_voice_library(path).to_pylist():
        audio, rate = sf.read(io.BytesIO(r["prompt_audio"]["bytes"]), dtype="float32", always_2d=True)
        voices.append(VoiceReference(voice_id=r["voice_id"], speech=Speech(audio.mean(axis=1), int(rate)),
                                     text=r["prompt_text"], language=r["language"],
                                     embedding=np.asarray(r["speaker_embedding"], dtype=np.float32),
                                     source=r["source_segment_id"] or r["source_uri"]))
    return voices


def pick_voice(voices: list[VoiceReference], language: str, seed: int) -> VoiceReference:
    """A voice drawn by ``seed`` from those of ``language`` (all voices when none speaks it).
    The draw depends on the set of voices, not on their order."""
    if not voices:
        raise ValueError("the voice library is empty")
    pool = sorted((v for v in voices if v.language == language), key=lambda v: v.voice_id) \
        or sorted(voices, key=lambda v: v.voice_id)
    index = int(hashlib.sha256(f"{seed}:{language}".encode()).hexdigest()[:16], 16) % len(pool)
    return pool[index]
