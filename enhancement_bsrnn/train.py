"""Train BSRNN on synthetic noisy/clean pairs, on CPU or GPU; seeded and resumable.

    python -m enhancement_bsrnn.train --work .cache/bsrnn_train --export enhancement_bsrnn/weights/bsrnn_small.pt

The defaults are the recipe of the first shipped weights; the Makefile's BSRNN_TRAIN_ARGS
hold the recipe of the weights shipped now (see weights/MODEL_CARD.md). ``--init`` starts
from a weights file (fine-tuning; the model size is then the file's).

Reproducible: the model is initialised from --seed and the batch of step k is a pure
function of (seed, k), so a resumed run sees exactly the batches an uninterrupted one
would. A checkpoint (model, optimiser, step, best validation) is written atomically every
--checkpoint-every steps and when --max-minutes runs out; running the same command again
resumes from it. Validation: fixed mixtures (their own seed) scored by SI-SDR improvement;
the best validation state is what --export writes.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from enhancement_bsrnn.data.mixtures import MixtureMaker, MixtureSpec
from enhancement_bsrnn.data.speech import SpeechPool, build_kokoro_pool, build_pool, world_variant
from enhancement_bsrnn.losses import multi_resolution_stft_loss, si_sdr_loss
from enhancement_bsrnn.model import BSRNN, BsrnnConfig, count_parameters
from enhancement_bsrnn.weights import load_weights, save_weights

log = logging.getLogger("enhancement_bsrnn.train")

SHARED_ENHANCEMENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "enhancement" / "deepfilternet_assets"


def _load_resampled(path: str, rate: int) -> np.ndarray:
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    return resample_poly(audio, rate, sr).astype(np.float32) if sr != rate else audio


def add_real_speech(pools: dict[int, SpeechPool], paths: list[str], variants: int, seed: int) -> None:
    """Add real clean recordings (not evaluation clips) and WORLD variants of them to the pool."""
    rng = np.random.default_rng(seed)
    for path in paths:
        base = _load_resampled(path, 48000)
        versions = [base] + [world_variant(base, 48000, float(rng.uniform(0.7, 1.4)), float(rng.uniform(0.85, 1.18)))
                             for _ in range(variants)]
        for v in versions:
            for rate, pool in pools.items():
                pool.utterances.append(resample_poly(v, rate, 48000).astype(np.float32) if rate != 48000 else v)
                pool.kinds.append("recorded")


def noise_from_pairs(pairs: list[tuple[str, str]], rate: int) -> list[np.ndarray]:
    """Real noise recovered from (noisy, clean) recordings (not evaluation clips): noisy - alpha * clean.

    alpha is the least-squares gain of the clean file in the noisy one; the files must be
    sample-aligned (the DeepFilterNet assets are: noisy_snr0 = 2 x clean_freesound_33711 +
    a freesound noise that is not shipped on its own).
    """
    out = []
    for noisy_path, clean_path in pairs:
        noisy, clean = _load_resampled(noisy_path, 48000), _load_resampled(clean_path, 48000)
        n = min(len(noisy), len(clean))
        noisy, clean = noisy[:n].astype(np.float64), clean[:n].astype(np.float64)
        alpha = float(noisy @ clean / (clean @ clean + 1e-12))
        noise = noisy - alpha * clean
        out.append((resample_poly(noise, rate, 48000) if rate != 48000 else noise).astype(np.float32))
    return out


def quiet_residual_loss(estimate: torch.Tensor, target: torch.Tensor, sample_rate: int, threshold_db: float = -30.0,
                        floor_db: float = -45.0) -> torch.Tensor:
    """Output energy left where the target is (nearly) silent, in dB; batch mean over items with such frames.

    Frames of 20 ms (10 ms hop) whose target energy is below ``threshold_db`` of the item's
    mean target power are "quiet"; the loss is the mean excess energy of the estimate over
    the target in them, relative to that mean power, in dB with a floor at ``floor_db``. It
    penalises residual noise (and reverberant tails) in speech pauses, what DNSMOS BAK hears,
    which SI-SDR, dominated by the loud frames, barely sees.
    """
    frame, hop = sample_rate // 50, sample_rate // 100
    power = target.pow(2).mean(-1, keepdim=True).clamp_min(1e-10)
    e_t = target.unfold(-1, frame, hop).pow(2).mean(-1) / power
    e_y = estimate.unfold(-1, frame, hop).pow(2).mean(-1) / power
    quiet = (e_t < 10 ** (threshold_db / 10)).to(estimate.dtype)
    count = quiet.sum(-1)
    has = count > 0
    if not bool(has.any()):
        return estimate.new_zeros(())
    excess = ((e_y - e_t).clamp_min(0) * quiet).sum(-1) / count.clamp_min(1)
    db = 10 * torch.log10(excess + 10 ** (floor_db / 10)) - floor_db
    return db[has].mean()


def _rates(spec: str) -> tuple[list[int], list[float]]:
    rates, weights = [], []
    for part in spec.split(","):
        r, w = part.split(":")
        rates.append(int(r))
        weights.append(float(w))
    total = sum(weights)
    return rates, [w / total for w in weights]


def _lr(step: int, total: int, peak: float, warmup: int = 100, floor: float = 0.05) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def validate(model: BSRNN, pairs: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple[float, float]:
    """Mean SI-SDR improvement in dB over the fixed validation mixtures, and the mean quiet-frame residual (dB above the floor)."""
    model.eval()
    gains, quiet = [], []
    for noisy, clean, rate in pairs:
        x = torch.from_numpy(noisy)[None]
        y = model(x, rate)
        c = torch.from_numpy(clean)[None]
        gains.append(float(si_sdr_loss(x, c) - si_sdr_loss(y, c)))
        quiet.append(float(quiet_residual_loss(y, c, rate)))
    model.train()
    return float(np.mean(gains)), float(np.mean(quiet))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True, help="checkpoints, log and the speech cache go here")
    p.add_argument("--steps", type=int, default=3600)
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=1.5, help="training segment length")
    p.add_argument("--rates", default="16000:0.85,48000:0.15", help="sample rates and their share of batches")
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--stft-weight", type=float, default=2.0, help="weight of the multi-resolution STFT loss (dB-scale SI-SDR loss has weight 1)")
    p.add_argument("--quiet-weight", type=float, default=0.0, help="weight of the quiet-frame residual loss (dB; penalises "
                   "output energy where the target is silent)")
    p.add_argument("--select-quiet", type=float, default=0.0, help="model selection score: validation SI-SDR improvement "
                   "minus this times the quiet-frame residual (dB); 0: SI-SDR improvement alone")
    p.add_argument("--snr", default="-5,20", help="mixture SNR range in dB, LO,HI (uniform)")
    p.add_argument("--init", type=Path, help="start from this weights file (fine-tune); its model size overrides "
                   "--features/--hidden/--layers")
    p.add_argument("--warmup", type=int, default=100, help="learning-rate warm-up steps")
    p.add_argument("--val-every", type=int, default=300)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this long; rerun to resume")
    p.add_argument("--stop-after", type=int, help="stop (with a checkpoint) at this step, as an interruption would; rerun to resume")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: torch's default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--real-speech", nargs="*", default=sorted(glob.glob(str(SHARED_ENHANCEMENT / "clean_*.wav"))),
                   help="real clean recordings added to the synthetic pool (never evaluation clips)")
    p.add_argument("--real-noise", nargs="*", default=sorted(glob.glob(str(SHARED_ENHANCEMENT / "noise_*.wav"))),
                   help="real noise recordings (never evaluation clips)")
    p.add_argument("--pool", default="120,160,160", help="speech pool size: piper, espeak-ng and WORLD-variant utterances")
    p.add_argument("--kokoro", default="0,0", help="Kokoro-82M utterances (random two-voice blends) and WORLD variants of "
                   "them added to the pool")
    p.add_argument("--noise-pairs", nargs="*", default=[],
                   help="NOISY:CLEAN aligned recordings (never evaluation clips): NOISY - alpha CLEAN is added as a real noise")
    p.add_argument("--cache", type=Path, help="where the synthesised speech pool is cached (default: WORK/cache)")
    p.add_argument("--rirs", type=int, default=48, help="simulated room impulse responses per sample rate")
    p.add_argument("--val-count", type=int, default=16, help="validation mixtures at 16 kHz (a quarter as many at other rates)")
    p.add_argument("--export", type=Path, help="write the best-validation weights here when training ends")
    args = p.parse_args(argv)
    # The identity start makes early gradients tiny; subnormal floats then cost the CPU ~50x per
    # step. Flushing them is process-wide state, so it is restored for whoever called us.
    threads = torch.get_num_threads()
    torch.set_flush_denormal(True)
    try:
        _train(args)
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def _train(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)

    args.work.mkdir(parents=True, exist_ok=True)
    rates, weights = _rates(args.rates)
    n_piper, n_espeak, n_world = (int(v) for v in args.pool.split(","))
    pools = build_pool(args.cache or args.work / "cache", rates=tuple(sorted(set(rates) | {16000})), n_piper=n_piper,
                       n_espeak=n_espeak, n_world=n_world, seed=args.seed)
    n_kokoro, n_kokoro_world = (int(v) for v in args.kokoro.split(","))
    if n_kokoro:
        extra = build_kokoro_pool(args.cache or args.work / "cache", rates=tuple(sorted(pools)), n_kokoro=n_kokoro,
                                  n_world=n_kokoro_world, seed=args.seed, skip_texts=n_piper + n_espeak,
                                  threads=max(1, args.threads))
        for r, pool in pools.items():
            pool.utterances.extend(extra[r].utterances)
            pool.kinds.extend(extra[r].kinds)
    add_real_speech(pools, args.real_speech, variants=12, seed=args.seed)
    noise_pairs = [tuple(x.split(":", 1)) for x in args.noise_pairs]
    noise_clips = {r: [_load_resampled(f, r) for f in args.real_noise] + noise_from_pairs(noise_pairs, r) for r in pools}
    for r, pool in pools.items():
        log.info("speech pool at %d Hz: %d utterances, %.0f s; real noise clips: %d", r, len(pool.utterances), pool.seconds(), len(noise_clips[r]))
    snr = tuple(float(v) for v in args.snr.split(","))
    maker = MixtureMaker(pools, noise_clips, MixtureSpec(seconds=args.seconds, snr_db=snr), rir_count=args.rirs, seed=args.seed)
    val_maker = MixtureMaker(pools, noise_clips, MixtureSpec(seconds=3.0, snr_db=snr), rir_count=args.rirs, seed=args.seed + 1)
    val_rates = [16000] * args.val_count + [r for r in rates if r != 16000] * max(1, args.val_count // 4)
    val_pairs = [(*val_maker.make(np.random.default_rng([args.seed, 10 ** 6, i]), r), r) for i, r in enumerate(val_rates)]

    config = BsrnnConfig(features=args.features, hidden=args.hidden, layers=args.layers)
    torch.manual_seed(args.seed)
    init_meta = None
    if args.init:
        model, init_meta = load_weights(args.init, device=args.device)
        model.train()
        config = model.config
        log.info("initialised from %s (sha256 %s)", args.init, init_meta["sha256"][:12])
    else:
        model = BSRNN(config).to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    ckpt_path = args.work / "checkpoint.pt"
    state = {"step": 0, "best_val": -1e9, "best_step": 0, "history": [], "seconds": 0.0}
    best_state = None
    if args.init and not ckpt_path.exists():  # the starting point is a candidate too
        val, quiet = validate(model, val_pairs)
        state.update(best_val=val - args.select_quiet * quiet, best_step=0,
                     history=[{"step": 0, "val_si_sdr_improvement_db": round(val, 3), "val_quiet_residual_db": round(quiet, 2)}])
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        log.info("validation of the initial weights: SI-SDR improvement %+.2f dB, quiet residual %.2f dB", val, quiet)
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=args.device, weights_only=False)
        if ckpt["config"] != config.to_dict():
            raise SystemExit(f"{ckpt_path} holds a model of another size ({ckpt['config']}); use another --work")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        best_state = ckpt.get("best_model")
        log.info("resuming from step %d (best validation %+.2f dB at step %d)", state["step"], state["best_val"], state["best_step"])
    log.info("BSRNN %s: %d parameters; %d steps of %d x %.1f s", config, count_parameters(model), args.steps, args.batch, args.seconds)

    def checkpoint() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"config": config.to_dict(), "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "state": state, "best_model": best_state, "args": {k: str(v) for k, v in vars(args).items()}}, tmp)
        os.replace(tmp, ckpt_path)

    t_start = run_start = time.monotonic()
    t_log, loss_sum, n_sum = time.monotonic(), 0.0, 0
    rate_rng_seed = args.seed + 3
    while state["step"] < args.steps:
        step = state["step"]
        rate = rates[int(np.random.default_rng([rate_rng_seed, step]).choice(len(rates), p=weights))]
        noisy, clean = maker.batch(args.seed, step, args.batch, rate)
        x = torch.from_numpy(noisy).to(args.device)
        c = torch.from_numpy(clean).to(args.device)
        for g in opt.param_groups:
            g["lr"] = _lr(step, args.steps, args.lr, warmup=args.warmup)
        y = model(x, rate)
        loss = si_sdr_loss(y, c) + args.stft_weight * multi_resolution_stft_loss(y, c, rate)
        if args.quiet_weight:
            loss = loss + args.quiet_weight * quiet_residual_loss(y, c, rate)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        loss_sum += float(loss.detach())
        n_sum += 1
        state["step"] = step + 1
        if state["step"] % 25 == 0:
            dt = time.monotonic() - t_log
            log.info("step %d/%d  loss %.3f  %.2f s/step  lr %.2e", state["step"], args.steps, loss_sum / n_sum, dt / n_sum, opt.param_groups[0]["lr"])
            t_log, loss_sum, n_sum = time.monotonic(), 0.0, 0
        if state["step"] % args.val_every == 0 or state["step"] == args.steps:
            val, quiet = validate(model, val_pairs)
            state["history"].append({"step": state["step"], "val_si_sdr_improvement_db": round(val, 3),
                                     "val_quiet_residual_db": round(quiet, 2)})
            selection = val - args.select_quiet * quiet
            if selection > state["best_val"]:
                state["best_val"], state["best_step"] = selection, state["step"]
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            log.info("validation at step %d: SI-SDR improvement %+.2f dB, quiet residual %.2f dB (best score %+.2f at step %d)",
                     state["step"], val, quiet, state["best_val"], state["best_step"])
        out_of_time = (args.max_minutes is not None and time.monotonic() - run_start > args.max_minutes * 60) or \
            (args.stop_after is not None and state["step"] >= args.stop_after)
        if state["step"] % args.checkpoint_every == 0 or out_of_time:
            state["seconds"] += time.monotonic() - t_start
            t_start = time.monotonic()
            checkpoint()
        if out_of_time:
            log.info("stopping at step %d; run the same command to resume", state["step"])
            break
    state["seconds"] += time.monotonic() - t_start
    checkpoint()

    if args.export and best_state is not None:
        model.load_state_dict(best_state)
        training = {"steps": state["step"], "best_step": state["best_step"], "best_val_score": round(state["best_val"], 3),
                    "best_val_si_sdr_improvement_db": next((h["val_si_sdr_improvement_db"] for h in state["history"]
                                                            if h["step"] == state["best_step"]), None),
                    "selection": f"val SI-SDR improvement - {args.select_quiet:g} x quiet residual dB",
                    "history": state["history"], "train_seconds": round(state["seconds"]), "seed": args.seed, "batch": args.batch,
                    "segment_seconds": args.seconds, "rates": args.rates, "lr": args.lr, "stft_weight": args.stft_weight,
                    "quiet_weight": args.quiet_weight, "snr_db": list(snr), "warmup": args.warmup,
                    "init": None if init_meta is None else {"file": Path(args.init).name, "sha256": init_meta["sha256"],
                                                            "training": init_meta["training"]},
                    "kokoro": args.kokoro, "noise_pairs": [[Path(a).name, Path(b).name] for a, b in noise_pairs],
                    "speech_pool": {str(r): {"utterances": len(p.utterances), "seconds": round(p.seconds())} for r, p in pools.items()},
                    "real_speech": [Path(f).name for f in args.real_speech], "real_noise": [Path(f).name for f in args.real_noise],
                    "device": args.device, "torch_threads": torch.get_num_threads()}
        save_weights(model, args.export, training)
        log.info("wrote %s (best validation %+.2f dB at step %d)", args.export, state["best_val"], state["best_step"])
        print(json.dumps(training["history"][-3:]))


if __name__ == "__main__":
    main()
