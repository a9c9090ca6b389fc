#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of
# the workspace (unit, contract suites, router tests, end-to-end tests that
# start the real binary). The embedded profile needs no external service.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test"
# Two test binaries at a time: the end-to-end tests start service processes
# and this machine has two cores.
cargo test --workspace --all-features -- --test-threads="${TEST_THREADS:-4}"
