.PHONY: lint test test-unit test-integration llm phoenix browser demo demo-down clean crds lock pin-base
# Two commands on a fresh machine: `make demo` and `make test` (see README.md).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The project and its development tools, installed into .venv/ once (again when pyproject or the
# lock changes): every dependency from requirements-dev.lock, pinned and checked by its hash.
$(VENV): $(VENV)/.installed
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# The lock files again, after a change of pyproject.toml's dependencies (pip-tools; Python 3.11,
# Linux): requirements.lock for the image, requirements-dev.lock for .venv and CI.
LOCK := pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock:
	$(PYTHON) -m venv /tmp/foundation-pip-tools && /tmp/foundation-pip-tools/bin/pip install --quiet pip-tools
	/tmp/foundation-pip-tools/bin/$(LOCK) -o requirements.lock pyproject.toml
	/tmp/foundation-pip-tools/bin/$(LOCK) --extra dev -o requirements-dev.lock pyproject.toml
	sed -i '/^# WARNING: pip install will require/,/^    # via/d' requirements-dev.lock

# The agent image's base again, by the digest Docker Hub gives its tag now (run where the
# registry is reachable; review and commit the Dockerfile's change).
BASE_REPO := library/python
BASE_TAG := 3.11-slim
pin-base:
	answer=$$(curl -fsS "https://auth.docker.io/token?service=registry.docker.io&scope=repository:$(BASE_REPO):pull") \
	  || { echo "pin-base: Docker Hub's token service is not reachable from here" >&2; exit 1; }; \
	token=$$(echo "$$answer" | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["token"])') \
	&& digest=$$(curl -fsS --head -H "Authorization: Bearer $$token" \
	  -H "Accept: application/vnd.oci.image.index.v1+json" \
	  -H "Accept: application/vnd.docker.distribution.manifest.list.v2+json" \
	  "https://registry-1.docker.io/v2/$(BASE_REPO)/manifests/$(BASE_TAG)" \
	  | tr -d '\r' | sed -n 's/^docker-content-digest: *//Ip') \
	&& test -n "$$digest" \
	&& sed -i "s|^ARG PYTHON_IMAGE=.*|ARG PYTHON_IMAGE=python:$(BASE_TAG)@$$digest|" agent_image/Dockerfile \
	&& grep '^ARG PYTHON_IMAGE' agent_image/Dockerfile

lint: $(VENV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-unit: $(VENV)
	$(BIN)/pytest tests/unit

# Integration tests bring the local cluster up themselves (session fixture).
test-integration: $(VENV) llm phoenix browser
	$(BIN)/pytest tests/integration

# The small real model the LLM tests use (llama-cpp-python built once, cached outside the clone).
llm: $(VENV)
	e2e/local/llm

# Arize Phoenix, the trace store the trace tests query (a venv of its own, cached by version).
phoenix:
	e2e/local/phoenix

# Debian's Chromium, which the console's tests drive with Playwright.
browser:
	e2e/local/browser

test: $(VENV) llm phoenix browser
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
