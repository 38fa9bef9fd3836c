# MLOps Console — `make run` serves the dashboard on the embedded demo, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8501
export MLOPS_DATA_DIR ?= $(CURDIR)/.mlops

.PHONY: run test test-fast lint bench seed system-deps clean

$(BIN)/.runtime: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	@touch $@

$(BIN)/.dev: requirements-dev.txt $(BIN)/.runtime
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	@touch $@

GATEWAY_PORT ?= 8080
INGEST_PORT  ?= 8090

## run: install, upgrade the console database, seed the demo if the (local) registry is empty, then serve the
## dashboard on :$(PORT) beside the serving gateway (:$(GATEWAY_PORT)), the ingest (:$(INGEST_PORT)) and a
## gentle demo traffic stream; Ctrl-C stops them all
run: $(BIN)/.runtime
	$(BIN)/python -m services db upgrade
	$(BIN)/python -m services seed-demo --if-empty
	$(BIN)/python -m services seed-history --if-empty
	@bash -c 'trap "kill 0" EXIT; \
	  MLOPS_INGEST_URL=http://127.0.0.1:$(INGEST_PORT)/ $(BIN)/python -m services up --port $(GATEWAY_PORT) \
	    --ingest-port $(INGEST_PORT) & \
	  $(BIN)/python -m streamlit run dashboard/app.py --server.port $(PORT) --server.headless true'

seed: $(BIN)/.runtime
	$(BIN)/python -m services seed-demo

## system-deps: Debian packages and services the tests need (as root; CI runs this)
system-deps:
	@bash deploy/ensure-system.sh

## test: install what the tests need, start what is not running, run the whole suite
test: $(BIN)/.dev system-deps
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 $(PYTEST_ARGS)

test-fast: $(BIN)/.dev
	$(BIN)/python -m pytest -q -m "not e2e" $(PYTEST_ARGS)

lint: $(BIN)/.dev
	$(BIN)/python -m ruff check .

bench: $(BIN)/.dev
	$(BIN)/python bench/registry_pages.py
	$(BIN)/python bench/actions.py
	$(BIN)/python bench/monitoring.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/drift_view.py
	$(BIN)/python bench/explain.py
	$(BIN)/python bench/pages_browser.py
	$(BIN)/python bench/load.py

.PHONY: bench-scale
bench-scale: $(BIN)/.dev  # the gateway at 1, 2 and 4 worker processes under the same load (bench/scale.py)
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .mlops .pytest_cache
