#!/usr/bin/env bash
# Starts (and stops) the services the production-backend tests need, each on
# loopback: MariaDB (started only if it is not running), a Tansu Kafka broker
# (installed once with cargo and cached) and the nx-27017 MongoDB wire server
# (installed once in a cached virtualenv).
#
#   scripts/services.sh start   # prints `export ORDER_TEST_…=…` lines to eval
#   scripts/services.sh stop    # stops what `start` started
#
# Tests read ORDER_TEST_MYSQL_URL, ORDER_TEST_KAFKA_BROKERS and
# ORDER_TEST_MONGODB_URI. Progress goes to stderr, the exports to stdout.
set -euo pipefail

CACHE_DIR="${ORDER_TEST_CACHE_DIR:-/var/cache/order-service-ci}"
STATE_DIR="${ORDER_TEST_STATE_DIR:-/tmp/order-service-test-services}"
TANSU_VERSION="0.6.0"
NX_PACKAGES=(nx-27017==0.8.1 neosqlite==1.17.2 pymongo==4.20.1)

log() { printf 'services: %s\n' "$*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # port, name, seconds
    local deadline=$((SECONDS + $3))
    until python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1', $1)))" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "$2 did not listen on 127.0.0.1:$1 within $3 s"
            return 1
        fi
        sleep 0.2
    done
}

start_mariadb() {
    if mysqladmin --protocol=tcp -h127.0.0.1 -uroot ping >/dev/null 2>&1; then
        log "MariaDB already running on 127.0.0.1:3306"
        return
    fi
    log "starting MariaDB"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    touch "$STATE_DIR/mariadb.started-by-us"
    local deadline=$((SECONDS + 60))
    until mysqladmin --protocol=tcp -h127.0.0.1 -uroot ping >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { log "MariaDB did not start"; return 1; }
        sleep 0.5
    done
}

tansu_bin() {
    local bin
    bin="$(command -v tansu || true)"
    [[ -z "$bin" && -x "$HOME/.cargo/bin/tansu" ]] && bin="$HOME/.cargo/bin/tansu"
    if [[ -n "$bin" ]] && "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
        echo "$bin"
        return
    fi
    log "installing tansu $TANSU_VERSION (once; about 10 minutes on 2 cores)"
    cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore >&2
    echo "$HOME/.cargo/bin/tansu"
}

# The TLS tests put socat in front of Tansu (Tansu 0.6's command line cannot
# turn its own TLS on; see order_core::testkit::pki::SecureTansu).
ensure_socat() {
    command -v socat >/dev/null 2>&1 && return
    log "installing socat (Debian package, once)"
    if [[ "$(id -u)" == 0 ]]; then
        apt-get install -y -qq socat >&2 || { apt-get update -qq >&2 && apt-get install -y -qq socat >&2; }
    else
        sudo apt-get install -y -qq socat >&2
    fi
}

start_tansu() {
    local bin port
    bin="$(tansu_bin)"
    port="$(free_port)"
    log "starting tansu on 127.0.0.1:$port"
    "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$STATE_DIR/tansu.log" 2>&1 &
    echo $! >"$STATE_DIR/tansu.pid"
    wait_for_port "$port" tansu 30
    echo "127.0.0.1:$port" >"$STATE_DIR/kafka"
}

start_nx() {
    local venv="$CACHE_DIR/venv-nx" port
    if ! "$venv/bin/python" -c 'import nx_27017' >/dev/null 2>&1; then
        log "installing ${NX_PACKAGES[*]} in $venv (once)"
        mkdir -p "$CACHE_DIR"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "${NX_PACKAGES[@]}" >&2
    fi
    port="$(free_port)"
    log "starting nx-27017 on 127.0.0.1:$port"
    "$venv/bin/nx-27017" --data-dir memory -p "$port" --host 127.0.0.1 \
        --log-file "$STATE_DIR/nx.log" --pid-file "$STATE_DIR/nx.pid" \
        >"$STATE_DIR/nx.out" 2>&1 &
    echo $! >"$STATE_DIR/nx.launcher.pid"
    wait_for_port "$port" nx-27017 30
    echo "mongodb://127.0.0.1:$port" >"$STATE_DIR/mongo"
}

stop_pid_file() {
    local f="$1"
    [[ -f "$f" ]] || return 0
    local pid
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -CONT "$pid" 2>/dev/null || true # a test may have paused it
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

case "${1:-}" in
start)
    mkdir -p "$STATE_DIR"
    start_mariadb
    ensure_socat
    start_tansu
    start_nx
    echo "export ORDER_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306"
    echo "export ORDER_TEST_KAFKA_BROKERS=$(cat "$STATE_DIR/kafka")"
    echo "export ORDER_TEST_MONGODB_URI=$(cat "$STATE_DIR/mongo")"
    echo "export ORDER_TEST_TANSU_PID=$(cat "$STATE_DIR/tansu.pid")"
    # Tests that start a Tansu of their own (TLS, SASL) run this binary.
    echo "export ORDER_TEST_TANSU_BIN=$(tansu_bin)"
    ;;
stop)
    stop_pid_file "$STATE_DIR/tansu.pid"
    stop_pid_file "$STATE_DIR/nx.pid"
    stop_pid_file "$STATE_DIR/nx.launcher.pid"
    if [[ -f "$STATE_DIR/mariadb.started-by-us" ]]; then
        log "stopping the MariaDB this script started"
        start-stop-daemon --stop --oknodo --retry 30 --exec /usr/sbin/mariadbd || true
        rm -f "$STATE_DIR/mariadb.started-by-us"
    fi
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
