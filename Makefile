# Kaizen: two commands on a fresh machine.
#   make demo   the main job: the local stack, the services, traffic through the loop
#   make test   lint, then every test against the real local stack
# Both install what they need first (scripts/bootstrap) and skip what is already installed.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export KAIZEN_CACHE ?= $(HOME)/.cache/kaizen
VENV := $(shell scripts/bootstrap --print-venv)
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)
export PATH := $(VENV)/bin:$(PATH)

.PHONY: install lint test test-loop demo stack-up stack-down stack-status asyncapi bench

install:
	@scripts/bootstrap

lint: install
	ruff check .
	ruff format --check .
	mypy shared services demo

# The kernel crate's own tests (cargo), then every Python test against the real local stack, the
# reduced closed loop included (tests/demo/test_loop.py, marker `loop`).
test: lint
	scripts/build-kernels --test >/dev/null
	$(PY) -m pytest $(PYTEST_ARGS)

# Only the reduced closed loop end to end: every service as its own process, traffic to a promotion.
test-loop: install
	scripts/build-kernels >/dev/null
	$(PY) -m pytest -m loop $(PYTEST_ARGS)

demo: install
	$(PY) -m demo $(if $(DEMO_CONFIG),--config $(DEMO_CONFIG),)

stack-up: install
	$(PY) -m shared.stack up

stack-down:
	$(PY) -m shared.stack down

stack-status:
	$(PY) -m shared.stack status

# Regenerate the AsyncAPI catalogue of every topic (a test fails when it is stale).
asyncapi: install
	$(PY) -m shared.asyncapi > docs/asyncapi.json
