"""`refinery enhance ...`: the enhancement model's size and cost, and enhancing single files."""

from __future__ import annotations

import json

import click


@click.group("enhance")
def enhance_group() -> None:
    """BSRNN speech enhancement: model facts, single files."""


@enhance_group.command("info")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), help="weights file (default: shipped)")
@click.option("--json", "as_json", is_flag=True)
def info_cmd(model_path: str | None, as_json: bool) -> None:
    """Parameter count, MACs per second of audio at 16/24/48 kHz, and how the weights were trained."""
    from enhancement_bsrnn.bands import band_layout
    from enhancement_bsrnn.model import count_parameters, macs_per_second
    from enhancement_bsrnn.weights import load_weights

    model, meta = load_weights(model_path)
    facts = {
        "weights": meta["path"], "sha256": meta["sha256"], "config": meta["config"],
        "parameters": count_parameters(model),
        "macs_per_audio_second": {str(r): macs_per_second(model.config, r) for r in (16000, 24000, 48000)},
        "bands": {str(r): band_layout(r, model.config.scheme).n_bands for r in (16000, 24000, 48000)},
        "training": {k: v for k, v in meta["training"].items() if k != "history"},
    }
    if as_json:
        click.echo(json.dumps(facts, indent=1))
        return
    click.echo(f"weights     {facts['weights']} (sha256 {facts['sha256'][:12]})")
    c = facts["config"]
    click.echo(f"size        N={c['features']} features, hidden {c['hidden']}, {c['layers']} layer pair(s); "
               f"{facts['parameters']:,} parameters")
    for r, macs in facts["macs_per_audio_second"].items():
        click.echo(f"at {int(r) // 1000:2d} kHz   {facts['bands'][r]} bands, {macs / 1e9:.3f} GMAC per second of audio")
    t = facts["training"]
    if t:
        click.echo(f"trained     {t.get('steps')} steps (best validation {t.get('best_val_si_sdr_improvement_db')} dB "
                   f"SI-SDR improvement at step {t.get('best_step')}), {t.get('train_seconds')} s on {t.get('device')}")


@enhance_group.command("file")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(["bsrnn", "deepfilternet3"]), default="bsrnn", show_default=True)
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), help="BSRNN weights (default: shipped)")
@click.option("--rate", type=int, default=48000, show_default=True, help="rate to decode to and enhance at")
def file_cmd(src: str, dst: str, backend: str, model_path: str | None, rate: int) -> None:
    """Enhance one audio file (any format ffmpeg reads) into a WAV at --rate."""
    import soundfile as sf

    from audio_io.decode import decode
    from enhancement_bsrnn.inference import load_enhancer

    audio = decode(src, rate)
    enhancer = load_enhancer(model_path, backend=backend)
    sf.write(dst, enhancer.enhance(audio.samples, rate), rate)
    click.echo(f"wrote {dst}: {audio.duration_s:.1f} s at {rate} Hz, enhanced by {enhancer.name}")
