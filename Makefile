# The two commands: `make run` and `make test`. Everything else is set-up they call.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest bench clean schema

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

# make run PORT=8080 HOST=0.0.0.0 (defaults: DEVSERVER_PORT and DEVSERVER_HOST, else 5000
# on 127.0.0.1)
PORT ?= $(or $(DEVSERVER_PORT),5000)
HOST ?= $(or $(DEVSERVER_HOST),127.0.0.1)
run: $(STAMP)
	$(BIN)/devserver serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check execution_history exports devserver tests bench
	$(BIN)/ruff format --check execution_history exports devserver tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy execution_history exports devserver bench

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Regenerate the published JSON Schemas (tests check they are current): the record's
# (what the API answers) and the JSON export's (the record plus export_format_version).
schema: $(STAMP)
	$(BIN)/python -c "import json; from execution_history import ExecutionRecord; print(json.dumps(ExecutionRecord.model_json_schema(), indent=2, sort_keys=True))" > docs/execution-record.schema.json
	$(BIN)/python -c "import sys; from exports._json import schema_text; sys.stdout.write(schema_text())" > exports/schema/json-export.schema.json
	cp exports/schema/json-export.schema.json docs/json-export.schema.json
