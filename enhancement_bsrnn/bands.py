"""Band-split scheme of BSRNN, defined in Hz so one model serves every sample rate.

The STFT uses a 20 ms window and a 10 ms hop at every rate, so the bin spacing is always
50 Hz and a band of fixed width in Hz always holds the same number of bins. A signal at a
lower rate simply has fewer bands; the band that straddles its Nyquist frequency is
zero-padded to full width (the universal-sample-rate idea of Zhang et al., URGENT 2024).

Default scheme (the issue's), upper edges at 48 kHz:
    200 Hz bands up to 4 kHz   (20 bands)
    500 Hz bands up to 7 kHz   ( 6 bands)
    2 kHz bands up to 21 kHz   ( 7 bands)
    one band 21-24 kHz         ( 1 band)       = 34 bands at 48 kHz, 27 at 16 kHz
Each band is [low, high) in Hz; the Nyquist bin belongs to the band containing it.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW_S = 0.020
HOP_S = 0.010
BIN_HZ = 1.0 / WINDOW_S  # 50 Hz at every sample rate
MAX_SAMPLE_RATE = 48000

# (width in Hz, up to Hz)
DEFAULT_SCHEME: tuple[tuple[float, float], ...] = ((200, 4000), (500, 7000), (2000, 21000), (3000, 24000))


def band_edges_hz(scheme: tuple[tuple[float, float], ...] = DEFAULT_SCHEME) -> list[tuple[float, float]]:
    edges, low = [], 0.0
    for width, upto in scheme:
        while low < upto - 1e-6:
            high = min(low + width, upto)
            edges.append((low, high))
            low = high
    return edges


@dataclass(frozen=True)
class BandLayout:
    """Which STFT bins each band takes at one sample rate."""

    sample_rate: int
    n_fft: int
    hop: int
    widths: tuple[int, ...]  # full width in bins of every band the model knows
    starts: tuple[int, ...]  # first bin of each band present at this rate
    present: tuple[int, ...]  # bins actually available (last band may be truncated)

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_bands(self) -> int:
        return len(self.starts)


def supported(sample_rate: int) -> bool:
    return 8000 <= sample_rate <= MAX_SAMPLE_RATE and (sample_rate * WINDOW_S).is_integer() and (sample_rate * HOP_S).is_integer()


def band_layout(sample_rate: int, scheme: tuple[tuple[float, float], ...] = DEFAULT_SCHEME) -> BandLayout:
    if not supported(sample_rate):
        raise ValueError(f"BSRNN runs at rates from 8 to 48 kHz whose 20 ms window and 10 ms hop are whole samples; "
                         f"{sample_rate} Hz is not one (resample first)")
    n_fft = round(sample_rate * WINDOW_S)
    hop = round(sample_rate * HOP_S)
    n_bins = n_fft // 2 + 1
    widths, starts, present = [], [], []
    for low, high in band_edges_hz(scheme):
        width = round((high - low) / BIN_HZ)
        start = round(low / BIN_HZ)
        widths.append(width)
        if start < n_bins:
            starts.append(start)
            present.append(min(width, n_bins - start))
    # the scheme's top band also takes the Nyquist bin at the highest rate
    widths[-1] += 1
    if starts[-1] + present[-1] < n_bins:
        present[-1] = n_bins - starts[-1]
    if any(p > widths[i] for i, p in enumerate(present)) or starts[-1] + present[-1] != n_bins:
        raise ValueError(f"band scheme does not tile 0..{sample_rate // 2} Hz")
    return BandLayout(sample_rate, n_fft, hop, tuple(widths), tuple(starts), tuple(present))
