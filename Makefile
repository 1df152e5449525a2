# The single entry point for developers and CI (.ci/run runs `make test`).
# Everything it needs is installed by these files into .local/ (git-ignored); no Docker.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := .local/venv
VENV_LINT   := .local/venv-lint
VENV_DEPLOY := .local/venv-deploy
STACK       := python3 infra/local/stack.py
WITH_STACK  := infra/local/with-stack.sh

export SAM_CLI_TELEMETRY := 0

# cargo-nextest runs every test in its own process (parallel, isolated); cargo test otherwise.
ifeq ($(shell cargo nextest --version >/dev/null 2>&1 && echo yes),yes)
TEST_CMD := cargo nextest run --workspace --no-fail-fast
else
TEST_CMD := cargo test --workspace --no-fail-fast
endif

.PHONY: help setup setup-lint setup-deploy setup-browser build build-stack stack-up stack-down stack-status \
        test demo lint fmt validate bench soak deploy clean-local ci

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

# --------------------------------------------------------------------------- tools

setup: $(VENV)/.installed ## local tools into .local/venv: moto server, cargo-lambda, cfn-lint

$(VENV)/.installed: infra/local/requirements.txt infra/local/venv.sh
	infra/local/venv.sh $(VENV) infra/local/requirements.txt
	touch $@

setup-lint: $(VENV_LINT)/.installed ## checkov into .local/venv-lint (make lint only)

$(VENV_LINT)/.installed: infra/local/requirements-lint.txt infra/local/venv.sh
	infra/local/venv.sh $(VENV_LINT) infra/local/requirements-lint.txt
	touch $@

setup-deploy: $(VENV_DEPLOY)/.installed ## the AWS SAM CLI into .local/venv-deploy (deploy/validate only)

$(VENV_DEPLOY)/.installed: infra/local/requirements-deploy.txt infra/local/venv.sh
	infra/local/venv.sh $(VENV_DEPLOY) infra/local/requirements-deploy.txt
	touch $@

# The connect page's browser test (tests/e2e/tests/connect_page.rs): Debian's Chromium and
# playwright-core from the committed package-lock.json (no browser download of its own).
BROWSER_DIR := tests/e2e/browser
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

setup-browser: $(BROWSER_DIR)/node_modules/.installed ## headless Chromium (Debian) + playwright-core for the browser test
	@if ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing Debian's chromium"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

$(BROWSER_DIR)/node_modules/.installed: $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund
	touch $@

# --------------------------------------------------------------------------- build

build: ## build every binary of the workspace (functions, simulator, e2e tools)
	cargo build --workspace --bins

build-stack: # what stack-up runs: the simulator and the provisioning tool
	cargo build -p m365-sim -p e2e --bins

# --------------------------------------------------------------------------- local stack

stack-up: setup build-stack ## start moto + the M365 simulator, provision, write .local/stack.env
	$(STACK) up

stack-down: ## stop what stack-up started (safe to run twice)
	$(STACK) down

stack-status: ## is the local stack up?
	$(STACK) status

# --------------------------------------------------------------------------- test and run

# Doc tests first (nextest does not run them): the run then closes on the full test summary.
test: setup setup-browser build ## every test of the workspace against the local stack (starts and stops it)
	cargo test --workspace --doc
	$(WITH_STACK) $(TEST_CMD)

demo: setup build ## run the product end to end on the local stack and print a report
	$(WITH_STACK) cargo run --quiet -p e2e --bin demo

SOAK_ROUNDS ?= 40
SOAK_MESSAGES ?= 25
CHAOS_ROUNDS ?= 30
CHAOS_MESSAGES ?= 10
CHAOS_OUTAGE_ROUNDS ?= 3
FUZZ_CASES ?= 20000
# The reliability suite at scale (release build): faults + crashes, identity chaos, bad input.
# `make test` runs the same tests short. A fixed SOAK_SEED replays a run.
soak: setup build ## long reliability run: faults + crashes, identity chaos, fuzzing (release build)
	cargo build --release --workspace --bins
	PROPTEST_CASES=$(FUZZ_CASES) cargo test -p outlook-core --release --test fuzz_inputs -- --nocapture
	$(WITH_STACK) env SOAK_ROUNDS=$(SOAK_ROUNDS) SOAK_MESSAGES=$(SOAK_MESSAGES) \
		CHAOS_ROUNDS=$(CHAOS_ROUNDS) CHAOS_MESSAGES=$(CHAOS_MESSAGES) CHAOS_OUTAGE_ROUNDS=$(CHAOS_OUTAGE_ROUNDS) \
		cargo test -p e2e --release --test reliability --test identity_chaos --test api_bad_input -- --nocapture

FUNCTION_CRATES := oauth-callback sync-dispatcher mailbox-sync rule-eval management-api

# The functions run as release binaries (what Lambda runs: sizes, cold starts and memory); the
# simulator and the bench itself stay debug builds.
bench: setup build ## measure Graph efficiency, idle cost, rules, functions, fan-out; writes BENCHMARKS.md
	cargo build --release $(addprefix -p ,$(FUNCTION_CRATES))
	cargo bench -p outlook-core --bench rules -- --quick 2>&1 | tee .local/bench-rules.txt
	$(WITH_STACK) env E2E_BIN_DIR=$(CURDIR)/target/release \
		cargo run --quiet -p e2e --bin bench -- --rules .local/bench-rules.txt --out BENCHMARKS.md

# --------------------------------------------------------------------------- checks

fmt: ## format the workspace
	cargo fmt --all

lint: setup setup-lint ## rustfmt, clippy -D warnings, cfn-lint, checkov
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint infra/template.yaml
	$(VENV_LINT)/bin/checkov -f infra/template.yaml --framework cloudformation --quiet --compact --skip-download

validate: setup-deploy ## sam validate --lint
	cd infra && ../$(VENV_DEPLOY)/bin/sam validate --lint

# --------------------------------------------------------------------------- deploy

# sam build compiles each function with cargo-lambda (arm64, from the venv; it cross-compiles
# with zig from the same wheel set), then sam deploy --guided asks for the parameters.
deploy: setup setup-deploy ## sam build + sam deploy --guided (infra/samconfig.toml)
	cd infra && PATH="$(abspath $(VENV))/bin:$$PATH" ../$(VENV_DEPLOY)/bin/sam build
	cd infra && ../$(VENV_DEPLOY)/bin/sam deploy --guided

# --------------------------------------------------------------------------- housekeeping

clean-local: stack-down ## remove .local/ (virtualenvs, logs, stack state)
	rm -rf .local

ci: test ## what CI runs
