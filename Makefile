# The two commands a newcomer runs: `make run` and `make test`. Both start from nothing
# but Python 3.11 and make (`make test` also Node.js/npm): they create .venv and install
# the pinned requirements.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
HOST ?= 127.0.0.1
PORT ?= 8000
MODEL ?= builtin:tiny

.PHONY: run test lint bench bench-compile render clean install

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per requirements set, so `make run` needs only the inference half.
$(VENV)/.inference: $(VENV)/bin/python requirements/inference.txt
	$(VENV)/bin/pip install -q -r requirements/inference.txt
	touch $@

$(VENV)/.dev: $(VENV)/.inference requirements/dev.txt requirements/infra.txt
	$(VENV)/bin/pip install -q -r requirements/dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q -r requirements/checkov.txt
	touch $@

# The upstream CRD validators the component tests check custom objects with
# (tests/crds/package.json, pinned by its committed lock file).
CRD_MODULES := tests/crds/node_modules/.package-lock.json
$(CRD_MODULES): tests/crds/package.json tests/crds/package-lock.json
	npm ci --prefix tests/crds --ignore-scripts --no-audit --no-fund

install: $(VENV)/.dev $(CHECKOV_VENV)/.installed $(CRD_MODULES)

run: $(VENV)/.inference
	$(PY) -m inference serve --model $(MODEL) --host $(HOST) --port $(PORT)

# Debian's Chromium for the web playground's browser test, installed only when missing
# (CI runs as root). Playwright drives it; it never downloads a browser of its own.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update && apt-get install -y chromium chromium-driver

# ruff and mypy with the settings in pyproject.toml, over everything the repository ships.
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check components infra inference tests bench examples provider
	$(VENV)/bin/mypy components infra inference

test: install $(CHROMIUM)
	$(VENV)/bin/hadolint inference/Dockerfile
	CRD_SCHEMAS=1 CHECKOV=$(abspath $(CHECKOV_VENV))/bin/checkov $(PY) -m pytest

bench: $(VENV)/.inference
	$(PY) -m bench.overhead
	$(PY) -m bench.batching
	$(PY) -m bench.throughput
	$(PY) -m bench.server_at_gpu_speed --rounds 3
	$(PY) -m bench.cold_start --runs 5
	$(PY) -m bench.lora_merge_cpu --rounds 5

# Opt-in: compiling even builtin:tiny's UNet takes minutes on a small CPU.
bench-compile: $(VENV)/.inference
	$(PY) -m bench.compile_cpu
	$(PY) -m bench.restart_cpu

render: $(VENV)/.dev
	$(PY) -m infra.render --stack dev --out out/dev

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache out tests/crds/node_modules
