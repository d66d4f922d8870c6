"""A segment as it travels between stages, before it is written: times plus what stages found.

Recording-level rows in the Ray graph carry their segments as ``segments_json`` (a JSON
list of ``PlannedSegment``), so each stage reads the list, fills in its fields and writes
it back; each model stage adds its model ids to the row's ``models_json``
(``append_models``). Any stage may drop a segment by setting ``drop_reason``; the first reason stays
(``drop``), and the row is still written with ``kept=false``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


@dataclass
class PlannedSegment:
    start: float
    end: float
    speaker: str | None = None
    drop_reason: str | None = None
    overlap_ratio: float | None = None
    language: str | None = None
    language_prob: float | None = None
    text: str | None = None
    words: list[dict] | None = None  # {token, start, end, prob}, times relative to the segment
    extra: dict = field(default_factory=dict)  # stage-specific figures (e.g. ASR log-probs)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def kept(self) -> bool:
        return self.drop_reason is None

    def drop(self, reason: str) -> None:
        if self.drop_reason is None:
            self.drop_reason = reason


_FIELDS = {f.name for f in fields(PlannedSegment)}


def dumps(segments: list[PlannedSegment]) -> str:
    return json.dumps([asdict(s) for s in segments], ensure_ascii=False)


def loads(text: str | None) -> list[PlannedSegment]:
    return [PlannedSegment(**{k: v for k, v in d.items() if k in _FIELDS}) for d in json.loads(text or "[]")]


def append_models(models_json: str | None, models: list[tuple[str, str]]) -> str:
    """A row's ``models_json`` ([stage, model id] pairs) with ``models`` added once each."""
    pairs = json.loads(models_json or "[]")
    for stage, model in models:
        if [stage, model] not in pairs:
            pairs.append([stage, model])
    return json.dumps(pairs)
