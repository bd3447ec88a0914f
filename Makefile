# Mailroom - every target bootstraps what it needs (virtualenvs, packages).
#   make run    the whole system on this machine: http://127.0.0.1:3000 (PORT=... to change)
#   make test   lint, type checks, unit + integration + browser + chaos tests, sam validate --lint, sam build
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .tools/sam
SAM := $(SAM_VENV)/bin/sam
SCAN_VENV := .tools/scan
SCAN := $(SCAN_VENV)/bin
PORT ?= 3000
# The SAM CLI needs a region to validate; it never calls AWS for validate or build.
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
# uv reads the platform's certificate store (where a machine's own CA, e.g. a proxy's, lives).
export UV_SYSTEM_CERTS := 1
UV_VERSION := 0.13.9
# sam build runs the layers' Makefiles: they need a python3 with pip (the venv's).
SAM_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: help admin venv sam scan-tools run test lint typecheck unit integration chaos pytest validate build scan scan-template scan-code scan-deps deploy deploy-prod lock clean bench redrive browser screenshots

help:
	@echo "make run       start Mailroom locally on http://127.0.0.1:$(PORT): the web app at /, the API at /api (moto as AWS; no Docker, no account)"
	@echo "make test      ruff, mypy, pytest (unit, integration, browser, chaos), sam validate --lint, sam build, make scan"
	@echo "make scan      checkov on template.yaml, bandit on the code, scripts/audit_deps.py (PyPI's advisories) of the layer's and the dev packages (docs/security-infrastructure.md)"
	@echo "make browser   the browser tests alone (headless chromium); failures leave screenshots in test-artifacts/browser/"
	@echo "make screenshots  retake docs/screenshots/ (the README's pictures) with the browser tests"
	@echo "make build     sam build (layers built for python3.13/arm64 without Docker)"
	@echo "make deploy    sam build && sam deploy, then publish web/ to CloudFront (samconfig.toml [default]; deploy-prod for [prod])"
	@echo "make admin EMAIL=you@example.com   create an admin of the deployed stack (Cognito mails a temporary password)"
	@echo "make redrive   show dead-lettered tasks and their reasons, then move them back (URL=... for a stack)"
	@echo "make chaos     the chaos test alone, with its counts (SEEDS=\"1 2 3\" by default)"

$(VENV)/.installed: requirements-dev.txt layers/dependencies/requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv --upgrade-deps $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements-dev.txt -e .
	@touch $@

