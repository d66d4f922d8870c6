"""Quality figures of a segment's raw audio: an SNR estimate and DNSMOS P.835 (SIG, BAK, OVRL).

Both figures are computed on the raw signal (never the enhanced one: they describe what
was recorded, and a filter on them keeps what was clean to begin with), at 16 kHz
(``quality_signal``: librosa's default resampler, soxr_hq, as the official
``dnsmos_local.py`` loads its input).

**DNSMOS P.835** (Reddy et al., ICASSP 2022): ``DnsmosP835`` holds the ONNX session of
``sig_bak_ovr.onnx`` (the copy that ships inside the speechmos wheel; the same bytes lie in
``../shared/data/real/dnsmos/DNSMOS``), loaded once per instance (once per actor). It
follows speechmos 0.0.1.1's ``DNSMOS.__call__`` step for step, so the figures equal
``speechmos.dnsmos.run(x, sr=16000)`` on the same samples (a test checks it):

- input must be in [-1, 1] (speechmos refuses anything else);
- a clip shorter than the 9.01 s window is *tiled* (appended to itself until it is at
  least 9.01 s: a 3.5 s segment becomes 14 s, 5 windows), not padded;
- windows of 9.01 s every 1 s; each window's raw SIG/BAK/OVRL go through the published
  polynomial fits, and the clip's figures are the window means.

speechmos also runs the P.808 model on a log-mel of every window, which this class does
not: it is not one of the figures, and it costs a fifth of the time. speechmos keeps
its sessions in a module global (built on the first call, not per call), with
onnxruntime's default thread pool (one thread per core) and memory arena; here the
session has ``num_threads`` intra-op threads and no arena (the actor's heap goes back
after each batch).

Cost (2 CPU cores shared with other jobs, one onnxruntime thread): 0.30 s per 9.01 s
window on a quiet core, 0.44 s under load. The 30 s two-speaker call (pyannote's
sample.wav) as one clip: 22 windows, 2.8-3.4 s, RTF 0.09-0.11 (speechmos' own ``run``, with
P.808 and two threads: 2.8 s, after a first call of 4.1 s that builds its sessions). Per
segment the cost is set by the window count, not the length: ``int(floor(L) - 9.01) + 1``
windows, L the tiled length in seconds, so 1-9 windows for a segment under 9.01 s (1.03 s
-> 16.5 s tiled, 7 windows; 4.6 s -> 9.2 s, 1 window) and 18 for a 27 s one. The call's 7
kept segments (24.0 s of speech) take 44 windows: 12.9 s in the pipeline's quality stage,
RTF 0.43 of the recording, almost as much as all other stages together (14.0 s; the run's
wall time goes from 26.6 s to 43.3 s). ``dnsmos_hop_s=9.01`` takes 7 windows (2.7 s) but is no longer the
official figure: OVRL moves by up to 0.38 on those segments (most on the shortest).

**SNR estimate** (``snr_from_frames``), in dB, deterministic: the 16 kHz signal is cut
into non-overlapping 20 ms frames, and each frame's power is its variance (DC removed).

- noise power ``N``: the ``snr_noise_percentile`` (10th) percentile of the frame powers
  over the segment widened by ``snr_context_s`` (5 s) of the recording on each side, so
  the pauses around a segment count even when the segment itself is all speech; frames
  of digital silence (below -100 dBFS) are left out, so zero padding is not the floor;
- speech frames: the segment's frames more than 3 dB above ``N``; their mean power is
  speech plus noise, so ``S = mean - N``;
- ``SNR = 10 log10(S / N)``, clipped to [0, 60] dB (``SNR_RANGE_DB``): 0 when no frame
  rises 3 dB above the floor, 60 when the floor is digital silence.

Limits: it assumes noise that is stationary over the context and quieter than speech
(babble, music and noise bursts count as speech and raise the figure); the low
percentile of a noise-only stretch sits slightly below its mean power (about 0.5 dB for
white noise, more for fluctuating noise), so the figure errs high; a segment with no
pause within its context (continuous speech or music) finds its floor in quiet speech
and errs low; reverberation is not noise to it. It ranks segments of one recording well
and segments of different recordings roughly; it is no substitute for a reference-based
SNR. Its cost is negligible (19 ms for the call's 7 segments, resampling included).

**Noise floor** (``noise_floor_dbfs``): that same floor ``N`` in dBFS (-100 for a floor of
digital silence). It catches bytes that are not PCM read as PCM (a mu-law, A-law or
compressed stream behind a PCM WAV header): they decode to full-scale noise, every 20 ms
frame near -5 dBFS (uniform samples: -4.8 dBFS), with no pause and no dynamics, on which
Whisper still writes fluent, often repeated sentences. A recording of speech always has
quieter frames between syllables and words, so a floor above ``max_noise_floor_dbfs``
(-12 dBFS) drops the segment, on by default. Measured per segment: mu-law bytes of 13 of the
shared real clips read as 8- or 16-bit PCM, -6.1 to -6.7 dBFS; the real clips themselves
(clean, noisy down to 0 dB SNR, meetings, telephone, a broadcast over music), -19.0 dBFS at
the loudest (that broadcast; all others below -27). The SNR estimate and DNSMOS do not
separate the two (the broadcast: SNR 1.5 dB, OVRL 1.1; garbage: SNR 0 dB, OVRL 1.4 and 1.7),
nor does Whisper's confidence (avg log-prob -0.5 to -0.99 on garbage, as on meeting speech).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from pydantic import Field, model_validator

from manifests.params import Params
from manifests.planned_segment import PlannedSegment

log = logging.getLogger(__name__)

QUALITY_RATE = 16000  # DNSMOS P.835 takes 16 kHz
DNSMOS_WINDOW_S = 9.01  # speechmos / dnsmos_local.py INPUT_LENGTH
SNR_FRAME_S = 0.02
SNR_RANGE_DB = (0.0, 60.0)
SILENT_POWER = 1e-10  # -100 dBFS: below it a frame is digital silence (PCM_16 quantisation noise: -101 dBFS)
SPEECH_ABOVE_FLOOR = 2.0  # a speech frame has more than twice (3 dB over) the noise power
FIGURES = ("snr_db", "noise_floor_dbfs", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak")

# Polynomial fits of speechmos' DNSMOS.get_polyfit_val (non-personalised), raw model output -> MOS.
_POLY_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
_POLY_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
_POLY_OVR = np.poly1d([-0.06766283, 1.11546468, 0.04602535])


class QualityParams(Params):
    """Quality figures of the kept segments, on the raw audio, and thresholds on them.

    Emilia-Pipe (He et al. 2024) keeps segments with DNSMOS P.835 OVRL >= 3.0; set
    ``min_dnsmos_ovrl: 3.0`` for the same rule (off by default, as is ``min_snr_db``). A
    segment below a threshold is dropped (kept=false) with ``quality: <figure> < <threshold>
    (quality.<key>)``. ``max_noise_floor_dbfs`` is on by default: it drops only full-scale
    noise, which no speech recording is (module docstring).
    """

    snr: bool = Field(True, description="compute snr_db")
    dnsmos: bool = Field(True, description="compute dnsmos_ovrl, dnsmos_sig, dnsmos_bak (DNSMOS P.835)")
    dnsmos_hop_s: float = Field(1.0, gt=0, description="hop between DNSMOS' 9.01 s windows; 1.0 is the official "
                                "recipe (speechmos), larger is cheaper")
    snr_context_s: float = Field(5.0, ge=0, description="recording context on each side of a segment where the "
                                 "SNR estimate looks for its noise floor")
    snr_noise_percentile: float = Field(10.0, gt=0, lt=50, description="percentile of 20 ms frame powers taken "
                                        "as the noise power")
    min_dnsmos_ovrl: float | None = Field(None, ge=1, le=5, description="drop kept segments with a lower DNSMOS "
                                          "OVRL (Emilia-Pipe: 3.0); None: no threshold")
    min_snr_db: float | None = Field(None, description="drop kept segments with a lower SNR estimate; None: no "
                                     "threshold")
    # On by default: bytes read as PCM (mu-law behind a PCM header, say) measure -6 dBFS, real speech
    # recordings -19 dBFS at the loudest (module docstring); -12 leaves 6-7 dB to either side.
    max_noise_floor_dbfs: float | None = Field(-12.0, le=0, description="drop kept segments whose noise floor "
                                               "(10th percentile of 20 ms frame powers, segment +- snr_context_s) "
                                               "is higher: full-scale noise, not a recording; None: no threshold")

    @model_validator(mode="after")
    def _threshold_needs_its_figure(self) -> "QualityParams":
        if self.min_dnsmos_ovrl is not None and not self.dnsmos:
            raise ValueError("min_dnsmos_ovrl needs dnsmos: true")
        if self.min_snr_db is not None and not self.snr:
            raise ValueError("min_snr_db needs snr: true")
        return self


def default_dnsmos_model() -> Path:
    """``sig_bak_ovr.onnx`` inside the speechmos wheel."""
    import speechmos

    return Path(speechmos.__file__).parent / "dnsmos_models" / "sig_bak_ovr.onnx"


def dnsmos_model_id() -> str:
    from importlib.metadata import version

    return f"dnsmos-p835:sig_bak_ovr.onnx@speechmos=={version('speechmos')}"


class DnsmosP835:
    """DNSMOS P.835 with its ONNX session loaded once; call with 16 kHz audio in [-1, 1]."""

    def __init__(self, model_path: str | Path | None = None, num_threads: int = 1, hop_s: float = 1.0) -> None:
        import onnxruntime as ort

        self.model_path = Path(model_path) if model_path else default_dnsmos_model()
        self.hop_s = hop_s
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.enable_cpu_mem_arena = False
        if num_threads:
            opts.intra_op_num_threads = num_threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.model_path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def windows(self, n: int) -> int:
        """Windows scored for a clip of ``n`` samples (speechmos: ``int(floor(L) - 9.01) + 1``
        at a 1 s hop, L the tiled length in seconds)."""
        window = int(DNSMOS_WINDOW_S * QUALITY_RATE)
        while 0 < n < window:
            n *= 2
        return int((np.floor(n / QUALITY_RATE) - DNSMOS_WINDOW_S) / self.hop_s) + 1

    def __call__(self, audio: np.ndarray) -> dict[str, float]:
        """``{"ovrl", "sig", "bak"}`` of a 16 kHz clip in [-1, 1] (speechmos' windowing and fits)."""
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1 or len(x) == 0:
            raise ValueError(f"dnsmos: expected a non-empty mono signal, got shape {x.shape}")
        if not ((x >= -1).all() and (x <= 1).all()):  # also refuses NaN
            raise ValueError("dnsmos: samples must be finite and within [-1, 1]")
        window = int(DNSMOS_WINDOW_S * QUALITY_RATE)
        while len(x) < window:  # speechmos tiles a short clip: np.append(audio, audio)
            x = np.append(x, x)
        hop = self.hop_s
        sig, bak, ovr = [], [], []
        for i in range(self.windows(len(x))):
            seg = x[int(i * hop * QUALITY_RATE): int((i * hop + DNSMOS_WINDOW_S) * QUALITY_RATE)]
            if len(seg) < window:
                continue
            raw_sig, raw_bak, raw_ovr = self.session.run(None, {self.input_name: seg[np.newaxis, :]})[0][0]
            sig.append(_POLY_SIG(raw_sig))
            bak.append(_POLY_BAK(raw_bak))
            ovr.append(_POLY_OVR(raw_ovr))
        return {"ovrl": float(np.mean(ovr)), "sig": float(np.mean(sig)), "bak": float(np.mean(bak))}


_DEFAULT_DNSMOS: DnsmosP835 | None = None


def quality_signal(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz; other rates resampled with librosa's default (soxr_hq), as
    the official ``dnsmos_local.py`` does (``librosa.load(sr=16000)``), in the input's float
    precision (float64 for the evaluation's clips, float32 for a whole recording)."""
    x = np.asarray(audio)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a mono 1-D signal, got shape {x.shape}")
    if sample_rate != QUALITY_RATE and len(x):
        import librosa

        x = librosa.resample(x, orig_sr=sample_rate, target_sr=QUALITY_RATE)
    return x.astype(np.float32, copy=False)


def dnsmos(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """DNSMOS P.835 ``{"ovrl", "sig", "bak"}`` (Reddy et al. 2022) of one clip at any rate.

    Other rates are resampled with ``librosa.resample`` (soxr_hq, the official recipe;
    resample_poly moves OVRL by ~0.03 on a 48 kHz clip). The figures are speechmos'
    ``dnsmos.run`` (clip means over 9.01 s windows, 1 s hop; shorter clips are tiled),
    computed by a process-wide ``DnsmosP835``. Input outside [-1, 1] (an enhancer's
    overshoot) is scaled by its peak, which leaves DNSMOS' level-normalised windows
    nearly unchanged.
    """
    global _DEFAULT_DNSMOS

    x = quality_signal(np.asarray(audio, dtype=np.float64), sample_rate)
    if len(x) == 0:
        raise ValueError("dnsmos: empty signal")
    if not np.isfinite(x).all():
        raise ValueError("dnsmos: signal holds NaN or inf")
    peak = float(np.max(np.abs(x)))
    if peak > 1.0:
        log.info("DNSMOS input peaks at %.3f: scaled into [-1, 1]", peak)
        x = x / peak
    if _DEFAULT_DNSMOS is None:
        _DEFAULT_DNSMOS = DnsmosP835(num_threads=0)
    return _DEFAULT_DNSMOS(np.clip(x, -1.0, 1.0).astype(np.float32))


# ---- SNR ---------------------------------------------------------------------------------------

def frame_powers(audio: np.ndarray, sample_rate: int = QUALITY_RATE) -> np.ndarray:
    """Power (variance: DC removed) of each non-overlapping 20 ms frame; a partial last frame is left out."""
    x = np.asarray(audio)
    size = int(round(SNR_FRAME_S * sample_rate))
    n = len(x) // size
    frames = x[: n * size].reshape(n, size)
    out = np.empty(n)
    for i in range(0, n, 4096):  # in blocks: no float64 copy of a whole long recording
        out[i: i + 4096] = frames[i: i + 4096].astype(np.float64).var(axis=1)
    return out


def noise_floor(context: np.ndarray, noise_percentile: float = 10.0) -> float:
    """Noise power of frame powers ``context``: their ``noise_percentile`` percentile, frames of
    digital silence left out; ``SILENT_POWER`` at least (and for no audible frame)."""
    audible = context[context > SILENT_POWER]
    noise = float(np.percentile(audible, noise_percentile)) if len(audible) else SILENT_POWER
    return max(noise, SILENT_POWER)


def power_dbfs(power: float) -> float:
    """A frame power (variance of samples in [-1, 1]) in dBFS, rounded to 0.01 dB."""
    return round(10.0 * math.log10(power), 2)


def snr_from_frames(segment: np.ndarray, context: np.ndarray, noise_percentile: float = 10.0) -> float | None:
    """SNR estimate in dB of a segment's frame powers, the noise floor taken from ``context``
    (frame powers that include the segment's); None when the segment has no frame."""
    if len(segment) == 0:
        return None
    noise = noise_floor(context, noise_percentile)
    speech = segment[segment > SPEECH_ABOVE_FLOOR * noise]
    lo, hi = SNR_RANGE_DB
    if len(speech) == 0:
        return lo
    signal = float(np.mean(speech)) - noise
    return round(float(np.clip(10.0 * math.log10(signal / noise), lo, hi)), 2)


def snr_db(audio: np.ndarray, sample_rate: int, noise_percentile: float = 10.0) -> float | None:
    """SNR estimate of one clip on its own (its frames are both segment and context)."""
    powers = frame_powers(quality_signal(audio, sample_rate))
    return snr_from_frames(powers, powers, noise_percentile)


# ---- per segment -------------------------------------------------------------------------------

def segment_figures(audio: np.ndarray, sample_rate: int, spans: Sequence[tuple[float, float]],
                    params: QualityParams, scorer: DnsmosP835 | None) -> list[dict[str, float | None]]:
    """``{snr_db, noise_floor_dbfs, dnsmos_ovrl, dnsmos_sig, dnsmos_bak}`` for each (start, end)
    span, in seconds, of one recording's raw signal (any rate; mono, within [-1, 1] such as
    decoded PCM).

    A figure that is off in ``params`` (or a span with no samples) is None; DNSMOS needs
    ``scorer``. The noise floor is measured with the SNR estimate, or alone when only its
    threshold is on.
    """
    x = quality_signal(audio, sample_rate)
    if params.dnsmos and scorer is None:
        raise ValueError("dnsmos is on but no DNSMOS scorer was given")
    floor = params.snr or params.max_noise_floor_dbfs is not None
    powers = frame_powers(x) if floor else np.zeros(0)
    frame = SNR_FRAME_S
    context = int(round(params.snr_context_s / frame))
    out = []
    for start, end in spans:
        fig: dict[str, float | None] = dict.fromkeys(FIGURES)
        a = min(len(x), max(0, int(round(start * QUALITY_RATE))))
        b = min(len(x), max(a, int(round(end * QUALITY_RATE))))
        fa = min(len(powers), max(0, int(round(start / frame))))
        fb = min(len(powers), max(fa + 1, int(round(end / frame))))
        around = powers[max(0, fa - context): fb + context]
        if params.snr:
            fig["snr_db"] = snr_from_frames(powers[fa:fb], around, params.snr_noise_percentile)
        if floor and fb > fa:
            fig["noise_floor_dbfs"] = power_dbfs(noise_floor(around, params.snr_noise_percentile))
        if params.dnsmos and b > a:
            clip = np.clip(x[a:b], -1.0, 1.0).astype(np.float32)
            mos = scorer(clip)
            fig.update(dnsmos_ovrl=mos["ovrl"], dnsmos_sig=mos["sig"], dnsmos_bak=mos["bak"])
        out.append(fig)
    return out


def quality_reason(figures: dict[str, float | None], params: QualityParams) -> str | None:
    """Why a segment with these figures is dropped (the first threshold it misses), or None.

    The reason names the figure and the threshold, not the measured value (that is in the
    segment's column), like the text filters' reasons, so that stats group hours by it.
    """
    ovrl, snr, floor = figures.get("dnsmos_ovrl"), figures.get("snr_db"), figures.get("noise_floor_dbfs")
    if params.max_noise_floor_dbfs is not None and floor is not None and floor > params.max_noise_floor_dbfs:
        return (f"quality: noise_floor_dbfs > {params.max_noise_floor_dbfs}, full-scale noise "
                f"(quality.max_noise_floor_dbfs)")
    if params.min_dnsmos_ovrl is not None and ovrl is not None and ovrl < params.min_dnsmos_ovrl:
        return f"quality: dnsmos_ovrl < {params.min_dnsmos_ovrl} (quality.min_dnsmos_ovrl)"
    if params.min_snr_db is not None and snr is not None and snr < params.min_snr_db:
        return f"quality: snr_db < {params.min_snr_db} (quality.min_snr_db)"
    return None


def score_segments(audio: np.ndarray, sample_rate: int, segments: list[PlannedSegment], params: QualityParams,
                   scorer: DnsmosP835 | None) -> None:
    """Fill the quality fields of the still-kept ``segments`` of one recording from its raw
    signal, and drop those below a threshold; in place. Dropped segments cost nothing."""
    kept = [s for s in segments if s.kept]
    if not kept:
        return
    for seg, fig in zip(kept, segment_figures(audio, sample_rate, [(s.start, s.end) for s in kept], params, scorer)):
        for name, value in fig.items():
            setattr(seg, name, value)
        reason = quality_reason(fig, params)
        if reason is not None:
            seg.drop(reason)
