"""`refinery manifest ...`: inspect what runs wrote. Thin over inspection.stats, show, query, verify and runs."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import click

from manifests.layout import CorpusLayout, corpora
from manifests.ledger import Ledger
from manifests.schema import STATUSES
from inspection.cli_export import export_cmd, report_cmd
from inspection.dialogue_stats import all_stats
from inspection.retire import retire_cmd
from inspection.stats import source_status


@click.group()
def manifest() -> None:
    """Inspect ledgers and shards under an output directory."""


@manifest.result_callback()
def _end_after_remote_reads(*_args: object, **_kwargs: object) -> None:
    """End the `refinery` process right after a command that read an object store.

    pyarrow scans through an fsspec store (s3fs) can leave arrow IO threads that abort the
    interpreter during shutdown ("terminate called without an active exception", exit -6)
    after the command has printed its result. Only the console script does this, so a
    caller importing the commands (tests, other tools) keeps its process.
    """
    import os
    import sys

    from manifests import storage

    if storage.REMOTE_OPENED and Path(sys.argv[0]).name == "refinery":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _printable(text: str) -> str:
    """``text`` with each non-printable character (newline, tab, ESC, ...) escaped as repr does
    (``\\n``, ``\\t``, ``\\x1b``): a name can neither break a line apart nor drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _hours(h: float) -> str:
    return f"{h:.3f} h" if h < 10 else f"{h:.1f} h"


def _output(out_dir: str) -> str:
    """OUT as given: a local directory (must exist) or an object-store URI (s3://, gs://, file://)."""
    if "://" not in out_dir and not Path(out_dir).is_dir():
        raise click.BadParameter(f"{out_dir!r} is not a directory", param_hint="OUT_DIR")
    return out_dir


@manifest.command("stats")
@click.argument("out_dir", callback=lambda ctx, param, value: _output(value))
@click.option("--corpus", help="only this corpus (default: all under OUT)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object with stable keys")
def stats_cmd(out_dir: str, corpus: str | None, as_json: bool) -> None:
    """Sources by status, segments, hours by language and speakers, segment lengths.

    Dialogue corpora (`refinery synth run`): dialogues by status, form and drop reason, turns,
    kept audio by language and role, gate figures of the kept turns, voices.
    """
    from inspection.query import select_corpora

    with _clear_errors():
        select_corpora(out_dir, corpus)  # none under OUT, or not the one named: one line, exit 1
        s = all_stats(out_dir, corpus)
    if as_json:
        click.echo(json.dumps(s, indent=1, sort_keys=True))
        return
    for name, c in s["corpora"].items():
        if c.get("kind") == "dialogues":
            for line in _dialogue_stats_lines(name, c):
                click.echo(line)
            continue
        click.echo(f"corpus {name}")
        retired = f", {c['sources_retired']} retired (replaced content, hidden)" if c.get("sources_retired") else ""
        click.echo(f"  sources      {c['sources']}: {c['sources_done']} done, {c['sources_failed']} failed, {c['sources_skipped']} skipped{retired}")
        click.echo(f"  source audio {_hours(c['source_hours'])} (done sources)")
        click.echo(f"  segments     {c['segments']}: {c['segments_kept']} kept, {_hours(c['hours'])} kept")
        langs = ", ".join(f"{k} {_hours(v)}" for k, v in c["hours_by_language"].items()) or "none"
        click.echo(f"  by language  {langs}")
        spk = ", ".join(f"{k} speaker(s): {v} recording(s)" for k, v in c["recordings_by_speaker_count"].items()) or "none"
        click.echo(f"  speakers     {c['speakers']} ({spk})")
        for reason, d in c["dropped"].items():
            click.echo(f"  dropped      {d['segments']} segment(s), {_hours(d['hours'])}: {reason}")
        nk = c["recordings_without_kept"]
        if nk["recordings"]:
            why = ", ".join(f"{n} {reason}" for reason, n in nk["why"].items())
            click.echo(f"  zero kept    {nk['recordings']} recording(s), {_hours(nk['source_hours'])} of audio ({why})")
        ln = c["segment_length_s"]
        if ln["median"] is not None:
            click.echo(f"  length       min {ln['min']:.2f} s, median {ln['median']:.2f} s, max {ln['max']:.2f} s")
        width = max(c["segment_length_histogram"].values(), default=0) or 1
        for b, n in c["segment_length_histogram"].items():
            click.echo(f"    {b:>8} {n:6d} {'#' * round(30 * n / width)}")
    if sum(c.get("kind") != "dialogues" for c in s["corpora"].values()) > 1:
        click.echo(f"total: {s['sources_done']} sources done, {s['sources_failed']} failed, {s['segments']} segments, {_hours(s['hours'])} kept")
    d = s.get("dialogues")
    if d and d["corpora"] > 1:
        click.echo(f"dialogue total: {d['dialogues_done']} dialogues done, {d['dialogues_failed']} failed, "
                   f"{d['dialogues_kept']} kept, {d['turns_kept']} turns kept, {_hours(d['hours'])} kept")


