.PHONY: lint test test-unit test-integration demo clean crds
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
test-integration: $(VENV)
	$(BIN)/pytest tests/integration

test: $(VENV)
	$(BIN)/pytest

# The local cluster up, then a sample agent pod running on it.
demo: $(VENV)
	e2e/local/cluster up
	e2e/local/kubectl apply -f examples/sample-pod.yaml
	e2e/local/kubectl wait --for=condition=Ready pod/sample-agent --timeout=120s
	e2e/local/kubectl get pods -o wide
	@echo
	@echo "The sample pod answers on its own address:"
	curl -fsS "http://$$(e2e/local/kubectl get pod sample-agent -o jsonpath='{.status.podIP}'):8080/healthz"
	@echo
	@echo "Next: e2e/local/kubectl logs sample-agent; e2e/local/cluster status; e2e/local/cluster down"

clean:
	e2e/local/cluster down || true
	rm -rf $(VENV) .local-cluster

# Regenerate the CRDs from the pydantic models (a unit test fails when they are stale).
crds: $(VENV)
	$(BIN)/python -m foundation_operator.crds
