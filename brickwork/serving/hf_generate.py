"""Batched greedy generation with transformers (and PEFT mixed-adapter batches).

The engine's own decoding loop (`hf_decode.generate_with`), greedy, for code that holds a
transformers model itself (the emergent analyses, tests). Gates and training evaluations do not
call it: they decode through an engine (`brickwork.bricks.lineage.BaseRunner`). Prompts arrive
already rendered by `brickwork.tasks.render_prompt`; generation is greedy, stops at
``<|im_end|>`` or the tokenizer's eos, and returns the decoded text (special tokens dropped) with
the number of tokens generated (the stop token included when it was reached).

Example::

    model, tok = load_base_model()
    generate_greedy(model, tok, [render_prompt("Give the plural of 'mouse'.")])
    # [('mice', 2)]

With a `peft.PeftModel` holding several adapters, ``adapter_names=["a", "__base__", "b"]`` picks
one adapter per prompt (``"__base__"`` for the bare base model) inside one batch.
"""

from __future__ import annotations

from typing import Any

from brickwork.errors import ConfigError
from brickwork.tasks import STOP

BASE_ADAPTER = "__base__"


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Ids that end a reply: ``<|im_end|>`` (when the vocabulary has it) and the eos token."""
    ids: list[int] = []
    im_end = tokenizer.convert_tokens_to_ids(STOP)
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.append(im_end)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def pad_batch(encoded: list[list[int]], pad_id: int, *, left: bool = True) -> tuple[Any, Any]:
    """(input_ids, attention_mask) tensors for token-id lists, padded on the left (for
    generation: every row's next token sits in the last column) or on the right (for scoring)."""
    import torch

    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        cols = slice(width - len(ids), width) if left else slice(0, len(ids))
        input_ids[row, cols] = torch.tensor(ids, dtype=torch.long)
        attention[row, cols] = 1
    return input_ids, attention


def generate_greedy(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    adapter_names: list[str] | None = None,
) -> list[tuple[str, int]]:
    """Greedy-decode every prompt; return ``(text, n_generated_tokens)`` in input order.

    Prompts are sorted by length and batched (left padding) so little compute goes to padding.
    `adapter_names` (one per prompt) is passed to PEFT's mixed-batch generation. This is the
    engine's own decoding loop (`brickwork.serving.hf_decode.generate_with`), greedy.
    """
    from brickwork.serving.engine import SamplingParams
    from brickwork.serving.hf_decode import generate_with

    if max_new_tokens < 1:
        raise ConfigError(f"`max_new_tokens` should be positive, got {max_new_tokens!r}.")
    if batch_size < 1:
        raise ConfigError(f"`batch_size` should be positive, got {batch_size!r}.")
    if adapter_names is not None and len(adapter_names) != len(prompts):
        raise ConfigError(
            f"`adapter_names` should have one name per prompt ({len(prompts)}), got {len(adapter_names)}."
        )
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        out = generate_with(
            model, tokenizer, list(prompts), SamplingParams(max_tokens=max_new_tokens),
            batch_size=batch_size, adapter_names=adapter_names,
        )  # fmt: skip
    finally:
        if was_training:
            model.train()
    return [(d.text, d.n_tokens) for d in out]
