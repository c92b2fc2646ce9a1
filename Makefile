# Two commands on a fresh machine: `make demo` and `make test`. Each builds .venv by itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
PIN    := -c requirements/constraints.txt
export PYTHONHASHSEED := 0

.PHONY: demo atlas test test-slow test-all lint format bench constraints clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "smoothflip needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet $(PIN) pip

# Runtime install (what `make demo` needs); re-run when the dependency files change.
$(VENV)/.run-installed: $(BIN)/python pyproject.toml requirements/constraints.txt
	$(PIP) install --quiet $(PIN) -e .
	@touch $@

# Runtime + test tools.
$(VENV)/.test-installed: $(VENV)/.run-installed
	$(PIP) install --quiet $(PIN) -e ".[test]"
	@touch $@

demo: $(VENV)/.run-installed
	$(BIN)/smoothflip demo

# The atlas: every built-in dataset x model, the same techniques and label conditions, then pooled
# (smoothflip-runs/atlas; resumable: run it again after an interruption).
atlas: $(VENV)/.run-installed
	$(BIN)/smoothflip atlas

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -n 2 -q

test-slow: $(VENV)/.test-installed
	$(BIN)/python -m pytest -n 2 -q -m slow

test-all: $(VENV)/.test-installed
	$(BIN)/python -m pytest -n 2 -q -m "slow or not slow"

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(VENV)/.test-installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# Rewrite the pins from the current environment (run after changing dependencies in pyproject.toml).
constraints: $(VENV)/.test-installed
	@{ head -n 2 requirements/constraints.txt; \
	   $(PIP) freeze --exclude-editable | grep -v '^smoothflip' | sed 's/+cpu$$//' | sort -f; \
	   echo "pip==$$($(PIP) --version | cut -d' ' -f2)"; } > requirements/constraints.new
	mv requirements/constraints.new requirements/constraints.txt

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache .hypothesis
