"""One synthesis run over a dialogue corpus: the orchestration of `refinery synth run`.

    read JSONL (one dialogue a line, content-hashed) -> lock corpus -> recover -> plan against
    the ledger -> Ray Data graph: prepare (tasks) -> speak (actor pool) -> write staged shards
    -> driver commits each written batch to the ledger (dialogue shards become visible)

The same ledger, lock, recovery and commit protocol as ``refinery run`` (``pipeline.run``): a
dialogue is a source, known by its content hash, so a rerun over the same input processes
nothing and a killed run is finished by the next one, every dialogue exactly once. The
config hash also covers what the voices hold (the voice library file, the assistant voice's
recordings), not only where they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from manifests.ids import file_sha256
from manifests.incremental import FingerprintedSource, plan_run
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.lock import lock_corpus
from manifests.storage import normalise
from pipeline.progress import RunProgress
from pipeline.run import _Committer, add_finished, commit_early_rows, ensure_ray, new_run_id, stream_through_graph
from pipeline.stage_order import SYNTHESIS
from stages.base import RunContext
from synthesis.dialogue import dialogue_id
from synthesis.inputs import read_dialogues

log = logging.getLogger("refinery")


@dataclass
class SynthSummary:
    run_id: str
    corpus: str
    out_dir: str
    config_hash: str
    dialogues: int = 0
    processed: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    turns: int = 0
    turns_kept: int = 0
    kept_seconds: float = 0.0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    recovery: str = ""
    failures: list[tuple[str, str]] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        if self.processed == 0:
            return (f"nothing to do: all {self.dialogues} dialogue(s) are already in corpus {self.corpus!r} under "
                    f"config {self.config_hash} ({self.skipped} skipped, {self.failed} unreadable); "
                    f"use --retry-failed to try failed ones again")
        return (f"synth run {self.run_id}: {self.processed} dialogue(s) processed: {self.done} done, {self.failed} "
                f"failed; {self.skipped} skipped; {self.turns} turns ({self.turns_kept} spoken turns kept, "
                f"{self.kept_seconds / 60:.1f} min kept) from {self.audio_seconds / 60:.1f} min synthesised in "
                f"{self.wall_seconds:.1f} s")


def voices_fingerprint(cfg) -> dict[str, str]:
    """Content hashes of the voices a run speaks with (for the config hash)."""
    out: dict[str, str] = {}
    p = cfg.synth_speak
    if p.voices:
        path = Path(p.voices)
        library = path / "voices.parquet" if path.is_dir() else path
        if not library.is_file():
            raise ValueError(f"voice library {p.voices}: no voices.parquet there (build one with "
                             f"`refinery synth voices build OUT --to DIR`)")
        out["voices"] = file_sha256(library)
    if p.assistant_voice:
        folder = Path(p.assistant_voice)
        if not folder.is_dir():
            raise ValueError(f"assistant voice {p.assistant_voice}: not a folder of <style>_<level>.wav + .txt")
        digest = hashlib.sha256()
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix in (".wav", ".txt"):
                digest.update(f.name.encode() + b"\0" + bytes.fromhex(file_sha256(f)))
        out["assistant_voice"] = digest.hexdigest()
    return out


def run_synthesis(inputs: list[str], corpus: str, out_dir: str | Path, cfg, *, retry_failed: bool = False,
                  progress: RunProgress | None = None) -> SynthSummary:
    t0 = time.monotonic()
    out_dir = normalise(out_dir)
    storage = cfg.storage.model_dump()
    layout = CorpusLayout(out_dir, corpus, storage, kind="dialogues")
    sources = list(read_dialogues(inputs))
    run_id = new_run_id()
    config_hash = cfg.config_hash(inputs=voices_fingerprint(cfg))
    summary = SynthSummary(run_id=run_id, corpus=corpus, out_dir=out_dir, config_hash=config_hash,
                           dialogues=len(sources))
    progress = progress or RunProgress(items="dialogues", parts="turns")
    with lock_corpus(layout, run_id, ttl_s=cfg.storage.lease_ttl_s) as lock:
        layout.claim_kind()
        ledger = Ledger(layout, fence=lock.check)
        summary.recovery = ledger.recover().describe()
        run_dir = layout.run_dir(run_id)
        layout.write_text(run_dir / "config.yaml", f"# config_hash: {config_hash}\n" + cfg.to_yaml())
        layout.write_text(run_dir / "inputs.json", json.dumps(inputs, indent=1))
        log.info("synth run %s on corpus %r: %d dialogue(s) found; config %s", run_id, corpus, len(sources), config_hash)

        fingerprinted = [FingerprintedSource(s.uri, None, s.sha256, s.size_bytes, s.error) for s in sources]
        plan = plan_run(fingerprinted, ledger.index(config_hash), retry_failed)
        committer = _Committer(ledger, layout, run_id, every_s=cfg.synth_output.commit_every_s)
        # A dialogue's id is its content hash's, not a recording id; an unreadable one has none.
        commit_early_rows(committer, plan, corpus, run_id, config_hash,
                          lambda s: dialogue_id(s.sha256) if s.sha256 and not s.error else None)
        summary.skipped, summary.failed = len(plan.skipped), len(plan.failed)
        summary.failures = [(s.uri, why) for s, why in plan.failed]
        summary.processed = len(plan.process)
        if plan.process:
            ensure_ray(cfg.ray)
            run = RunContext(out_dir=out_dir, corpus=corpus, run_id=run_id, config_hash=config_hash)
            by_uri = {s.uri: s for s in sources}
            log.info("speaking %d dialogue(s); %d skipped, %d unreadable", len(plan.process), len(plan.skipped),
                     len(plan.failed))
            now = time.time()
            items = [{"source_uri": s.uri, "sha256": s.sha256, "size_bytes": s.size_bytes,
                      "recording_id": dialogue_id(s.sha256), "dialogue": s.canonical, "dialogue_form_in": s.form,
                      "source_id": s.source_id, "started_at": now} for s in (by_uri[p.uri] for p in plan.process)]
            finished = stream_through_graph(items, SYNTHESIS, cfg, run, committer, progress, fuse="never")
            add_finished(summary, finished, parts="turns", parts_kept="turns_kept")
        summary.wall_seconds = time.monotonic() - t0
        layout.write_text(run_dir / "summary.json", json.dumps(asdict(summary), indent=1))
    return summary

