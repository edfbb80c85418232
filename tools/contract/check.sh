#!/usr/bin/env bash
# The contract guards, in one command (CI runs it on a clean clone):
#   1. the AsyncAPI document is valid (official AsyncAPI parser; errors and warnings fail),
#   2. the contract is compatible with the newest released snapshot schemas/released/<semver>/,
#   3. the HTML reference builds (build/contract/index.html).
# Every step runs; the exit code is non-zero if any failed.
# Usage: tools/contract/check.sh [extra arguments for compat.py, e.g. --allow-no-baseline]
# Environment: CONTRACT_SCHEMAS (default schemas) the contract folder to check, with its
# released snapshots in $CONTRACT_SCHEMAS/released/; CONTRACT_OUT (default build/contract)
# where the HTML reference goes.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SCHEMAS="${CONTRACT_SCHEMAS:-schemas}"
OUT="${CONTRACT_OUT:-build/contract}"
PYTHON="${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}"
source tools/contract/npm-deps.sh

failed=()
step() {
  local name=$1; shift
  local started=$SECONDS
  echo "== contract: $name"
  if "$@"; then
    echo "   ($name: ok, $((SECONDS - started)) s)"
  else
    echo "   ($name: FAILED, $((SECONDS - started)) s)" >&2
    failed+=("$name")
  fi
}

step "npm packages" contract_npm_deps
step "asyncapi validation" node tools/contract/validate-asyncapi.mjs "$SCHEMAS/asyncapi.yaml"
step "compatibility" "$PYTHON" tools/contract/compat.py check --current "$SCHEMAS" "$@"
step "html reference" tools/contract/reference.sh --out "$OUT" "$SCHEMAS/asyncapi.yaml"

if ((${#failed[@]})); then
  echo "contract: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "contract: all guards passed"
