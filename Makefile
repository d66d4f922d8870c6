# The two commands a new machine needs: `make demo` and `make test`. Each sets up first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
REFINERY := $(VENV)/bin/refinery
DEMO_OUT ?= demo_out
BENCH_OUT ?= bench_out

.PHONY: setup demo lint test bench train-enhancement clean

setup:
	@bash scripts/setup.sh

# Real speech available after install: the 30 s two-speaker call that ships in pyannote.audio.
demo: setup
	@demo_input=$$($(PY) -c 'import pathlib, pyannote.audio.sample as s; print(pathlib.Path(s.__file__).parent / "sample.wav")'); \
	$(REFINERY) run "$$demo_input" --corpus demo --out $(DEMO_OUT) && \
	$(REFINERY) manifest stats $(DEMO_OUT) --corpus demo

# Package layering (import-linter contracts in pyproject.toml); run from the repository root.
lint: setup
	$(VENV)/bin/lint-imports

test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: setup
	$(PY) benchmarks/run_benchmarks.py --out $(BENCH_OUT)

# Retrains the shipped BSRNN weights from scratch (seeded; rerun to resume). The exact
# command and its figures are in enhancement_bsrnn/weights/MODEL_CARD.md.
BSRNN_TRAIN_ARGS ?= --features 16 --hidden 32 --layers 2 --batch 8 --seconds 1.5 --rates 16000:0.85,48000:0.15 --steps 3600 --stft-weight 2 --val-every 300
train-enhancement: setup
	$(PY) -m enhancement_bsrnn.train --work .cache/bsrnn_train $(BSRNN_TRAIN_ARGS) \
	  --export enhancement_bsrnn/weights/bsrnn_small.pt

clean:
	rm -rf $(DEMO_OUT) $(BENCH_OUT) .pytest_cache .import_linter_cache
