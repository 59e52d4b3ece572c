# Bytemark ticket cache — developer and CI entry points. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# cargo-lambda and zig come from PyPI into the venv; put it first on PATH for every recipe.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
REQUIREMENTS := $(wildcard tests/mongo-standin/requirements.txt infra/requirements.txt requirements-tools.txt)
FUNCTIONS := get-tickets update-tickets push-log ttl-sweeper

.PHONY: soak test-node help venv test test-rust test-engine test-standin test-python openapi contract run build check-build bench bench-quick fuzz deploy lint clean

help:
	@echo "make run     - local stack: MongoDB (MONGODB_URI, else DocumentDB when its launcher is here, else the stand-in;"
	@echo "               DB=standin for the stand-in) + all four functions under cargo lambda watch"
	@echo "make test    - every test (Rust workspace on a real engine, integration tests on the stand-in too, the stand-in's"
	@echo "               own tests, infra and contract checks, make contract) + make build; the command CI runs"
	@echo "make test-rust / test-python - the quicker subsets (test-rust = test-engine + test-standin)"
	@echo "make openapi - regenerate api/openapi.json (the HTTP contract) from the code"
	@echo "make contract - schemathesis against the service as make run serves it (its own ports); prints the summary"
	@echo "make build   - release bootstraps with cargo lambda (x86_64 here; see infra/README.md for arm64) + glibc/size check"
	@echo "make soak    - the long soak: SOAK_SECONDS (600) with SOAK_ENVIRONMENTS (6) per function, faults on a schedule; prints its report"
	@echo "make bench   - benchmarks (writes bench/results.md); BENCH_QUICK=1 for a smoke run"
	@echo "make fuzz    - bounded cargo-fuzz runs"
	@echo "make deploy  - sam build + sam deploy with infra/samconfig.toml (needs AWS credentials and SAM CLI)"

$(VENV)/.installed: $(REQUIREMENTS)
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(foreach r,$(REQUIREMENTS),-r $(r))
	touch $@

venv: $(VENV)/.installed

# CI runs this: the release bootstraps built and checked first (glibc ≤ 2.34, sizes; the fleet test runs
# them), then every test, then the contract fuzzing (about 4 minutes).
test: venv build test-rust test-python test-node contract

# The whole Rust suite on the first engine the harness finds (MONGODB_URI, MongoDB 7 on Docker, DocumentDB through
# ../shared/documentdb, the stand-in: README "Engines"), then the integration tests again on the stand-in, which is
# what a user without Docker or DocumentDB gets. TEST_MONGODB=uri|container|documentdb|standin forces the first.
# --no-fail-fast: every test binary runs and reports, even after one failed.
test-rust: test-engine test-standin

test-engine: venv
	MONGO_STANDIN_PYTHON=$(CURDIR)/$(PY) cargo test --workspace --locked --no-fail-fast

test-standin: venv
	TEST_MONGODB=standin MONGO_STANDIN_PYTHON=$(CURDIR)/$(PY) cargo test --workspace --locked --no-fail-fast --test '*'

# The Node reader/writer of signed and encrypted passes against the vectors the Rust code writes.
test-node:
	node --test clients/node/

test-python: venv
	$(PY) -m pytest -q tests/mongo-standin $(wildcard infra/tests) api/tests

# The HTTP contract, generated from the code (openapi::tests fails when the committed file differs).
openapi:
	cargo run --quiet --locked -p lambda-adapter --bin openapi > api/openapi.json.new
	mv api/openapi.json.new api/openapi.json

# schemathesis against the running service (its own ports; api/contract/identities.py: local-mode identities).
contract: venv
	DB="$(DB)" bash infra/local/contract.sh

# DB=standin: the in-memory stand-in instead of DocumentDB (MONGODB_URI wins over both).
run: venv
	DB="$(DB)" bash infra/local/run.sh

build: venv
	cargo lambda build --release --locked $(foreach f,$(FUNCTIONS),--bin $(f))
	$(PY) infra/check_bootstrap.py target/lambda

bench: venv
	bash bench/run.sh

# The long soak (tests/tests/soak.rs): a fleet of release bootstraps under mixed load with scheduled faults on
# the first engine the harness finds; prints its report. make test runs the short one (45 s, 3 per function).
SOAK_SECONDS ?= 600
SOAK_ENVIRONMENTS ?= 6
soak: venv build
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_ENVIRONMENTS=$(SOAK_ENVIRONMENTS) MONGO_STANDIN_PYTHON=$(CURDIR)/$(PY) \
		cargo test --locked -p integration-tests --test soak -- --nocapture

fuzz:
	bash fuzz/run.sh

deploy:
	cd infra && sam build --beta-features && sam deploy --config-file samconfig.toml

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV)
