"""Batched greedy generation with transformers (and PEFT mixed-adapter batches).

The one decoding loop the embedded engine, the trainer's evaluation and the evals share. Prompts
arrive already rendered by `brickwork.tasks.render_prompt`; generation is greedy, stops at
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

from brickwork.errors import BackendError, ConfigError
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
    `adapter_names` (one per prompt) is passed to PEFT's mixed-batch generation.
    """
    import torch

    if max_new_tokens < 1:
        raise ConfigError(f"`max_new_tokens` should be positive, got {max_new_tokens!r}.")
    if batch_size < 1:
        raise ConfigError(f"`batch_size` should be positive, got {batch_size!r}.")
    if adapter_names is not None and len(adapter_names) != len(prompts):
        raise ConfigError(
            f"`adapter_names` should have one name per prompt ({len(prompts)}), got {len(adapter_names)}."
        )
    if not prompts:
        return []
    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[tuple[str, int] | None] = [None] * len(prompts)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids = encoded[i]
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids) :] = 1
            kwargs: dict[str, Any] = {}
            if adapter_names is not None:
                kwargs["adapter_names"] = [adapter_names[i] for i in idx]
            try:
                with torch.inference_mode():
                    out = model.generate(
                        input_ids=input_ids,
                        attention_mask=attention,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        num_beams=1,
                        eos_token_id=stops,
                        pad_token_id=pad_id,
                        **kwargs,
                    )
            except (RuntimeError, ValueError, KeyError) as exc:
                raise BackendError(f"generation failed: {exc}") from exc
            for row, i in enumerate(idx):
                results[i] = _decode(tokenizer, out[row, width:].tolist(), stops)
    finally:
        if was_training:
            model.train()
    return [r for r in results if r is not None]


def _decode(tokenizer: Any, new_tokens: list[int], stops: list[int]) -> tuple[str, int]:
    n = len(new_tokens)
    for k, t in enumerate(new_tokens):
        if t in stops:
            n = k + 1
            new_tokens = new_tokens[:k]
            break
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip(), n
