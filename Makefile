# The two commands a new machine needs: `make demo` and `make test`. Each sets up first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
REFINERY := $(VENV)/bin/refinery
DEMO_OUT ?= demo_out
BENCH_OUT ?= bench_out

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

# Real speech available after install: the 30 s two-speaker call that ships in pyannote.audio.
demo: setup
	@demo_input=$$($(PY) -c 'import pathlib, pyannote.audio.sample as s; print(pathlib.Path(s.__file__).parent / "sample.wav")'); \
	$(REFINERY) run "$$demo_input" --corpus demo --out $(DEMO_OUT) && \
	$(REFINERY) manifest stats $(DEMO_OUT) --corpus demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: setup
	$(PY) benchmarks/run_benchmarks.py --out $(BENCH_OUT)

clean:
	rm -rf $(DEMO_OUT) $(BENCH_OUT) .pytest_cache
