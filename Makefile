# One command builds the book, one runs the tests; both create the environment first.
#   make book                      fetch missing data, execute every chapter (PROFILE=default),
#                                  build _build/html
#   make book PROFILE=smoke        the same in minutes
#   make chapter NB=data PARAMS="-p resolution 32"   rerun one chapter, rebuild the HTML
#   make test                      the test suite (executes every chapter at smoke, builds the book)
#   make lab                       JupyterLab on the notebooks, chapters at smoke (LAB_PROFILE=default)
PROFILE ?= default
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
LAB_PROFILE ?= smoke

.PHONY: book chapter test lab venv browser clean bench-latency bench-qt bench-predictor bench-int8 bench-blockkd bench-supernet bench-search

venv: $(VENV)/.installed

# Rebuilt when the pins change. torch/torchvision 2.14.1/0.29.1 come from PyPI (CUDA builds that
# run on the CPU, see ../shared/docs/toolchain-notes.md); about 8 GB, 2 minutes here.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

book: venv
	$(BIN)/spaceevo book --profile $(PROFILE)

chapter: venv
	@test -n "$(NB)" || (echo "usage: make chapter NB=<chapter> PARAMS='-p name value ...'"; exit 2)
	$(BIN)/spaceevo chapter $(NB) $(PARAMS)

# Missing data is fetched first (internet); offline, the message says how to get it and the
# tests that need the data are skipped.
test: venv
	$(BIN)/spaceevo fetch missing || echo "[make test] data not fetched: tests that need it are skipped"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lab: venv
	$(BIN)/spaceevo lab --profile $(LAB_PROFILE)

# Headless Chromium for the page tests (Debian package; needs root or sudo).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

clean:
	rm -rf _build book/chapters

# Benchmarks (speed and repeatability targets; minutes to tens of minutes, not part of `make test`)
bench-latency: venv
	$(BIN)/python tests/benchmarks/bench_latency.py

bench-qt: venv
	$(BIN)/python tests/benchmarks/bench_qt.py

bench-predictor: venv
	$(BIN)/python tests/benchmarks/bench_predictor.py --profile $(PROFILE)

bench-int8: venv
	$(BIN)/python tests/benchmarks/bench_int8.py

bench-blockkd: venv
	$(BIN)/python tests/benchmarks/bench_blockkd.py

bench-supernet: venv
	$(BIN)/python tests/benchmarks/bench_supernet.py $(ARGS)

bench-search: venv
	$(BIN)/python tests/benchmarks/bench_search.py
