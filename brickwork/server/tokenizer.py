"""The base model's tokenizer, as the server uses it: token counts, /tokenize, /detokenize.

Loaded with transformers' `AutoTokenizer` from the library's base model directory (a fraction of
a second; no model weights), so every engine gets the same counts. Chats are rendered by the
library's `PromptFormat` (the same base model's chat template). Tests pass any object with the
Hugging Face methods used here (`encode`, `decode`).

``GET /tokenizer_info`` is vLLM's route of that name (what lm-eval's ``tokenizer_backend=remote``,
and ``auto`` for ``local-completions``, read): the tokenizer's configuration as in
``tokenizer_config.json`` (its ``init_kwargs``, added tokens as their text), its class, and the
chat template the server renders chats with.
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

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of raw text, by default with no special tokens added (as the engines
        tokenize prompts)."""
        return list(self.tok.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: list[int] | tuple[int, ...]) -> str:
        return self.tok.decode(list(ids))

    def token_strs(self, ids: list[int] | tuple[int, ...]) -> list[str]:
        return [self.tok.decode([i]) for i in ids]

    def count(self, prompt: str | tuple[int, ...]) -> int:
        return len(prompt) if isinstance(prompt, tuple) else len(self.encode(prompt))

    @property
    def vocab_size(self) -> int | None:
        return getattr(self.tok, "vocab_size", None)

    def info(self, chat_template: str | None) -> dict[str, Any]:
        """``/tokenizer_info``: the tokenizer's ``init_kwargs`` made JSON (file paths left out),
        ``tokenizer_class``, the special tokens it has, and `chat_template`."""
        config = {k: _jsonable(v) for k, v in (getattr(self.tok, "init_kwargs", None) or {}).items() if k not in _PRIVATE_KEYS and not k.endswith("_file")}
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            if config.get(key) is None and isinstance(getattr(self.tok, key, None), str):
                config[key] = getattr(self.tok, key)
        config.setdefault("eos_token", None)  # lm-eval looks for the key before it trusts the route
        config["tokenizer_class"] = type(self.tok).__name__
        if chat_template:
            config["chat_template"] = chat_template
        return config


# where the tokenizer was read from on the server's disk: not the client's business
_PRIVATE_KEYS = frozenset({"name_or_path", "is_local", "local_files_only", "cache_dir"})


def _jsonable(value: Any) -> Any:
    """Added tokens as their text, containers element-wise, other objects as strings."""
    if hasattr(value, "content") and isinstance(value.content, str):
        return value.content
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
