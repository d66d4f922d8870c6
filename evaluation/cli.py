"""`refinery eval ...`: measure against references. One component eval per stage family, and
`refinery eval pipeline`, which scores what `refinery run` ships end to end."""

from __future__ import annotations

import click


@click.group("eval")
def eval_group() -> None:
    """Evaluate on audio with references (RTTM, transcripts, clean/noisy pairs).

    diarization, asr and enhancement are component evals: each runs one stage family on its
    own, outside `refinery run`. pipeline runs the whole `refinery run` path and scores the
    shards it writes (what training gets).
    """


def _register() -> None:
    # One module of this package per stage family (evaluation.diarization, .transcription,
    # .enhancement), a family without one is left out; and the end-to-end eval (.pipeline_eval).
    import importlib

    for module, name in (("evaluation.diarization", "diarization_cmd"), ("evaluation.transcription", "asr_cmd"),
                         ("evaluation.enhancement", "enhancement_cmd"), ("evaluation.pipeline_eval", "pipeline_cmd")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue  # that family has no evaluation yet
            raise
        eval_group.add_command(getattr(mod, name))


_register()
