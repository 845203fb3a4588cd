#!/usr/bin/env bash
# The README's first command: set up .venv, install the starter bricks, answer an instruction.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/brickwork library build
.venv/bin/brickwork run "${1:-Give the plural of the word 'wolf', then write the number 1947 in words.}"
