# The two commands of the README's quick start: `make demo` and `make test`.
# Both create the virtualenv and install what they need on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STORE ?= ablate-results
# pytest-xdist workers for `make test` (a module to a worker, the longest modules first)
TEST_WORKERS ?= 2

.PHONY: demo test test-stress lint bench bench-diagnosis clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[worker,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ablate run examples/seed-study.yaml --store $(STORE) --jobs 2

test: $(STAMP) browser
	$(BIN)/ruff check service workers tests bench
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The integration tests with worker clusters, 5 rounds in a row beside a CPU hog (issue 14).
test-stress: $(STAMP)
	$(BIN)/python tests/stress.py --rounds 5

# The report's browser test opens index.html in Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check service workers tests bench

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

# Planted-fault benchmark of `ablate diagnose` (15 cases, about 20 minutes on 2 cores).
bench-diagnosis: $(STAMP)
	$(BIN)/python bench/diagnosis.py --out $(STORE)/diagnosis-bench.json

clean:
	rm -rf $(VENV) $(STORE) .pytest_cache .ruff_cache
