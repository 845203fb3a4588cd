"""Brickwork: configurable foundation models built from retrievable, composable LoRA bricks.

`import brickwork` stays light: torch, transformers, vLLM and FAISS load only when used.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
