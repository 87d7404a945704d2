# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
# This checkout's code and data folder, also when the checkout is a copy whose
# .venv still points at the original's (an editable install records one path).
export PYTHONPATH := $(CURDIR)/include$(if $(PYTHONPATH),:$(PYTHONPATH))
export MODELWATCH_DATA_DIR ?= $(CURDIR)/data
AIRFLOW_PORT ?= 8080
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export GX_ANALYTICS_ENABLED := False
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
# `airflow standalone` starts its parts by running `airflow` from PATH.
export PATH := $(BIN):$(PATH)

.PHONY: install airflow-db demo simulate test lint airflow airflow-env paths bench bench-checks clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

# Airflow's metadata database: the embedded SQLite file, or PostgreSQL for backfills while the
# scheduler runs, e.g. AIRFLOW_DB=postgresql+psycopg://postgres@127.0.0.1:5432/airflow (migrated each time).
ifdef AIRFLOW_DB
# A shell set up for SQLite by `make airflow-env` carries SQLite's connect arguments: not for PostgreSQL.
unexport AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := $(AIRFLOW_DB)
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC := $(AIRFLOW_DB)
airflow-db: $(STAMP)
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/migrate.log; exit 1)
else
airflow-db: $(AIRFLOW_HOME)/airflow.db
endif

$(AIRFLOW_HOME)/airflow.db: $(STAMP)
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/migrate.log; exit 1)

simulate: $(STAMP)
	$(BIN)/python -m modelwatch simulate

demo: airflow-db
	$(BIN)/python -m modelwatch demo

# DAG runs share Airflow's SQLite metadata database, so they run after the parallel part;
# the end-to-end tests start whole Airflows (scheduler, workers, browser), one at a time.
test: airflow-db
	$(BIN)/python -m pytest -n 2 --ignore=tests/dags --ignore=tests/e2e
	$(BIN)/python -m pytest tests/dags
	$(BIN)/python -m pytest tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check .

# API server, scheduler, DAG processor and triggerer; Ctrl-C or SIGTERM stops them all.
airflow: airflow-db
	@echo "Airflow UI: http://localhost:$(AIRFLOW_PORT)  (user admin; password in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"
	$(BIN)/python -m modelwatch.airflow_services --port $(AIRFLOW_PORT) --stop-with-parent

paths: $(STAMP)
	@$(BIN)/python -m modelwatch paths

# `eval "$$(make -s airflow-env)"` sets this checkout's Airflow environment in a shell, for the airflow CLI.
airflow-env:
	@echo 'export AIRFLOW_HOME=$(AIRFLOW_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(AIRFLOW__CORE__DAGS_FOLDER)'
	@echo 'export AIRFLOW__CORE__PLUGINS_FOLDER=$(AIRFLOW__CORE__PLUGINS_FOLDER) AIRFLOW__CORE__LOAD_EXAMPLES=False'
	@echo 'export PYTHONPATH=$(PYTHONPATH) MODELWATCH_DATA_DIR=$(MODELWATCH_DATA_DIR) PATH=$(BIN):$$PATH'
	@$(if $(AIRFLOW_DB),echo 'unset AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS; export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(AIRFLOW_DB) AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=$(AIRFLOW_DB)',echo 'export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS=modelwatch.airflow_services.SQLITE_CONNECT_ARGS')

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-checks: $(STAMP)
	$(BIN)/python -m bench.checks

clean:
	rm -rf $(VENV) $(AIRFLOW_HOME) data
