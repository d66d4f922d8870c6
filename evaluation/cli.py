"""`refinery eval ...`: measure a stage against references. One command per stage family."""

from __future__ import annotations

import click


@click.group("eval")
def eval_group() -> None:
    """Evaluate stages on audio with references (RTTM, transcripts, clean/noisy pairs)."""


def _register() -> None:
    # One module of this package per stage family (evaluation.diarization, .transcription,
    # .enhancement); a family without one is left out.
    import importlib

    for module, name in (("evaluation.diarization", "diarization_cmd"), ("evaluation.transcription", "asr_cmd"),
                         ("evaluation.enhancement", "enhancement_cmd")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue  # that family has no evaluation yet
            raise
        eval_group.add_command(getattr(mod, name))


_register()
