# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install dist dist-check docs integration

$(BIN)/pytest: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/pytest

# A parallel demo suite on the embedded servers: ends with a table of what each worker got.
demo: install
	env -u WORKER_UTILS_POSTGRES_URL -u WORKER_UTILS_REDIS_URL \
		$(BIN)/pytest examples -n auto -p no:randomly --worker-utils-summary=table

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/worker-utils check .

# The suite starts hundreds of interpreters (inner runs and their xdist workers): let them
# cache compiled and assertion-rewritten bytecode even where the shell disables it, and skip
# anyio's pytest plugin, which no test uses and which costs every interpreter about 0.1 s.
test: lint
	env -u PYTHONDONTWRITEBYTECODE PYTEST_ADDOPTS="-p no:anyio $(PYTEST_ADDOPTS)" \
		$(BIN)/pytest -n 2 --durations=10

# The sdist and the wheel, as a release uploads them.
dist: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist

# The release checks (tests marked release): the sdist and the wheel each install into a
# clean venv and run the demo; the pre-commit hook runs through pre-commit try-repo.
dist-check: install
	$(BIN)/pytest -m release -n 2 -p no:randomly tests

# The documentation site in site/, as the test suite builds it; `$(BIN)/mkdocs serve` to preview.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# This project's PostgreSQL and Redis tests against servers in Docker containers
# (docs/docker.md); needs an engine: DOCKER_HOST, or `sudo tests/docker/engine.sh start`.
integration: install
	$(BIN)/python tests/docker/integration.py
