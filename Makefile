# Every install step lives here: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)

DATA := data/es_ticks.parquet
MODEL_SOURCES := $(wildcard compiled_models/*.py compiled_models/*.c market/*.py)
DEMO_SECONDS ?= 20

.PHONY: venv data models test lint demo bench-model clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

data: $(DATA)
$(DATA): | $(VENV)/.installed
	$(PY) -m market.realdata

models: compiled_models/.built
compiled_models/.built: $(VENV)/.installed $(DATA) $(MODEL_SOURCES)
	$(PY) -m compiled_models.build
	touch $@

lint: $(VENV)/.installed
	$(PY) -m ruff check .

test: models lint
	$(PY) -m pytest -q

demo: models
	$(PY) -m compiled_models.demo --seconds $(DEMO_SECONDS)

bench-model: models
	$(PY) -m compiled_models.bench

clean:
	rm -rf compiled_models/*/ compiled_models/.built