def _figure(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _dialogue_stats_lines(name: str, c: dict) -> list[str]:
    """The text form of one dialogue corpus's stats (``inspection.dialogue_stats``)."""
    forms = ", ".join(f"{n} {form}" for form, n in c["dialogues_kept_by_form"].items())
    lines = [
        f"corpus {name} (dialogues)",
        f"  dialogues    {c['dialogues']}: {c['dialogues_done']} done, {c['dialogues_failed']} failed, "
        f"{c['dialogues_skipped']} skipped; {_hours(c['synthesized_hours'])} synthesized (done)",
        f"  kept         {c['dialogues_kept']} dialogue(s): {forms}",
    ]
    for reason, n in c["dialogues_dropped_by_reason"].items():
        lines.append(f"  dropped      {n} dialogue(s): {reason}")
    lines.append(f"  turns        {c['turns']}: {c['turns_spoken']} spoken, {c['turns_kept']} kept, "
                 f"{c['turns_dropped']} dropped")
    for reason, n in c["turns_dropped_by_reason"].items():
        lines.append(f"  dropped      {n} turn(s): {reason}")
    langs = ", ".join(f"{k} {_hours(v)}" for k, v in c["hours_by_language"].items()) or "none"
    roles = ", ".join(f"{k} {_hours(v)}" for k, v in c["hours_by_role"].items()) or "none"
    lines += [
        f"  kept audio   {_hours(c['hours'])} ({_hours(c['hours_in_kept_dialogues'])} in kept dialogues, as exported)",
        f"  by language  {langs}",
        f"  by role      {roles}",
    ]
    g = c["gates"]
    asr = ", ".join(f"{k} {_figure(v)}" for k, v in g["asr_error_by_language"].items()) or "-"
    lines.append(f"  gates        asr_error {asr}; speaker_similarity {_figure(g['speaker_similarity'])} "
                 f"(before vc {_figure(g['speaker_similarity_before_vc'])}); dnsmos_ovrl {_figure(g['dnsmos_ovrl'], 2)}")
    v = c["voices"]
    lines.append(f"  voices       {v['user']} user, {v['assistant']} assistant")
    return lines


@manifest.command("ls")
@click.argument("out_dir", callback=lambda ctx, param, value: _output(value))
@click.option("--corpus", help="only this corpus")
@click.option("--status", type=click.Choice(STATUSES), help="only sources with this status")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one source each")
def ls_cmd(out_dir: str, corpus: str | None, status: str | None, as_json: bool) -> None:
    """Sources with their status across runs, and the error of failed ones.

    Dialogue corpora: one line per JSONL line (FILE#L<line>) with its turn count.
    """
    found = corpora(out_dir)
    if corpus and corpus not in found:
        raise click.ClickException(f"no corpus {corpus!r} under {out_dir} (found: {', '.join(found) or 'none'})")
    for name in [corpus] if corpus else found:
        layout = CorpusLayout(out_dir, name)
        unit = "turn" if layout.kind == "dialogues" else "seg"
        with _clear_errors():
            ledger = Ledger(layout).read()
        for r in source_status(ledger):
            if status and r["status"] != status:
                continue
            if as_json:
                keep = ("source_uri", "status", "error", "sha256", "duration_s", "segments", "kept_seconds", "run_id")
                click.echo(json.dumps({"corpus": name, **{k: r[k] for k in keep}}))
            else:
                dur = f"{r['duration_s']:8.1f}s" if r["duration_s"] is not None else "        -"
                err = f"  {_printable(r['error'])}" if r["status"] != "done" and r["error"] else ""
                click.echo(f"{name}\t{r['status']:<7} {dur} {r['segments'] or 0:5d} {unit}  "
                           f"{_printable(r['source_uri'])}{err}")


# ---- show, query, verify, runs, diff (thin over inspection.show/query/verify/runs) -------------
@contextmanager
def _clear_errors():
    """Library errors about what is (not) under OUT, as one-line CLI errors."""
    from inspection.query import ManifestError
    from manifests.ledger import UnreadableLedger
    from manifests.shards import UnreadableShard

    try:
        yield
    except (ManifestError, UnreadableLedger, UnreadableShard) as exc:
        raise click.ClickException(str(exc)) from None


@manifest.command("show")
@click.argument("out_dir", metavar="OUT")
@click.argument("ident", metavar="ID")
@click.option("--corpus", help="only this corpus")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@click.option("--wav", "wav", type=click.Path(dir_okay=False, writable=True), help="write the segment's audio to this WAV")
@click.option("--enhanced", is_flag=True, help="with --wav/--play: the enhanced audio instead of the raw")
@click.option("--play", is_flag=True, help="play the segment's audio (ffplay or aplay)")
@click.option("--run", "run_id", help="with --wav/--play: the run whose copy of the segment (default: the latest)")
def show_cmd(out_dir: str, ident: str, corpus: str | None, as_json: bool, wav: str | None, enhanced: bool,
             play: bool, run_id: str | None) -> None:
    """Every field of a segment, or a source's ledger rows across runs and its segments.

    ID is a segment_id, a recording_id, a source URI/path or a sha256 prefix (>= 6 digits).
    Audio is summarised (duration, rate, bytes); --wav FILE writes it out, --play plays it.
    """
    from inspection import show

    with _clear_errors():
        if wav or play:
            flac, row = show.segment_audio(out_dir, ident, corpus, run_id, enhanced)
            which = "enhanced audio" if enhanced else "audio"
            if wav:
                info = show.write_wav(flac, wav)
                click.echo(f"wrote {wav}: {info['duration_s']:.3f} s at {info['sample_rate']} Hz "
                           f"({which} of {row['segment_id']}, run {row['run_id']})")
            if play:
                player = show.play(flac)
                click.echo(f"played {which} of {row['segment_id']} with {player}")
            return
        found = show.find(out_dir, ident, corpus)
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=1, ensure_ascii=False, default=str))
    else:
        for line in show.format_found(found):
            click.echo(line)


