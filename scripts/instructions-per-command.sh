#!/usr/bin/env bash
# Instructions per create command, counted by callgrind over the whole
# pipeline (commit, relay, embedded bus, projector, checkpoints) of the
# embedded profile. Unlike CPU time, an instruction count does not move with
# what other tenants of a shared machine do, so two binaries can be compared
# exactly (see README, "Benchmark").
#
#   cargo build --release -p order-service -p order-bench
#   scripts/instructions-per-command.sh [SERVICE_BIN] [SECONDS]
#
# Starts SERVICE_BIN (default target/release/order-service) under
# `valgrind --tool=callgrind` on a fresh data directory, zeroes the counters
# once it is ready, drives it with order-bench (8 connections, no warm-up,
# SECONDS of creates, default 20) until the outbox and the projector have
# caught up, dumps the counters and prints instructions per create.
# Under valgrind the service runs ~50x slower: the throughput means nothing,
# the count per command is the figure. ORDER_CALLGRIND_KEEP=FILE keeps the
# dump for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-${CARGO_TARGET_DIR:-target}/release/order-service}"
secs="${2:-20}"
bench="${ORDER_BENCH_BIN:-$(dirname "$bin")/order-bench}"
for f in "$bin" "$bench"; do
    [[ -x "$f" ]] || { echo "not found: $f (cargo build --release -p order-service -p order-bench)" >&2; exit 2; }
done
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
    { echo "valgrind with callgrind_control is needed (apt-get install valgrind)" >&2; exit 2; }

dir="$(mktemp -d /tmp/order-instructions.XXXXXX)"
pid=""
cleanup() {
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ORDER_PORT="$port" ORDER_BIND=127.0.0.1 ORDER_LOG=warn \
    ORDER_DATABASE_URL="sqlite://$dir/orders.db" ORDER_BUS_PATH="$dir/bus.db" \
    ORDER_READ_MODEL_PATH="$dir/read-model.db" \
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
    "$bin" serve >"$dir/service.log" 2>&1 &
pid=$!

for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/service.log" >&2; exit 1; }
    sleep 0.5
done
curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null ||
    { echo "the service did not become ready under valgrind" >&2; exit 1; }

callgrind_control --zero "$pid" >/dev/null 2>&1
"$bench" --url "http://127.0.0.1:$port" --connections 8 --warmup 0 --duration "$secs" \
    --request-timeout 60 --raw-seconds 0 --echo-seconds 0 --json >"$dir/bench.json" 2>"$dir/bench.log" ||
    { cat "$dir/bench.log" >&2; exit 1; }
callgrind_control --dump "$pid" >/dev/null 2>&1

if [[ -n "${ORDER_CALLGRIND_KEEP:-}" ]]; then
    # For `callgrind_annotate --inclusive=yes FILE`: where the instructions go.
    cat "$dir"/callgrind.out.* >"$ORDER_CALLGRIND_KEEP"
fi

created="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["load"]["created"])' "$dir/bench.json")"
drained="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["drain"]["drained"])' "$dir/bench.json")"
# Every thread's dump of this run; each "summary:" line is its instruction count.
instructions="$(cat "$dir"/callgrind.out.* 2>/dev/null | awk '/^summary:/ { s += $2 } END { print s + 0 }')"
python3 - "$instructions" "$created" "$drained" "$bin" <<'PY'
import sys
instructions, created, drained, binary = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
if created == 0 or instructions == 0:
    sys.exit(f"nothing measured: {created} creates, {instructions} instructions")
print(f"binary              {binary}")
print(f"creates             {created} (pipeline caught up: {drained})")
print(f"instructions        {instructions:,}")
print(f"per create          {instructions / created:,.0f} instructions (HTTP, commit, relay, bus, projector)")
PY
