"""`refinery synth ...`: spoken SFT dialogues from text dialogues, and the voice library they use."""

from __future__ import annotations

from pathlib import Path

import click

from manifests.lock import CorpusLocked
from manifests.storage import os_error_line
from pipeline.config import ConfigError, SynthConfig, load_config


@click.group("synth")
def synth_group() -> None:
    """Synthesise spoken dialogues (TTS, voice conversion, round-trip gates) into dialogue shards."""


@synth_group.command("run")
@click.argument("dialogues", nargs=-1, required=True)
@click.option("--corpus", required=True, help="dialogue corpus name; shards go to OUT/<corpus>/dialogues/")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="output directory")
@click.option("--voices", type=click.Path(exists=True), help="voice library (refinery synth voices build) for user turns")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config file")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key (repeatable)")
@click.option("--address", help="attach to a running Ray cluster (e.g. auto or HOST:PORT)")
@click.option("--retry-failed", is_flag=True, help="process dialogues that failed in earlier runs again")
@click.option("-v", "--verbose", is_flag=True)
def synth_run(dialogues, corpus, out_dir, voices, config_path, overrides, address, retry_failed, verbose) -> None:
    """Speak DIALOGUES (JSONL files, folders or globs; OpenAI messages or ShareGPT, one per line)."""
    from pipeline.progress import setup_logging
    from synthesis.inputs import DialogueInputError

    setup_logging(verbose)
    try:
        cfg = load_config(config_path, overrides, model=SynthConfig)
        if voices:
            cfg.synth_speak.voices = str(Path(voices).resolve())
        if address:
            cfg.ray.address = address
        from pipeline.synth_run import run_synthesis

        summary = run_synthesis(list(dialogues), corpus, out_dir, cfg, retry_failed=retry_failed)
    except (ConfigError, DialogueInputError, CorpusLocked, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a full disk, a read-only output, in the driver or a writer
        raise click.ClickException(os_error_line(exc)) from None
    if summary.recovery != "nothing to recover":
        click.echo(f"recovery: {summary.recovery}", err=True)
    for uri, why in summary.failures[:20]:
        click.echo(f"failed: {why}" if why.startswith(uri.split("#")[0]) else f"failed: {uri}: {why}", err=True)
    if len(summary.failures) > 20:
        click.echo(f"... and {len(summary.failures) - 20} more failures (refinery manifest ls {out_dir} --status failed)",
                   err=True)
    click.echo(summary.describe())


@synth_group.group("voices")
def voices_group() -> None:
    """The voice library: prompt speech of real speakers from our own segment shards."""


@voices_group.command("build")
@click.argument("out_dir", metavar="OUT")
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False), help="folder of the voice library")
@click.option("--corpus", "corpora", multiple=True, help="only these segment corpora (default: all under OUT)")
@click.option("--add", "add_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="also add reference recordings: *.wav with same-stem .txt transcripts (repeatable)")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config file")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key, e.g. voices.max_per_speaker=3")
def voices_build(out_dir, to_dir, corpora, add_dirs, config_path, overrides) -> None:
    """Pick voice prompts (kept, single-speaker, 3-10 s, transcribed) from the segment shards under OUT."""
    from diarization.embedding import load_embedder
    from synthesis.voices.library import add_reference_voices, build_voice_library, write_voice_library

    try:
        cfg = load_config(config_path, overrides, model=SynthConfig)
        embedder = load_embedder(cfg.gates.embedder)
        table = build_voice_library(out_dir, list(corpora) or None, cfg.voices, embedder)
        for folder in add_dirs:
            table = add_reference_voices(table, Path(folder), embedder)
        if table.num_rows == 0:
            raise click.ClickException(f"no segment under {out_dir} qualifies as a voice prompt (kept, overlap "
                                       f"<= {cfg.voices.max_overlap_ratio}, {cfg.voices.min_duration_s:g}-"
                                       f"{cfg.voices.max_duration_s:g} s, transcribed) and nothing was added")
        write_voice_library(table, Path(to_dir))
    except (ConfigError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    langs: dict[str, int] = {}
    for lang in table.column("language").to_pylist():
        langs[lang] = langs.get(lang, 0) + 1
    speakers = len(set(table.column("speaker").to_pylist()))
    click.echo(f"voice library {to_dir}: {table.num_rows} voice(s) from {speakers} speaker(s) ("
               + ", ".join(f"{k} {v}" for k, v in sorted(langs.items())) + ")")