@manifest.command("query")
@click.argument("out_dir", metavar="OUT")
@click.argument("sql")
@click.option("--corpus", help="only this corpus in the views")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="json: one array of objects; csv: a header row; binary values as base64 in both")
@click.option("--audio", is_flag=True, help="include the audio columns (audio, audio_enhanced) in `segments`")
@click.option("--limit", type=click.IntRange(min=0), help="at most this many rows (table default: 1000)")
def query_cmd(out_dir: str, sql: str, corpus: str | None, fmt: str, audio: bool, limit: int | None) -> None:
    """SQL (DuckDB) over the views `segments`, `ledger` and `runs`.

    \b
    refinery manifest query OUT "SELECT language, sum(duration)/3600 AS h FROM segments WHERE kept GROUP BY 1"
    """
    import duckdb
    import pyarrow as pa

    from inspection import query

    table_cap = 1000 if fmt == "table" and limit is None else None
    with _clear_errors():
        con = query.open_views(out_dir, corpus, include_audio=audio)
    out = click.get_text_stream("stdout")
    try:
        columns, batches = query.result_batches(con, sql, table_cap + 1 if table_cap else limit)
        if fmt == "csv":
            query.write_csv(columns, batches, out)
        elif fmt == "json":
            query.write_json(columns, batches, out)
        else:
            rows = [r for b in batches for r in b]
            shown = rows[:table_cap] if table_cap else rows
            query.write_table(columns, [shown], out, width=shutil.get_terminal_size((160, 24)).columns)
            suffix = f"; first {table_cap} shown, use --limit or --format csv for more" if table_cap and len(rows) > table_cap else ""
            click.echo(f"{len(shown)} row(s){suffix}", err=True)
    except duckdb.PermissionException as exc:  # the lockdown of query.open_views: files, extensions
        raise click.ClickException(f"query refused: {query.one_line(str(exc))} (the query may read the views "
                                   "only: no files, COPY, ATTACH, INSTALL or LOAD)") from None
    except (duckdb.Error, pa.ArrowException) as exc:
        raise click.ClickException(f"query failed: {query.one_line(str(exc))}") from None


