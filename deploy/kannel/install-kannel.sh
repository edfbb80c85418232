#!/usr/bin/env bash
# Installs Debian's Kannel (the open-source SMS gateway: bearerbox + smsbox) and its
# extras (fakesmsc, the SMSC stand-in `make run` and the tests use) when they are
# missing. Idempotent and quiet: does nothing when both are there. Needs root (or sudo
# without a password) and apt-get; otherwise it says so and exits 0: `make run` then
# keeps the spool SMS gateway and the Kannel tests are skipped with that reason.
set -euo pipefail

# Debian puts the boxes in /usr/sbin and fakesmsc with the package's test tools.
if [ -x /usr/sbin/bearerbox ] && [ -x /usr/sbin/smsbox ] && [ -x /usr/lib/kannel/test/fakesmsc ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-kannel: no apt-get here; install kannel and kannel-extras yourself" \
         "(SMS go to the spool file instead)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-kannel: not root and no sudo; run 'apt-get install kannel kannel-extras' as root" \
             "(SMS go to the spool file instead)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
install() {
    # The platform starts its own boxes with its own configuration (deploy/kannel).
    $SUDO apt-get install -y -qq --no-install-recommends kannel kannel-extras >"$log" 2>&1
}
if ! apt-cache show kannel >/dev/null 2>&1 || ! install; then
    $SUDO apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    install || { cat "$log" >&2; exit 1; }
fi
echo "install-kannel: $(dpkg-query -W -f='${Package} ${Version}\n' kannel kannel-extras | tr '\n' ' ')"
