"""Stage 1, decode: a source row in, its signals out (a CPU task).

Out of one ffmpeg decode at the working rate come: ``samples`` (the working-rate signal,
for enhancement; dropped by the executor when no later stage reads it), ``analysis`` (the
16 kHz signal the model stages share, unless enhancement will replace it) and
``audio_raw`` (the whole recording as FLAC at the output rate, for the writer, and for
the quality stage, which makes decode keep it even with ``enhance.variants=enhanced``).

A source that cannot be decoded keeps flowing with ``status='failed'`` and the reason, so
the ledger records it and the run goes on; so does a source beyond the decode limits
(``decode.min_source_rate_hz``, ``decode.max_duration_s``), refused before or while ffmpeg
decodes it. An object in a store (``s3://...``) is first
streamed to a local temporary file, removed when the decode is over whatever happens
(probing and decoding read the input twice, and MP4/M4A with the index at the end need a
seekable input; ``storage.temp_dir`` says where).
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from typing import Any, ClassVar, Iterator

import numpy as np

from audio_io.decode import DecodeError, DecodeParams, check_duration, decode
from audio_io.signals import ANALYSIS_RATE, analysis_signal, encode_variant
from manifests.incremental import CHANGED_WHILE_READ
from manifests.stat_cache import changed_since
from manifests.storage import Storage, StorageConfig, describe_error, is_remote, local_copy
from sources.discovery import fingerprint
from stages.base import Placement, Resources, RunContext, Section, Stage
from stages.enhance import EnhanceSection
from stages.output import OutputSection
from stages.quality import QualitySection


class DecodeSection(DecodeParams, Section):
    placement_fields: ClassVar[frozenset[str]] = frozenset({"timeout_s", "resources"})
    resources: Resources = Resources()


class DecodeStage(Stage):
    name = "decode"
    sections = {"decode": DecodeSection, "enhance": EnhanceSection, "output": OutputSection, "storage": StorageConfig,
                "quality": QualitySection}

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        self.params: DecodeSection = cfg.decode
        self.storage: Storage = cfg.storage.model_dump()
        enhance = cfg.enhance
        self.make_analysis = not (enhance.enabled and enhance.analysis_variant == "enhanced")
        # The quality stage scores the raw signal even when the shards carry only the enhanced one.
        self.make_raw = not (enhance.enabled and enhance.variants == "enhanced") or cfg.quality.enabled
        self.output = cfg.output

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return Placement(cfg.decode.resources)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("path", "size_bytes", "sha256", "stamp")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("started_at", "status", "error", "duration_s", "container", "codec", "source_sample_rate",
                "source_channels", "warning", "samples", "sample_rate", "analysis", "analysis_rate", "audio_raw")

    def process_batch(self, rows: list[dict]) -> list[dict]:
        return [self.decode_row(r) for r in rows]

    def decode_row(self, row: dict) -> dict:
        out = dict(row)
        out.update(
            started_at=time.time(), status="ok", error=None, duration_s=None,
            container=None, codec=None, source_sample_rate=None, source_channels=None, warning=None,
            sample_rate=self.params.sample_rate, samples=np.zeros(0, dtype=np.float32),
            analysis=np.zeros(0, dtype=np.float32), analysis_rate=ANALYSIS_RATE, audio_raw=None,
        )
        try:
            if row.get("size_bytes") == 0:
                raise DecodeError("empty file (0 bytes)")
            self.check_unchanged(row, row["path"])
            with _readable(row["path"], self.storage) as path:
                if is_remote(row["path"]) and not row.get("stamp"):
                    self.check_unchanged(row, path)  # a store without versions: hash the copy decoded
                audio = decode(path, self.params.sample_rate, non_finite=self.params.non_finite,
                               timeout_s=self.params.timeout_s, min_source_rate_hz=self.params.min_source_rate_hz,
                               max_duration_s=self.params.max_duration_s)
            out.update(
                container=audio.info.container, codec=audio.info.codec,
                source_sample_rate=audio.info.sample_rate, source_channels=audio.info.channels,
                duration_s=audio.duration_s, warning=audio.warning and audio.warning.replace(path, row["path"]),
            )
            if audio.non_finite_replaced:
                out["warning"] = f"{audio.non_finite_replaced} non-finite samples replaced by zero"
            check_duration(audio, self.params)
            self.check_unchanged(row, row["path"])  # what ffmpeg read is what was hashed
            out["samples"] = audio.samples
            if self.make_analysis:
                out["analysis"] = analysis_signal(audio.samples, audio.sample_rate)
            if self.make_raw:
                out["audio_raw"] = encode_variant(audio.samples, audio.sample_rate, self.output.sample_rate,
                                                  self.output.flac_subtype)
        except DecodeError as exc:
            out.update(status="failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - any surprise becomes a failed row, not a dead job
            out.update(status="failed", error=f"unexpected decode error: {type(exc).__name__}: {exc}")
        return out


    def check_unchanged(self, row: dict, path: str) -> None:
        """Fail the source if it is no longer the content its ``sha256`` was computed from: the
        segments would be stored under a hash of other bytes, and the next run would ingest the
        new content a second time. Local files and versioned objects: their stamp (taken before
        the hash read) must still hold; ``path`` a local copy: its bytes are hashed again."""
        if row["path"] == path:
            moved = changed_since(path, row.get("stamp"), self.storage)
        else:
            moved = row.get("sha256") is not None and fingerprint(path)[0] != row["sha256"]
        if moved:
            raise DecodeError(f"{CHANGED_WHILE_READ}: {row['path']} was modified or replaced after it was hashed; "
                              f"the next run hashes it again")


@contextmanager
def _readable(path: str, storage: Storage) -> Iterator[str]:
    """A local path for ``path``; an object is copied to a temporary file for the block."""
    with ExitStack() as stack:
        try:
            local = stack.enter_context(local_copy(path, storage, temp_dir=(storage or {}).get("temp_dir")))
        except Exception as exc:  # noqa: BLE001 - missing object, access denied, network
            raise DecodeError(f"cannot read the object: {describe_error(exc)}") from None
        try:
            yield local
        except DecodeError as exc:  # name the object, not the temporary copy
            raise DecodeError(str(exc).replace(local, path)) from None