@manifest.command("verify")
@click.argument("out_dir", metavar="OUT")
@click.option("--corpus", help="only this corpus")
@click.option("--no-audio", is_flag=True, help="skip decoding the audio cells (structure and counts only)")
@click.option("--json", "as_json", is_flag=True, help="the report as one JSON object")
def verify_cmd(out_dir: str, corpus: str | None, no_audio: bool, as_json: bool) -> None:
    """Check shards against the ledger: readable, audio decodes, counts match, ids unique, no orphans.

    Dialogue corpora: turn counts and numbering per dialogue, kept turns' audio and gate figures.
    Exits 1 and lists the problems when there are any.
    """
    from inspection.dialogue_verify import verify_all

    with _clear_errors():
        report = verify_all(out_dir, corpus, decode_audio=not no_audio)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        for note in report.notes:
            click.echo(f"note: {note}")
        click.echo(report.describe())
    if not report.ok:
        raise SystemExit(1)


def _under_corpus_locks(work, out_dir: str, corpus: str | None, os_error_line) -> dict:
    """``work(out_dir, corpus)`` (it takes each corpus lock), a lock held by a run or a failed
    write ending as one line (``os_error_line(exc)`` says what an OSError means for ``work``)."""
    from manifests.lock import CorpusLocked

    with _clear_errors():
        try:
            return work(out_dir, corpus)
        except CorpusLocked as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(os_error_line(exc)) from None


@manifest.command("compact")
@click.argument("out_dir", metavar="OUT")
@click.option("--corpus", help="only this corpus (default: every corpus under OUT)")
def compact_cmd(out_dir: str, corpus: str | None) -> None:
    """Fold each corpus's ledger commit files into one file, atomically (a kill leaves the ledger as it was).

    Takes the corpus lock: refused while a run writes the corpus.
    """
    from inspection.compact import compact

    reports = _under_corpus_locks(compact, out_dir, corpus,
                                  lambda exc: f"compaction failed, the ledger is unchanged: {exc.strerror or exc}")
    for name, report in reports.items():
        click.echo(f"{name}: {report.describe()}")


@manifest.command("repair")
@click.argument("out_dir", metavar="OUT")
@click.option("--corpus", help="only this corpus (default: every corpus under OUT)")
def repair_cmd(out_dir: str, corpus: str | None) -> None:
    """Move unreadable ledger commit files to the corpus's quarantine/ folder, then recover.

    The shards only those commits named go to quarantine too; their sources are then not done,
    and the next `refinery run` over the same inputs processes them again (each source once).
    Takes the corpus lock: refused while a run writes the corpus.
    """
    from inspection.repair import repair
    from manifests.storage import os_error_line

    reports = _under_corpus_locks(repair, out_dir, corpus,
                                  lambda exc: os_error_line(exc, redo="run `refinery manifest repair` again"))
    for name, report in reports.items():
        for line in report.lines(CorpusLayout(out_dir, name)):
            click.echo(line)


@manifest.command("runs")
@click.argument("out_dir", metavar="OUT")
@click.option("--corpus", help="only this corpus")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one run each")
def runs_cmd(out_dir: str, corpus: str | None, as_json: bool) -> None:
    """Runs with config hash, counts, wall time and throughput (seconds of audio per second)."""
    from inspection.runs import format_runs, list_runs
    from inspection.query import plain

    with _clear_errors():
        runs = list_runs(out_dir, corpus)
    if as_json:
        for r in runs:
            click.echo(json.dumps(plain(r), default=str))
    else:
        for line in format_runs(runs):
            click.echo(line)


@manifest.command("diff")
@click.argument("out_dir", metavar="OUT")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--corpus", help="look the runs up in this corpus only")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
def diff_cmd(out_dir: str, run_a: str, run_b: str, corpus: str | None, as_json: bool) -> None:
    """What changed from RUN_A to RUN_B (ids or unique prefixes): config, sources, segments, drops, languages."""
    from inspection.runs import diff_runs, format_diff
    from inspection.query import plain

    with _clear_errors():
        d = diff_runs(out_dir, run_a, run_b, corpus)
    if as_json:
        click.echo(json.dumps(plain(d), indent=1, ensure_ascii=False, default=str))
    else:
        for line in format_diff(d):
            click.echo(line)


manifest.add_command(export_cmd)
manifest.add_command(report_cmd)
manifest.add_command(retire_cmd)
