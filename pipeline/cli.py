"""The `refinery` command line. Commands stay thin: they parse, call the library, print."""

from __future__ import annotations

import logging
import sys

import click

from enhancement_bsrnn.cli import enhance_group
from evaluation.cli import eval_group
from inspection.cli import manifest
from manifests.layout import check_corpus_name
from manifests.lock import CorpusLocked
from manifests.storage import os_error_line
from pipeline.config import ConfigError, load_config
from pipeline.progress import setup_logging as _setup_logging
from pipeline.synth_cli import synth_group
from sources.discovery import InputError

log = logging.getLogger("refinery")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """audio-refinery: raw audio in, training-ready speech segments out."""


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--corpus", required=True, help="corpus name; outputs go to OUT/<corpus>/")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="output directory")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config file")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key (repeatable)")
@click.option("--address", help="attach to a running Ray cluster (e.g. auto or HOST:PORT)")
@click.option("--retry-failed", is_flag=True, help="process sources that failed in earlier runs again")
@click.option("-v", "--verbose", is_flag=True)
def run(inputs, corpus, out_dir, config_path, overrides, address, retry_failed, verbose) -> None:
    """Run the pipeline on INPUTS: files, directories, globs or @list.txt files."""
    _setup_logging(verbose)
    try:
        cfg = load_config(config_path, overrides)
        if address:
            cfg.ray.address = address
        from pipeline.run import run_pipeline

        summary = run_pipeline(list(inputs), corpus, out_dir, cfg, retry_failed=retry_failed)
    except (ConfigError, InputError, CorpusLocked, ValueError) as exc:  # an unreadable ledger commit too
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # a full disk, a read-only output, in the driver or a writer
        log.debug("run stopped", exc_info=True)
        raise click.ClickException(os_error_line(exc)) from None
    if summary.recovery != "nothing to recover":
        click.echo(f"recovery: {summary.recovery}", err=True)
    for uri, why in summary.failures[:20]:
        click.echo(f"failed: {uri}: {why}", err=True)
    if len(summary.failures) > 20:
        click.echo(f"... and {len(summary.failures) - 20} more failures (refinery manifest ls {out_dir} --status failed)", err=True)
    click.echo(summary.describe())


@main.command()
@click.argument("urls", nargs=-1, required=True)
@click.option("--corpus", required=True, help="corpus name; media go to OUT/<corpus>/media/")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="output directory")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config file")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key, e.g. fetch.max_duration_s=3600")
@click.option("-v", "--verbose", is_flag=True)
def fetch(urls, corpus, out_dir, config_path, overrides, verbose) -> None:
    """Download URLS (videos, playlists, channels, podcast feeds, or @urls.txt files) with yt-dlp.

    Best audio only, each item once (download archive), into OUT/<corpus>/media/, ready for
    `refinery run OUT/<corpus>/media`. Exit status 1 when some item failed.
    """
    _setup_logging(verbose)
    from sources.fetch import FetchInputError, fetch as fetch_urls

    try:
        check_corpus_name(corpus)  # before anything is made under OUT
        cfg = load_config(config_path, overrides)
        report = fetch_urls(list(urls), corpus, out_dir, cfg.fetch, say=lambda line: click.echo(line, err=True))
    except FetchInputError as exc:
        raise click.UsageError(str(exc)) from None
    except (ConfigError, CorpusLocked, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(os_error_line(exc)) from None
    for r in report.failures:
        item = f" [{r.item}]" if r.item and r.item != r.url else ""
        click.echo(f"failed: {r.url}{item}: {r.reason}", err=True)
    click.echo(report.describe())
    if not report.ok:
        sys.exit(1)


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
def config_show(config_path, overrides) -> None:
    """Print the resolved config as YAML, with its hash."""
    try:
        cfg = load_config(config_path, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"# config_hash: {cfg.config_hash()}")
    click.echo(cfg.to_yaml(), nl=False)


main.add_command(manifest)
main.add_command(eval_group)
main.add_command(enhance_group)
main.add_command(synth_group)

if __name__ == "__main__":
    main()
