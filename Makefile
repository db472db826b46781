# make train | make test | make lint | make bench | make sweep | make reproduce
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

.PHONY: install train test test-slow lint bench sweep reproduce
install: $(STAMP)

train: $(STAMP)  ## the default run: offline tasks, SmolLM2-135M, CURLoRA rank 16
	$(BIN)/python train.py $(ARGS)

# Test processes (pytest-xdist): one per core, each test in its own temporary directories
# and caches. A test file runs whole on one worker (loadfile), so a run shared by a file's
# tests (a module-scoped fixture, e.g. one tiny run per baseline in tests/contract) runs once.
WORKERS ?= auto
XDIST := -n $(WORKERS) --dist loadfile

test: $(STAMP)  ## the fast suite: tiny models, synthetic data, no network
	$(BIN)/pytest -q $(XDIST)

test-slow: $(STAMP)  ## real assets from the package registry, SmolLM2
	$(BIN)/pytest -q $(XDIST) -m slow

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/adapter_layer.py && $(BIN)/python benchmarks/evaluation.py

sweep: $(STAMP)  ## the paper's method × rank grid on the default (offline) setup
	$(BIN)/python train.py -m method=curlora,lora rank=8,16,24 $(ARGS)

reproduce: $(STAMP)  ## the reproduction grid and REPORT.md (resumable: run it again to continue)
	$(BIN)/curlora-reproduce $(ARGS)
