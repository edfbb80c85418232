#!/usr/bin/env bash
# Installs Debian's Prometheus when it is missing: the `prometheus` package gives both
# /usr/bin/prometheus (the server `make run` starts, deploy/local/prometheus.py) and
# /usr/bin/promtool (which checks deploy/prometheus/ and tests its alert rules). Idempotent
# and quiet; needs root (or sudo without a password) and apt-get, otherwise it says so
# and exits 0, and what needs them is skipped with that reason.
#
# The package would also start (and enable) its own system service on port 9090, the
# port `make run`'s Prometheus takes: it is kept from starting while installing, and
# disabled where systemd runs.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus: no apt-get here; install Prometheus yourself (prometheus and promtool)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-prometheus: not root and no sudo; run 'apt-get install prometheus' as root" \
             "(until then make run starts no Prometheus and the promtool checks are skipped)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
policy=/usr/sbin/policy-rc.d
own_policy=""
cleanup() {
    rm -f "$log"
    if [ -n "$own_policy" ]; then $SUDO rm -f "$policy"; fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then   # invoke-rc.d / deb-systemd-invoke: start no service now
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=1
fi
install() {
    $SUDO apt-get install -y -qq --no-install-recommends prometheus >"$log" 2>&1
}
if ! apt-cache show prometheus >/dev/null 2>&1 || ! install; then
    $SUDO apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    install || { cat "$log" >&2; exit 1; }
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    echo "install-prometheus: Debian's own prometheus service disabled (make run starts its own)"
fi
echo "install-prometheus: $(prometheus --version 2>&1 | head -1)"
