#!/usr/bin/env bash
# Schemathesis against the running service: generates requests from the
# OpenAPI document the service serves (/v3/api-docs, generated from the
# code), valid and invalid, and runs every check of schemathesis on the
# answers: no 5xx; status codes, content types, headers and bodies as
# documented; invalid data refused, valid data accepted; authentication
# enforced where the document says so; unsupported methods 405 with Allow.
# scripts/schemathesis.toml narrows positive_data_acceptance for a few
# operations, each with its reason; no check is excluded.
#
#   scripts/schemathesis.sh [SERVICE_BINARY]
#
# Builds nothing: SERVICE_BINARY defaults to the debug binary that
# `cargo build -p order-service` (or `cargo test`) leaves in
# ${CARGO_TARGET_DIR:-target}/debug. The binary runs on the embedded profile
# (SQLite files in a temporary directory, the embedded bus), on a free port,
# with the test endpoints on and an admin API key (sent by schemathesis, so
# the authentication checks have credentials to remove). Schemathesis is
# installed once, pinned, in a
# cached virtualenv. ST_MAX_EXAMPLES (default 150) bounds the examples per
# operation, ST_SEED makes a run reproducible (a failing run prints its seed).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR="${ORDER_TEST_CACHE_DIR:-/var/cache/order-service-ci}"
ST_VERSION="4.32.5"
VENV="$CACHE_DIR/venv-st"
BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/order-service}"

log() { printf 'schemathesis: %s\n' "$*" >&2; }

if [[ ! -x "$BIN" ]]; then
    log "no service binary at $BIN; build it first (cargo build -p order-service)"
    exit 2
fi

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "version $ST_VERSION\$"; then
    log "installing schemathesis $ST_VERSION in $VENV (once)"
    mkdir -p "$CACHE_DIR"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$ST_VERSION" >&2
fi

WORK="$(mktemp -d /tmp/order-service-schemathesis.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE="http://127.0.0.1:$PORT"
SERVICE_PID=""

cleanup() {
    if [[ -n "$SERVICE_PID" ]] && kill -0 "$SERVICE_PID" 2>/dev/null; then
        kill "$SERVICE_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVICE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Only what the embedded profile needs: no ORDER_* of the caller's
# environment (a database URL or Kafka brokers) reaches the service.
log "starting $BIN on $BASE (data in $WORK)"
API_KEY="st-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
env -i PATH="$PATH" HOME="${HOME:-/root}" \
    ORDER_PORT="$PORT" ORDER_BIND=127.0.0.1 \
    ORDER_ADMIN_API_KEY="$API_KEY" \
    ORDER_DATABASE_URL="sqlite://$WORK/data/orders.db" \
    ORDER_TEST_ENDPOINTS=true \
    ORDER_PUBLISH_BACKOFF_MS=20 \
    ORDER_LOG=warn \
    "$BIN" >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!

deadline=$((SECONDS + 60))
until python3 -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('$BASE/health/ready', timeout=2).status != 200)" 2>/dev/null; do
    if ! kill -0 "$SERVICE_PID" 2>/dev/null; then
        log "the service exited before it was ready; its log:"
        cat "$WORK/service.log" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        log "the service was not ready within 60 s; its log:"
        cat "$WORK/service.log" >&2
        exit 1
    fi
    sleep 0.2
done

# POST /api/test/bus/down is left out: it switches the bus off on purpose,
# after which publishing fails for the rest of the run (every later replay
# a documented 502) and the run would test an outage rather than the API.
# Everything else, the other test endpoints included, is exercised.
CONFIG="$PWD/scripts/schemathesis.toml"
HOOKS="$PWD/scripts/schemathesis_hooks.py"
args=(
    run "$BASE/v3/api-docs"
    --checks "${ST_CHECKS:-all}"
    -H "X-API-Key: $API_KEY"
    --max-examples "${ST_MAX_EXAMPLES:-150}"
    --exclude-path /api/test/bus/down
    --request-timeout 30
    --generation-database none
    --no-color
)
if [[ -n "${ST_SEED:-}" ]]; then
    args+=(--seed "$ST_SEED")
fi
log "st ${args[*]}"
status=0
# The hooks teach schemathesis the NDJSON body of POST /api/dlq/import.
(cd "$WORK" && SCHEMATHESIS_HOOKS="$HOOKS" \
    "$VENV/bin/st" --config-file "$CONFIG" "${args[@]}") || status=$?

if grep -q "panicked" "$WORK/service.log"; then
    log "the service panicked during the run:"
    grep -B2 -A10 "panicked" "$WORK/service.log" >&2
    status=1
fi
if ! kill -0 "$SERVICE_PID" 2>/dev/null; then
    log "the service died during the run; its log:"
    tail -50 "$WORK/service.log" >&2
    status=1
fi
if ((status != 0)); then
    log "FAILED (exit $status); the service's errors:"
    grep -E "ERROR|WARN" "$WORK/service.log" | grep -v "bus switched" | tail -40 >&2 || true
fi
exit "$status"
