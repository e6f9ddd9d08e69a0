# Two commands: `make demo` (the whole pipeline on the embedded synthetic dataset) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
# Idle OpenMP threads sleep instead of spinning: on a busy CPU, spinning threads starve their partners and steps
# run several times slower (bench/README.md). Override by setting OMP_WAIT_POLICY yourself.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test mutate clean-demo

# numpy < 1.26, the numpy of HCRN/DualVGR environments, in a side environment: tests/test_pickle_compat.py loads our
# question files with it. Optional: where no such wheel exists (Python >= 3.12) the test checks the pickles' names only.
NUMPY1 := .venv-numpy1
NUMPY1_STAMP := $(NUMPY1)/.installed

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

demo: $(STAMP)
	$(PY) demo.py

$(NUMPY1_STAMP):
	-$(PYTHON) -m venv $(NUMPY1) && $(NUMPY1)/bin/pip install -q --disable-pip-version-check --only-binary=:all: \
		'numpy>=1.20,<1.26' && touch $@

test: $(STAMP) $(NUMPY1_STAMP)
	$(PY) -m pytest -q

# Mutation testing (docs/mutation.md): mutmut changes the code of the modules whose numbers the project reports, one
# change at a time, and checks that their tests fail. A developer tool, so it is pinned here and installed into .venv
# by this target only: `make test`, `make demo` and CI do not need it. MODULES="significance metrics" picks modules.
MUTMUT := mutmut==3.8.1
MUTMUT_STAMP := $(VENV)/.mutmut-installed

$(MUTMUT_STAMP): $(STAMP)
	$(VENV)/bin/pip install -q --disable-pip-version-check '$(MUTMUT)' && touch $@

mutate: $(MUTMUT_STAMP)
	$(PY) tests/mutation.py --fresh $(MODULES)

clean-demo:
	rm -rf data/demo results/demo
