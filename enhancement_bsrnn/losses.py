"""Training losses: negative SI-SDR plus a multi-resolution STFT loss (torch, batched)."""

from __future__ import annotations

import torch


def si_sdr_loss(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean negative SI-SDR in dB over the batch (Le Roux et al., 2019)."""
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    target = target - target.mean(dim=-1, keepdim=True)
    alpha = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    projection = alpha * target
    ratio = projection.pow(2).sum(-1) / ((estimate - projection).pow(2).sum(-1) + eps)
    return -(10 * torch.log10(ratio + eps)).mean()


def multi_resolution_stft_loss(estimate: torch.Tensor, target: torch.Tensor, sample_rate: int,
                               windows_ms: tuple[float, ...] = (16.0, 32.0, 64.0)) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over window sizes (Yamamoto et al., 2020).

    Both signals are scaled by the target's RMS first, so the loss does not depend on level.
    """
    scale = target.pow(2).mean(-1, keepdim=True).clamp_min(1e-10).sqrt()
    estimate, target = estimate / scale, target / scale
    total = estimate.new_zeros(())
    for ms in windows_ms:
        n_fft = int(sample_rate * ms / 1000)
        window = torch.hann_window(n_fft, device=estimate.device)
        e = torch.stft(estimate, n_fft, n_fft // 4, window=window, return_complex=True).abs()
        t = torch.stft(target, n_fft, n_fft // 4, window=window, return_complex=True).abs()
        convergence = torch.linalg.norm(t - e, dim=(-2, -1)) / (torch.linalg.norm(t, dim=(-2, -1)) + 1e-7)
        log_mag = (torch.log(t + 1e-5) - torch.log(e + 1e-5)).abs().mean(dim=(-2, -1))
        total = total + convergence.mean() + log_mag.mean()
    return total / len(windows_ms)
