"""User SQL stays inside the views: `refinery manifest query` and `export --where` (issue 14, item 5).

Each attempt to reach past the views (read a file, write one, ATTACH a database, install an
extension, a second statement in --where) goes through the real CLI on a small real output
(one segment corpus and one dialogue corpus, written by the shard and ledger writers) and
must end in one `Error: ...` line and a non-zero exit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_manifest_dialogues import RUN_1, _commit_run, _dialogues, _invoke, _one_line_error, _segment_corpus


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """A segment corpus `speech` (2 segments, 1 kept, en) and a dialogue corpus `sft`."""
    out = tmp_path_factory.mktemp("lockdown_out")
    _segment_corpus(out)
    _commit_run(out, RUN_1, "cfg-a", _dialogues(), {})
    return out


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """Files outside the output, which no query may read."""
    d = tmp_path_factory.mktemp("outside")
    (d / "secret.txt").write_text("secret\n")
    (d / "secret.csv").write_text("a,b\n1,2\n")
    pq.write_table(pa.table({"a": [1, 2]}), d / "secret.parquet")
    return d


def _refused_query(out: Path, sql: str, *words: str) -> None:
    _one_line_error(_invoke("query", out, sql, "--format", "csv"), *words)


def test_read_text_of_a_file_outside_the_output_is_refused(out, outside):
    _refused_query(out, f"SELECT * FROM read_text('{outside / 'secret.txt'}')", "query refused", "secret.txt")
    _refused_query(out, f"SELECT content FROM read_text('{outside / 'secret.txt'}')", "query refused")
    _refused_query(out, "SELECT * FROM read_text('/etc/passwd')", "query refused")


def test_read_csv_and_read_parquet_of_outside_files_are_refused(out, outside):
    _refused_query(out, f"SELECT * FROM read_csv('{outside / 'secret.csv'}')", "query refused", "secret.csv")
    _refused_query(out, f"SELECT * FROM read_parquet('{outside / 'secret.parquet'}')", "query refused")
    _refused_query(out, f"SELECT * FROM '{outside / 'secret.parquet'}'", "query refused")  # a path as a table
    # the output's own shards too: the views are the way in, not their files
    shard = next((out / "speech").rglob("*.parquet"))
    _refused_query(out, f"SELECT count(*) FROM read_parquet('{shard}')", "query refused")


def test_copy_to_a_file_is_refused_and_writes_nothing(out, tmp_path):
    target = tmp_path / "leak.csv"
    _refused_query(out, f"COPY (SELECT * FROM segments) TO '{target}'", "query refused")
    _refused_query(out, f"COPY segments TO '{target}' (FORMAT parquet)", "query refused")
    _refused_query(out, f"EXPORT DATABASE '{tmp_path / 'db'}'", "query refused")
    assert not target.exists() and not (tmp_path / "db").exists()


def test_attach_is_refused(out, tmp_path):
    db = tmp_path / "other.duckdb"
    _refused_query(out, f"ATTACH '{db}' AS other", "query refused")
    assert not db.exists()


def test_install_from_a_url_and_load_are_refused(out):
    _refused_query(out, "INSTALL httpfs FROM 'http://127.0.0.1:9/extensions'", "query refused")
    _refused_query(out, "LOAD httpfs", "query refused")


def test_the_lockdown_cannot_be_set_back(out, outside):
    _refused_query(out, "SET enable_external_access = true", "query failed", "locked")
    _refused_query(out, f"RESET lock_configuration; SELECT * FROM read_text('{outside / 'secret.txt'}')", "locked")


def test_where_with_two_statements_is_refused_by_both_exports(out, tmp_path):
    leak = tmp_path / "leak.csv"
    for fmt, corpus in (("nemo", "speech"), ("messages", "sft")):  # the segment export and the dialogue export
        dest = tmp_path / fmt
        two = f"1=1; COPY (SELECT 1) TO '{leak}'"
        _one_line_error(_invoke("export", out, "--format", fmt, "--corpus", corpus, "--to", dest, "--where", two), "refused --where", "';'")
        # breaking out of the parentheses the condition is spliced into
        escape = "TRUE) UNION ALL SELECT 1, 2, 3, 4 WHERE (TRUE"
        _one_line_error(_invoke("export", out, "--format", fmt, "--corpus", corpus, "--to", dest, "--where", escape),
                        "refused --where", "not one SQL condition")
        comment = "TRUE --"
        _one_line_error(_invoke("export", out, "--format", fmt, "--corpus", corpus, "--to", dest, "--where", comment),
                        "refused --where", "not one SQL condition")
        assert not dest.exists()
    assert not leak.exists()


def test_normal_queries_and_a_where_still_work(out, tmp_path):
    counted = _invoke("query", out, "SELECT count(*) AS n FROM segments", "--format", "json")
    assert counted.exit_code == 0, counted.output
    assert json.loads(counted.stdout) == [{"n": 2}]
    joined = _invoke("query", out, "SELECT count(*) AS n FROM dialogues d JOIN ledger l USING (run_id, source_uri)",
                     "--format", "json")
    assert joined.exit_code == 0 and json.loads(joined.stdout)[0]["n"] > 0, joined.output
    exported = _invoke("export", out, "--format", "nemo", "--to", tmp_path / "en", "--where", "language = 'en'")
    assert exported.exit_code == 0, exported.output
    assert "exported 1 segment(s)" in exported.output
    assert len((tmp_path / "en" / "manifest.json").read_text().splitlines()) == 1
    # a ';' inside a string literal is part of the value, not a second statement
    semicolon = _invoke("export", out, "--format", "messages", "--to", tmp_path / "msgs", "--where",
                        "language = 'en' AND text <> 'a;b'")
    assert semicolon.exit_code == 0, semicolon.output
    assert "exported 1 dialogue(s)" in semicolon.output
