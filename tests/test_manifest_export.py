"""`refinery manifest export` and `report` on a real pipeline output, read back by the real consumers."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner

from pipeline.cli import main as cli
from pipeline.config import load_config
from pipeline.run import run_pipeline
from tests.conftest import REPO, real_clip

pytestmark = pytest.mark.slow

CORPUS = "exp"
ARTIFACTS = REPO / "test-artifacts"
PLOT_IDS = ("plot-hours-by-language", "plot-hours-by-corpus", "plot-segment-lengths", "plot-speakers-per-recording",
            "plot-drop-reasons")


@pytest.fixture(scope="module")
def out(ray_session, tmp_path_factory) -> Path:
    """One run over a Chinese clip and an English two-speaker dialogue (whose short turns are dropped).

    Without enhancement (fast; and a real output with audio_enhanced null for --variant
    enhanced to refuse); `enhanced_out` adds enhanced audio to a copy.
    """
    src = tmp_path_factory.mktemp("in")
    speech, sr = sf.read(real_clip("diarization", "pyannote_sample", "sample.wav"), dtype="float32")
    sf.write(src / "dialogue.wav", speech[: 16 * sr], sr)
    # A recording without speech: done, yet it ships nothing (the report says so).
    sf.write(src / "room_tone.wav", np.random.default_rng(0).normal(0, 1e-4, 4 * sr).astype(np.float32), sr)
    inputs = [str(real_clip("asr_zh", "BAC009S0764W0121.wav")), str(src / "dialogue.wav"), str(src / "room_tone.wav")]
    out = tmp_path_factory.mktemp("out")
    summary = run_pipeline(inputs, CORPUS, out, load_config(None, ["output.max_shard_rows=3", "enhance.enabled=false"]))
    assert summary.done == 3 and summary.segments > summary.segments_kept > 0
    return out


def _segments(out: Path, columns: list[str]) -> list[dict]:
    files = sorted(str(p) for p in (out / CORPUS / "segments").glob("run=*/part-*.parquet"))
    return pads.dataset(files, format="parquet").to_table(columns=columns).to_pylist()


@pytest.fixture(scope="module")
def kept(out) -> dict[str, dict]:
    rows = _segments(out, ["segment_id", "duration", "language", "text", "speaker", "kept", "sample_rate"])
    return {r["segment_id"]: r for r in rows if r["kept"]}


def _export(out: Path, dest: Path, fmt: str, *args: str, ok: bool = True):
    result = CliRunner().invoke(cli, ["manifest", "export", str(out), "--format", fmt, "--to", str(dest), *args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _frames_match(n_samples: int, duration: float, sr: int) -> bool:
    return abs(n_samples - duration * sr) <= 1.0  # within one frame


def test_hf_export_loads_with_datasets_and_decodes(out, kept, tmp_path):
    import datasets

    dest = tmp_path / "hf"
    result = _export(out, dest, "hf", "--shard-mb", "0.1")
    hours = sum(r["duration"] for r in kept.values()) / 3600
    assert f"exported {len(kept)} segment(s), {hours:.4f} h" in result.output
    assert len(list(dest.glob("data-*-of-*.arrow"))) >= 2  # sharded by size
    ds = datasets.load_from_disk(str(dest))
    assert len(ds) == len(kept) and set(ds["segment_id"]) == set(kept)
    assert {"text", "speaker", "language", "start", "end", "duration", "words"} <= set(ds.column_names)
    row = ds[0]
    seg = kept[row["segment_id"]]
    assert (row["text"], row["language"], row["speaker"]) == (seg["text"], seg["language"], seg["speaker"])
    decoded = row["audio"].get_all_samples()
    assert decoded.sample_rate == seg["sample_rate"]
    assert _frames_match(decoded.data.shape[-1], row["duration"], decoded.sample_rate)
    manifest = json.loads((dest / "export.json").read_text())
    assert manifest["segments"] == len(kept) and manifest["format"] == "hf"


def test_lhotse_export_is_a_cutset_whose_audio_loads(out, kept, tmp_path):
    from lhotse import CutSet, RecordingSet, SupervisionSet

    dest = tmp_path / "lhotse"
    _export(out, dest, "lhotse")
    cuts = CutSet.from_file(dest / "cuts.jsonl.gz")
    assert sorted(c.id for c in cuts) == sorted(kept)
    for cut in cuts:
        seg = kept[cut.id]
        assert Path(cut.recording.sources[0].source).is_file()
        assert abs(cut.duration - seg["duration"]) <= 1 / cut.sampling_rate
        (sup,) = cut.supervisions
        assert (sup.text, sup.language, sup.speaker) == (seg["text"], seg["language"], seg["speaker"])
    cut = next(iter(cuts))
    audio = cut.load_audio()
    assert audio.shape == (1, cut.num_samples) and np.abs(audio).max() > 0
    assert _frames_match(audio.shape[1], kept[cut.id]["duration"], cut.sampling_rate)
    # the parts, for CutSet.from_manifests
    recordings = RecordingSet.from_file(dest / "recordings.jsonl.gz")
    supervisions = SupervisionSet.from_file(dest / "supervisions.jsonl.gz")
    assert len(CutSet.from_manifests(recordings=recordings, supervisions=supervisions)) == len(kept)


def test_nemo_manifest_names_existing_files_of_the_stated_duration(out, kept, tmp_path):
    dest = tmp_path / "nemo"
    _export(out, dest, "nemo")
    entries = [json.loads(line) for line in (dest / "manifest.json").read_text().splitlines()]
    assert sorted(e["segment_id"] for e in entries) == sorted(kept)
    for e in entries:
        seg = kept[e["segment_id"]]
        path = dest / e["audio_filepath"]  # relative to the manifest, as NeMo resolves it
        assert path.is_file()
        info = sf.info(path)
        assert abs(info.frames / info.samplerate - e["duration"]) < 1e-9
        assert _frames_match(info.frames, seg["duration"], info.samplerate)
        assert e["offset"] == 0 and e["text"] == seg["text"] and e["lang"] == seg["language"]
        assert e["speaker"] == seg["speaker"]
    # a second export to the same place is refused, unless it replaces the earlier export
    again = _export(out, dest, "nemo", ok=False)
    assert again.exit_code != 0 and "--overwrite" in again.output
    _export(out, dest, "nemo", "--overwrite", "--where", "language = 'zh'")
    assert all(json.loads(x)["lang"] == "zh" for x in (dest / "manifest.json").read_text().splitlines())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_webdataset_shards_iterate_with_every_key_and_decodable_flac(out, kept, tmp_path):
    import webdataset as wds

    dest = tmp_path / "wds"
    _export(out, dest, "webdataset", "--shard-mb", "0.1")
    shards = sorted(dest.glob("shard-*.tar"))
    assert len(shards) >= 2 and shards[0].name == "shard-000000.tar"
    seen = {}
    for sample in wds.WebDataset([str(s) for s in shards], shardshuffle=False):
        meta = json.loads(sample["json"])
        samples, rate = sf.read(io.BytesIO(sample["flac"]), dtype="float32")
        assert _frames_match(len(samples), meta["duration"], rate)
        seen[sample["__key__"]] = meta
    assert set(seen) == set(kept)
    assert all(seen[k]["text"] == kept[k]["text"] and seen[k]["segment_id"] == k for k in kept)


def test_where_and_all_select_rows(out, kept, tmp_path):
    english = {k for k, r in kept.items() if r["language"] == "en"}
    assert english and english != set(kept)  # the fixture holds zh too
    _export(out, tmp_path / "en", "nemo", "--where", "language = 'en'")
    got = [json.loads(x) for x in (tmp_path / "en" / "manifest.json").read_text().splitlines()]
    assert {e["segment_id"] for e in got} == english and {e["lang"] for e in got} == {"en"}

    every = _segments(out, ["segment_id", "kept", "drop_reason"])
    result = _export(out, tmp_path / "all", "webdataset", "--all")
    assert f"exported {len(every)} segment(s)" in result.output
    _export(out, tmp_path / "dropped", "nemo", "--all", "--where", "NOT kept")
    dropped = [json.loads(x) for x in (tmp_path / "dropped" / "manifest.json").read_text().splitlines()]
    assert {e["segment_id"] for e in dropped} == {r["segment_id"] for r in every if not r["kept"]}
    assert all(e["kept"] is False and e["drop_reason"] for e in dropped)

    bad = _export(out, tmp_path / "bad", "hf", "--where", "no_such_column = 1", ok=False)
    assert bad.exit_code != 0 and "no_such_column" in bad.output and not (tmp_path / "bad").exists()
    none = _export(out, tmp_path / "none", "hf", "--where", "language = 'xx'", ok=False)
    assert none.exit_code != 0 and "no segments match" in none.output


def test_a_recording_processed_again_exports_from_its_latest_run_only(out, kept, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    shards = sorted((copy / CORPUS / "segments").glob("run=*/part-*.parquet"))
    table = pads.dataset([str(p) for p in shards], format="parquet").to_table()
    zh = table.filter(pc.equal(table.column("language"), "zh"))
    (first_run,) = set(table.column("run_id").to_pylist())
    later = "29991231T000000Z-rerun1"  # a later run of the zh source, with another transcript
    zh = zh.set_column(zh.schema.get_field_index("run_id"), "run_id", pa.array([later] * zh.num_rows))
    zh = zh.set_column(zh.schema.get_field_index("text"), "text", pa.array(["重新转写。"] * zh.num_rows))
    (copy / CORPUS / "segments" / f"run={later}").mkdir()
    shard = copy / CORPUS / "segments" / f"run={later}" / "part-00000.parquet"
    pq.write_table(zh, shard)
    # The later run's ledger row names its shard (a shard no ledger row names is no data).
    from manifests.layout import CorpusLayout
    from manifests.ledger import Ledger

    layout = CorpusLayout(copy, CORPUS)
    (zh_row,) = [r for r in Ledger(layout).read().to_pylist()
                 if r["recording_id"] == zh.column("recording_id")[0].as_py()]
    Ledger(layout).commit(later, 0, [{**zh_row, "run_id": later, "staged_paths": [],
                                      "shard_paths": [layout.rel(shard)]}])

    result = _export(copy, tmp_path / "latest", "nemo")
    assert f"left out {zh.num_rows} matching segment(s)" in result.output
    lines = (tmp_path / "latest" / "manifest.json").read_text().splitlines()
    got = {json.loads(x)["segment_id"]: json.loads(x) for x in lines}
    assert set(got) == set(kept)
    assert {e["text"] for e in got.values() if e["lang"] == "zh"} == {"重新转写。"}
    _export(copy, tmp_path / "first", "nemo", "--where", f"run_id = '{first_run}'")
    got = [json.loads(x) for x in (tmp_path / "first" / "manifest.json").read_text().splitlines()]
    assert sorted(e["text"] for e in got) == sorted(r["text"] for r in kept.values())


@pytest.fixture(scope="module")
def enhanced_out(out, tmp_path_factory) -> Path:
    """A copy of the output whose shards carry enhanced audio (the raw at half gain) and DNSMOS figures."""
    from audio_io.flac import decode_flac, encode_flac

    copy = tmp_path_factory.mktemp("enhanced") / "out"
    shutil.copytree(out, copy)
    for shard in sorted((copy / CORPUS / "segments").glob("run=*/part-*.parquet")):
        table = pq.read_table(shard)
        enhanced, mos = [], []
        for cell in table.column("audio").to_pylist():
            samples, rate = decode_flac(cell["bytes"])
            enhanced.append({"bytes": encode_flac(samples * 0.5, rate), "path": cell["path"]})
            mos.append(2.0 + zlib.crc32(cell["path"].encode()) % 25 / 10)
        table = table.set_column(table.schema.get_field_index("audio_enhanced"), "audio_enhanced",
                                 pa.array(enhanced, type=table.schema.field("audio_enhanced").type))
        table = table.set_column(table.schema.get_field_index("dnsmos_ovrl"), "dnsmos_ovrl",
                                 pa.array(mos, pa.float64()))
        pq.write_table(table, shard)
    return copy


def test_enhanced_variant_exports_audio_enhanced_and_refuses_rows_without_it(out, enhanced_out, kept, tmp_path):
    import datasets

    refused = _export(out, tmp_path / "no", "hf", "--variant", "enhanced", ok=False)
    assert refused.exit_code != 0 and "no enhanced audio" in refused.output
    assert any(seg_id in refused.output for seg_id in kept)  # says which
    assert not (tmp_path / "no").exists()

    _export(enhanced_out, tmp_path / "enh", "hf", "--variant", "enhanced")
    _export(out, tmp_path / "raw", "hf")
    enh = datasets.load_from_disk(str(tmp_path / "enh"))
    raw = datasets.load_from_disk(str(tmp_path / "raw"))
    assert "audio_enhanced" not in enh.column_names and len(enh) == len(kept)
    by_id = {r["segment_id"]: i for i, r in enumerate(raw.select_columns(["segment_id"]))}
    row = enh[0]
    a = row["audio"].get_all_samples().data.numpy()
    b = raw[by_id[row["segment_id"]]]["audio"].get_all_samples().data.numpy()
    assert a.shape == b.shape
    assert np.abs(a).max() == pytest.approx(0.5 * np.abs(b).max(), abs=2e-4)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: dict[str, str] = {}
        self.external: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs[a.get("id", "")] = a.get("src", "")
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith("data:"):
                self.external.append(a[key])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _png_of(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    data = base64.b64decode(src[len(prefix):], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    return data


def test_report_is_self_contained_html_with_every_plot_and_renders(out, kept, tmp_path):
    from PIL import Image

    html_path = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["manifest", "report", str(out), "--to", str(html_path)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"{len(kept)} kept" in result.output
    page = _parse(html_path)
    for pid in PLOT_IDS:
        img = Image.open(io.BytesIO(_png_of(page.imgs[pid])))
        assert img.width >= 400 and img.height >= 200
    _png_of(page.imgs["plot-dnsmos-ovrl"])  # the quality stage filled dnsmos_ovrl
    text = html_path.read_text()
    assert "1 recording(s)" in text and "ship no kept segment: 1 no speech found" in text
    assert page.external == [] and "script" not in page.tags and "link" not in page.tags
    assert {"summary", "runs", "drop-reasons"} <= page.ids

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is needed to render the report (scripts/setup.sh installs it)"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,3000", "--hide-scrollbars", html_path.as_uri()],
                   check=True, timeout=120, capture_output=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (3000, 1200)
    assert pixels.std() > 10  # not blank
    top = pixels[:1500]  # the plots render in the upper half: many distinct grey levels there
    assert len(np.unique(top.astype(np.uint8))) > 50


def test_report_plots_dnsmos_when_the_column_has_values(enhanced_out, tmp_path):
    html_path = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["manifest", "report", str(enhanced_out), "--to", str(html_path),
                                      "--corpus", CORPUS])
    assert result.exit_code == 0, result.output
    page = _parse(html_path)
    _png_of(page.imgs["plot-dnsmos-ovrl"])
    assert set(PLOT_IDS) <= set(page.imgs) and "column dnsmos_ovrl is empty" not in html_path.read_text()

