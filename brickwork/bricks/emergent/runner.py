"""Batched forward passes over analysis instances: losses, and activation statistics in bounded memory.

Each task's shared prefix (chat header + definition) runs once per pass; its KV cache is then
broadcast to every batch of that task's suffixes (right-padded), which halves the tokens run on
this model's short prompts. Logits are computed only where a loss is needed (the 49k-token output
head is a fifth of the model). `Recorder` keeps, per instance, only the sum of |activation| over
the prompt tokens for each neuron (never token-level activations), plus fixed-size histograms and
per-layer block-influence sums.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from brickwork.bricks.emergent.data import Instance, Prefix
from brickwork.bricks.emergent.ffn import decoder_layers, ffn_input_hooks, gated_ffns, unwrap


@dataclass
class PassResult:
    """Per-instance sums of token NLL (content and answer tokens) and token counts."""

    nll_content: Any
    n_content: Any
    nll_answer: Any
    n_answer: Any

    def ppl(self, rows: Any, which: str = "content") -> float:
        import math

        nll = getattr(self, f"nll_{which}")[rows].sum().item()
        n = getattr(self, f"n_{which}")[rows].sum().item()
        return math.exp(nll / max(n, 1))


class Recorder:
    """Accumulates neuron statistics during passes; attach with `with recorder.attached(model):`."""

    def __init__(self, n_instances: int, sizes: list[int], norms: Any, *, bins: int = 20) -> None:
        import torch

        self.sizes = sizes
        self.width = max(sizes)
        self.norms = norms
        self.bins = bins
        self.sums = torch.zeros(n_instances, len(sizes), self.width)  # per-instance sum |a| on input tokens
        self.counts = torch.zeros(n_instances)
        # Each task's definition tokens run once (the shared prefix): their sums, kept apart so
        # values can be read with or without the instruction text.
        self.prefix: dict[str, tuple[Any, float]] = {}
        self.row_task: list[str] = [""] * n_instances
        self.hist = {"act": torch.zeros(bins, dtype=torch.float64), "act_norm": torch.zeros(bins, dtype=torch.float64)}
        self.bi_sum = torch.zeros(len(sizes), dtype=torch.float64)
        self.bi_n = torch.zeros(len(sizes), dtype=torch.float64)
        self.weights: Any = None  # (batch, seq) token weights of the current forward
        self.hist_scale = 1.0
        self.batch: Any = None

    def values(self, *, with_definition: bool = True) -> Any:
        """(instances, layers, neurons) mean |activation| over the prompt tokens (definition +
        input), or over the input tokens alone."""
        import torch

        if not with_definition:
            return self.sums / self.counts.clamp_min(1)[:, None, None]
        pre = torch.stack([self.prefix[t][0] for t in self.row_task])
        cnt = torch.tensor([self.prefix[t][1] for t in self.row_task])
        return (self.sums + pre) / (self.counts + cnt).clamp_min(1)[:, None, None]

    def begin(self, weights: Any, *, hist_scale: float = 1.0) -> None:
        import torch

        self.weights = weights
        self.hist_scale = hist_scale
        self.batch = torch.zeros(weights.shape[0], len(self.sizes), self.width)

    def on_ffn(self, layer: int, a: Any) -> None:
        import torch

        w = self.weights
        if w is None:
            return
        aa = a.detach().abs().float()
        self.batch[:, layer, : aa.shape[-1]] += torch.einsum("bl,blf->bf", w, aa)
        sel = w > 0
        x = aa[sel]
        if x.numel():
            tw = (w[sel] * self.hist_scale).double()
            for key, vals in (("act", x), ("act_norm", x * self.norms[layer, : x.shape[-1]])):
                rel = vals / vals.amax(-1, keepdim=True).clamp_min(1e-12)
                idx = (rel * self.bins).long().clamp_(max=self.bins - 1)
                self.hist[key] += torch.bincount(
                    idx.flatten(), weights=tw[:, None].expand_as(idx).flatten(), minlength=self.bins
                )

    def on_layer(self, layer: int, h_in: Any, h_out: Any) -> None:
        import torch.nn.functional as F

        w = self.weights
        if w is None or h_in is None:
            return
        cos = F.cosine_similarity(h_in.detach().float(), h_out.detach().float(), dim=-1)
        self.bi_sum[layer] += ((1 - cos) * w).sum().item()
        self.bi_n[layer] += w.sum().item()

    def attached(self, model: Any) -> Any:
        from contextlib import ExitStack

        stack = ExitStack()
        stack.enter_context(ffn_input_hooks(model, self.on_ffn))
        for i, layer in enumerate(decoder_layers(model)):

            def hook(_m: Any, args: tuple, kwargs: dict, out: Any, i: int = i) -> None:
                h_in = args[0] if args else kwargs.get("hidden_states")
                self.on_layer(i, h_in, out[0] if isinstance(out, tuple) else out)

            stack.callback(layer.register_forward_hook(hook, with_kwargs=True).remove)
        return stack


def _body_and_head(model: Any) -> tuple[Any, Any]:
    inner = unwrap(model)
    body = getattr(inner, "base_model", None)
    head = inner.get_output_embeddings()
    if body is None or body is inner or head is None:
        from brickwork.errors import ModelError

        raise ModelError(f"{type(inner).__name__} is not a causal LM with a separate output head")
    return body, head


def _expand_cache(kv: list[tuple[Any, Any]], batch: int) -> Any:
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(kv):
        if k is not None and k.numel():  # skipped layers (slicing.skip_layers) have no entry
            cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), i)
    return cache


def _cache_tensors(cache: Any) -> list[tuple[Any, Any]]:
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # older transformers


def run_pass(
    model: Any,
    prefixes: dict[str, Prefix],
    instances: list[Instance],
    *,
    batch_size: int = 16,
    recorder: Recorder | None = None,
    progress: Any = None,
    pad_id: int = 0,
    record: str = "prompt",
    task_context: Any = None,
) -> PassResult:
    """Teacher-forced pass over `instances`; returns per-instance NLL sums (and fills `recorder`).

    `record` says which suffix tokens the recorder averages over: ``"prompt"`` (the input tokens,
    the paper's definition) or ``"all"`` (input, the assistant header and the answer: the tokens a
    model reads while it *writes* the answer). `task_context(task_id)`, if given, is a context
    manager entered around each task's instances (e.g. to switch to that task's LoRA brick).
    """
    import contextlib

    import torch
    import torch.nn.functional as F

    if record not in ("prompt", "all"):
        raise ValueError(f"`record` should be 'prompt' or 'all', got {record!r}")

    body, head = _body_and_head(model)
    n = len(instances)
    res = PassResult(torch.zeros(n, dtype=torch.float64), torch.zeros(n), torch.zeros(n, dtype=torch.float64), torch.zeros(n))
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, inst in enumerate(instances):
        by_task[inst.task_id].append(i)
    with torch.inference_mode(), contextlib.ExitStack() as stack:
        for tid, rows in by_task.items():
            stack.close()
            if task_context is not None:
                stack.enter_context(task_context(tid))
            pre = prefixes[tid]
            p_ids = torch.tensor([pre.ids], dtype=torch.long)
            if recorder is not None:
                w = torch.zeros(1, len(pre.ids))
                w[0, pre.prompt_from :] = 1
                recorder.begin(w, hist_scale=float(len(rows)))
            out = body(input_ids=p_ids, use_cache=True)
            kv = _cache_tensors(out.past_key_values)
            if recorder is not None:
                # The prefix is part of every instance of this task.
                recorder.prefix[tid] = (recorder.batch[0].clone(), float(w.sum()))
                for r in rows:
                    recorder.row_task[r] = tid
            lp = len(pre.ids)
            rows = sorted(rows, key=lambda r: len(instances[r].ids))
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                width = max(len(instances[r].ids) for r in chunk)
                ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                attn = torch.zeros(len(chunk), lp + width, dtype=torch.long)
                attn[:, :lp] = 1
                w = torch.zeros(len(chunk), width)
                for b, r in enumerate(chunk):
                    inst = instances[r]
                    ids[b, : len(inst.ids)] = torch.tensor(inst.ids)
                    attn[b, lp : lp + len(inst.ids)] = 1
                    if record == "all":
                        w[b, : len(inst.ids)] = 1
                    else:
                        w[b, list(inst.prompt)] = 1
                if recorder is not None:
                    recorder.begin(w)
                pos = (torch.arange(width) + lp).unsqueeze(0).expand(len(chunk), -1)
                hidden = body(
                    input_ids=ids,
                    attention_mask=attn,
                    position_ids=pos,
                    past_key_values=_expand_cache(kv, len(chunk)),
                    use_cache=True,
                ).last_hidden_state
                if recorder is not None:
                    recorder.sums[chunk] += recorder.batch
                    recorder.counts[chunk] += w.sum(1)
                    recorder.weights = None
                b_idx, t_idx, is_ans, who = [], [], [], []
                for b, r in enumerate(chunk):
                    inst = instances[r]
                    ans = set(inst.answer)
                    for t in inst.content:
                        b_idx.append(b)
                        t_idx.append(t)
                        is_ans.append(t in ans)
                        who.append(r)
                b_t, t_t = torch.tensor(b_idx), torch.tensor(t_idx)
                logits = head(hidden[b_t, t_t - 1])
                nll = F.cross_entropy(logits.float(), ids[b_t, t_t], reduction="none").double()
                who_t, ans_t = torch.tensor(who), torch.tensor(is_ans)
                res.nll_content.index_add_(0, who_t, nll)
                res.n_content.index_add_(0, who_t, torch.ones(len(who)))
                res.nll_answer.index_add_(0, who_t[ans_t], nll[ans_t])
                res.n_answer.index_add_(0, who_t[ans_t], torch.ones(int(ans_t.sum())))
                if progress is not None:
                    progress.update(1)
    return res


def count_batches(instances: list[Instance], batch_size: int) -> int:
    per_task: dict[str, int] = defaultdict(int)
    for inst in instances:
        per_task[inst.task_id] += 1
    return sum(-(-c // batch_size) for c in per_task.values())


def per_token_sparsifier(model: Any, fraction: float, norms: Any | None) -> Any:
    """Hooks that zero, per token and per layer, the `fraction` of neurons with the lowest
    |activation| (or |activation| x down_proj column norm when `norms` is given)."""
    import torch

    sizes = [f.size for f in gated_ffns(model)]

    def fn(layer: int, a: Any) -> Any:
        vals = a.abs() if norms is None else a.abs() * norms[layer, : a.shape[-1]]
        n_keep = sizes[layer] - int(fraction * sizes[layer])
        if n_keep >= sizes[layer]:
            return None
        # topk of the kept share is ~2x faster than kthvalue here (the kept share is small).
        idx = vals.topk(n_keep, dim=-1, sorted=False).indices
        return torch.zeros_like(a).scatter_(-1, idx, a.gather(-1, idx))

    return ffn_input_hooks(model, fn)
