# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export GX_ANALYTICS_ENABLED := False
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
# `airflow standalone` starts its parts by running `airflow` from PATH.
export PATH := $(BIN):$(PATH)

.PHONY: install airflow-db demo simulate test lint airflow bench bench-checks clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

airflow-db: $(AIRFLOW_HOME)/airflow.db

$(AIRFLOW_HOME)/airflow.db: $(STAMP)
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/migrate.log; exit 1)

simulate: $(STAMP)
	$(BIN)/python -m modelwatch simulate

demo: airflow-db
	$(BIN)/python -m modelwatch demo

# DAG runs share Airflow's SQLite metadata database, so they run after the parallel part.
test: airflow-db
	$(BIN)/python -m pytest -n 2 --ignore=tests/dags
	$(BIN)/python -m pytest tests/dags

lint: $(STAMP)
	$(BIN)/ruff check .

airflow: airflow-db
	@echo "Airflow UI: http://localhost:8080  (user admin; password printed below and in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"
	$(BIN)/airflow standalone

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-checks: $(STAMP)
	$(BIN)/python -m bench.checks

clean:
	rm -rf $(VENV) $(AIRFLOW_HOME) data
