.PHONY: lint test test-unit test-integration llm demo demo-down clean crds
# Two commands on a fresh machine: `make demo` and `make test` (see README.md).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The project and its development tools, installed into .venv/ once (again when pyproject changes).
$(VENV): $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

lint: $(VENV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-unit: $(VENV)
	$(BIN)/pytest tests/unit

# Integration tests bring the local cluster up themselves (session fixture).
test-integration: $(VENV) llm
	$(BIN)/pytest tests/integration

# The small real model the LLM tests use (llama-cpp-python built once, cached outside the clone).
llm: $(VENV)
	e2e/local/llm

test: $(VENV) llm
	$(BIN)/pytest

# The product on the local cluster: the operator from the chart, an Agent, tasks from the CLI,
# a member killed and its state kept, a Workflow (e2e/local/demo.py says each step).
demo: $(VENV)
	e2e/local/cluster up
	$(BIN)/python e2e/local/demo.py

# Removes what `make demo` made (the release and its namespace); the cluster stays up.
demo-down: $(VENV)
	$(BIN)/python e2e/local/demo.py --down

clean:
	e2e/local/cluster down || true
	rm -rf $(VENV) .local-cluster

# Regenerate the CRDs from the pydantic models (a unit test fails when they are stale).
crds: $(VENV)
	$(BIN)/python -m foundation_operator.crds
