#!/usr/bin/env bash
# Build the HTML reference of the contract: build/contract/index.html (see reference.mjs).
# Usage: tools/contract/reference.sh [--out DIR] [asyncapi.yaml]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/npm-deps.sh"
contract_npm_deps
# The template's Babel step notes that the bundled UI script is large; that is not news.
node "$CONTRACT_DIR/reference.mjs" "$@" 2> >(grep -v '^\[BABEL\] Note' >&2)
