"""The base model's tokenizer, as the server uses it: token counts, /tokenize, /detokenize.

Loaded with transformers' `AutoTokenizer` from the library's base model directory (a fraction of
a second; no model weights), so every engine gets the same counts. Chats are rendered by the
library's `PromptFormat` (the same base model's chat template). Tests pass any object with the
Hugging Face methods used here (`encode`, `decode`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# config.json keys that hold a model's context length, in the order transformers' configs use them
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def max_model_len(bw: Any) -> int | None:
    """Tokens of prompt and reply one request may hold, as ``/tokenize`` reports it (vLLM's
    ``max_model_len``): the engine's own limit (``max_model_len`` of the vllm engines), else the
    base model's context length from its ``config.json``; None when neither says."""
    engine = getattr(bw.engine, "engine", bw.engine)  # the SDK's BatchingEngine wraps the engine
    limit = getattr(getattr(engine, "options", None), "max_model_len", None)
    if isinstance(limit, int) and not isinstance(limit, bool):
        return limit
    path = getattr(getattr(bw.store, "base", None), "path", None)
    if path is None or not (Path(path) / "config.json").is_file():
        return None
    config = json.loads((Path(path) / "config.json").read_text())
    for cfg in (config, config.get("text_config") or {}):
        for key in _CONTEXT_KEYS:
            if isinstance(cfg.get(key), int):
                return int(cfg[key])
    return None


def load_tokenizer(store: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(store.base.path)


class ServerTokenizer:
    def __init__(self, tok: Any) -> None:
        self.tok = tok

    def encode(self, text: str) -> list[int]:
        """Token ids of raw text, no special tokens added (as the engines tokenize prompts)."""
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int] | tuple[int, ...]) -> str:
        return self.tok.decode(list(ids))

    def token_strs(self, ids: list[int] | tuple[int, ...]) -> list[str]:
        return [self.tok.decode([i]) for i in ids]

    def count(self, prompt: str | tuple[int, ...]) -> int:
        return len(prompt) if isinstance(prompt, tuple) else len(self.encode(prompt))

    @property
    def vocab_size(self) -> int | None:
        return getattr(self.tok, "vocab_size", None)
