"""`refinery eval pipeline`: one real run on two groups of real clips, scored by the command and
recomputed here from the run's Parquet shards and ledger with pyannote.metrics and jiwer directly;
the scoring functions on hand-made spans; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads
import pytest
from click.testing import CliRunner

from evaluation import pipeline_eval
from pipeline.cli import main as cli
from pipeline.config import load_config
from tests.conftest import REPO, real_clip

CORPUS = "eval"
REPORT_KEYS = {"config_hash", "run_id", "files", "groups", "total", "drops", "collars"}
FIGURES = ("der", "der_collar_0.25", "missed", "false_alarm", "confusion", "purity", "coverage", "kept_speech_recall")


def _link(folder: Path, *clips: Path) -> Path:
    folder.mkdir()
    for clip in clips:
        (folder / clip.name).symlink_to(clip)
    return folder


@pytest.fixture(scope="module")
def groups(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval_in")
    calls = _link(root / "calls",
                  *(real_clip("diarization", "pyannote_sample", f"sample.{e}") for e in ("wav", "rttm", "txt")))
    zh = _link(root / "zh", *(real_clip("asr_zh", f"IT0011W0001.{e}") for e in ("wav", "txt")))
    return calls, zh


class _KeptDir:
    """Stands in for TemporaryDirectory: the run's output stays, so the test can read it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        self.path.mkdir()
        return str(self.path)

    def __exit__(self, *exc) -> bool:
        return False


@pytest.fixture(scope="module")
def evaluated(ray_session, groups, tmp_path_factory):
    """The command's report (the one pipeline run of this file), its output, and the --out report of it."""
    calls, zh = groups
    out = tmp_path_factory.mktemp("eval_out") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline_eval, "TemporaryDirectory", lambda **_: _KeptDir(out))
        result = CliRunner().invoke(cli, ["eval", "pipeline", "--audio", str(calls), "--audio", str(zh), "--json"])
    assert result.exit_code == 0, result.output
    assert "base: running 2 file(s)" in result.stderr
    again = CliRunner().invoke(cli, ["eval", "pipeline", "--audio", str(calls), "--audio", str(zh), "--out", str(out),
                                     "--json"])
    assert again.exit_code == 0, again.output
    return json.loads(result.stdout), out, json.loads(again.stdout)


# ---- the independent recomputation ----------------------------------------------------------

def _table(out: Path, what: str, pattern: str):
    files = sorted(str(p) for p in (out / CORPUS / what).glob(pattern))
    assert files, f"no {pattern} under {out / CORPUS / what}"
    return pads.dataset(files, format="parquet")


def _rttm(path: Path):
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri="ref")
    for line in path.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            ann[Segment(float(f[3]), float(f[3]) + float(f[4]))] = f[7]
    return ann


def _hyp(kept: list[dict]):
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri="ref")
    for i, r in enumerate(kept):
        ann[Segment(r["start"], r["end"]), i] = r["speaker"] or "speech"
    return ann


