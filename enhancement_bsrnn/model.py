"""Band-Split RNN (BSRNN) for speech enhancement, written from the papers.

Luo & Yu, "Music source separation with band-split RNN" (TASLP 2023) and Yu et al.,
"Efficient monaural speech enhancement with universal sample rate band-split RNN"
(ICASSP 2023). The structure:

    STFT -> split into bands (bands.py) -> per band: norm (+ log energy) + linear to N features
         -> L x [ RNN over time within each band  (residual)
                  RNN across bands within each frame (residual) ]
         -> per band: norm + MLP with GLU -> complex mask and complex residual
         -> Y = M * X + R  -> inverse STFT

The input is normalised to unit RMS and the output scaled back, so the model does not
have to learn level invariance. Any rate from 8 to 48 kHz works; weights are shared, and a
lower rate uses the first bands only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from enhancement_bsrnn.bands import DEFAULT_SCHEME, BandLayout, band_layout


@dataclass(frozen=True)
class BsrnnConfig:
    features: int = 32  # N: per-band feature size
    hidden: int = 64  # RNN hidden size
    layers: int = 4  # L: residual (time, band) block pairs
    bidirectional_time: bool = True  # offline enhancement; False gives a causal-in-time model
    mask_hidden_mult: int = 4  # MLP hidden = mult * N
    scheme: tuple[tuple[float, float], ...] = DEFAULT_SCHEME

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scheme"] = [list(x) for x in self.scheme]
        return d

    @staticmethod
    def from_dict(d: dict) -> "BsrnnConfig":
        d = dict(d)
        if "scheme" in d:
            d["scheme"] = tuple(tuple(x) for x in d["scheme"])
        return BsrnnConfig(**d)


class _ResidualRnn(nn.Module):
    """Norm -> (B)LSTM along one axis -> linear back to N, added to the input."""

    def __init__(self, features: int, hidden: int, bidirectional: bool) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, features)
        self.rnn = nn.LSTM(features, hidden, batch_first=True, bidirectional=bidirectional)
        self.proj = nn.Linear(hidden * (2 if bidirectional else 1), features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (sequences, length, N)
        s, n, f = x.shape
        y = self.norm(x.reshape(s * n, f)).reshape(s, n, f)
        y, _ = self.rnn(y)
        return x + self.proj(y)


class _MaskHead(nn.Module):
    """Per-band MLP with a GLU: N features -> complex mask and complex residual of the band."""

    def __init__(self, features: int, width: int, mult: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, features)
        self.mlp = nn.Sequential(nn.Linear(features, mult * features), nn.Tanh(), nn.Linear(mult * features, 2 * 4 * width))
        self.glu = nn.GLU(dim=-1)
        # Start as the identity (mask 1, residual 0), so training begins at the noisy input
        # instead of at noise: GLU(a, b) = a * sigmoid(b), with b = 0 at the start.
        last = self.mlp[-1]
        nn.init.normal_(last.weight, std=1e-3)
        bias = torch.zeros(2, width, 4)
        bias[0, :, 0] = 2.0
        with torch.no_grad():
            last.bias.copy_(bias.reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, N) -> (B, T, width, 4): mask re/im, residual re/im
        b, t, f = x.shape
        y = self.norm(x.reshape(b * t, f)).reshape(b, t, f)
        y = self.glu(self.mlp(y))
        return y.reshape(b, t, -1, 4)


class BSRNN(nn.Module):
    def __init__(self, config: BsrnnConfig = BsrnnConfig()) -> None:
        super().__init__()
        self.config = config
        full = band_layout(48000, config.scheme)
        self.widths = full.widths
        n = config.features
        self.band_norms = nn.ModuleList(nn.GroupNorm(1, 2 * w) for w in self.widths)
        # +1 input: the band's log energy, which the per-frame norm would otherwise erase; a
        # small model needs that level cue to tell a steady noise floor from speech over it.
        self.band_projs = nn.ModuleList(nn.Linear(2 * w + 1, n) for w in self.widths)
        self.time_rnns = nn.ModuleList(_ResidualRnn(n, config.hidden, config.bidirectional_time) for _ in range(config.layers))
        self.band_rnns = nn.ModuleList(_ResidualRnn(n, config.hidden, True) for _ in range(config.layers))
        self.heads = nn.ModuleList(_MaskHead(n, w, config.mask_hidden_mult) for w in self.widths)
        self._windows: dict[int, torch.Tensor] = {}

    def layout(self, sample_rate: int) -> BandLayout:
        return band_layout(sample_rate, self.config.scheme)

    def _window(self, n_fft: int, like: torch.Tensor) -> torch.Tensor:
        w = self._windows.get(n_fft)
        if w is None or w.device != like.device:
            w = torch.hann_window(n_fft, device=like.device)
            self._windows[n_fft] = w
        return w

    def forward(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """audio: (batch, samples) float -> enhanced (batch, samples), same length."""
        lay = self.layout(sample_rate)
        length = audio.shape[-1]
        scale = audio.pow(2).mean(dim=-1, keepdim=True).clamp_min(1e-10).sqrt()
        x = audio / scale
        window = self._window(lay.n_fft, x)
        spec = torch.stft(x.float(), lay.n_fft, lay.hop, window=window, center=True, return_complex=True)  # (B, F, T)
        spec = spec.transpose(1, 2)  # (B, T, F)
        spec_ri = torch.view_as_real(spec).to(audio.dtype)  # (B, T, F, 2)
        b, t = spec_ri.shape[:2]

        feats = []
        for k, (start, present) in enumerate(zip(lay.starts, lay.present)):
            band = spec_ri[:, :, start:start + present]
            if present < self.widths[k]:
                band = nn.functional.pad(band, (0, 0, 0, self.widths[k] - present))
            band = band.reshape(b * t, 2 * self.widths[k])
            log_energy = torch.log10(band.pow(2).mean(dim=-1, keepdim=True) + 1e-8)
            feats.append(self.band_projs[k](torch.cat([self.band_norms[k](band), log_energy], dim=-1)).reshape(b, t, -1))
        z = torch.stack(feats, dim=1)  # (B, K, T, N)
        k_bands = z.shape[1]
        n = z.shape[-1]

        for time_rnn, band_rnn in zip(self.time_rnns, self.band_rnns):
            z = time_rnn(z.reshape(b * k_bands, t, n)).reshape(b, k_bands, t, n)
            z = z.transpose(1, 2).reshape(b * t, k_bands, n)
            z = band_rnn(z).reshape(b, t, k_bands, n).transpose(1, 2)

        outs = []
        for k, present in enumerate(lay.present):
            m = self.heads[k](z[:, k])[:, :, :present]  # (B, T, present, 4)
            outs.append(m)
        m = torch.cat(outs, dim=2).float()  # (B, T, F, 4)
        mask = torch.complex(m[..., 0], m[..., 1])
        resid = torch.complex(m[..., 2], m[..., 3])
        est = mask * spec + resid
        y = torch.istft(est.transpose(1, 2), lay.n_fft, lay.hop, window=window, center=True, length=length)
        return (y * scale.float()).to(audio.dtype)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_second(config: BsrnnConfig, sample_rate: int) -> int:
    """Multiply-accumulates per second of audio, counted from the layer shapes.

    Counts the linear and LSTM matrix products (which dominate); the STFT, norms and
    element-wise gates are left out. LSTM: 4 gates x (input + hidden) x hidden per step
    and direction.
    """
    lay = band_layout(sample_rate, config.scheme)
    frames = sample_rate / lay.hop  # frames per second
    full = band_layout(48000, config.scheme)
    n, h = config.features, config.hidden
    k = lay.n_bands
    widths = full.widths[:k]
    split = sum((2 * w + 1) * n for w in widths)
    lstm_step = 4 * (n + h) * h
    time_dirs = 2 if config.bidirectional_time else 1
    per_layer = k * (lstm_step * time_dirs + 2 * h * time_dirs * n) + k * (lstm_step * 2 + 2 * h * 2 * n)
    heads = sum(n * config.mask_hidden_mult * n + config.mask_hidden_mult * n * 8 * w for w in widths)
    return int(frames * (split + config.layers * per_layer + heads))
