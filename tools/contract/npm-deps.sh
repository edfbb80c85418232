# Sourced by the contract scripts: installs tools/contract's npm packages when they are
# missing or older than package-lock.json (`npm ci`, exact versions from the lock file).
# Quiet and offline-friendly: no install scripts, audit, fund or update checks (see .npmrc).
CONTRACT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PUPPETEER_SKIP_DOWNLOAD=1 PUPPETEER_SKIP_CHROMIUM_DOWNLOAD=1 SCARF_ANALYTICS=false \
  NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false ASYNCAPI_METRICS=false

contract_npm_deps() {
  local stamp="$CONTRACT_DIR/node_modules/.package-lock.json"
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "contract: node and npm are needed (node >= 18)" >&2
    return 2
  fi
  if [[ ! -f "$stamp" || "$CONTRACT_DIR/package-lock.json" -nt "$stamp" ]]; then
    echo "contract: installing npm packages (npm ci --prefix tools/contract)..." >&2
    local started=$SECONDS
    npm ci --prefix "$CONTRACT_DIR" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
    echo "contract: npm packages installed in $((SECONDS - started)) s" >&2
  fi
}