def test_the_report_equals_a_recomputation_from_the_shards(evaluated, groups):
    import jiwer
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate
    from pyannote.metrics.segmentation import SegmentationCoverage, SegmentationPurity

    from transcription.scoring import normalize_en, normalize_zh

    report, out, _ = evaluated
    calls, zh = groups
    assert set(report) == REPORT_KEYS
    assert report["collars"] == [0.0, 0.25]
    assert set(report["files"]) == {"sample", "IT0011W0001"} and set(report["groups"]) == {"calls", "zh"}

    ledger = _table(out, "ledger", "run=*/commit-*.parquet").to_table().to_pylist()
    (run_id,) = {r["run_id"] for r in ledger}
    assert report["run_id"] == run_id and report["config_hash"] == load_config(None, []).config_hash()
    shards = _table(out, "segments", f"run={run_id}/*.parquet").to_table(
        columns=["source_uri", "start", "end", "duration", "speaker", "kept", "drop_reason", "text"]).to_pylist()

    def rows_of(audio: Path):
        (row,) = [r for r in ledger if r["source_uri"] == str(audio.resolve())]
        assert row["status"] == "done"
        segs = [s for s in shards if s["source_uri"] == str(audio.resolve())]
        segs.sort(key=lambda s: (s["start"], s["end"]))
        return row["duration_s"], segs

    # diarization of the two-speaker call: kept segments only, each its full span, UEM the whole file
    duration, segs = rows_of(calls / "sample.wav")
    kept = [s for s in segs if s["kept"]]
    got = report["files"]["sample"]
    assert got["group"] == "calls" and got["references"] == ["rttm", "txt"]
    uem = Timeline([Segment(0, duration)])
    ref, hyp = _rttm(calls / "sample.rttm"), _hyp(kept)
    want = {}
    for collar, key in ((0.0, "der"), (0.25, "der_collar_0.25")):
        metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
        detail = metric(ref, hyp, uem=uem, detailed=True)
        want[key] = detail["diarization error rate"]
        if collar == 0.0:
            want.update(missed=detail["missed detection"] / detail["total"],
                        false_alarm=detail["false alarm"] / detail["total"],
                        confusion=detail["confusion"] / detail["total"])
        assert report["total"][key] == pytest.approx(abs(metric), abs=1e-9)  # the one file with an .rttm
    want["purity"] = SegmentationPurity()(ref.crop(uem), hyp.crop(uem))
    want["coverage"] = SegmentationCoverage()(ref.crop(uem), hyp.crop(uem))
    speech = ref.get_timeline().support().crop(uem)
    want["kept_speech_recall"] = (speech.crop(hyp.get_timeline().support(), mode="intersection").support().duration()
                                  / speech.duration())
    for key in FIGURES:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
        assert report["groups"]["calls"][key] == pytest.approx(want[key], abs=1e-9), key
        assert report["total"][key] == pytest.approx(want[key], abs=1e-9), key
    assert 0 < got["der"] < 0.5 and got["kept_speech_recall"] > 0.8  # a sane run, not just a consistent one

    # transcripts: the kept segments' text in time order, WER (English) / CER (Chinese)
    en_ref = (calls / "sample.txt").read_text().strip()
    en_hyp = " ".join(s["text"] for s in kept if s["text"])
    wer = jiwer.wer(normalize_en(en_ref), normalize_en(en_hyp))
    assert got["wer"] == pytest.approx(wer) and "cer" not in got
    zh_duration, zh_segs = rows_of(zh / "IT0011W0001.wav")
    zh_got = report["files"]["IT0011W0001"]
    zh_hyp = "".join(s["text"] for s in zh_segs if s["kept"] and s["text"])
    cer = jiwer.cer(normalize_zh((zh / "IT0011W0001.txt").read_text()), normalize_zh(zh_hyp))
    assert zh_got["cer"] == pytest.approx(cer) and "der" not in zh_got and zh_got["references"] == ["txt"]
    assert report["groups"]["calls"]["wer"] == pytest.approx(wer) and report["groups"]["calls"]["cer"] is None
    assert report["groups"]["zh"]["cer"] == pytest.approx(cer) and report["groups"]["zh"]["der"] is None
    assert report["total"]["wer"] == pytest.approx(wer) and report["total"]["cer"] == pytest.approx(cer)

    # counts and drops
    for f, rows in (("sample", segs), ("IT0011W0001", zh_segs)):
        assert report["files"][f]["segments"] == len(rows)
        assert report["files"][f]["kept_segments"] == sum(r["kept"] for r in rows)
        assert report["files"][f]["kept_s"] == pytest.approx(sum(r["duration"] for r in rows if r["kept"]))
    drops: dict = {}
    for r in segs + zh_segs:
        if not r["kept"]:
            d = drops.setdefault(r["drop_reason"].split(":")[0].strip(), {"segments": 0, "seconds": 0.0})
            d["segments"] += 1
            d["seconds"] += r["duration"]
    assert report["drops"].keys() == drops.keys() and report["total"]["drops"] == report["drops"]
    for reason, d in drops.items():
        assert report["drops"][reason]["segments"] == d["segments"]
        assert report["drops"][reason]["seconds"] == pytest.approx(d["seconds"])
    assert report["total"]["segments"] == len(segs) + len(zh_segs)
    assert report["total"]["recordings_without_kept"] == [] and report["total"]["failed_sources"] == {}
    assert report["total"]["with_rttm"] == 1 and report["total"]["with_txt"] == 2 and report["total"]["done"] == 2
    assert zh_duration == report["files"]["IT0011W0001"]["duration_s"]


