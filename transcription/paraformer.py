"""Chinese transcription with FunASR Paraformer-zh (SeACo-Paraformer), character timestamps.

``ParaformerTranscriber(model)`` loads through ``funasr.AutoModel``:

- a local model directory (config.yaml, model.pt, tokens.json, am.mvn): loaded offline;
  a path that does not exist fails at once with a clear message (funasr would try the
  hub for ~22 s and then report a misleading "not registered" error);
- a hub id, e.g. ``paraformer-zh`` (ModelScope:
  iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch): funasr
  downloads it into its cache on first use. Unreachable offline.

Always with ``disable_update=True`` (otherwise funasr asks PyPI for a newer version, with
no timeout) and an explicit ``ncpu`` (otherwise it sets torch to 4 threads).

``transcribe(audios)`` returns one ``AsrResult`` per 16 kHz segment: the tokens the model
emitted (characters; Latin words as one token) with their [start, end] in seconds and no
punctuation. Punctuation is added afterwards by the gap rule (``transcription.punctuation``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from transcription.result import AsrResult

SAMPLE_RATE = 16000
LOCAL_MODEL_FILES = ("config.yaml", "model.pt")


def is_local_path(model: str) -> bool:
    """A local directory, as opposed to a hub id ("paraformer-zh", "namespace/name")."""
    return Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") > 1


def check_local_model_dir(path: Path) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"Paraformer model directory not found: {path}")
    missing = [name for name in LOCAL_MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"Paraformer model directory {path} lacks {', '.join(missing)}")


class ParaformerTranscriber:
    def __init__(self, model: str, device: str = "cpu", cpu_threads: int = 0, batch_size: int = 1,
                 hub: str = "ms") -> None:
        """Runs in float32: funasr's SeacoParaformer.inference does not cast its input for fp16."""
        self.model_name = model
        path = Path(model).expanduser()
        if is_local_path(model):
            check_local_model_dir(path)
            source = str(path.resolve())
        else:
            source = model  # hub id: funasr resolves and downloads it
        threads = cpu_threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or (os.cpu_count() or 1)
        self.batch_size = batch_size
        from funasr import AutoModel

        root = logging.getLogger()
        level, handlers = root.level, list(root.handlers)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # funasr prints its version on every load
                self.model = AutoModel(model=source, hub=hub, disable_update=True, device=device, ncpu=threads,
                                       disable_pbar=True, disable_log=True, log_level="WARNING")
        except Exception as exc:  # noqa: BLE001 - funasr's errors for a missing hub model mislead
            if source is model:
                raise RuntimeError(f"could not load Paraformer model {model!r} from hub {hub!r} ({type(exc).__name__}: "
                                   f"{exc}); without network access, set transcribe.paraformer_model to a local model "
                                   f"directory or use transcribe.zh_backend=whisper") from exc
            raise
        finally:  # AutoModel calls logging.basicConfig: leave the process's logging as it was
            for handler in root.handlers[:]:
                if handler not in handlers:
                    root.removeHandler(handler)
            root.setLevel(level)

    def transcribe(self, audios: list[np.ndarray]) -> list[AsrResult]:
        out: list[AsrResult] = []
        for start in range(0, len(audios), self.batch_size):
            batch = [np.ascontiguousarray(a, dtype=np.float32) for a in audios[start : start + self.batch_size]]
            keys = [f"seg{start + i}" for i in range(len(batch))]
            results = self.model.generate(input=batch, key=keys, batch_size=len(batch))
            if len(results) != len(batch):  # funasr returns [] for a batch without any token
                results = [self._one(a, k) for a, k in zip(batch, keys)]
            out.extend(_to_result(r) for r in results)
        return out

    def _one(self, audio: np.ndarray, key: str) -> dict:
        res = self.model.generate(input=[audio], key=[key], batch_size=1)
        return res[0] if res else {"key": key, "text": "", "timestamp": []}


def _to_result(res: dict[str, Any]) -> AsrResult:
    """funasr's {"text": "字 字 word", "timestamp": [[ms, ms], ...]} as tokens with times in seconds."""
    text = (res.get("text") or "").strip()
    stamps = res.get("timestamp") or []
    tokens = text.split()
    if len(tokens) != len(stamps):
        compact = [c for c in text if not c.isspace()]
        if len(compact) == len(stamps):
            tokens = compact
    words = []
    if len(tokens) == len(stamps):
        for tok, (a, b) in zip(tokens, stamps):
            words.append({"token": tok, "start": round(a / 1000.0, 3), "end": round(b / 1000.0, 3), "prob": None})
    note = None
    if tokens and not words:
        note = f"timestamp mismatch: {len(tokens)} tokens, {len(stamps)} timestamps"
    return AsrResult(text=text, words=words, note=note)
