"""Reading dialogue input: both forms, content identity, malformed lines named by file and line."""

from __future__ import annotations

import gzip
import json

import pytest

from synthesis.dialogue import Dialogue, DialogueFormatError, dialogue_id, parse_dialogue
from synthesis.gates import GateParams, TurnFigures, gate_reason, spoken_units, voiced_span
from synthesis.inputs import DialogueInputError, dialogue_files, read_dialogues

OPENAI = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there."},
                       {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]}]}
SHAREGPT = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi there."},
                              {"from": "gpt", "value": "Hello!"}]}


def test_both_forms_parse_to_the_same_dialogue_and_id():
    a, b = parse_dialogue(json.dumps(OPENAI)), parse_dialogue(json.dumps(SHAREGPT))
    assert (a.form, b.form) == ("messages", "sharegpt")
    assert a.turns == b.turns and a.content_hash() == b.content_hash()
    assert [t.role for t in a.spoken_turns] == ["user", "assistant"]
    assert Dialogue.from_canonical(a.canonical()).turns == a.turns
    assert dialogue_id(a.content_hash()).startswith("dlg-")


@pytest.mark.parametrize("line, says", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"messages": [], "conversations": []}', "exactly one of"),
    ('{"messages": []}', "non-empty list"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "role 'robot'"),
    ('{"conversations": [{"from": "alien", "value": "x"}]}', "'from' 'alien'"),
    ('{"messages": [{"role": "user", "content": 5}]}', "content must be"),
    ('{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', "not text"),
    ('{"messages": [{"role": "system", "content": "only rules"}]}', "no user or assistant"),
])
def test_malformed_dialogues_say_why(line, says):
    with pytest.raises(DialogueFormatError, match=says):
        parse_dialogue(line)


def test_read_dialogues_names_file_and_line_and_goes_on(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps(OPENAI) + "\n\n{broken\n" + json.dumps(SHAREGPT) + "\n", encoding="utf-8")
    g = tmp_path / "sub" / "e.jsonl.gz"
    g.parent.mkdir()
    with gzip.open(g, "wt", encoding="utf-8") as out:
        out.write(json.dumps({"messages": [{"role": "user", "content": "Other."}]}) + "\n")
    (tmp_path / "notes.txt").write_text("ignored")
    found = list(read_dialogues([str(tmp_path)]))
    assert [s.uri.rsplit("/", 1)[-1] for s in found] == ["d.jsonl#L1", "d.jsonl#L3", "d.jsonl#L4", "e.jsonl.gz#L1"]
    bad = found[1]
    assert bad.canonical is None and bad.error.startswith(f"{f}:3: not valid JSON")
    assert found[0].sha256 == found[2].sha256  # the same dialogue in the other form
    assert found[3].error is None and found[3].form == "messages"


def test_inputs_that_name_nothing_are_refused(tmp_path):
    with pytest.raises(DialogueInputError, match="no such file"):
        dialogue_files([str(tmp_path / "missing.jsonl")])
    with pytest.raises(DialogueInputError, match="matches no file"):
        dialogue_files([str(tmp_path / "*.jsonl")])
    with pytest.raises(DialogueInputError, match="holds no"):
        dialogue_files([str(tmp_path)])


def test_gate_reasons_name_the_gate_and_bound():
    p = GateParams()
    assert gate_reason(TurnFigures(asr_error=0.05, speaker_similarity=0.6, dnsmos_ovrl=3.0, chars_per_second=14,
                                   clipping_ratio=0.0), "en", p) is None
    assert gate_reason(TurnFigures(asr_error=0.2, asr_text="x"), "en", p).startswith("asr_error: WER 0.200 > 0.10")
    assert gate_reason(TurnFigures(asr_error=0.2), "zh", p) is None  # CER bound 0.25
    assert gate_reason(TurnFigures(speaker_similarity=0.1), "en", p).startswith("speaker_similarity: 0.100 <")
    assert gate_reason(TurnFigures(dnsmos_ovrl=1.2), "en", p).startswith("dnsmos_ovrl: 1.20 <")
    assert gate_reason(TurnFigures(chars_per_second=40.0), "en", p).startswith("chars_per_second: 40.0 >")
    assert gate_reason(TurnFigures(clipping_ratio=0.01), "en", p).startswith("clipping_ratio")
    off = GateParams(max_wer_en=None, min_speaker_similarity=None)
    assert gate_reason(TurnFigures(asr_error=0.9, speaker_similarity=-0.5), "en", off) is None


def test_speaking_rate_counts_speech_not_silence():
    import numpy as np

    rate = 16000
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * rate) / rate)
    padded = np.concatenate([np.zeros(rate), tone, np.zeros(rate // 2)]).astype(np.float32)
    assert abs(voiced_span(padded, rate) - 2.0) < 0.05
    assert spoken_units("Hello, world 42!", "en") == 12
    assert spoken_units("你好，世界。", "zh") == 4


def test_a_corpus_holds_one_kind(tmp_path):
    from manifests.layout import CorpusLayout

    CorpusLayout(tmp_path, "c", kind="segments").claim_kind()
    assert CorpusLayout(tmp_path, "c").kind == "segments"
    with pytest.raises(ValueError, match="holds segments, not dialogues"):
        CorpusLayout(tmp_path, "c", kind="dialogues").claim_kind()
    CorpusLayout(tmp_path, "d", kind="dialogues").claim_kind()
    assert CorpusLayout(tmp_path, "d").data_dir == tmp_path / "d" / "dialogues"


def test_round_trip_error_counts_number_forms_as_the_same_speech():
    from synthesis.gates import round_trip_error

    assert round_trip_error("When does it open on March 5, 2024?", "When does it open on March fifth, "
                            "twenty twenty-four?", "en") == 0.0
    assert round_trip_error("It opens at 9:30 am.", "It opens at nine thirty AM.", "en") == 0.0
    assert round_trip_error("It opens at 9:30 pm.", "It opens at nine thirty AM.", "en") >= 0.2
    assert round_trip_error("原价299元", "原价二百九十九元", "zh") == 0.0
    assert round_trip_error("原价399元", "原价二百九十九元", "zh") > 0.1
