"""transformers decoding beyond plain greedy: sampling, extra stop strings, JSON-schema constraint.

The ``peft`` engine sends the common case (greedy, stop at end of turn) through
`brickwork.serving.hf_generate.generate_greedy`; requests with a temperature, extra stop strings
or a JSON schema come here. The JSON constraint is xgrammar's, compiled exactly as vLLM's
xgrammar backend compiles it with ``disable_any_whitespace`` (compact JSON), so greedy
constrained output can match vLLM's.
"""

from __future__ import annotations

import json
from typing import Any

from brickwork.errors import BackendError, ConfigError
from brickwork.serving.engine import SamplingParams
from brickwork.serving.hf_generate import stop_token_ids


def special_stop_ids(tokenizer: Any, stop: tuple[str, ...]) -> tuple[list[int], list[str]]:
    """Split stop strings into single special tokens (stopped on by id) and plain strings."""
    ids, strings = [], []
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for s in stop:
        tid = tokenizer.convert_tokens_to_ids(s) if s in special else None
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.append(tid)
        else:
            strings.append(s)
    return ids, strings


class GrammarCache:
    """Compiled xgrammar JSON grammars by schema, for one tokenizer/vocabulary."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._compiler: Any = None
        self._compiled: dict[str, Any] = {}

    def get(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._compiled:
            import xgrammar as xgr

            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=self._vocab_size)
                self._compiler = xgr.GrammarCompiler(info)
            try:
                self._compiled[key] = self._compiler.compile_json_schema(
                    json.dumps(schema), any_whitespace=False, separators=(",", ":")
                )
            except (RuntimeError, ValueError) as exc:
                raise ConfigError(f"`json_schema` cannot be compiled: {exc}") from exc
        return self._compiled[key]


class JsonLogitsProcessor:
    """Masks each row's logits to what its grammar allows next (a `transformers` LogitsProcessor).

    One matcher per row. A row whose matcher terminates or rejects a token (it was stopped by a
    stop string and padded) is left alone from then on, so padding never trips the grammar.
    """

    def __init__(self, compiled: Any, batch_size: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self._matchers = [xgr.GrammarMatcher(compiled) for _ in range(batch_size)]
        self._live = [True] * batch_size
        self._bitmask = xgr.allocate_token_bitmask(batch_size, compiled.tokenizer_info.vocab_size)
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._started:
            for i, m in enumerate(self._matchers):
                if self._live[i] and not m.is_terminated():
                    if not m.accept_token(int(input_ids[i, -1])):
                        self._live[i] = False
        self._started = True
        rows = []
        for i, m in enumerate(self._matchers):
            if self._live[i] and not m.is_terminated():
                m.fill_next_token_bitmask(self._bitmask, i)
                rows.append(i)
        if rows:
            self._xgr.apply_token_bitmask_inplace(scores, self._bitmask.to(scores.device), indices=rows)
        return scores


def _cut(tokenizer: Any, tokens: list[int], stop_ids: set[int], stop_strings: list[str]) -> tuple[str, int]:
    """Text before the first stop (token or string) and the tokens generated up to and including it."""
    n = len(tokens)
    for k, t in enumerate(tokens):
        if t in stop_ids:
            n, tokens = k + 1, tokens[:k]
            break
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    if stop_strings:
        hits = [(text.find(s), s) for s in stop_strings if s in text]
        if hits:
            pos = min(hits)[0]
            text = text[:pos]
            # the token that completed the stop string ends the count (as vLLM counts it)
            for k in range(1, len(tokens) + 1):
                partial = tokenizer.decode(tokens[:k], skip_special_tokens=True)
                if any(s in partial for s in stop_strings):
                    n = k
                    break
    return text.strip(), n


def generate_with(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    sampling: SamplingParams,
    *,
    batch_size: int,
    adapter_names: list[str] | None = None,
    grammars: GrammarCache | None = None,
) -> list[tuple[str, int]]:
    """Decode `prompts` under one `SamplingParams`; ``(text, n_tokens)`` in input order."""
    import torch
    from transformers import LogitsProcessorList

    if not prompts:
        return []
    extra_ids, stop_strings = special_stop_ids(tokenizer, sampling.stop)
    stops = list(dict.fromkeys([*stop_token_ids(tokenizer), *extra_ids]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    compiled = None
    if sampling.json_schema is not None:
        if grammars is None:
            raise ConfigError("json_schema needs a grammar cache")
        compiled = grammars.get(sampling.json_schema)
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[tuple[str, int] | None] = [None] * len(prompts)
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
        if stop_strings:
            kwargs.update(stop_strings=stop_strings, tokenizer=tokenizer)
        if compiled is not None:
            kwargs["logits_processor"] = LogitsProcessorList([JsonLogitsProcessor(compiled, len(idx))])
        if sampling.greedy:
            kwargs.update(do_sample=False)
        else:  # plain temperature sampling, as vLLM does by default (no top-k / top-p)
            kwargs.update(do_sample=True, temperature=float(sampling.temperature), top_k=0, top_p=1.0)
        try:
            with torch.inference_mode():
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    max_new_tokens=sampling.max_tokens,
                    num_beams=1,
                    eos_token_id=stops,
                    pad_token_id=pad_id,
                    **kwargs,
                )
        except (RuntimeError, ValueError, KeyError) as exc:
            raise BackendError(f"generation failed: {exc}") from exc
        for row, i in enumerate(idx):
            results[i] = _cut(tokenizer, out[row, width:].tolist(), set(stops), stop_strings)
    return [r for r in results if r is not None]
