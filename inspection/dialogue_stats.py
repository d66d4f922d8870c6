"""Statistics of dialogue corpora (``refinery synth run``) from the ledger and the visible turn shards.

A dialogue's status across runs is decided as a source's (``inspection.stats.source_status``):
a ledger row is one JSONL line, keyed by the dialogue's content hash (by ``FILE#L<line>`` when
the line did not parse). The turn figures count every visible turn row, of every run (as the
segment statistics count every visible segment); a dialogue is one ``(run_id, dialogue_id)``.

- spoken turns: every turn but system turns; kept turns: spoken turns with ``kept``; dropped
  turns: the other spoken turns, by the check that dropped them (the reason before its ':',
  as the segment statistics group recordings without kept segments);
- ``hours``: audio of the kept turns, by language and by role; ``hours_in_kept_dialogues``:
  the audio ``export --format messages`` carries (kept dialogues; assistant turns of the
  audio_to_text form are text only there);
- gates: means over the kept turns that carry the figure (None when none does);
- voices: distinct ``voice_id`` of the kept user turns and of the kept assistant turns.

Audio cells are never read.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads

from manifests.layout import CorpusLayout, corpora
from manifests.ledger import Ledger
from manifests.schema import DIALOGUE_SCHEMA
from inspection.stats import source_status, stats

FORMS = ("speech", "audio_to_text")
ROLES = ("user", "assistant")
_COLUMNS = ["dialogue_id", "run_id", "turn_index", "role", "language", "duration", "voice_id", "kept", "drop_reason",
            "dialogue_kept", "dialogue_form", "dialogue_drop_reason", "asr_error", "speaker_similarity",
            "speaker_similarity_before_vc", "dnsmos_ovrl"]
# summed over the dialogue corpora for the top-level "dialogues" key
_SUM_KEYS = ("dialogues", "dialogues_done", "dialogues_failed", "dialogues_skipped", "dialogues_kept",
             "dialogues_dropped", "turns", "turns_spoken", "turns_kept", "turns_dropped", "hours",
             "hours_in_kept_dialogues", "synthesized_hours")


def read_turns(layout: CorpusLayout, columns: list[str] | None = None) -> pa.Table:
    """Turn rows of the visible shards of a dialogue corpus (columns missing in a shard read as null)."""
    cols = columns or _COLUMNS
    schema = pa.schema([DIALOGUE_SCHEMA.field(c) for c in cols])
    files = [str(p) for p in Ledger(layout).shard_files()]
    if not files:
        return schema.empty_table()
    return pads.dataset(files, schema=schema, format="parquet", filesystem=layout.arrow_filesystem).to_table()


def _reason(text: str | None) -> str:
    return (text or "unspecified").split(":")[0].strip() or "unspecified"


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def dialogue_corpus_stats(out_dir: Path | str, corpus: str) -> dict:
    layout = CorpusLayout(out_dir, corpus)
    lines = source_status(Ledger(layout).read())
    status = Counter(r["status"] for r in lines)
    turns = read_turns(layout).to_pylist()

    first_of: dict[tuple, dict] = {}  # (run_id, dialogue_id) -> a row (the dialogue-level columns repeat per turn)
    for t in turns:
        first_of.setdefault((t["run_id"], t["dialogue_id"]), t)
    kept_dialogues = {k for k, t in first_of.items() if t["dialogue_kept"]}
    form_of = {k: first_of[k]["dialogue_form"] for k in kept_dialogues}
    by_form = Counter(form_of[k] or "unspecified" for k in kept_dialogues)
    dropped_why = Counter(_reason(t["dialogue_drop_reason"]) for k, t in first_of.items() if k not in kept_dialogues)

    spoken = [t for t in turns if t["role"] != "system"]
    kept = [t for t in spoken if t["kept"]]
    turn_drops = Counter(_reason(t["drop_reason"]) for t in spoken if not t["kept"])

    by_lang: dict[str, float] = defaultdict(float)
    by_role: dict[str, float] = defaultdict(float)
    shipped = 0.0
    for t in kept:
        seconds = t["duration"] or 0.0
        by_lang[t["language"] or "unknown"] += seconds / 3600
        by_role[t["role"] or "unknown"] += seconds / 3600
        key = (t["run_id"], t["dialogue_id"])
        if key in kept_dialogues and (t["role"] == "user" or form_of[key] == "speech"):
            shipped += seconds
    asr_by_lang: dict[str, list] = defaultdict(list)
    for t in kept:
        asr_by_lang[t["language"] or "unknown"].append(t["asr_error"])
    return {
        "kind": "dialogues",
        "dialogues": len(lines),
        "dialogues_done": status.get("done", 0),
        "dialogues_failed": status.get("failed", 0),
        "dialogues_skipped": status.get("skipped", 0),
        "synthesized_hours": sum((r["duration_s"] or 0) for r in lines if r["status"] == "done") / 3600,
        "dialogues_kept": len(kept_dialogues),
        "dialogues_kept_by_form": {f: by_form.get(f, 0) for f in FORMS}
        | {f: n for f, n in sorted(by_form.items()) if f not in FORMS},
        "dialogues_dropped": len(first_of) - len(kept_dialogues),
        "dialogues_dropped_by_reason": dict(sorted(dropped_why.items())),
        "turns": len(turns),
        "turns_spoken": len(spoken),
        "turns_kept": len(kept),
        "turns_dropped": len(spoken) - len(kept),
        "turns_dropped_by_reason": dict(sorted(turn_drops.items())),
        "hours": sum(t["duration"] or 0.0 for t in kept) / 3600,
        "hours_by_language": dict(sorted(by_lang.items())),
        "hours_by_role": dict(sorted(by_role.items())),
        "hours_in_kept_dialogues": shipped / 3600,
        "gates": {
            "asr_error_by_language": {lang: _mean(v) for lang, v in sorted(asr_by_lang.items())},
            "speaker_similarity": _mean([t["speaker_similarity"] for t in kept]),
            "speaker_similarity_before_vc": _mean([t["speaker_similarity_before_vc"] for t in kept]),
            "dnsmos_ovrl": _mean([t["dnsmos_ovrl"] for t in kept]),
        },
        "voices": {role: len({t["voice_id"] for t in kept if t["role"] == role and t["voice_id"] is not None})
                   for role in ROLES},
    }


def all_stats(out_dir: Path | str, corpus: str | None = None) -> dict:
    """``inspection.stats.stats`` (the segment corpora, their keys unchanged) with the dialogue
    corpora added under ``corpora`` (each with ``kind: "dialogues"``) and their totals under
    ``dialogues``; without dialogue corpora exactly what ``stats`` returns."""
    s = stats(out_dir, corpus)
    names = [corpus] if corpus else corpora(out_dir)
    dialogue_names = [n for n in names if CorpusLayout(out_dir, n).kind == "dialogues"]
    if not dialogue_names:
        return s
    per = {n: dialogue_corpus_stats(out_dir, n) for n in dialogue_names}
    s["corpora"] = {n: s["corpora"][n] if n in s["corpora"] else per[n] for n in names}
    total: dict = {k: sum(p[k] for p in per.values()) for k in _SUM_KEYS}
    langs: dict[str, float] = defaultdict(float)
    for p in per.values():
        for k, v in p["hours_by_language"].items():
            langs[k] += v
    total["hours_by_language"] = dict(sorted(langs.items()))
    total["corpora"] = len(per)
    s["dialogues"] = total
    return s
