"""Incremental ingestion: which sources a run must process, given the ledger.

A source is skipped when its content hash is already ``done`` under the same config hash
(whatever its path now), or when it failed before and ``retry_failed`` is off. Two inputs
with the same content in one run are processed once; the other is skipped as a duplicate.
Everything else is processed. Every source gets exactly one ledger row per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from manifests.ledger import LedgerIndex


@dataclass(frozen=True)
class FingerprintedSource:
    uri: str
    path: str | None
    sha256: str | None
    size_bytes: int | None
    error: str | None = None


@dataclass
class RunPlan:
    process: list[FingerprintedSource] = field(default_factory=list)
    skipped: list[tuple[FingerprintedSource, str]] = field(default_factory=list)  # (source, why)
    failed: list[tuple[FingerprintedSource, str]] = field(default_factory=list)  # unreadable before decoding


def plan_run(sources: list[FingerprintedSource], index: LedgerIndex, retry_failed: bool) -> RunPlan:
    plan = RunPlan()
    first_uri_of: dict[str, str] = {}
    for src in sources:
        if src.error or src.sha256 is None:
            plan.failed.append((src, src.error or "cannot read the file"))
            continue
        if src.sha256 in index.done:
            plan.skipped.append((src, f"already done in run {index.done[src.sha256]} with this config"))
            continue
        if src.sha256 in first_uri_of:
            plan.skipped.append((src, f"same content as {first_uri_of[src.sha256]} in this run"))
            continue
        if src.sha256 in index.failed and not retry_failed:
            plan.skipped.append((src, f"failed before ({index.failed[src.sha256]}); use --retry-failed to try again"))
            continue
        first_uri_of[src.sha256] = src.uri
        plan.process.append(src)
    return plan
