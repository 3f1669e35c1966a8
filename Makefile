# The two commands: `make demo` (set up and start the app with demo data) and `make test` (the whole suite).
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
DICOM_PORT ?= 11112
DEMO_STUDIES ?= 6
export PYTHONUNBUFFERED := 1

.PHONY: venv frontend schema demo demo-setup lint test services bench model clean

venv: .venv/.installed
.venv/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	touch $@

frontend: webapp/static/viewer/.built
webapp/static/viewer/.built: $(shell find frontend/src -type f 2>/dev/null) frontend/package.json frontend/package-lock.json \
		frontend/openapi.yaml
	cd frontend && npm ci --no-audit --no-fund && npm run build
	touch $@

# The API schema the frontend's types are generated from (npm run build): rerun after changing a serializer or a
# view; tests/webapp/test_openapi_file.py fails while the file and the server disagree. Generated for PostgreSQL (the
# deployed database), whose integer ranges the schema states; nothing connects to it.
schema: venv var/secret_key
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/lungscope $(PY) manage.py spectacular --file frontend/openapi.yaml

# Set up and start: venv, frontend, database, demo users and phantom studies, then web server, worker and the DICOM
# listener (AE LUNGSCOPE on DICOM_PORT).
demo: demo-setup
	@bash scripts/run_demo.sh $(HOST) $(PORT) $(DICOM_PORT)

demo-setup: venv frontend var/secret_key
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py create_demo_users
	$(PY) manage.py make_demo --studies $(DEMO_STUDIES) --if-empty

# The demo's secret key: random, written once, readable by its owner only (settings read it when
# DJANGO_SECRET_KEY is unset), so no installation shares a known key.
var/secret_key:
	mkdir -p var && (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(50))' > $@)

# Start the services the suite talks to (Postgres, Redis) when they are down; install chromium for browser tests.
services:
	@bash scripts/ensure_services.sh

# Linters, before the suite: ruff (rules in pyproject.toml), the TypeScript checker on the viewer (the build also
# runs it, but only when frontend sources change) and ESLint (frontend/eslint.config.js).
lint: venv frontend
	.venv/bin/ruff check .
	cd frontend && npm run typecheck && npm run lint

test: venv frontend lint services
	.venv/bin/pytest -p no:cacheprovider $(PYTEST_ARGS)

# The benchmarks print figures and ratios (bench/out/*.json); bench/ucsd.py (real data, ~11 min on two cores) runs on
# its own.
BENCHES ?= ingest saliency analyze viewer load
bench: venv frontend services
	for b in $(BENCHES); do $(PY) bench/$$b.py || exit 1; done

# Train the shipped default bundle (fixed seed; see models/default/MODEL_CARD.md).
model: venv
	$(PY) -m training train-default --out models/default

clean:
	rm -rf var .venv frontend/node_modules webapp/static/viewer
