# jangkau — every command a developer or CI needs. Each target sets up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/jangkau/v1/*.proto)

.PHONY: help venv protos protos-check lint typecheck test test-fast demo up bench loadtest clean

help:
	@echo "make demo      start the services and run a simulated campaign"
	@echo "make test      the whole test suite"
	@echo "make protos    regenerate services/jangkau/v1 from protos/"
	@echo "make lint      ruff"
	@echo "make bench     the benchmarks in bench/"
	@echo "make loadtest  Locust against 'jangkau up'"

venv: $(STAMP)

# Reinstall when the dependency pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

protos: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=services --grpc_python_out=services \
		--mypy_out=services --mypy_grpc_out=services \
		$(PROTOS)

# Fails when the checked-in generated code differs from what the protos give.
protos-check: protos
	git diff --exit-code -- services/jangkau/v1
	@test -z "$$(git status --porcelain -- services/jangkau/v1)" || (git status --porcelain -- services/jangkau/v1; echo "generated code not committed"; exit 1)

lint: $(STAMP)
	$(BIN)/ruff check services tests bench loadtests
	$(BIN)/ruff format --check services tests bench loadtests

typecheck: $(STAMP)
	$(BIN)/mypy services/jangkau/runtime services/jangkau/*/domain.py services/jangkau/budget/policy.py services/jangkau/market services/jangkau/platforms

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/jangkau demo

up: $(STAMP)
	$(BIN)/jangkau up

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

loadtest: $(STAMP)
	$(BIN)/python -m loadtests.run

clean:
	rm -rf .jangkau build *.egg-info services/*.egg-info
