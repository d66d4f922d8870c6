"""`refinery eval ...`: measure a stage against references. One command per stage family."""

from __future__ import annotations

import click


@click.group("eval")
def eval_group() -> None:
    """Evaluate stages on audio with references (RTTM, transcripts, clean/noisy pairs)."""


def _register() -> None:
    # Each family's command lives beside its code; importing them here keeps `refinery`
    # start-up light for the commands that do not need them.
    import importlib

    for module, name in (("diarization.evaluate", "diarization_cmd"), ("transcription.evaluate", "asr_cmd"),
                         ("enhancement_bsrnn.evaluate", "enhancement_cmd")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue  # that family has no evaluation yet
            raise
        eval_group.add_command(getattr(mod, name))


_register()
