#!/usr/bin/env bash
# Validate the AsyncAPI document with the official AsyncAPI parser (see validate-asyncapi.mjs).
# Usage: tools/contract/validate-asyncapi.sh [--fail-severity error|warn|info|hint] [file]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/npm-deps.sh"
contract_npm_deps
exec node "$CONTRACT_DIR/validate-asyncapi.mjs" "$@"