def test_out_scores_the_same_output_the_same(evaluated):
    report, _, from_out = evaluated
    assert from_out == report


def test_text_reports(evaluated):
    report, _, _ = evaluated
    text = pipeline_eval.report_text(report)
    assert report["run_id"] in text and "sample" in text and "zh (group)" in text
    table = pipeline_eval.compare_text([{"label": "base", "overrides": [], "report": report},
                                        {"label": "segment.min_duration_s=2", "overrides": [], "report": report}])
    header, *rows = table.splitlines()
    assert header.split()[-2:] == ["base", "segment.min_duration_s=2"]
    der = next(r for r in rows if r.startswith("der "))
    assert der.split()[1:] == [f"{report['total']['der']:.3f}"] * 2


# ---- the scoring functions on hand-made spans (no Ray, no run) ------------------------------

def _ann(*turns):
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri="f")
    for start, end, who in turns:
        ann[Segment(start, end)] = who
    return ann


def _seg(start, end, speaker="r/S00", kept=True, drop_reason=None, text=None):
    return {"start": start, "end": end, "duration": end - start, "speaker": speaker, "kept": kept,
            "drop_reason": drop_reason, "text": text}


def test_a_bridged_gap_is_false_alarm_and_a_dropped_segment_is_missed():
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref = _ann((0, 2, "A"), (3, 5, "A"), (7, 9, "B"))  # 6 s of speech
    segments = [_seg(0, 5, text="hello there"),  # the merger bridged A's 1 s pause
                _seg(7, 9, "r/S01", kept=False, drop_reason="chars_per_s: 9.1 > 8 (text_filter.max_chars_per_s)")]
    f = pipeline_eval.score_file(segments, 12.0, ref, "Hello there, bye.")
    assert f["false_alarm"] == pytest.approx(1 / 6) and f["missed"] == pytest.approx(2 / 6) and f["confusion"] == 0
    assert f["der"] == pytest.approx(0.5) and f["der_collar_0.25"] < f["der"]
    assert f["kept_speech_recall"] == pytest.approx(4 / 6)
    assert f["drops"] == {"chars_per_s": {"segments": 1, "seconds": 2.0}}
    assert (f["segments"], f["kept_segments"], f["kept_s"]) == (2, 1, 5.0)
    assert f["wer"] == pytest.approx(1 / 3)  # "bye" was in the dropped segment

    # keeping the dropped segment: no miss, full recall; totals accumulate like pyannote.metrics
    g = pipeline_eval.score_file([_seg(0, 5), _seg(7, 9, "r/S01")], 12.0, ref)
    assert g["missed"] == 0 and g["kept_speech_recall"] == 1.0
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    for segs in (segments, [_seg(0, 5), _seg(7, 9, "r/S01")]):
        metric(ref, pipeline_eval.kept_annotation(segs, uri="f"), uem=Timeline([Segment(0, 12)]))
    t = pipeline_eval.totals({"a": {**f, "status": "done", "references": ["rttm", "txt"]},
                              "b": {**g, "status": "done", "references": ["rttm"]},
                              "c": {"status": "failed", "error": "decode: no audio stream", "references": []}})
    assert t["der"] == pytest.approx(abs(metric)) and t["kept_speech_recall"] == pytest.approx(10 / 12)
    assert t["wer"] == pytest.approx(1 / 3) and t["cer"] is None
    assert t["failed_sources"] == {"c": "decode: no audio stream"} and (t["done"], t["failed"]) == (2, 1)
    assert t["drops"] == {"chars_per_s": {"segments": 1, "seconds": 2.0}} and t["without_reference"] == 1


