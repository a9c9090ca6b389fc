#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of
# the workspace (unit, contract suites against SQLite, MariaDB, Kafka (Tansu)
# and MongoDB (nx-27017), router tests, end-to-end tests that start the real
# binary, the dashboard in headless Chromium). It starts the services the
# tests need and stops them at the end; see scripts/services.sh (Tansu and
# nx-27017 are installed once and cached) and scripts/browser.sh (Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "deploy files (compose, Kubernetes, Dockerfile)"
./scripts/validate-deploy.sh

step "headless Chromium and chromedriver for the dashboard test"
./scripts/browser.sh

step "starting test services (MariaDB, Tansu, nx-27017)"
export ORDER_TEST_STATE_DIR="${ORDER_TEST_STATE_DIR:-$(mktemp -d /tmp/order-service-test.XXXXXX)}"
trap './scripts/services.sh stop' EXIT
eval "$(./scripts/services.sh start)"

step "cargo test"
# Up to four tests at a time within a binary: the end-to-end tests start
# service processes and this machine has two cores. --no-fail-fast: a red run
# reports every failing test binary, not just the first.
cargo test --workspace --all-features --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"

step "schemathesis (generated requests from the generated OpenAPI document, all checks)"
./scripts/schemathesis.sh "${CARGO_TARGET_DIR:-target}/debug/order-service"
