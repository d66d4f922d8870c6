"""Speech-enhancement metrics: SI-SDR, PESQ-WB, STOI, DNSMOS P.835.

Every intrusive metric takes ``(estimate, reference)`` in that order and first aligns the
two to the shorter length (enhancers keep the length; reference files may differ by a few
samples). PESQ and DNSMOS are defined at 16 kHz and resample internally: PESQ with
``scipy.signal.resample_poly``, DNSMOS with librosa's default resampler (soxr_hq), as the
official ``dnsmos_local.py`` does (``librosa.load(sr=16000)``), so published DNSMOS figures
reproduce (DeepFilterNet's CI values for its noisy_snr0.wav, to 4 decimals); ``dnsmos`` is
``audio_io.quality.dnsmos``, shared with the pipeline's per-segment quality figures. STOI resamples
internally (pystoi: 10 kHz); SI-SDR has no rate. ``evaluation/enhancement.py`` scores everything at 16 kHz, like the figures in the project notes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

from audio_io.quality import dnsmos  # one DNSMOS, shared with the per-segment quality figures
from audio_io.resample import resample  # noqa: F401 - also used by evaluate

log = logging.getLogger(__name__)

METRIC_RATE = 16000  # PESQ wide-band and DNSMOS operate at 16 kHz


@dataclass
class MetricSet:
    """One system's scores on one file (None: not applicable, NaN: could not be computed)."""

    si_sdr: float
    si_sdr_improvement: float
    pesq_wb: float
    stoi: float
    dnsmos_ovrl: float
    dnsmos_sig: float
    dnsmos_bak: float
    rtf: float | None  # enhancement wall time / audio duration; None for the unprocessed input

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def _mono64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a mono 1-D signal, got shape {x.shape}")
    return x


def align(estimate: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals cut to the shorter length (from the start)."""
    n = min(len(estimate), len(reference))
    return estimate[:n], reference[:n]


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., "SDR - half-baked or well done?", 2019).

    Both signals are made zero-mean; the target is the projection of the estimate on the
    reference, ``alpha * s`` with ``alpha = <s_hat, s> / ||s||^2``, and
    ``SI-SDR = 10 log10(||alpha s||^2 / ||alpha s - s_hat||^2)``. A machine epsilon in
    numerator and denominator keeps identical signals finite (very large) and silence 0 dB.
    """
    est, ref = align(_mono64(estimate), _mono64(reference))
    if len(ref) == 0:
        raise ValueError("si_sdr: empty signal")
    est = est - est.mean()
    ref = ref - ref.mean()
    eps = np.finfo(np.float64).eps
    alpha = (est @ ref + eps) / (ref @ ref + eps)
    target = alpha * ref
    noise = est - target
    return float(10.0 * np.log10((target @ target + eps) / (noise @ noise + eps)))


def pesq_wb(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO) at 16 kHz; NaN when PESQ finds no speech."""
    from pesq import BufferTooShortError, NoUtterancesError, pesq

    est, ref = align(_mono64(estimate), _mono64(reference))
    est = resample(est, sample_rate, METRIC_RATE)
    ref = resample(ref, sample_rate, METRIC_RATE)
    if not np.any(ref):
        log.warning("PESQ-WB is NaN: the reference is digital silence")
        return math.nan
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(pesq(METRIC_RATE, ref, est, "wb"))
    except NoUtterancesError:
        log.warning("PESQ-WB is NaN: PESQ detected no utterances in the reference (%.2f s)", len(ref) / METRIC_RATE)
    except BufferTooShortError:
        log.warning("PESQ-WB is NaN: signal too short for PESQ (%.2f s)", len(ref) / METRIC_RATE)
    return math.nan


def stoi(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Short-time objective intelligibility (Taal et al. 2011, pystoi, not the extended variant)."""
    from pystoi import stoi as _stoi

    est, ref = align(_mono64(estimate), _mono64(reference))
    return float(_stoi(ref, est, sample_rate, extended=False))


def score(estimate: np.ndarray, reference: np.ndarray, sample_rate: int, noisy_si_sdr: float | None = None,
          rtf: float | None = None) -> MetricSet:
    """All metrics of one estimate against its clean reference.

    ``noisy_si_sdr`` is the unprocessed input's SI-SDR, for the improvement (0 when None:
    the estimate is the input itself).
    """
    s = si_sdr(estimate, reference)
    mos = dnsmos(estimate, sample_rate)
    return MetricSet(
        si_sdr=s,
        si_sdr_improvement=0.0 if noisy_si_sdr is None else s - noisy_si_sdr,
        pesq_wb=pesq_wb(estimate, reference, sample_rate),
        stoi=stoi(estimate, reference, sample_rate),
        dnsmos_ovrl=mos["ovrl"],
        dnsmos_sig=mos["sig"],
        dnsmos_bak=mos["bak"],
        rtf=rtf,
    )
