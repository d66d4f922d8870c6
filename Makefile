# The two commands a new machine needs: `make demo` and `make test`. Each sets up first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
REFINERY := $(VENV)/bin/refinery
DEMO_OUT ?= demo_out
BENCH_OUT ?= bench_out

.PHONY: setup demo demo-synth lint test bench train-enhancement clean

setup:
	@bash scripts/setup.sh

# Real speech available after install: the 30 s two-speaker call that ships in pyannote.audio.
demo: setup
	@demo_input=$$($(PY) -c 'import pathlib, pyannote.audio.sample as s; print(pathlib.Path(s.__file__).parent / "sample.wav")'); \
	$(REFINERY) run "$$demo_input" --corpus demo --out $(DEMO_OUT) && \
	$(REFINERY) manifest stats $(DEMO_OUT) --corpus demo

# Spoken SFT dialogues from the shipped text dialogues: a voice library from the demo's own segments
# (user timbres), the shipped assistant voice, Kokoro / espeak-ng TTS, WORLD voice conversion, round-trip gates.
# The demo call has crosstalk in every turn of 3-10 s: its voices allow 10% overlap (default 0).
DEMO_VOICES_SET ?= --set voices.max_overlap_ratio=0.1 --set voices.min_dnsmos_ovrl=2.4
demo-synth: demo
	$(REFINERY) synth voices build $(DEMO_OUT) --corpus demo --to $(DEMO_OUT)/voices $(DEMO_VOICES_SET) && \
	$(REFINERY) synth run examples/dialogues/demo.jsonl --corpus demo-synth --out $(DEMO_OUT) --voices $(DEMO_OUT)/voices && \
	$(REFINERY) manifest stats $(DEMO_OUT) --corpus demo-synth

# Package layering (import-linter contracts in pyproject.toml); run from the repository root.
lint: setup
	$(VENV)/bin/lint-imports

test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: setup
	$(PY) benchmarks/run_benchmarks.py --out $(BENCH_OUT)

# Retrains the shipped BSRNN weights (seeded; rerun to resume): a fine-tune of the first
# weights (bsrnn_small_v1.pt, 35 CPU minutes from scratch) on a pool with Kokoro-82M voices,
# a second real noise and a quiet-frame residual loss. The exact command and its figures are
# in enhancement_bsrnn/weights/MODEL_CARD.md.
BSRNN_ASSETS := ../shared/data/real/enhancement/deepfilternet_assets
BSRNN_TRAIN_ARGS ?= --init enhancement_bsrnn/weights/bsrnn_small_v1.pt --batch 8 --seconds 1.5 \
  --rates 16000:0.85,48000:0.15 --steps 5000 --lr 1e-3 --warmup 100 --stft-weight 2 --quiet-weight 0.25 \
  --select-quiet 0.25 --snr=-5,15 --kokoro 200,80 --val-every 250 \
  --noise-pairs $(BSRNN_ASSETS)/noisy_snr0.wav:$(BSRNN_ASSETS)/clean_freesound_33711.wav
train-enhancement: setup
	$(PY) -m enhancement_bsrnn.train --work .cache/bsrnn_train2 $(BSRNN_TRAIN_ARGS) \
	  --export enhancement_bsrnn/weights/bsrnn_small.pt

clean:
	rm -rf $(DEMO_OUT) $(BENCH_OUT) .pytest_cache .import_linter_cache