def test_text_is_joined_in_time_order_and_nothing_kept_scores_as_all_missed():
    segments = [_seg(3, 5, text="world"), _seg(0, 2, text="Hello,"), _seg(6, 7, kept=False, text="again")]
    assert pipeline_eval.transcript_score(segments, "hello world").errors == 0
    zh = [_seg(0, 1, text="换一首"), _seg(1, 2, text="歌。")]
    assert pipeline_eval.transcript_score(zh, "换一首歌").rate == 0
    none_kept = [_seg(0, 2, kept=False, drop_reason="segment_length: shorter than 1.0 s (segment.min_duration_s)")]
    f = pipeline_eval.score_file(none_kept, 4.0, _ann((0, 2, "A")), "hi")
    assert f["der"] == 1.0 and f["missed"] == 1.0 and f["kept_speech_recall"] == 0.0 and f["wer"] == 1.0
    assert f["purity"] is None and f["coverage"] is None  # pyannote would say 1.0 for an empty hypothesis
    t = pipeline_eval.totals({"x": {**f, "status": "done", "references": ["rttm", "txt"]}})
    assert t["recordings_without_kept"] == ["x"]
    assert t["drops"] == {"segment_length": {"segments": 1, "seconds": 2.0}}


def test_scoring_imports_no_ray():
    code = ("import sys; from evaluation import pipeline_eval as p; from pyannote.core import Annotation, Segment; "
            "a = Annotation(uri='f'); a[Segment(0, 1)] = 'A'; "
            "p.score_file([{'start': 0, 'end': 1, 'speaker': None, 'kept': True, 'text': 'a'}], 2.0, a, 'a'); "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


# ---- the command's errors and its --compare wiring (no run) ---------------------------------

@pytest.mark.parametrize("args, message", [
    (["--compare", "no_such_section.x=1"], "--compare 'no_such_section.x=1': unknown config key 'no_such_section'"),
    (["--compare", "enhance.enabled"], "is not of the form key=value"),
    (["--compare", 'a="b'], "--compare 'a=\"b'"),
    (["--set", "segment.min_duration_s=fast"], "segment.min_duration_s"),
    (["--compare", "segment.min_duration_s=2", "--out", "somewhere"], "cannot be combined with --compare"),
])
def test_bad_arguments_give_a_one_line_error(groups, args, message):
    result = CliRunner().invoke(cli, ["eval", "pipeline", "--audio", str(groups[0]), *args])
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output, result.output
    assert result.output.startswith("Error: ") and message in result.output, result.output


def test_missing_or_empty_folders_are_one_line_errors(tmp_path, groups):
    for audio, message in ((tmp_path / "nope", "no such directory"), (tmp_path, "no media files")):
        result = CliRunner().invoke(cli, ["eval", "pipeline", "--audio", str(audio)])
        assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1, result.output
        assert message in result.output


def test_compare_runs_each_variant_on_the_same_inputs(groups, monkeypatch):
    seen = []

    def fake(files, cfg, corpus, label):
        seen.append((label, [f.key for f in files], cfg.segment.min_duration_s))
        return {"run_id": label, "config_hash": cfg.config_hash()}

    monkeypatch.setattr(pipeline_eval, "run_and_score", fake)
    result = CliRunner().invoke(cli, ["eval", "pipeline", "--audio", str(groups[0]), "--audio", str(groups[1]),
                                      "--set", "segment.min_duration_s=1.5", "--compare", "segment.min_duration_s=2",
                                      "--json"])
    assert result.exit_code == 0, result.output
    variants = json.loads(result.stdout)["variants"]
    assert [(v["label"], v["overrides"]) for v in variants] == [("base", []), ("segment.min_duration_s=2",
                                                                               ["segment.min_duration_s=2"])]
    assert seen == [("variant 1/2: base", ["sample", "IT0011W0001"], 1.5),
                    ("variant 2/2: segment.min_duration_s=2", ["sample", "IT0011W0001"], 2.0)]
    assert "variant 2/2: segment.min_duration_s=2: running 2 file(s)" in result.stderr
