# Two commands: `make demo` (the whole pipeline on the embedded synthetic dataset) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
# Idle OpenMP threads sleep instead of spinning: on a busy CPU, spinning threads starve their partners and steps
# run several times slower (bench/README.md). Override by setting OMP_WAIT_POLICY yourself.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test clean-demo

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

demo: $(STAMP)
	$(PY) demo.py

test: $(STAMP)
	$(PY) -m pytest -q

clean-demo:
	rm -rf data/demo results/demo
