#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (tests/browser) when it is missing,
# with its translations (chromium-l10n: French date fields, jj/mm/aaaa, as advisers see
# them). Idempotent and quiet: does nothing when both are there. Needs root (or sudo
# without a password) and apt-get; otherwise it says so and exits 0, and the browser
# tests are skipped with that reason.
set -euo pipefail

CHROMIUM="${RELAIS_CHROMIUM:-/usr/bin/chromium}"
FRENCH=/usr/lib/chromium/locales/fr.pak
if [ -x "$CHROMIUM" ] && [ -e "$FRENCH" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: no apt-get here; install Chromium yourself (browser tests will be skipped)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-chromium: not root and no sudo; run 'apt-get install chromium chromium-l10n' as root" \
             "(browser tests will be skipped)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
install() {
    $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-l10n >"$log" 2>&1
}
# A fresh machine may have no package lists yet, or stale ones (a 404 on a superseded
# version): refresh them once and try again.
if ! apt-cache show chromium >/dev/null 2>&1 || ! install; then
    $SUDO apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    install || { cat "$log" >&2; exit 1; }
fi
echo "install-chromium: $("$CHROMIUM" --version 2>/dev/null)"
