# The two commands a newcomer needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PORT ?= 8080
FHIR_FACADE_TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export FHIR_FACADE_TEST_POSTGRES_URL

GATE := conformance/gate
CLIENTS := tests/e2e/clients

.PHONY: install demo test check conformance clean

# The venv's own pip (Python 3.11 bundles 22.3 or newer) installs the same packages as
# the newest pip does; fetching a newer one first cost 5-10 s on every fresh clone.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

# The validator gate's node validators, exactly as pinned in the committed lockfile
# (--prefer-offline: the lockfile pins every version and hash, so a warm npm cache serves
# them without asking the registry again).
# Without npm the node validators (and the HL7 examples) are skipped by the tests,
# unless FHIR_FACADE_REQUIRE_CONFORMANCE=1 (CI) makes that a failure.
$(GATE)/node_modules/.installed: $(GATE)/package.json $(GATE)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(GATE) && npm ci --prefer-offline --no-audit --no-fund && touch node_modules/.installed; \
	else \
		echo "npm not found: node validators skipped (install Node 20+ to run them)"; \
	fi

# fhir-kit-client for the client-library scenario (tests/e2e/test_client_libraries.py).
$(CLIENTS)/node_modules/.installed: $(CLIENTS)/package.json $(CLIENTS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(CLIENTS) && npm ci --prefer-offline --no-audit --no-fund && touch node_modules/.installed; \
	else \
		echo "npm not found: the fhir-kit-client scenario is skipped (install Node 20+)"; \
	fi

install: $(VENV)/.installed $(GATE)/node_modules/.installed $(CLIENTS)/node_modules/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/fhir-facade demo --port $(PORT)

# One test process per core (pytest-xdist), an idle one taking tests from the other;
# `make test PYTEST_ARGS=-n0` runs them in one.
PYTEST_ARGS ?= -n auto --dist worksteal
test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

check: install
	$(VENV)/bin/ruff check fhir_facade mappings store tests benchmarks conformance
	$(VENV)/bin/ruff format --check fhir_facade mappings store tests benchmarks conformance
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Validator gate: `make conformance` walks a fresh local demo server;
# `make conformance URL=https://host/fhir TOKEN=... [LIMITED_TOKEN=...] [OUT=dir]` any server.
conformance: install
	$(VENV)/bin/python -m conformance.gate $(if $(URL),--base-url "$(URL)" --token "$(TOKEN)") \
		$(if $(LIMITED_TOKEN),--limited-token "$(LIMITED_TOKEN)") $(if $(OUT),--out "$(OUT)")

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
