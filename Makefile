# The few commands a newcomer types. `make run` starts everything; `make test` runs
# the whole suite. Both install what they need into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PYTHONPATH := libs/relais_kit:services/referral:services/sites:services/notifications:services/desk:services/ops:conformance:.

.PHONY: install run test deploy-check prometheus kannel alerts test-unit test-integration test-e2e test-faults test-browser screens chromium lint typecheck contract contract-release bench lock clean

# npm projects: the DSFR styles of the server-rendered UIs (desk, adviser pages), the Node.js operator example, the
# AsyncAPI validator and HTML generator of the contract guards, the image definition's linter.
NPM_PROJECTS := libs/relais_kit examples/node-kafkajs tools/contract deploy/container

install: $(VENV)/.installed $(NPM_PROJECTS:%=%/node_modules/.package-lock.json)

# `npm ci` installs exactly the lock file; its own copy of it marks the install done.
%/node_modules/.package-lock.json: %/package-lock.json
	cd $* && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

run: install prometheus kannel
	$(BIN)/python -m deploy.local.run

# The fault scenarios (whole platforms, minutes each) are `make test-faults`: CI runs both.
test: install chromium prometheus kannel alerts lint typecheck contract
	$(BIN)/pytest -q --ignore=tests/faults

# Debian's Prometheus: the server `make run` starts, and promtool (deploy/prometheus
# checks); does nothing when present.
prometheus:
	bash deploy/prometheus/install-prometheus.sh

# The compose site's Prometheus configuration and the alert rules checked, and the rules
# tested against their cases (deploy/prometheus/rules.test.yml). Without promtool it says
# so and passes, unless RELAIS_REQUIRE_BROWSER=1 (CI).
alerts: prometheus
	@if ! command -v promtool >/dev/null 2>&1; then \
	    echo "alerts: promtool not installed (make prometheus as root); alert rules not tested" >&2; \
	    test "$$RELAIS_REQUIRE_BROWSER" != 1; \
	else \
	    promtool check config deploy/prometheus/prometheus.yml && \
	    promtool check rules deploy/prometheus/rules.yml && \
	    promtool test rules deploy/prometheus/rules.test.yml; \
	fi

# The deployment files alone: generated ACLs up to date, compose against its schema,
# Kubernetes resources against theirs, the image definition linted.
deploy-check: install prometheus
	$(BIN)/python deploy/kafka/generate.py --out deploy/kafka/generated --check
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
	$(BIN)/pytest -q tests/unit/test_deploy_manifests.py tests/unit/test_deploy_acls.py tests/unit/test_deploy_kannel.py

# Debian's Kannel (bearerbox, smsbox) and fakesmsc: the SMS gateway `make run` and the
# tests start; does nothing when present.
kannel:
	bash deploy/kannel/install-kannel.sh

# Debian's Chromium (and its French locale) for the browser tests; does nothing when present.
chromium:
	bash tests/browser/install-chromium.sh

# Playwright driving headless Chromium through the pages; screenshots into docs/screens/.
test-browser: install chromium
	$(BIN)/pytest -q tests/browser

# The same, saving the screenshots as the README's pictures.
screens: install chromium
	RELAIS_SCREENS_DIR=docs/screens $(BIN)/pytest -q tests/browser

test-unit: install
	$(BIN)/pytest -q tests/unit

test-integration: install
	$(BIN)/pytest -q tests/integration

test-e2e: install
	$(BIN)/pytest -q tests/e2e

# kill -9, broker SIGSTOP, PostgreSQL restart over 300 referrals each (also in `make test`)
test-faults: install
	$(BIN)/pytest -q -s tests/faults

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy libs/relais_kit/relais_kit services simulator deploy/local deploy/kafka bench tools/contract conformance/relais_conformance deploy/container deploy/kannel

# The contract guards: AsyncAPI validation, compatibility with the last release
# (schemas/released/), the HTML reference in build/contract/index.html.
contract: install
	bash tools/contract/check.sh

# Snapshot the contract as released version VERSION (e.g. make contract-release VERSION=1.1.0).
contract-release: install
	$(BIN)/python tools/contract/compat.py release $(VERSION)

bench: install
	$(BIN)/python bench/bench.py

lock: install
	$(BIN)/pip install -q -r requirements.in
	$(BIN)/pip freeze --exclude-editable > requirements.txt

clean:
	rm -rf .data $(VENV) $(NPM_PROJECTS:%=%/node_modules)
