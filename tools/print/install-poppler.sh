#!/usr/bin/env bash
# Installs Debian's poppler-utils (pdftoppm, pdftotext) when missing: the picture of a
# printed letter in the README (docs/screens/courrier.png) is page 1 of its PDF rendered
# by pdftoppm (tools/print/letter_picture.py). Idempotent and quiet: does nothing when
# pdftoppm is there. Needs root (or sudo without a password) and apt-get; otherwise it
# says so and exits 0.
set -euo pipefail

if command -v pdftoppm >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-poppler: no apt-get here; install poppler-utils yourself" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-poppler: not root and no sudo; run 'apt-get install poppler-utils' as root" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
install() {
    $SUDO apt-get install -y -qq --no-install-recommends poppler-utils >"$log" 2>&1
}
# No package lists yet, or stale ones: refresh them once and try again.
if ! apt-cache show poppler-utils >/dev/null 2>&1 || ! install; then
    $SUDO apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    install || { cat "$log" >&2; exit 1; }
fi
echo "install-poppler: $(pdftoppm -v 2>&1 | head -1)"
