# mlopshub: `make up` installs what is missing and starts the platform;
# `make test` runs every test; `make bench` measures; `make down` stops.
SHELL := /bin/bash
.DEFAULT_GOAL := up

# Debian's Python when there is one: workspaces run as their own Unix users,
# who must be able to read the interpreter (a pyenv under /root is private).
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
IS_ROOT := $(shell test "$$(id -u)" = 0 && echo yes)
APT_BASE := python3-venv python3-dev git nodejs npm r-base-core r-cran-irkernel r-cran-reticulate r-cran-jsonlite
APT_TEST := chromium shellcheck
export DVC_NO_ANALYTICS := 1
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false

.PHONY: up down status install test test-unit lint bench clean system-packages system-test-packages

up: install ## Start the platform at http://127.0.0.1:8000 (MLOPSHUB_PORT changes it)
	$(BIN)/mlopshub up

down: ## Stop the platform and every workspace
	@test -x $(BIN)/mlopshub && $(BIN)/mlopshub down || echo "mlopshub is not installed"

status:
	$(BIN)/mlopshub status

install: system-packages $(VENV)/.installed $(VENV)/.lab-installed $(VENV)/.r-installed node_modules/.installed

# apt-get only what is missing, and only as root; otherwise say what to install.
define ensure_apt
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$(IS_ROOT)" = yes ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else echo "please install these Debian packages (as root):$$missing"; \
	    case "$$missing" in *r-*) echo "(R workspaces need R; Python workspaces work without it)";; esac; fi; \
	fi
endef

system-packages:
	$(call ensure_apt,$(if $(shell command -v node),$(filter-out nodejs npm,$(APT_BASE)),$(APT_BASE)))

system-test-packages:
	$(call ensure_apt,$(APT_TEST))

$(VENV)/.installed: pyproject.toml environment.yml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[mlflow,test]'
	$(BIN)/mlopshub environment pip > $(VENV)/workspace-requirements.txt
	# One resolve for both: the workspace pins (dvc-s3 -> aiobotocore) bound botocore, and so boto3 with it.
	$(BIN)/pip install -q -e '.[mlflow,test]' -r $(VENV)/workspace-requirements.txt
	$(BIN)/pip check
	touch $@

# The JupyterLab extension: its build hook runs jlpm (Node is needed to build, not to run).
LAB := extensions/mlopshub-lab
$(VENV)/.lab-installed: $(VENV)/.installed $(LAB)/pyproject.toml $(LAB)/package.json $(wildcard $(LAB)/src/*.ts $(LAB)/style/*.css $(LAB)/schema/*.json)
	rm -rf $(LAB)/mlopshub_lab/labextension
	$(BIN)/pip install -q -e '$(LAB)[test]'
	touch $@

# The R helper, where R is (workspaces find it through R_LIBS).
$(VENV)/.r-installed: $(VENV)/.installed $(wildcard extensions/mlopshub-r/DESCRIPTION extensions/mlopshub-r/R/*.R extensions/mlopshub-r/inst/python/*.py)
	@if command -v R >/dev/null; then mkdir -p $(VENV)/lib/R && R CMD INSTALL --no-test-load --library=$(VENV)/lib/R extensions/mlopshub-r >/dev/null && touch $@; \
	else echo "R is not installed: R workspaces are unavailable"; fi

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

test: install system-test-packages lint ## Every test: lint, unit (Python and jest), integration (real platform), browser
	cd $(LAB) && PATH="$(CURDIR)/$(BIN):$$PATH" jlpm test
	# The extension's suite runs on its own: pytest-jupyter's fixtures would hold every test's event loop.
	cd $(LAB) && $(CURDIR)/$(BIN)/python -m pytest -ra tests
	# The adversarial suite first: its platform stops when it ends, before the shared one starts (one at a time).
	$(BIN)/python -m pytest -ra --durations=25 tests/unit tests/security tests/integration tests/e2e

test-unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit -q

lint: $(VENV)/.installed
	$(BIN)/ruff check hub tests bench extensions/mlopshub-lab

bench: install ## Benchmarks; results go to bench/results/ and docs/benchmarks.md
	$(BIN)/python -m bench

clean: down
	rm -rf $(VENV) node_modules
