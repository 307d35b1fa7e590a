# The two set-up commands of the README: `make book` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= demo
DATA    ?=
MODEL   ?=
# other corpora and classes (README, "Other corpora"): e.g. DATA=ravdess:/data/ravdess PROTOCOL=speakers-k CLASSES=all
# LEVEL=peak or LEVEL=loudness normalises each clip's level before the log-mel (default: as recorded)
CLASSES   ?=
LABEL_MAP ?=
PROTOCOL  ?=
LEVEL     ?=
# POOLING=speech: the speech-pooled classifier with length-bucketed batches (default: the official all-positions mean)
POOLING   ?=
# a rehearsal cut short (README, "Rehearsing the paper profile"): e.g. EPOCHS=1 MAX_FOLDS=1, and the causal
# experiments' sweeps at one layer in CAUSAL_LAYER_STEP with CAUSAL_RANDOM_SETS random control sets
EPOCHS    ?=
MAX_FOLDS ?=
CAUSAL_LAYER_STEP  ?=
CAUSAL_RANDOM_SETS ?=
BOOK_ARGS := --profile $(PROFILE) $(if $(DATA),-p data $(DATA)) $(if $(MODEL),-p model $(MODEL)) \
	$(if $(CLASSES),-p classes $(CLASSES)) $(if $(LABEL_MAP),-p label_map $(LABEL_MAP)) \
	$(if $(PROTOCOL),-p protocol $(PROTOCOL)) $(if $(LEVEL),-p level $(LEVEL)) \
	$(if $(POOLING),-p pooling $(POOLING)) \
	$(if $(EPOCHS),-p epochs $(EPOCHS)) $(if $(MAX_FOLDS),-p max_folds $(MAX_FOLDS)) \
	$(if $(CAUSAL_LAYER_STEP),-p causal_layer_step $(CAUSAL_LAYER_STEP)) \
	$(if $(CAUSAL_RANDOM_SETS),-p causal_random_sets $(CAUSAL_RANDOM_SETS))
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: install test book screenshots chromium bench bench-book bench-cpu-real clean-book

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build where the CPU wheel is on disk.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP) chromium
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest

# The browser test drives the system's Chromium (never a downloaded one): Debian's package, installed where missing
# (with sudo when not root). Elsewhere, install Chromium or Chrome yourself (or set BTS_CHROMIUM); without one the
# browser test fails on Linux and is skipped on other systems.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "$$BTS_CHROMIUM" ] || \
	if command -v apt-get >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "no Chromium and no apt-get: install Chromium or Chrome for the browser test"; fi

book: $(STAMP)
	$(PY) -m helpers.book $(BOOK_ARGS)

# Every page of the built book in headless Chromium (console errors, images, explorer controls), with a full-page
# screenshot of each in _build/screenshots/ (after `make book`)
screenshots: $(STAMP) chromium
	$(PY) -m helpers.book.browser --build _build

# Speed and memory, each as ratios against a baseline measured in the same run (about 14 minutes on 2 cores);
# tables go to <cache>/benchmarks/, where the book's reproducibility appendix shows them.
bench: export TQDM_DISABLE := 1
bench: $(STAMP)
	$(PY) benchmarks/bench_demo_corpus.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_pooling.py
	$(PY) benchmarks/bench_tracing.py
	$(PY) benchmarks/bench_official_recipe.py
	$(PY) benchmarks/bench_sweep.py

# The demo book's first build from an empty cache and a no-change rebuild (about 12 minutes; rebuilds _build/)
bench-book: export TQDM_DISABLE := 1
bench-book: $(STAMP)
	$(PY) benchmarks/bench_book.py

# The cpu-real profile's book on a 24-actor RAVDESS-like release made from the demo synthesis (README: within 45
# minutes on 2 cores); rebuilds _build/ like bench-book
bench-cpu-real: export TQDM_DISABLE := 1
bench-cpu-real: $(STAMP)
	$(PY) benchmarks/bench_book.py --ravdess-like 24

clean-book:
	rm -rf _build