$(SAM_VENV)/.installed: requirements-sam.txt $(VENV)/.installed
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv --upgrade-deps $(SAM_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(SAM_VENV)/bin/python -r requirements-sam.txt
	@touch $@

# The scanners (checkov, bandit) in their own virtualenv too: checkov pins an
# older boto3, packaging and pydantic.
$(SCAN_VENV)/.installed: requirements-scan.txt $(VENV)/.installed
	@test -x $(SCAN_VENV)/bin/python || $(PYTHON) -m venv --upgrade-deps $(SCAN_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(SCAN_VENV)/bin/python -r requirements-scan.txt
	@touch $@

venv: $(VENV)/.installed
sam: $(SAM_VENV)/.installed
scan-tools: $(SCAN_VENV)/.installed

run: venv
	PORT=$(PORT) $(PY) -m mailroom_local

test: lint typecheck pytest validate build scan
	@echo "make test: all green"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy
	@for app in functions/*/app.py; do $(VENV)/bin/mypy "$$app" || exit 1; done

# Two workers (the CI machine's cores), a test file per worker at a time: a module's
# embedded runtime and moto's process-wide state stay within one worker.
PYTEST_WORKERS ?= 2
pytest: venv
	rm -rf test-artifacts/browser
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile

# The web app in headless chromium (the system's: Debian's `chromium`); see docs/web.md.
browser: venv
	rm -rf test-artifacts/browser
	$(VENV)/bin/pytest tests/browser

screenshots: venv
	MAILROOM_DOCS_SCREENSHOTS=docs/screenshots $(VENV)/bin/pytest tests/browser -q

unit: venv
	$(VENV)/bin/pytest tests/unit

integration: venv
	$(VENV)/bin/pytest tests/integration

# The chaos test (also part of `make test`): faults from each seed, counts printed.
chaos: venv
	$(if $(SEEDS),MAILROOM_CHAOS_SEEDS="$(SEEDS)") $(VENV)/bin/pytest tests/chaos -p no:logging --show-capture=no -q

# Dead letters: list them with their reasons, then redrive them (after fixing the cause).
# URL defaults to the local runtime's /api; for a stack: make redrive URL=https://<api>.execute-api.<region>.amazonaws.com/<stage>
redrive: venv
	$(PY) -m mailroom_local.redrive $(if $(URL),--url $(URL)) $(REDRIVE_ARGS)

validate: sam
	$(SAM) validate --lint

build: sam venv
	$(SAM_ENV) $(SAM) build

# Security scanners (docs/security-infrastructure.md); each fails the build on a finding.
scan: scan-template scan-code scan-deps
	@echo "make scan: no finding"

# checkov: zero failed checks; every skip is inline in the template (Metadata: checkov: skip)
# with its reason. Offline: no download of the vendor's guidelines (BC_SKIP_MAPPING,
# --skip-download), so it neither waits on nor fails for a network it cannot reach.
# checkov exits 0 when it parsed nothing, so the summary line must say it checked something.
scan-template: scan-tools
	@set -o pipefail; BC_SKIP_MAPPING=TRUE $(SCAN)/checkov -f template.yaml --framework cloudformation \
		--compact --quiet --skip-download | tee $(SCAN_VENV)/checkov.txt
	@grep -Eq "Passed checks: [1-9][0-9]*, Failed checks: 0," $(SCAN_VENV)/checkov.txt \
		|| { echo "checkov: no summary of passed checks (was template.yaml parsed?)"; exit 1; }

# bandit: no medium or high finding in the code that ships or runs Mailroom (tests excluded);
# a `# nosec BXXX` needs its reason on the same line.
scan-code: scan-tools
	$(SCAN)/bandit -r functions layers/mailroom local scripts -ll -q

# The dependency audit (scripts/audit_deps.py; docs/security-infrastructure.md): what ships (the
# layer's pins) and the dev virtualenv as installed (.venv, transitive packages included), against
# the advisories PyPI's project JSON lists for each package's latest release. A pin that is not the
# latest release cannot be audited from here (no per-release JSON, no OSV): a finding, unless
# allowed below with its reason. A network failure, or a run that audited nothing, fails too.
AUDIT := $(PY) scripts/audit_deps.py $(AUDIT_ARGS)
# Dev-only pins held back by another package's bounds, or type stubs (.pyi only, never executed).
AUDIT_DEV_ALLOW := \
	--allow "python-dateutil=botocore requires python-dateutil<3" \
	--allow "mpmath=sympy (cfn-lint's) requires mpmath<1.4" \
	--allow "networkx=networkx 3.7 requires Python>=3.12; .venv is 3.11 (cfn-lint's)" \
	--allow "jsonschema-rs=schemathesis 4.32.5 requires jsonschema-rs<0.61" \
	--allow "boto3-stubs=type stubs for mypy (.pyi only, never executed)" \
	--allow "types-pyyaml=type stubs for mypy (.pyi only, never executed)"
# Both runs always print their table; the target fails if either has a finding.
scan-deps: venv
	@TIMEFORMAT="scan-deps: %1R s"; status=0; time { \
		$(AUDIT) --label layer layers/dependencies/requirements.txt || status=1; \
		$(AUDIT) --label dev --installed $(AUDIT_DEV_ALLOW) || status=1; }; exit $$status

# sam deploy, then the web app: web/ to the stack's bucket and a CloudFront invalidation (docs/hosting.md).
deploy: build
	$(SAM) deploy
	$(PY) scripts/publish_web.py

# The first (or another) admin of the deployed stack: Cognito mails a temporary password (docs/security.md).
admin: venv
	@test -n "$(EMAIL)" || { echo "usage: make admin EMAIL=you@example.com [CONFIG_ENV=prod]"; exit 2; }
	$(PY) scripts/create_admin.py --email "$(EMAIL)" --config-env "$(or $(CONFIG_ENV),default)"

deploy-prod: build
	$(SAM) deploy --config-env prod
	$(PY) scripts/publish_web.py --config-env prod

# Re-pin the layer's packages for the Lambda platform after editing requirements.in;
# `make lock UPGRADE=1` takes the latest release of every package (what scan-deps asks for).
# The recipe is the layer's Makefile's, next to its list of required packages that do not ship.
lock: venv
	$(MAKE) -C layers/dependencies lock UV="$(CURDIR)/$(VENV)/bin/uv" $(if $(UPGRADE),UPGRADE=1)

# Issues #3 and #9's measurements: worker throughput, pacing, fan-out of BENCH_ARGS'
# --subscribers (default 100000) on the embedded runtime, cold start, package size (sam build),
# sign-up latency, AWS requests and modeled cost; prints a report and writes bench/results.md.
# Each part alone: python -m bench.coldstart | bench.size | bench.latency | bench.cost | bench.tracing.
bench: venv sam
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
