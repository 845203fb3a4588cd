"""Functions the task YAML files name (``!function``). Importing this module registers the
``brickwork`` model, so the plain ``lm_eval`` command knows it when given these YAML files."""

from __future__ import annotations

from typing import Any

import brickwork.evals.harness.model  # noqa: F401  (registers "brickwork" with lm-eval)


def process_docs(dataset: Any) -> Any:
    """The documents as written (the hook exists for its import)."""
    return dataset
