# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install

$(BIN)/pytest: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/pytest

# A parallel demo suite on the embedded servers: each worker prints what it got.
demo: install
	env -u WORKER_UTILS_POSTGRES_URL -u WORKER_UTILS_REDIS_URL \
		$(BIN)/pytest examples -n auto -p no:randomly -v -s

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/worker-utils check .

test: lint
	$(BIN)/pytest -n 2 --durations=10
