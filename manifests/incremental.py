"""Incremental ingestion: which sources a run must process, given the ledger.

A source is skipped when its content hash is already ``done`` under the same config hash
(whatever its path now), or when it failed before and ``retry_failed`` is off (a source that
changed between its hash and its decode did not fail for its content: it is never skipped). Two inputs
with the same content in one run are processed once; the other is skipped as a duplicate.
Everything else is processed. Every source gets exactly one ledger row per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from manifests.ledger import LedgerIndex


# The reason of a source that changed between its hash and its decode: not the content's fault,
# so not a failure that sticks (a rerun hashes it again and processes whatever it holds then).
CHANGED_WHILE_READ = "changed while being read"


def is_transient(error: str) -> bool:
    return error.startswith(CHANGED_WHILE_READ)


class FingerprintedSource(NamedTuple):  # a tuple: a million of them per run at scale
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
    done_why: dict[str, str] = {}
    done_in, failed_with = index.lookup([s.sha256 for s in sources])
    for src, done_run, failure in zip(sources, done_in, failed_with):
        if src.error or src.sha256 is None:
            plan.failed.append((src, src.error or "cannot read the file"))
            continue
        if done_run is not None:
            why = done_why.get(done_run)
            if why is None:  # one string per earlier run, not one per source
                why = done_why[done_run] = f"already done in run {done_run} with this config"
            plan.skipped.append((src, why))
            continue
        if src.sha256 in first_uri_of:
            plan.skipped.append((src, f"same content as {first_uri_of[src.sha256]} in this run"))
            continue
        if failure is not None and not retry_failed and not is_transient(failure):
            plan.skipped.append((src, f"failed before ({failure}); use --retry-failed to try again"))
            continue
        first_uri_of[src.sha256] = src.uri
        plan.process.append(src)
    return plan
