# Two commands on a fresh machine: `make demo` runs the demo, `make test` runs every check.
# Each sets itself up from the lock file (uv.lock) into .venv.

PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := var/uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/fedaccess
DEMO_PORT ?= 8000
DEMO_STS_PORT ?= 0
CLI_PYZ ?= dist/fedaccess.pyz

.PHONY: demo test lint typecheck pytest venv services bench clean cli

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) is required" >&2; exit 1; }
	$(PYTHON) -m venv var/uv
	var/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

venv: $(UV)
	UV_PYTHON=$(PYTHON) $(UV) sync --frozen --quiet

demo: venv
	DEMO_MODE=1 DEBUG=1 $(PY) manage.py migrate --verbosity 0
	DEMO_MODE=1 DEBUG=1 $(PY) manage.py seed_demo
	DEMO_MODE=1 DEBUG=1 BASE_URL=http://127.0.0.1:$(DEMO_PORT) $(PY) manage.py demo_idp
	DEMO_MODE=1 DEBUG=1 BASE_URL=http://127.0.0.1:$(DEMO_PORT) $(PY) manage.py run_demo 127.0.0.1:$(DEMO_PORT) --sts-port $(DEMO_STS_PORT)

# The fedaccess client alone, as one file any python3 >= 3.9 runs (standard library only):
# copy it onto PATH as `fedaccess`.
cli:
	rm -rf $(CLI_PYZ).build && mkdir -p $(CLI_PYZ).build/federation
	cp federation/__init__.py federation/cli.py federation/cli_portal.py federation/cli_aws_config.py $(CLI_PYZ).build/federation/
	printf 'import sys\nfrom federation.cli import main\nsys.exit(main())\n' \
	  > $(CLI_PYZ).build/__main__.py
	python3 -m zipapp $(CLI_PYZ).build -o $(CLI_PYZ) -p '/usr/bin/env python3' -c
	rm -rf $(CLI_PYZ).build
	@echo "built $(CLI_PYZ): install it with  install -m 755 $(CLI_PYZ) ~/.local/bin/fedaccess"

services:
	@DATABASE_URL=$(TEST_DATABASE_URL) scripts/ensure-services

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	DEBUG=1 $(VENV)/bin/mypy

pytest: venv
	@scripts/ensure-system-packages
	@DATABASE_URL=$(TEST_DATABASE_URL) scripts/ensure-services
	$(PY) scripts/check-libxml2
	npm ci --no-audit --no-fund --prefix tests/oidc_provider
	npm ci --no-audit --no-fund --prefix tests/browser
	DATABASE_URL=$(TEST_DATABASE_URL) DEBUG=1 $(PY) manage.py makemigrations --check --dry-run
	DATABASE_URL=$(TEST_DATABASE_URL) BASE_URL=https://fed.example.com \
	  RATE_LIMIT_CACHE_URL=redis://127.0.0.1:6379/0 \
	  SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(64))') \
	  $(PY) manage.py check --deploy --fail-level WARNING
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: venv services
	@scripts/ensure-system-packages
	DATABASE_URL=$(TEST_DATABASE_URL) DEBUG=1 $(PY) bench/entitlements.py
	DATABASE_URL=$(TEST_DATABASE_URL) DEBUG=1 $(PY) bench/mapping_import.py
	DATABASE_URL=$(TEST_DATABASE_URL) DEBUG=1 $(PY) bench/issuance.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/saml_acs.py
	DATABASE_URL=$(TEST_DATABASE_URL) DEBUG=1 $(PY) bench/approvals.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/metrics.py

clean:
	rm -rf $(VENV) var/uv
