# The two set-up commands of the README. Both create the virtualenv from requirements.txt when it is missing
# or older than requirements.txt; nothing else is downloaded. `make demo` leaves its servers running for
# `make demo-shell` (a shell with the demo's settings) until `make demo-stop`.
PYTHON ?= python3
VENV ?= .venv

.PHONY: demo demo-shell demo-stop test test-all lint e2e dist

$(VENV)/.installed: requirements.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/python scripts/demo.py $(if $(DSN),--postgres $(DSN))

demo-shell: $(VENV)/.installed
	@$(VENV)/bin/python scripts/demo.py shell

demo-stop:
	@if [ -x $(VENV)/bin/python ]; then $(VENV)/bin/python scripts/demo.py stop; else echo "No demo is running."; fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The quick command: ruff, then every test but the slow and e2e ones (pyproject.toml's addopts): the unit and
# component tests and one DAG run, a few minutes. `make test-all` runs the slow ones too (what CI runs): about half
# an hour here. docs/testing.md says which tests are slow and why.
test: lint
	$(VENV)/bin/pytest

test-all: lint
	$(VENV)/bin/pytest -m "not e2e"

# The production layout (docker-compose.yaml's services as local processes, Celery workers standing for two hosts,
# this machine's Redis or RabbitMQ as the broker): tests/test_deployment.py. A few minutes.
e2e: $(VENV)/.installed
	$(VENV)/bin/pytest -m e2e -rP tests/test_deployment.py

# The distribution (docs/installing.md): dist/kingfisher_archive-<version>-py3-none-any.whl and its sdist, built
# offline with the build backend requirements.txt pins (`python -m build` does the same with a fresh one from PyPI).
dist: $(VENV)/.installed
	rm -rf dist
	$(VENV)/bin/python -m build --no-isolation --outdir dist .
