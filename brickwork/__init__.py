"""Brickwork: configurable foundation models built from retrievable, composable LoRA bricks.

`import brickwork` stays light: torch, transformers, vLLM and FAISS load only when used.

Example::

    from brickwork import Brickwork

    bw = Brickwork(library="~/.brickwork", engine="peft")
    result = bw.run("Give the plural of 'mouse', then spell it letter by letter.")
    print(result.answer)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Brickwork", "__version__"]

if TYPE_CHECKING:
    from brickwork.orchestrator.sdk import Brickwork


def __getattr__(name: str) -> Any:
    if name == "Brickwork":
        from brickwork.orchestrator.sdk import Brickwork

        return Brickwork
    raise AttributeError(f"module 'brickwork' has no attribute {name!r}")
