"""Stage 2, enhance: BSRNN (or DeepFilterNet3) over each recording, raw signal kept (an actor pool stage).

Each actor loads the enhancer once. Recordings of a batch are enhanced together (their
windows share forward passes). Afterwards a row carries two signals of the same rate and
length: ``samples``, which the later stages analyse (the enhanced one unless
``enhance.analyse = raw``), and ``samples_other``; ``analysed_variant`` says which is which,
so the writer can put each in its column.
"""

from __future__ import annotations

import numpy as np

from audio_io.resample import resample
from manifests import planned_segment
from pipeline.config import EnhanceConfig


class EnhanceStage:
    def __init__(self, enhance: EnhanceConfig) -> None:
        from enhancement_bsrnn.inference import load_enhancer

        self.cfg = enhance
        self.enhancer = load_enhancer(enhance.model, backend=enhance.backend, device=enhance.device,
                                      precision=enhance.precision, chunk_s=enhance.chunk_s, overlap_s=enhance.overlap_s,
                                      batch_size=enhance.batch_size)

    def __call__(self, rows: list[dict]) -> list[dict]:
        out = [dict(r, models_json=planned_segment.append_models(r.get("models_json"), [("enhance", self.enhancer.name)]),
                    samples_other=np.zeros(0, dtype=np.float32), analysed_variant="raw") for r in rows]
        todo = [i for i, r in enumerate(out) if r["status"] == "ok" and len(r["samples"])]
        by_rate: dict[int, list[int]] = {}
        for i in todo:
            by_rate.setdefault(int(out[i]["sample_rate"]), []).append(i)
        for rate, indices in by_rate.items():
            try:
                enhanced = self._enhance([out[i]["samples"] for i in indices], rate)
            except Exception as exc:  # noqa: BLE001 - a model error fails these sources, the run goes on
                for i in indices:
                    out[i].update(status="failed", error=f"enhancement failed: {type(exc).__name__}: {exc}")
                continue
            for i, signal in zip(indices, enhanced):
                raw = out[i]["samples"]
                if self.cfg.analyse == "enhanced":
                    out[i].update(samples=signal, samples_other=raw, analysed_variant="enhanced")
                else:
                    out[i].update(samples_other=signal)
        return out

    def _enhance(self, signals: list[np.ndarray], rate: int) -> list[np.ndarray]:
        work_rate = self.cfg.sample_rate or rate
        work = [resample(np.asarray(s, dtype=np.float32), rate, work_rate) for s in signals]
        if hasattr(self.enhancer, "enhance_many"):
            done = self.enhancer.enhance_many(work, work_rate)
        else:
            done = [self.enhancer.enhance(w, work_rate) for w in work]
        result = []
        for original, signal in zip(signals, done):
            back = resample(signal, work_rate, rate)[: len(original)]
            result.append(np.pad(back, (0, len(original) - len(back))).astype(np.float32))
        return result


def raw_and_enhanced(row: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """The writer's view of a row: (raw signal, enhanced signal or None)."""
    if row.get("analysed_variant") == "enhanced":
        return row["samples_other"], row["samples"]
    other = row.get("samples_other")
    return row["samples"], (other if other is not None and len(other) else None)
