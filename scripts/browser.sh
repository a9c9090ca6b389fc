#!/usr/bin/env bash
# Installs what the dashboard's browser test (crates/order-service/tests/dashboard.rs)
# drives: headless Chromium and chromedriver, from the Debian packages
# `chromium` and `chromium-driver`. Does nothing when both already answer
# `--version`. Needs root (or sudo) the first time.
set -euo pipefail

log() { printf 'browser: %s\n' "$*" >&2; }

if chromium --version >/dev/null 2>&1 && chromedriver --version >/dev/null 2>&1; then
    log "$(chromium --version 2>/dev/null | head -n1) and chromedriver already installed"
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || { log "not root and no sudo: install chromium and chromium-driver by hand"; exit 1; }
    SUDO="sudo"
fi
log "installing chromium and chromium-driver (apt, once)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
log "$(chromium --version 2>/dev/null | head -n1); $(chromedriver --version 2>/dev/null | head -n1)"
