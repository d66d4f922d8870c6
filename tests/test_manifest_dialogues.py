"""`refinery manifest stats|ls|verify|export` on a dialogue corpus (`refinery synth run` output).

The corpus is written with the real writers: turn rows through ``manifests.shards.write_shards``
(``dialogues_table``, five rows a shard, so dialogues straddle shards), committed through
``Ledger.commit`` with staged -> final shard paths as ``refinery run``'s committer assigns them.
The audio is FLAC cut from the shared real English and Chinese clips. Three dialogues:

- D1 (line 1, English, speech form): system, user, assistant, user, assistant, all kept;
- D2 (line 2, Chinese, audio_to_text): both user turns kept, both assistant turns dropped by
  their gates (their audio still in the row);
- D3 (line 3, English): a user turn dropped for its speaking rate, so the dialogue is dropped;

and a malformed line 4, a failed ledger row. Expected figures are worked out by hand from
that description, not from the rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner

from inspection.cli import manifest
from manifests.layout import CorpusLayout
from manifests.ledger import Ledger
from manifests.shards import ShardLimits, dialogues_table, segments_table, write_parquet_atomic, write_shards
from tests.conftest import real_clip

CORPUS = "sft"
RUN_1 = "20250101T000000Z-aaaa01"
RUN_2 = "20250201T000000Z-bbbb02"
JSONL = "/data/dialogues.jsonl"
EN = ("asr_en", "librispeech-1995-1837-0001.wav")
ZH = ("asr_zh", "BAC009S0764W0121.wav")


# ---- building the corpus -----------------------------------------------------------------
def _flac(clip: tuple[str, str], start_s: float, seconds: float) -> tuple[bytes, int, float]:
    """FLAC bytes of a cut of a real clip, its rate and its duration."""
    info = sf.info(real_clip(*clip))
    start, frames = int(start_s * info.samplerate), int(seconds * info.samplerate)
    samples, rate = sf.read(real_clip(*clip), start=start, frames=frames, dtype="int16")
    assert len(samples) == frames
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue(), rate, frames / rate


def _turn(index: int, role: str, lang: str, text: str, audio: tuple | None = None, voice: str | None = None,
          kept: bool = True, drop: str | None = None, asr: float | None = None, sim: float | None = None,
          before: float | None = None, mos: float | None = None) -> dict:
    row = {"turn_index": index, "role": role, "text": text, "spoken_text": text, "language": lang,
           "kept": kept, "drop_reason": drop, "text_reasons": [], "models": [{"stage": "tts", "model": "kokoro"}]}
    if audio is not None:
        data, rate, seconds = audio
        row.update(audio={"bytes": data, "path": None}, sample_rate=rate, duration=seconds, voice_id=voice,
                   tts_voice="af_heart", tts_backend="kokoro", vc_backend="seed-vc", style="neutral", seed=7 + index,
                   attempts=1, asr_text=text, asr_error=asr, speaker_similarity=sim,
                   speaker_similarity_before_vc=before, dnsmos_ovrl=mos, chars_per_second=12.0, clipping_ratio=0.0)
    return row


def _dialogue(line: int, turns: list[dict], kept: bool, form: str | None, drop: str | None = None) -> dict:
    sha = hashlib.sha256(json.dumps([[t["role"], t["text"]] for t in turns]).encode()).hexdigest()
    return {"line": line, "sha": sha, "id": "dlg-" + sha[:16], "turns": turns, "kept": kept, "form": form, "drop": drop}


def _dialogues(user_voice: str = "lib-en-01") -> list[dict]:
    d1 = _dialogue(1, [
        _turn(0, "system", "en", "You are a helpful assistant."),
        _turn(1, "user", "en", "What is the weather like?", _flac(EN, 0.0, 1.6), user_voice, asr=0.0, sim=0.70, before=0.50, mos=3.0),
        _turn(2, "assistant", "en", "It is sunny today.", _flac(EN, 1.6, 2.1), "asst-en", asr=0.1, sim=0.80, before=0.60, mos=3.2),
        _turn(3, "user", "en", "Thanks a lot.", _flac(EN, 3.7, 1.2), user_voice, asr=0.05, sim=0.60, before=0.40, mos=3.4),
        _turn(4, "assistant", "en", "You are welcome.", _flac(EN, 4.9, 1.8), "asst-en", asr=0.05, sim=0.90, before=0.70, mos=3.6),
    ], True, "speech")
    d2 = _dialogue(2, [
        _turn(0, "user", "zh", "今天天气怎么样", _flac(ZH, 0.0, 2.0), "lib-zh-07", asr=0.1, sim=0.50, before=0.30, mos=2.8),
        _turn(1, "assistant", "zh", "今天是晴天", _flac(ZH, 2.0, 1.5), "asst-zh", kept=False,
              drop="speaker_similarity: 0.210 < 0.35", asr=0.0, sim=0.21, before=0.25, mos=3.0),
        _turn(2, "user", "zh", "谢谢你", _flac(ZH, 2.6, 1.4), "lib-zh-07", asr=0.2, sim=0.60, before=0.40, mos=3.0),
        _turn(3, "assistant", "zh", "不客气", _flac(ZH, 3.0, 1.1), "asst-zh", kept=False,
              drop="asr_error: CER 0.400 > 0.25 (heard '不')", asr=0.4, sim=0.50, before=0.30, mos=3.1),
    ], True, "audio_to_text")
    d3 = _dialogue(3, [
        _turn(0, "system", "en", "Answer briefly."),
        _turn(1, "user", "en", "Hi.", _flac(EN, 6.0, 1.0), "lib-en-02", kept=False,
              drop="chars_per_second: 30.2 > 25", asr=0.0, sim=0.70, before=0.50, mos=3.0),
        _turn(2, "assistant", "en", "Hello.", _flac(EN, 7.0, 1.3), "asst-en", asr=0.0, sim=0.75, before=0.55, mos=3.3),
    ], False, None, "user_turn_dropped: turn 1 (chars_per_second)")
    return [d1, d2, d3]


def _commit_run(out: Path, run_id: str, config_hash: str, dialogues: list[dict], failed_lines: dict[int, str]) -> None:
    """Write the turn rows as staged shards and commit one ledger row per line (as `refinery synth run`)."""
    layout = CorpusLayout(out, CORPUS, kind="dialogues")
    layout.claim_kind()
    rows, owner = [], []
    for i, d in enumerate(dialogues):
        for t in d["turns"]:
            rows.append({**t, "dialogue_id": d["id"], "dialogue_kept": d["kept"], "dialogue_form": d["form"],
                         "dialogue_drop_reason": d["drop"], "source_uri": f"{JSONL}#L{d['line']}", "corpus": CORPUS,
                         "run_id": run_id, "config_hash": config_hash})
            owner.append(i)
    staged = write_shards(rows, layout, run_id, ShardLimits(max_rows=5, max_bytes=10**9), table_of=dialogues_table)
    final = {layout.rel(path): layout.rel(layout.shard_path(run_id, n)) for n, (path, _) in enumerate(staged)}
    now = datetime.now(timezone.utc)
    ledger = []
    for i, d in enumerate(dialogues):
        mine = [layout.rel(path) for path, group in staged if any(owner[j] == i for j in group)]
        spoken = [t for t in d["turns"] if t.get("audio")]
        kept = [t for t in spoken if t["kept"]]
        ledger.append({
            "source_uri": f"{JSONL}#L{d['line']}", "sha256": d["sha"], "recording_id": d["id"], "corpus": CORPUS,
            "run_id": run_id, "config_hash": config_hash, "status": "done", "error": None,
            "duration_s": sum(t["duration"] for t in spoken), "segments": len(d["turns"]),
            "segments_kept": len(kept), "kept_seconds": sum(t["duration"] for t in kept),
            "staged_paths": mine, "shard_paths": [final[s] for s in mine], "started_at": now, "finished_at": now})
    for line, error in failed_lines.items():
        ledger.append({"source_uri": f"{JSONL}#L{line}", "sha256": None, "recording_id": None, "corpus": CORPUS,
                       "run_id": run_id, "config_hash": config_hash, "status": "failed", "error": error,
                       "segments": 0, "segments_kept": 0, "kept_seconds": 0.0, "staged_paths": [],
                       "shard_paths": [], "started_at": now, "finished_at": now})
    Ledger(layout).commit(run_id, 0, ledger)


MALFORMED = "line 4: not a dialogue: Expecting value: line 1 column 1 (char 0)"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("dlg_out")
    dialogues = _dialogues()
    _commit_run(out, RUN_1, "cfg-a", dialogues, {4: MALFORMED})
    return out, dialogues


@pytest.fixture
def out(built, tmp_path) -> Path:
    """A copy of the corpus a test may change (the ledger names shards by relative path)."""
    copy = tmp_path / "out"
    shutil.copytree(built[0], copy)
    return copy


def _invoke(*args):
    return CliRunner().invoke(manifest, [str(a) for a in args])


def _shards(out: Path) -> list[Path]:
    return sorted((out / CORPUS / "dialogues").glob("run=*/part-*.parquet"))


def _one_line_error(result, *words: str) -> None:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # a message, not a traceback
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for w in words:
        assert w in lines[0], (w, lines[0])


# ---- the corpus as written ----------------------------------------------------------------
def test_the_writers_made_the_corpus_this_module_reads(built):
    out, _ = built
    layout = CorpusLayout(out, CORPUS)
    assert layout.kind == "dialogues"
    assert [p.name for p in _shards(out)] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert not any((out / CORPUS / "_staging").rglob("*.parquet"))  # the commit moved every staged shard
    rows = Ledger(layout).read().to_pylist()
    assert len(rows) == 4 and len([r for r in rows if r["status"] == "done"]) == 3


# ---- stats ---------------------------------------------------------------------------------
def _seconds(d: dict, keep) -> float:
    return sum(t["duration"] for t in d["turns"] if t.get("audio") and keep(t))


def test_stats_json_counts_dialogues_turns_hours_gates_and_voices(built):
    out, (d1, d2, d3) = built
    result = _invoke("stats", out, "--json")
    assert result.exit_code == 0, result.output
    c = json.loads(result.stdout)["corpora"][CORPUS]
    assert c["kind"] == "dialogues"
    assert (c["dialogues"], c["dialogues_done"], c["dialogues_failed"], c["dialogues_skipped"]) == (4, 3, 1, 0)
    assert c["dialogues_kept"] == 2 and c["dialogues_kept_by_form"] == {"speech": 1, "audio_to_text": 1}
    assert c["dialogues_dropped"] == 1 and c["dialogues_dropped_by_reason"] == {"user_turn_dropped": 1}
    assert (c["turns"], c["turns_spoken"], c["turns_kept"], c["turns_dropped"]) == (12, 10, 7, 3)
    assert c["turns_dropped_by_reason"] == {"asr_error": 1, "chars_per_second": 1, "speaker_similarity": 1}
    kept = lambda t: t["kept"]  # noqa: E731
    en = _seconds(d1, kept) + _seconds(d3, kept)
    zh = _seconds(d2, kept)
    assert c["hours"] == pytest.approx((en + zh) / 3600)
    assert c["hours_by_language"] == pytest.approx({"en": en / 3600, "zh": zh / 3600})
    user = _seconds(d1, lambda t: t["role"] == "user") + _seconds(d2, lambda t: t["role"] == "user")
    assistant = _seconds(d1, lambda t: t["role"] == "assistant") + _seconds(d3, lambda t: t["role"] == "assistant")
    assert c["hours_by_role"] == pytest.approx({"user": user / 3600, "assistant": assistant / 3600})
    # what `export --format messages` carries: D1 whole, D2's user turns
    assert c["hours_in_kept_dialogues"] == pytest.approx((_seconds(d1, kept) + _seconds(d2, kept)) / 3600)
    synthesized = sum(_seconds(d, lambda t: True) for d in (d1, d2, d3))
    assert c["synthesized_hours"] == pytest.approx(synthesized / 3600)
    g = c["gates"]
    assert g["asr_error_by_language"] == pytest.approx({"en": (0.0 + 0.1 + 0.05 + 0.05 + 0.0) / 5, "zh": 0.15})
    assert g["speaker_similarity"] == pytest.approx((0.7 + 0.8 + 0.6 + 0.9 + 0.5 + 0.6 + 0.75) / 7)
    assert g["speaker_similarity_before_vc"] == pytest.approx((0.5 + 0.6 + 0.4 + 0.7 + 0.3 + 0.4 + 0.55) / 7)
    assert g["dnsmos_ovrl"] == pytest.approx((3.0 + 3.2 + 3.4 + 3.6 + 2.8 + 3.0 + 3.3) / 7)
    # kept user turns: lib-en-01 (D1) and lib-zh-07 (D2), D3's lib-en-02 turn was dropped
    assert c["voices"] == {"user": 2, "assistant": 1}


def test_stats_text_names_forms_reasons_and_gates(built):
    result = _invoke("stats", built[0])
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"corpus {CORPUS} (dialogues)" in text
    assert "dialogues    4: 3 done, 1 failed, 0 skipped" in text
    assert "kept         2 dialogue(s): 1 speech, 1 audio_to_text" in text
    assert "dropped      1 dialogue(s): user_turn_dropped" in text
    assert "turns        12: 10 spoken, 7 kept, 3 dropped" in text
    for reason in ("asr_error", "chars_per_second", "speaker_similarity"):
        assert f"dropped      1 turn(s): {reason}" in text
    assert "asr_error en 0.040, zh 0.150" in text and "voices       2 user, 1 assistant" in text
    assert "segments" not in text  # no segment figures for a dialogue corpus


def _segment_corpus(out: Path, name: str = "speech") -> None:
    """A one-recording segment corpus (the segment writers) beside the dialogue corpus."""
    layout = CorpusLayout(out, name)
    data, rate, seconds = _flac(EN, 0.0, 2.0)
    rows = [{"segment_id": f"rec-{i}", "recording_id": "rec", "source_uri": "/data/rec.wav", "corpus": name,
             "run_id": RUN_1, "config_hash": "seg", "start": 2.0 * i, "end": 2.0 * i + seconds, "duration": seconds,
             "speaker": "S0", "language": "en", "text": "hello", "kept": i == 0, "drop_reason": None if i == 0 else
             "snr: 3 < 5", "audio": {"bytes": data, "path": None}, "sample_rate": rate} for i in range(2)]
    staged = write_shards(rows, layout, RUN_1, ShardLimits(max_rows=10, max_bytes=10**9), table_of=segments_table)
    rel = [layout.rel(p) for p, _ in staged]
    now = datetime.now(timezone.utc)
    Ledger(layout).commit(RUN_1, 0, [{
        "source_uri": "/data/rec.wav", "sha256": "ab" * 32, "recording_id": "rec", "corpus": name, "run_id": RUN_1,
        "config_hash": "seg", "status": "done", "duration_s": 8.0, "segments": 2, "segments_kept": 1,
        "kept_seconds": seconds, "staged_paths": rel, "shard_paths": [layout.rel(layout.shard_path(RUN_1, 0))],
        "started_at": now, "finished_at": now}])


def test_a_mixed_output_prints_both_kinds_and_keeps_the_segment_figures(out, tmp_path):
    from inspection.stats import stats

    alone = tmp_path / "alone"
    _segment_corpus(alone)
    _segment_corpus(out)
    result = _invoke("stats", out, "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["corpora"]["speech"] == stats(alone)["corpora"]["speech"]  # a segment corpus as before, no new keys
    assert s["corpora"]["speech"]["segments"] == 2 and "kind" not in s["corpora"]["speech"]
    assert s["corpora"][CORPUS]["kind"] == "dialogues" and s["corpora"][CORPUS]["turns"] == 12
    assert s["segments"] == 2 and s["sources"] == 1  # the segment totals count segment corpora only
    assert s["dialogues"]["dialogues"] == 4 and s["dialogues"]["corpora"] == 1
    alone_json = json.loads(_invoke("stats", alone, "--json").stdout)
    assert "dialogues" not in alone_json and alone_json == stats(alone)
    text = _invoke("stats", out).output
    assert "corpus speech\n  sources      1: 1 done" in text and f"corpus {CORPUS} (dialogues)" in text
    verified = _invoke("verify", out)
    assert verified.exit_code == 0, verified.output
    assert verified.output.strip() == "ok: 4 shards, 2 segments, 12 turns, 12 audio cells, 1 sources, 4 dialogue lines in 2 corpus(es)"
    # one kind per hf export; the segment formats leave the dialogue corpus out (and say so)
    _one_line_error(_invoke("export", out, "--format", "hf", "--to", tmp_path / "hf"), "--corpus", CORPUS, "speech")
    nemo = _invoke("export", out, "--format", "nemo", "--to", tmp_path / "nemo")
    assert nemo.exit_code == 0, nemo.output
    assert "exported 1 segment(s)" in nemo.output and f"left out the dialogue corpora {CORPUS}" in nemo.output
    assert len((tmp_path / "nemo" / "manifest.json").read_text().splitlines()) == 1


def test_stats_of_an_unknown_corpus_is_one_line(built):
    _one_line_error(_invoke("stats", built[0], "--corpus", "nope"), "no corpus 'nope'", CORPUS)
    _one_line_error(_invoke("ls", built[0], "--corpus", "nope"), "no corpus 'nope'")


# ---- ls ------------------------------------------------------------------------------------
def test_ls_lists_each_line_with_status_and_the_error_of_the_malformed_one(built):
    out, dialogues = built
    result = _invoke("ls", out)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 4 and all(line.startswith(f"{CORPUS}\t") for line in lines)
    assert all(line.endswith(f"{JSONL}#L{n}") for n, line in zip((1, 2, 3), lines))
    assert "done" in lines[0] and "    5 turn" in lines[0]
    assert "failed" in lines[3] and f"{JSONL}#L4  {MALFORMED}" in lines[3]
    failed = _invoke("ls", out, "--status", "failed", "--json")
    (row,) = [json.loads(line) for line in failed.stdout.splitlines()]
    assert (row["source_uri"], row["status"], row["error"], row["segments"]) == (f"{JSONL}#L4", "failed", MALFORMED, 0)
    done = [json.loads(line) for line in _invoke("ls", out, "--status", "done", "--json").stdout.splitlines()]
    assert [(r["source_uri"], r["sha256"], r["segments"]) for r in done] == \
        [(f"{JSONL}#L{d['line']}", d["sha"], len(d["turns"])) for d in dialogues]


# ---- verify ----------------------------------------------------------------------------------
def test_verify_passes_on_the_corpus_as_written(built):
    result = _invoke("verify", built[0], "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["ok"] and r["problems"] == [] and r["dialogue_corpora"] == [CORPUS]
    assert (r["shards"], r["turns"], r["dialogues"], r["audio_cells"]) == (3, 12, 4, 10)
    text = _invoke("verify", built[0], "--no-audio")
    assert text.exit_code == 0 and text.output.strip() == "ok: 3 shards, 12 turns, 0 audio cells, 4 dialogue lines in 1 corpus(es)"


def test_verify_catches_a_deleted_shard_and_an_orphan(out):
    first, gone = _shards(out)[:2]
    d2, d3 = (d["id"] for d in _dialogues()[1:])
    gone.unlink()
    result = _invoke("verify", out)
    assert result.exit_code == 1
    rel = gone.relative_to(out / CORPUS).as_posix()
    assert f"shard {rel} is missing; the ledger names it for 2 source(s)" in result.output
    # D2 lay wholly in the missing shard, D3 partly
    assert f"dialogue line {JSONL}#L2 ({d2}, run {RUN_1}): the ledger counts 4 turn(s), the shards hold 0" in result.output
    assert f"dialogue line {JSONL}#L3 ({d3}, run {RUN_1}): the ledger counts 3 turn(s), the shards hold 2" in result.output
    orphan = first.with_name("part-00099.parquet")
    shutil.copyfile(first, orphan)
    again = _invoke("verify", out)
    assert again.exit_code == 1
    assert f"orphan file {orphan.relative_to(out / CORPUS).as_posix()}: no committed ledger row names it" in again.output


def _rewrite_first_shard(out: Path, change) -> None:
    path = _shards(out)[0]
    rows = pq.read_table(path).to_pylist()
    write_parquet_atomic(dialogues_table(change(rows)), path)


def test_verify_catches_a_missing_turn_and_names_the_gap(out):
    _rewrite_first_shard(out, lambda rows: [r for r in rows if r["turn_index"] != 2])
    result = _invoke("verify", out)
    assert result.exit_code == 1
    d1 = _dialogues()[0]["id"]
    assert f"dialogue line {JSONL}#L1 ({d1}, run {RUN_1}): the ledger counts 5 turn(s), the shards hold 4" in result.output
    assert f"dialogue {d1} (run {RUN_1}): its 4 turn row(s) are numbered [0, 1, 3, 4], not 0..3" in result.output
    assert "2 problem(s)" in result.output


def test_verify_catches_bad_audio_missing_figures_and_a_foreign_config_hash(out):
    def damage(rows):
        rows[1]["duration"] += 0.2  # D1's first user turn: the audio no longer matches
        rows[2]["asr_error"] = None  # a kept assistant turn without its ASR figure
        rows[3]["audio"] = None  # a kept user turn without audio
        rows[4]["config_hash"] = "cfg-other"
        return rows

    _rewrite_first_shard(out, damage)
    result = _invoke("verify", out, "--json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    d1 = _dialogues()[0]["id"]
    shard = f"{CORPUS}: shard dialogues/run={RUN_1}/part-00000.parquet"
    expect = [
        f"{shard} row 1 ({d1} turn 1, user): audio holds 1.6000 s (25600 frames), the row's duration is 1.800 s",
        f"{shard} row 2 ({d1} turn 2, assistant): kept turn without gate figure(s) asr_error",
        f"{shard} row 3 ({d1} turn 3, user): kept turn has no audio",
        f"{CORPUS}: 1 turn row(s) of {JSONL}#L1 (run {RUN_1}) carry config_hash cfg-other, the ledger's is cfg-a",
    ]
    assert sorted(problems) == sorted(expect)
    # without decoding, the audio problems go unseen and the rest is still found
    quick = json.loads(_invoke("verify", out, "--json", "--no-audio").stdout)
    assert sorted(quick["problems"]) == sorted(expect[1:2] + expect[3:])


def test_verify_wants_dnsmos_of_every_kept_turn_once_a_run_has_it(out):
    def drop_mos(rows):
        rows[2]["dnsmos_ovrl"] = None
        return rows

    _rewrite_first_shard(out, drop_mos)
    result = _invoke("verify", out)
    assert result.exit_code == 1
    assert f"run {RUN_1}: 1 kept turn(s) lack dnsmos_ovrl, which 6 other kept turn(s) of the run have" in result.output


def test_verify_of_an_empty_directory_is_one_line(tmp_path):
    _one_line_error(_invoke("verify", tmp_path), "no corpus under")


# ---- export ----------------------------------------------------------------------------------
def _lines(dest: Path) -> dict[str, dict]:
    return {d["id"]: d for d in map(json.loads, (dest / "dialogues.jsonl").read_text().splitlines())}


def test_export_messages_writes_kept_dialogues_with_their_audio(built, tmp_path):
    out, (d1, d2, d3) = built
    dest = tmp_path / "msgs"
    result = _invoke("export", out, "--format", "messages", "--to", dest)
    assert result.exit_code == 0, result.output
    assert "exported 2 dialogue(s) (1 audio_to_text, 1 speech), 9 turn(s), 6 with audio" in result.output
    lines = _lines(dest)
    assert set(lines) == {d1["id"], d2["id"]}  # D3 was dropped
    for d in (d1, d2):
        line = lines[d["id"]]
        assert line["form"] == d["form"]
        assert [m["role"] for m in line["messages"]] == [t["role"] for t in d["turns"]]
        for m, t in zip(line["messages"], d["turns"]):
            assert m["content"][0] == {"type": "text", "text": t["text"]}
            audio = [p for p in m["content"] if p["type"] == "audio"]
            ships = t["role"] == "user" or (t["role"] == "assistant" and d["form"] == "speech")
            assert len(m["content"]) == 1 + ships and len(audio) == ships
            if ships:
                (part,) = audio
                assert part["audio_path"] == f"audio/{d['id']}/{t['turn_index']}.flac"
                path = dest / part["audio_path"]
                assert path.read_bytes() == t["audio"]["bytes"]  # written unchanged
                samples, rate = sf.read(path)
                assert rate == t["sample_rate"] and len(samples) == round(t["duration"] * rate)
                assert part["duration"] == pytest.approx(len(samples) / rate) and part["voice_id"] == t["voice_id"]
    assert sorted(p.relative_to(dest).as_posix() for p in (dest / "audio").rglob("*.flac")) == sorted(
        [f"audio/{d1['id']}/{i}.flac" for i in (1, 2, 3, 4)] + [f"audio/{d2['id']}/{i}.flac" for i in (0, 2)])
    manifest_doc = json.loads((dest / "export.json").read_text())
    assert manifest_doc["format"] == "messages" and manifest_doc["kind"] == "dialogues"
    assert (manifest_doc["dialogues"], manifest_doc["turns"], manifest_doc["audio_files"]) == (2, 9, 6)
    assert manifest_doc["dialogues_by_form"] == {"audio_to_text": 1, "speech": 1}
    assert manifest_doc["files"] == ["dialogues.jsonl"]
    assert [p.name for p in tmp_path.iterdir()] == ["msgs"]  # assembled beside, moved into place


def test_export_messages_where_selects_whole_dialogues(built, tmp_path):
    out, (d1, d2, _) = built
    dest = tmp_path / "zh"
    result = _invoke("export", out, "--format", "messages", "--to", dest, "--where", "language = 'zh' AND role = 'user'")
    assert result.exit_code == 0, result.output
    (line,) = _lines(dest).values()
    assert line["id"] == d2["id"] and len(line["messages"]) == 4  # the whole dialogue, assistant turns too
    bad = _invoke("export", out, "--format", "messages", "--to", tmp_path / "bad", "--where", "no_such_column = 1")
    _one_line_error(bad, "cannot select dialogue turns", "no_such_column")
    none = _invoke("export", out, "--format", "messages", "--to", tmp_path / "none", "--where", "language = 'fr'")
    _one_line_error(none, "no kept dialogues match")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "none").exists()


def test_export_hf_loads_with_datasets_and_its_audio_decodes(built, tmp_path):
    import datasets

    from manifests.schema import DIALOGUE_SCHEMA

    out, (d1, d2, _) = built
    dest = tmp_path / "hf"
    result = _invoke("export", out, "--format", "hf", "--to", dest, "--shard-mb", "0.05")
    assert result.exit_code == 0, result.output
    ds = datasets.load_from_disk(str(dest))
    assert len(ds) == 9 and set(ds.column_names) == set(DIALOGUE_SCHEMA.names)
    assert len(list(dest.glob("data-*-of-*.arrow"))) >= 2
    assert sorted(zip(ds["dialogue_id"], ds["turn_index"])) == sorted(
        [(d1["id"], i) for i in range(5)] + [(d2["id"], i) for i in range(4)])
    truth = {(d["id"], t["turn_index"]): t for d in (d1, d2) for t in d["turns"]}
    for row in ds:
        t = truth[(row["dialogue_id"], row["turn_index"])]
        assert (row["role"], row["text"], row["kept"]) == (t["role"], t["text"], t["kept"])
        if t.get("audio") is None:
            assert row["audio"] is None  # system turns
            continue
        decoded = row["audio"].get_all_samples()
        assert decoded.sample_rate == t["sample_rate"]
        assert decoded.data.shape[-1] == round(t["duration"] * t["sample_rate"])
        reference, _ = sf.read(io.BytesIO(t["audio"]["bytes"]), dtype="float32")
        assert np.allclose(decoded.data.numpy()[0], reference, atol=1e-4)
    users = _invoke("export", out, "--format", "hf", "--to", tmp_path / "users", "--where", "role = 'user'")
    assert users.exit_code == 0, users.output
    assert sorted(datasets.load_from_disk(str(tmp_path / "users"))["role"]) == ["user"] * 4
    everything = _invoke("export", out, "--format", "hf", "--to", tmp_path / "all", "--all")
    assert everything.exit_code == 0 and len(datasets.load_from_disk(str(tmp_path / "all"))) == 12


def test_export_refuses_segment_formats_and_options_with_one_line(built, tmp_path):
    out, _ = built
    for fmt in ("nemo", "lhotse", "webdataset"):
        _one_line_error(_invoke("export", out, "--format", fmt, "--to", tmp_path / fmt), f"--format {fmt}",
                        "hf, messages")
    _one_line_error(_invoke("export", out, "--format", "messages", "--to", tmp_path / "a", "--all"), "--format hf")
    _one_line_error(_invoke("export", out, "--format", "hf", "--to", tmp_path / "e", "--variant", "enhanced"),
                    "--variant enhanced")
    assert list(tmp_path.iterdir()) == []


def test_a_dialogue_synthesised_again_exports_from_its_latest_run(out, tmp_path):
    again = _dialogues(user_voice="lib-en-09")[:1]  # D1 once more, another user voice, a new config
    _commit_run(out, RUN_2, "cfg-b", again, {})
    verified = _invoke("verify", out)
    assert verified.exit_code == 0, verified.output
    dest = tmp_path / "msgs"
    result = _invoke("export", out, "--format", "messages", "--to", dest)
    assert result.exit_code == 0, result.output
    assert "left out 1 matching dialogue(s) of earlier runs" in result.output
    lines = _lines(dest)
    assert len(lines) == 2
    voices = {p["voice_id"] for m in lines[again[0]["id"]]["messages"] if m["role"] == "user"
              for p in m["content"] if p["type"] == "audio"}
    assert voices == {"lib-en-09"}
    stats = json.loads(_invoke("stats", out, "--json").stdout)["corpora"][CORPUS]
    assert (stats["dialogues"], stats["dialogues_done"], stats["turns"]) == (4, 3, 17)  # one line, two runs' turns
    again_dest = _invoke("export", out, "--format", "messages", "--to", dest)
    _one_line_error(again_dest, "not empty", "--overwrite")
    assert _invoke("export", out, "--format", "messages", "--to", dest, "--overwrite").exit_code == 0
