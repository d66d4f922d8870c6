"""Corpus statistics from the ledger and the visible shards (audio columns never read).

A source's status across runs: ``done`` if a run finished it (and that row was not retired),
else ``retired`` if its done rows were all retired (content replaced at its path: ``manifests.retire``),
else ``failed`` if any run failed it, else ``skipped``. Sources are keyed by content hash (by URI
when the file could not be read). ``hours`` counts kept segments: what training would take.
Segments of retired recordings are left out (``Ledger.live_filter``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads

from manifests.layout import CorpusLayout, corpora
from manifests.ledger import Ledger
from manifests.shards import raise_unreadable_shard
from manifests.schema import RETIRED

LENGTH_BINS = (0, 1, 2, 5, 10, 15, 20, 25, 27, 30)
_SEGMENT_COLUMNS = ["recording_id", "duration", "language", "speaker", "kept", "drop_reason"]


def source_status(ledger: pa.Table) -> list[dict]:
    """The latest ledger row per source, with its status across runs."""
    rows = sorted(ledger.to_pylist(), key=lambda r: (r["finished_at"] is None, r["finished_at"]))
    by_key: dict[str, dict] = {}
    status_of: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        key = r["sha256"] or r["source_uri"]
        status_of[key][r["status"]] += 1
        if r["status"] != "skipped" or key not in by_key:
            by_key[key] = r
    out = []
    for key, r in by_key.items():
        seen = status_of[key]  # one retired row per retired done row
        status = ("done" if seen["done"] > seen[RETIRED] else RETIRED if seen[RETIRED] else
                  "failed" if seen["failed"] else "skipped")
        out.append({**r, "status": status})
    return sorted(out, key=lambda r: r["source_uri"])


def read_segments(layout: CorpusLayout, columns: list[str] | None = None) -> pa.Table:
    """Rows of the visible shards (local output or object store: see ``Ledger.shard_files``),
    less the segments of retired recordings (``Ledger.live_filter``)."""
    cols = columns or _SEGMENT_COLUMNS
    ledger = Ledger(layout)
    files = [str(p) for p in ledger.shard_files()]
    if not files:
        return pa.table({c: pa.array([], type=pa.null()) for c in cols})
    live = ledger.live_filter()
    try:
        return pads.dataset(files, format="parquet", filesystem=layout.arrow_filesystem).to_table(
            columns=cols, filter=live)
    except (pa.ArrowException, OSError):
        raise_unreadable_shard(layout, files, cols)  # one line naming the damaged shard
        raise


def _length_bin(d: float) -> str:
    for lo, hi in zip(LENGTH_BINS[:-1], LENGTH_BINS[1:]):
        if lo <= d < hi:
            return f"{lo}-{hi}s"
    return f">={LENGTH_BINS[-1]}s"


def corpus_stats(out_dir: Path | str, corpus: str) -> dict:
    layout = CorpusLayout(out_dir, corpus)
    sources = source_status(Ledger(layout).read())
    status = Counter(r["status"] for r in sources)
    seg = read_segments(layout).to_pylist()
    kept = [s for s in seg if s["kept"]]
    by_lang: dict[str, float] = defaultdict(float)
    for s in kept:
        by_lang[s["language"] or "unknown"] += s["duration"] / 3600
    speakers_per_rec: dict[str, set] = defaultdict(set)
    for s in kept:
        speakers_per_rec[s["recording_id"]].add(s["speaker"])
    rec_by_speakers = Counter(len({x for x in spk if x is not None}) for spk in speakers_per_rec.values())
    hours_by_speakers: dict[str, float] = defaultdict(float)
    for s in kept:
        n = len({x for x in speakers_per_rec[s["recording_id"]] if x is not None})
        hours_by_speakers[str(n)] += s["duration"] / 3600
    drops: dict[str, dict] = defaultdict(lambda: {"segments": 0, "hours": 0.0})
    for s in seg:
        if not s["kept"]:
            drops[s["drop_reason"] or "unspecified"]["segments"] += 1
            drops[s["drop_reason"] or "unspecified"]["hours"] += s["duration"] / 3600
    without = recordings_without_kept(sources, seg)
    hist = Counter(_length_bin(s["duration"]) for s in kept)
    durations = sorted(s["duration"] for s in kept)
    return {
        "sources": len(sources),
        "sources_done": status.get("done", 0),
        "sources_failed": status.get("failed", 0),
        "sources_skipped": status.get("skipped", 0),
        "sources_retired": status.get(RETIRED, 0),
        "source_hours": sum((r["duration_s"] or 0) for r in sources if r["status"] == "done") / 3600,
        "segments": len(seg),
        "segments_kept": len(kept),
        "hours": sum(durations) / 3600,
        "hours_all_segments": sum(s["duration"] for s in seg) / 3600,
        "hours_by_language": dict(sorted(by_lang.items())),
        "speakers": len({s["speaker"] for s in kept if s["speaker"] is not None}),
        "recordings_by_speaker_count": {str(k): v for k, v in sorted(rec_by_speakers.items())},
        "hours_by_speaker_count": dict(sorted(hours_by_speakers.items())),
        "dropped": dict(sorted(drops.items())),
        "recordings_without_kept": without,
        "segment_length_histogram": {b: hist.get(b, 0) for b in [_length_bin(lo) for lo in LENGTH_BINS]},
        "segment_length_s": {
            "min": durations[0] if durations else None,
            "median": durations[len(durations) // 2] if durations else None,
            "max": durations[-1] if durations else None,
        },
    }


def recordings_without_kept(sources: list[dict], segments: list[dict]) -> dict:
    """Done recordings that ship nothing: how many, their hours, and why.

    Why = the check (the drop reason before its ':') that dropped most of the recording's
    segment seconds, or "no speech found" when the segmenter found none.
    """
    by_rec: dict[str, list[dict]] = defaultdict(list)
    for s in segments:
        by_rec[s["recording_id"]].append(s)
    why: Counter = Counter()
    hours = 0.0
    for r in sources:
        if r["status"] != "done" or any(s["kept"] for s in by_rec.get(r["recording_id"], [])):
            continue
        seconds: Counter = Counter()
        for s in by_rec.get(r["recording_id"], []):
            seconds[(s["drop_reason"] or "unspecified").split(":")[0]] += s["duration"]
        why[seconds.most_common(1)[0][0] if seconds else "no speech found"] += 1
        hours += (r["duration_s"] or 0) / 3600
    return {"recordings": sum(why.values()), "source_hours": hours, "why": dict(sorted(why.items()))}


_SUM_KEYS = ("sources", "sources_done", "sources_failed", "sources_skipped", "sources_retired", "source_hours",
             "segments", "segments_kept", "hours", "hours_all_segments", "speakers")


def stats(out_dir: Path | str, corpus: str | None = None) -> dict:
    """Totals over the selected segment corpora (all under OUT by default), and each corpus.

    Dialogue corpora are left out: ``inspection.dialogue_stats.all_stats`` adds them."""
    names = [corpus] if corpus else corpora(out_dir)
    names = [name for name in names if CorpusLayout(out_dir, name).kind != "dialogues"]
    per = {name: corpus_stats(out_dir, name) for name in names}
    total: dict = {k: sum(p[k] for p in per.values()) for k in _SUM_KEYS}
    langs: dict[str, float] = defaultdict(float)
    for p in per.values():
        for k, v in p["hours_by_language"].items():
            langs[k] += v
    total["hours_by_language"] = dict(sorted(langs.items()))
    total["corpora"] = per
    return total
