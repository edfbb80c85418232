#!/usr/bin/env bash
# Installs Debian's Prometheus (for `promtool`, which checks deploy/prometheus/ and the
# compose file's Prometheus configuration in the tests) when it is missing. Idempotent
# and quiet; needs root (or sudo without a password) and apt-get, otherwise it says so
# and exits 0, and those checks are skipped with that reason.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus: no apt-get here; install Prometheus yourself (promtool checks will be skipped)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-prometheus: not root and no sudo; run 'apt-get install prometheus' as root" \
             "(promtool checks will be skipped)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
install() {
    $SUDO apt-get install -y -qq --no-install-recommends prometheus >"$log" 2>&1
}
if ! apt-cache show prometheus >/dev/null 2>&1 || ! install; then
    $SUDO apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    install || { cat "$log" >&2; exit 1; }
fi
echo "install-prometheus: $(promtool --version 2>&1 | head -1)"
