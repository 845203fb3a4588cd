"""The base model's tokenizer, as the server uses it: token counts, /tokenize, /detokenize.

Loaded with transformers' `AutoTokenizer` from the library's base model directory (a fraction of
a second; no model weights), so every engine gets the same counts. Chats are rendered by the
library's `PromptFormat` (the same base model's chat template). Tests pass any object with the
Hugging Face methods used here (`encode`, `decode`).
"""

from __future__ import annotations

from typing import Any


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
