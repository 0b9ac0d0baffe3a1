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

.PHONY: setup demo test clean

setup:
	@if [ -z "$$VIRTUAL_ENV" ] && [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "torch==2.13.0"
	@$(PYTHON) -m pip install -q -e ".[test]"

demo: setup
	@echo "Training a score model on scikit-learn's 8x8 digits (a few minutes on 2 CPU cores)..."
	$(PYTHON) main.py --config configs/digits_mlp_vp.py --workdir $(DEMO_DIR) --mode train
	@echo
	@echo "Results in $(DEMO_DIR): samples.png (sample grid), loss.png (loss curve), quality.json:"
	@cat $(DEMO_DIR)/quality.json

test: setup
	$(PYTHON) -m pytest -q

clean:
	rm -rf runs .pytest_cache
