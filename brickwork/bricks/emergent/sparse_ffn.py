"""Per-token FFN neuron selection (CATS/TEAL-style thresholds), with real savings in decode.

A gated FFN is ``down(act(gate(x)) * up(x))``. Per layer, `calibrate_thresholds` finds the value
``t`` of |act(gate(x))| that a target `fraction` of neurons reach on the base model's own
activations (a few bundled task prompts and answers, train split). `sparse_ffn` then replaces
each layer's MLP by a `SparseFFN` that keeps, per token, the neurons with |act(gate(x))| >= t:

- one token (decode, batch 1): the gate is computed whole, then only the kept neurons are
  computed: ``up_proj`` rows gathered (one matvec over the kept rows) and ``down_proj`` as a
  weighted sum of the kept rows of its transposed weight (``embedding_bag``, no copy). That is
  real compute reduction, not a mask multiplied by zero; it saves at most the up and down share
  of the FFN (the gate is whole, as in CATS).
- several tokens (prefill, batched decode): the same selection as a mask on ``act(gate) * up``
  through the modules' own forwards (exact, no saving).

LoRA bricks compose exactly on the kept neurons: on ``gate_proj`` the gate is the PEFT module's
own output; on ``up_proj`` (rows of ``lora_B``) and ``down_proj`` (columns of ``lora_A``) the
fast path adds each applied adapter's delta restricted to the kept neurons, for the adapters PEFT
would apply (the active ones, or the one a mixed batch names for the token). Layers whose LoRA
the fast path cannot reproduce exactly (DoRA, merged adapters, dropout in training mode) use the
mask path. The thresholds come from the base model: a brick changes which neurons pass them.

Importing this module imports torch (the emergent package itself stays light).

Example::

    thresholds = calibrate_thresholds(model, tok, [0.5])[0.5]
    with sparse_ffn(model, thresholds) as patch:
        model.generate(...)
        patch.kept_fraction()        # measured share of neurons kept per token
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch.nn as nn

from brickwork.bricks.emergent.ffn import core_linear, decoder_layers, gated_ffns
from brickwork.bricks.emergent.slicing import Patch
from brickwork.errors import ConfigError

#: train examples per bundled task used to calibrate the thresholds
CALIBRATION_PER_TASK = 2
#: what a neuron is ranked by per token: |act(gate(x))| (CATS) or |act(gate(x)) * up(x)|
Score = Literal["gate", "act"]
SCORES: tuple[str, ...] = ("gate", "act")


def calibration_texts(per_task: int = CALIBRATION_PER_TASK) -> list[str]:
    """Prompt + reference answer of `per_task` train examples of every bundled task."""
    from brickwork.tasks import load_tasks, render_prompt, sample

    return [render_prompt(t.query(e)) + e.output for t in load_tasks().values() for e in sample(t.split("train"), per_task, seed=0)]


def check_fraction(value: object, name: str = "ffn") -> float:
    """`value` as a kept share of FFN neurons in (0, 1]; `ConfigError` naming `name` otherwise."""
    import math

    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not 0 < value <= 1:
        raise ConfigError(f"`{name}` should be the kept share of FFN neurons in (0, 1], got {value!r}.")
    return float(value)


def calibrate_thresholds(
    model: Any, tok: Any, fractions: Sequence[float], texts: Sequence[str] | None = None, *, score: Score = "gate", batch_size: int = 16
) -> dict[float, Any]:
    """Per fraction, a (n_layers,) tensor: the threshold on the neuron `score` (|act(gate(x))|,
    or |act(gate(x)) * up(x)| for ``"act"``) that keeps that share of neurons over the tokens of
    `texts` (default `calibration_texts()`), on the model as it is called (disable adapters first
    to calibrate on the base model)."""
    if score not in SCORES:
        raise ConfigError(f"`score` should be one of {SCORES}, got {score!r}.")
    import torch

    fr = [check_fraction(f, "fractions") for f in fractions]
    texts = list(texts) if texts is not None else calibration_texts()
    ffns = gated_ffns(model)
    acts: list[list[Any]] = [[] for _ in ffns]
    token_mask: list[Any] = []
    handles = []

    def make(i: int, mlp: Any) -> Any:
        def hook(_m: Any, args: Any, out: Any) -> None:  # gate's output, or down's input
            a = (mlp.act_fn(out) if score == "gate" else args[0]).abs().float()
            acts[i].append(a[token_mask[-1]])

        return hook

    for f in ffns:
        handles.append((f.gate if score == "gate" else f.down).register_forward_hook(make(f.layer, f.mlp)))
    forward_texts(model, tok, texts, batch_size, token_mask, handles)
    out = {}
    for f in fr:
        th = []
        for layer in acts:
            vals = torch.cat(layer).flatten()
            k = vals.numel() - int(round(f * vals.numel())) + 1  # the share f of values are >= the k-th smallest
            th.append(0.0 if f >= 1 else float(vals.kthvalue(min(max(k, 1), vals.numel())).values))
        out[f] = torch.tensor(th)
    return out


def forward_texts(model: Any, tok: Any, texts: Sequence[str], batch_size: int, token_mask: list[Any], handles: list[Any]) -> None:
    """Run `texts` through `model` in batches (inference mode), appending each batch's attention
    mask (bool) to `token_mask` first so the hooks can keep real tokens; removes `handles` after."""
    import torch

    try:
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                enc = tok(list(texts[s : s + batch_size]), return_tensors="pt", padding=True, add_special_tokens=False)
                token_mask.append(enc["attention_mask"].bool())
                model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    finally:
        for h in handles:
            h.remove()


def _lora_delta_names(module: Any) -> list[str] | None:
    """Adapters PEFT would apply in `module` for a one-token forward, or None when the fast path
    cannot reproduce its LoRA exactly (then the caller uses the mask path)."""
    if not hasattr(module, "lora_A"):
        return []  # a plain nn.Linear
    if getattr(module, "lora_magnitude_vector", None) or getattr(module, "merged", False) or module.training:
        return None
    for hook in module._forward_pre_hooks.values():  # PEFT's mixed-batch hook injects `adapter_names`
        names = getattr(hook, "keywords", {}).get("adapter_names")
        if names is not None:
            return [n for n in set(names) if n in module.lora_A] if len(set(names)) == 1 else None
    if getattr(module, "disable_adapters", False):
        return []
    return [n for n in module.active_adapters if n in module.lora_A]


class SparseFFN(nn.Module):
    """A gated MLP that keeps, per token, the neurons with |act(gate(x))| >= `threshold`.

    Holds the original MLP's ``gate_proj``/``up_proj``/``down_proj`` and ``act_fn`` under the same
    names (parameter names and PEFT's module paths are unchanged); `threshold` is a plain float.
    """

    def __init__(self, mlp: Any, threshold: float, *, gather: bool = True, score: Score = "gate") -> None:
        super().__init__()
        self.score = score
        self.gather = gather  # False: always the mask path (a reference for tests and benchmarks)
        self.gate_proj, self.up_proj, self.down_proj, self.act_fn = mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act_fn
        self.threshold = float(threshold)
        self.kept = 0  # neurons kept, summed over tokens (for `kept_fraction`)
        self.tokens = 0
        self._down_t: Any = None  # down_proj's weight transposed (contiguous rows per neuron), lazily

    def forward(self, x: Any) -> Any:
        g = self.act_fn(self.gate_proj(x))
        if self.score == "act":
            return self._by_activation(x, g)
        keep = g.abs() >= self.threshold
        self.kept += int(keep.sum())
        self.tokens += keep[..., 0].numel()
        if self.gather and x[..., 0].numel() == 1 and x.dtype == core_linear(self.up_proj).weight.dtype:
            up_names, down_names = _lora_delta_names(self.up_proj), _lora_delta_names(self.down_proj)
            if up_names is not None and down_names is not None:
                return self._one_token(x, g, keep, up_names, down_names)
        return self.down_proj((g * keep) * self.up_proj(x))

    def _by_activation(self, x: Any, g: Any) -> Any:
        """Rank by |act(gate) * up|: up is computed whole, only down_proj reads the kept neurons."""
        h = g * self.up_proj(x)
        keep = h.abs() >= self.threshold
        self.kept += int(keep.sum())
        self.tokens += keep[..., 0].numel()
        if self.gather and x[..., 0].numel() == 1 and x.dtype == core_linear(self.down_proj).weight.dtype:
            names = _lora_delta_names(self.down_proj)
            if names is not None:
                idx = keep.reshape(-1).nonzero().reshape(-1)
                return self._down_kept(idx, h.reshape(-1).index_select(0, idx), names).view(*x.shape[:-1], -1)
        return self.down_proj(h * keep)

    def _down_kept(self, idx: Any, h: Any, names: list[str]) -> Any:
        """down_proj over the kept neurons `idx` (activations `h`): a weighted sum of the rows of
        its transposed weight, no copy."""
        import torch
        import torch.nn.functional as F

        down = core_linear(self.down_proj)
        if idx.numel() == 0:  # nothing kept: the FFN adds only down_proj's bias
            return down.bias.clone() if down.bias is not None else h.new_zeros(down.out_features)
        if self._down_t is None or self._down_t[0] is not down.weight:
            self._down_t = (down.weight, down.weight.t().contiguous())
        out = F.embedding_bag(idx.view(1, -1), self._down_t[1], per_sample_weights=h.view(1, -1), mode="sum").view(-1)
        if down.bias is not None:
            out = out + down.bias
        for n in names:  # B @ (columns `idx` of A) h
            m = self.down_proj
            out = out + m.lora_B[n](torch.mv(m.lora_A[n].weight.index_select(1, idx), h)) * m.scaling[n]
        return out

    def _one_token(self, x: Any, g: Any, keep: Any, up_names: list[str], down_names: list[str]) -> Any:
        import torch
        import torch.nn.functional as F

        xv = x.reshape(-1)
        idx = keep.reshape(-1).nonzero().reshape(-1)
        up, down = core_linear(self.up_proj), core_linear(self.down_proj)
        if idx.numel() == 0:
            return self._down_kept(idx, g.new_zeros(0), down_names).view(*x.shape[:-1], -1)
        u = torch.mv(up.weight.index_select(0, idx), xv)
        if up.bias is not None:
            u = u + up.bias.index_select(0, idx)
        for n in up_names:  # rows `idx` of B @ A x
            m = self.up_proj
            u = u + torch.mv(m.lora_B[n].weight.index_select(0, idx), m.lora_A[n](xv)) * m.scaling[n]
        out = self._down_kept(idx, g.reshape(-1).index_select(0, idx) * u, down_names)
        return out.view(*x.shape[:-1], -1)


class SparsePatch(Patch):
    """`Patch` of `sparse_ffn`, with the measured share of neurons kept per token."""

    def __init__(self, modules: list[SparseFFN], fraction: float | None) -> None:
        super().__init__(f"sparse_ffn({len(modules)} layers)")
        self.modules = modules
        self.fraction = fraction

    def kept_fraction(self) -> float | None:
        """Kept neurons / (tokens x neurons), over every layer and forward since the last reset."""
        tot = sum(m.tokens * core_linear(m.down_proj).weight.shape[1] for m in self.modules)
        return sum(m.kept for m in self.modules) / tot if tot else None

    def reset_counts(self) -> None:
        for m in self.modules:
            m.kept = m.tokens = 0


def sparse_ffn(
    model: Any, thresholds: Sequence[float] | Any, *, fraction: float | None = None, gather: bool = True, score: Score = "gate"
) -> SparsePatch:
    """Replace every layer's MLP by a `SparseFFN` with its threshold (one per layer); returns the
    patch that puts the original MLPs back. Works on a bare transformers model or a PeftModel;
    adapters may be loaded or added while it is active (the projections are the same modules).
    `fraction` is only recorded (the target the thresholds were calibrated for). ``gather=False``
    uses the mask path for every input (same selection, no saving: the reference)."""
    ths = [float(t) for t in (thresholds.tolist() if hasattr(thresholds, "tolist") else thresholds)]
    ffns = gated_ffns(model)
    if len(ths) != len(ffns):
        raise ConfigError(f"`thresholds` should have one value per layer ({len(ffns)}), got {len(ths)}.")
    problems = [f"layer {i}: threshold {t!r} is not a finite number >= 0" for i, t in enumerate(ths) if not 0 <= t < float("inf")]
    if score not in SCORES:
        problems.append(f"`score` should be one of {SCORES}, got {score!r}")
    if problems:
        raise ConfigError("cannot make the FFNs sparse:\n  - " + "\n  - ".join(problems))
    return install_ffns(model, lambda f: SparseFFN(f.mlp, ths[f.layer], gather=gather, score=score), fraction)


def install_ffns(model: Any, make: Any, fraction: float | None) -> SparsePatch:
    """Put ``make(gated_ffn)`` in place of every layer's MLP (refused, nothing changed, if one is
    already replaced); the patch puts the originals back."""
    layers = decoder_layers(model)
    ffns = gated_ffns(model)
    replaced = [f.layer for f in ffns if hasattr(f.mlp, "kept")]
    if replaced:
        raise ConfigError(f"cannot make the FFNs sparse: the MLPs of layers {replaced} are already sparse")
    modules = [make(f) for f in ffns]
    patch = SparsePatch(modules, fraction)
    for f, sparse in zip(ffns, modules, strict=True):
        owner = getattr(layers[f.layer], "skipped_layer", layers[f.layer])
        owner.mlp = sparse
        patch._undo.append(lambda owner=owner, mlp=f.mlp: setattr(owner, "mlp", mlp))
    return patch


__all__ = ["SparseFFN", "SparsePatch", "calibrate_thresholds", "calibration_texts", "check_fraction", "install_ffns", "sparse_ffn"]
