# The two set-up commands of the README: `make book` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= demo
DATA    ?=
MODEL   ?=
BOOK_ARGS := --profile $(PROFILE) $(if $(DATA),-p data $(DATA)) $(if $(MODEL),-p model $(MODEL))
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: install test book bench bench-book clean-book

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build where the CPU wheel is on disk.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest

book: $(STAMP)
	$(PY) -m helpers.book $(BOOK_ARGS)

# Speed and memory, each as ratios against a baseline measured in the same run (about 14 minutes on 2 cores);
# tables go to <cache>/benchmarks/, where the book's reproducibility appendix shows them.
bench: export TQDM_DISABLE := 1
bench: $(STAMP)
	$(PY) benchmarks/bench_demo_corpus.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_tracing.py
	$(PY) benchmarks/bench_official_recipe.py
	$(PY) benchmarks/bench_sweep.py

# The demo book's first build from an empty cache and a no-change rebuild (about 12 minutes; rebuilds _build/)
bench-book: export TQDM_DISABLE := 1
bench-book: $(STAMP)
	$(PY) benchmarks/bench_book.py

clean-book:
	rm -rf _build
