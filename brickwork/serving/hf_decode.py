"""transformers decoding for the ``peft`` engine: greedy or sampled (temperature, top-p, seed),
stop strings, a JSON-schema constraint, per-token logprobs and streaming hooks; and prompt
scoring (one forward pass). `brickwork.serving.hf_generate.generate_greedy` (for code that holds
a transformers model itself: the emergent analyses, tests) is this loop, greedy. The JSON constraint is xgrammar's, compiled exactly as vLLM's
xgrammar backend compiles it with ``disable_any_whitespace`` (compact JSON), so greedy
constrained output can match vLLM's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from brickwork.errors import BackendError, ConfigError
from brickwork.serving.engine import SamplingParams
from brickwork.serving.hf_generate import pad_batch, stop_token_ids


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


@dataclass(frozen=True)
class Decoded:
    """One decoded reply: text (stops removed, stripped), tokens generated (the stop included),
    why it ended, and per content token its (token text, logprob, top alternatives) when asked."""

    text: str
    n_tokens: int
    finish_reason: str
    logprobs: tuple[Any, ...] | None = None


def encode(tokenizer: Any, prompt: str | tuple[int, ...]) -> list[int]:
    """Token ids of a prompt: text is tokenized without special tokens; ids are used as given."""
    if isinstance(prompt, str):
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return list(prompt)


def _cut(tokenizer: Any, tokens: list[int], stop_ids: set[int], stop_strings: list[str]) -> tuple[str, int, int, bool]:
    """(text before the first stop, tokens generated up to and including it, content tokens
    before it, whether a stop ended it)."""
    n, content, stopped = len(tokens), len(tokens), False
    for k, t in enumerate(tokens):
        if t in stop_ids:
            n, content, tokens, stopped = k + 1, k, tokens[:k], True
            break
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    if stop_strings:
        hits = [(text.find(s), s) for s in stop_strings if s in text]
        if hits:
            pos = min(hits)[0]
            text = text[:pos]
            stopped = True
            # the token that completed the stop string ends the count (as vLLM counts it)
            for k in range(1, len(tokens) + 1):
                partial = tokenizer.decode(tokens[:k], skip_special_tokens=True)
                if any(s in partial for s in stop_strings):
                    n = content = k
                    break
    return text.strip(), n, content, stopped


class RowStreamer:
    """A transformers streamer for a whole batch: after each step, calls row i's callback with the
    text that row has generated so far (up to its first stop token)."""

    def __init__(self, tokenizer: Any, callbacks: list[Any], stop_ids: set[int]) -> None:
        self._tok, self._callbacks, self._stops = tokenizer, callbacks, stop_ids
        self._rows: list[list[int]] = [[] for _ in callbacks]
        self._done = [False] * len(callbacks)
        self._sent = [""] * len(callbacks)
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt ids
            self._prompt_seen = True
            return
        ids = value.reshape(-1).tolist()
        for i, t in enumerate(ids):
            if self._done[i] or self._callbacks[i] is None:
                continue
            if t in self._stops:
                self._done[i] = True
                continue
            self._rows[i].append(t)
            text = self._tok.decode(self._rows[i], skip_special_tokens=True)
            if text != self._sent[i]:
                self._sent[i] = text
                self._callbacks[i](text)

    def end(self) -> None:
        pass


def _token_logprobs(tokenizer: Any, logits: list[Any], row: int, tokens: list[int], k: int) -> tuple[Any, ...]:
    """Per generated token of one row: TokenLogprob from the raw (unwarped) logits."""
    import torch

    from brickwork.serving.engine import TokenLogprob

    out = []
    for step, t in enumerate(tokens):
        lp = torch.log_softmax(logits[step][row].float(), dim=-1)
        top: tuple[tuple[str, float], ...] = ()
        if k:
            vals, idx = lp.topk(k)
            top = tuple((tokenizer.decode([int(j)]), float(v)) for v, j in zip(vals, idx, strict=True))
        out.append(TokenLogprob(token=tokenizer.decode([t]), logprob=float(lp[t]), top=top))
    return tuple(out)


def generate_with(
    model: Any,
    tokenizer: Any,
    prompts: list[str | tuple[int, ...]],
    sampling: SamplingParams,
    *,
    batch_size: int,
    adapter_names: list[str] | None = None,
    grammars: GrammarCache | None = None,
    on_text: list[Any] | None = None,
) -> list[Decoded]:
    """Decode `prompts` (text or token ids) under one `SamplingParams`, in input order.

    `on_text` (one callable or None per prompt) receives each row's text so far after every step.
    """
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
    encoded = [encode(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[Decoded | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        input_ids, attention = pad_batch([encoded[i] for i in idx], pad_id, left=True)
        width = input_ids.shape[1]
        kwargs: dict[str, Any] = {}
        if adapter_names is not None:
            kwargs["adapter_names"] = [adapter_names[i] for i in idx]
        if stop_strings:
            kwargs.update(stop_strings=stop_strings, tokenizer=tokenizer)
        if compiled is not None:
            kwargs["logits_processor"] = LogitsProcessorList([JsonLogitsProcessor(compiled, len(idx))])
        if on_text is not None and any(on_text[i] is not None for i in idx):
            kwargs["streamer"] = RowStreamer(tokenizer, [on_text[i] for i in idx], set(stops))
        if sampling.logprobs is not None:
            kwargs.update(return_dict_in_generate=True, output_logits=True)
        if sampling.greedy:
            kwargs.update(do_sample=False)
        else:  # temperature (and nucleus) sampling, as vLLM does (no top-k)
            kwargs.update(do_sample=True, temperature=float(sampling.temperature), top_k=0, top_p=sampling.top_p)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
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
        sequences = out.sequences if sampling.logprobs is not None else out
        for row, i in enumerate(idx):
            new = sequences[row, width:].tolist()
            text, n, content, stopped = _cut(tokenizer, new, set(stops), stop_strings)
            lps = None
            if sampling.logprobs is not None:
                lps = _token_logprobs(tokenizer, out.logits, row, new[:content], sampling.logprobs)
            results[i] = Decoded(text, n, "stop" if stopped else "length", lps)
    return [r for r in results if r is not None]


def score_prompts(
    model: Any,
    tokenizer: Any,
    prompts: list[str | tuple[int, ...]],
    *,
    top_logprobs: list[int],
    batch_size: int,
    adapter_names: list[str] | None = None,
) -> list[Any]:
    """One forward pass per batch: each prompt token's log-probability given the ones before it
    (`PromptScore`s, in input order). Right-padded; the padding never reaches a real token."""
    import torch

    from brickwork.serving.engine import PromptScore

    if not prompts:
        return []
    encoded = [encode(tokenizer, p) for p in prompts]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_token_ids(tokenizer)[0]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[Any] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        input_ids, attention = pad_batch([encoded[i] for i in idx], pad_id, left=False)
        kwargs: dict[str, Any] = {}
        if adapter_names is not None:
            kwargs["adapter_names"] = [adapter_names[i] for i in idx]
        try:
            with torch.inference_mode():
                logits = model(input_ids=input_ids, attention_mask=attention, **kwargs).logits
        except (RuntimeError, ValueError, KeyError) as exc:
            raise BackendError(f"scoring failed: {exc}") from exc
        lp = torch.log_softmax(logits.float(), dim=-1)
        for row, i in enumerate(idx):
            ids = encoded[i]
            k = top_logprobs[i]
            tokens = tuple(tokenizer.decode([t]) for t in ids)
            logprobs: list[float | None] = [None]
            top: list[tuple[tuple[str, float], ...]] = [()]
            for pos in range(1, len(ids)):
                dist = lp[row, pos - 1]
                logprobs.append(float(dist[ids[pos]]))
                if k:
                    vals, alt = dist.topk(k)
                    top.append(tuple((tokenizer.decode([int(j)]), float(v)) for v, j in zip(vals, alt, strict=True)))
                else:
                    top.append(())
            results[i] = PromptScore(token_ids=tuple(ids), tokens=tokens, logprobs=tuple(logprobs), top=tuple(top) if any(top) else ())
    return results
