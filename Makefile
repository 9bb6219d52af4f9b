# Set-up and checks for fmtlbench. Every install step goes through constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/python -m pip install --quiet -c constraints.txt

.PHONY: install demo test lint format

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@# before 0.3.0 the built-ins were a distribution of their own: a stale copy would
	@# register every built-in a second time
	$(VENV)/bin/python -m pip uninstall --quiet --yes fmtlbench-builtins 2>/dev/null || true
	$(PIP) -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/fmtlbench run --scenario iid1 --algo fedavg

test: install
	$(VENV)/bin/ruff check fmtlbench plugins tests benchmarks
	$(VENV)/bin/python -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check fmtlbench plugins tests benchmarks
	$(VENV)/bin/ruff format --check fmtlbench plugins tests benchmarks

format: install
	$(VENV)/bin/ruff format fmtlbench plugins tests benchmarks
