"""Synthesis stage 1, prepare: the text side of a dialogue (a task stage over ``synthesis.text``).

Filters what cannot be spoken, rewrites (when an LLM endpoint is configured) and writes the
spoken form of every turn. Its output is the typed ``turns`` column (``manifests.schema.TURN_TYPE``)
with the text fields filled and ``dialogue_drop_reason``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from manifests.schema import TURN_COLUMNS
from stages.base import Placement, Resources, RunContext, Section, Stage
from synthesis.dialogue import Dialogue
from synthesis.text.prepare import PreparedTurn, TextPrepParams, prepare_dialogue


class SynthTextSection(TextPrepParams, Section):
    """Text preparation of the dialogues (filters, normalisation, optional LLM rewriting)."""

    placement_fields: ClassVar[frozenset[str]] = frozenset({"batch_size", "resources"})
    batch_size: int = Field(8, ge=1, description="dialogues per task call")
    resources: Resources = Resources()


def turn_row(t: PreparedTurn) -> dict:
    """A prepared turn as a ``turns`` cell: the text fields, the rest left for the speak stage."""
    row = dict.fromkeys(TURN_COLUMNS)
    row.update(turn_index=t.index, role=t.role, text=t.text, spoken_text=t.spoken_text, language=t.language,
               drop_reason=t.drop_reason, text_reasons=list(t.reasons), kept=False, attempts=0)
    return row


def prepared_turn(row: dict) -> PreparedTurn:
    return PreparedTurn(index=row["turn_index"], role=row["role"], text=row["text"], spoken_text=row["spoken_text"],
                        language=row["language"], drop_reason=row["drop_reason"],
                        reasons=tuple(row["text_reasons"] or ()))


class SynthPrepareStage(Stage):
    name = "synth_prepare"
    sections = {"synth_text": SynthTextSection}

    def __init__(self, cfg: Any, run: RunContext) -> None:
        super().__init__(cfg, run)
        self.params: SynthTextSection = cfg.synth_text
        self.rewriter = None
        if self.params.rewrite.enabled:
            from synthesis.text.rewrite import ChatRewriter

            self.rewriter = ChatRewriter(self.params.rewrite)

    @classmethod
    def placement(cls, cfg: Any) -> Placement:
        return Placement(cfg.synth_text.resources, rows_per_call=cfg.synth_text.batch_size)

    @classmethod
    def inputs(cls) -> tuple[str, ...]:
        return ("dialogue", "dialogue_form_in", "source_id")

    @classmethod
    def outputs(cls) -> tuple[str, ...]:
        return ("status", "error", "turns", "dialogue_drop_reason", "models")

    def process_batch(self, rows: list[dict]) -> list[dict]:
        out = []
        for row in rows:
            try:
                dialogue = Dialogue.from_canonical(row["dialogue"], row.get("dialogue_form_in") or "messages",
                                                   row.get("source_id"))
                prepared = prepare_dialogue(dialogue, self.params, self.rewriter)
            except Exception as exc:  # noqa: BLE001 - a bad dialogue is a failed row, never a failed job
                out.append(dict(row, status="failed", error=f"text preparation failed: {type(exc).__name__}: {exc}",
                                turns=[], dialogue_drop_reason=None))
                continue
            models = [{"stage": "synth_rewrite", "model": self.rewriter.describe()}] if self.rewriter else []
            out.append(dict(row, status="ok", error=None, turns=[turn_row(t) for t in prepared.turns],
                            dialogue_drop_reason=prepared.drop_reason, models=models))
        return out
