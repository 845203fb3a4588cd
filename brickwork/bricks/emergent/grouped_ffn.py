"""Per-token selection of FFN neuron *groups* (MoEfication-style), computed as contiguous blocks.

`fit_groups` partitions each layer's FFN neurons into `n_groups` equal groups of co-activating
neurons (balanced spherical k-means of the neurons' |act(gate(x)) * up(x)| profiles over the
tokens of a few bundled train texts, on the model as called: disable adapters to fit on the base
model) and fits a linear router per layer (ridge regression from the MLP input to each group's
activation mass on the same tokens). `grouped_ffn` replaces every MLP by a `GroupedFFN` that
keeps, per token, the ``round(fraction * n_groups)`` groups the router scores highest:

- one token (decode, batch 1): each layer's gate and up rows are copied once into a
  group-major block ``[G, 2 * size, hidden]`` and down's columns into ``[G, size, hidden]``;
  a token's kept groups are gathered with one ``index_select`` per block and computed with one
  matrix-vector product each. Gate, up and down are all skipped for the dropped groups (the gate
  is not computed whole, unlike `sparse_ffn`'s scores). The copies cost one extra FFN's worth of
  memory (fp32 SmolLM2-135M: +318 MB).
- several tokens (prefill, batched decode): the same selection as a mask on ``act(gate) * up``
  through the modules' own forwards (exact, no saving).

LoRA on gate/up/down stays exact for the kept neurons (the delta is added for their rows of
``lora_B`` / columns of ``lora_A``), for the adapters PEFT would apply; layers whose LoRA the fast
path cannot reproduce (DoRA, merged, training) use the mask path. MLP biases are refused.

Example::

    routing = fit_groups(model, tok, n_groups=16)
    with grouped_ffn(model, routing, 0.5) as patch:
        model.generate(...)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from brickwork.bricks.emergent.ffn import core_linear, gated_ffns
from brickwork.bricks.emergent.sparse_ffn import (
    SparsePatch,
    _lora_delta_names,
    calibration_texts,
    check_fraction,
    forward_texts,
    install_ffns,
)
from brickwork.errors import ConfigError

#: train examples per bundled task used to fit the groups and routers
FIT_PER_TASK = 3


@dataclass(frozen=True)
class GroupRouting:
    """Per layer: `assign` (intermediate,) group of each neuron, `weight` (hidden, G) and
    `bias` (G,) of the linear router."""

    n_groups: int
    assign: tuple[Any, ...]
    weight: tuple[Any, ...]
    bias: tuple[Any, ...]


def balanced_groups(profiles: Any, n_groups: int, *, iters: int = 10, seed: int = 0) -> Any:
    """(n,) group of each row of `profiles` (n, d): spherical k-means with groups of exactly
    n / n_groups rows (each round every group takes its most similar unassigned row)."""
    import torch

    n = profiles.shape[0]
    if n_groups < 1 or n % n_groups:
        raise ConfigError(f"`n_groups` should divide the FFN width {n}, got {n_groups}.")
    p = profiles - profiles.mean(1, keepdim=True)
    p = p / p.norm(dim=1, keepdim=True).clamp_min(1e-8)
    gen = torch.Generator().manual_seed(seed)
    centres = p[torch.randperm(n, generator=gen)[:n_groups]]
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        sim = (p @ centres.T).numpy().copy()  # (n, G)
        taken = sim.min() - 1.0
        for _round in range(n // n_groups):
            for g in range(n_groups):
                i = int(sim[:, g].argmax())
                assign[i] = g
                sim[i, :] = taken
        centres = torch.stack([p[assign == g].mean(0) for g in range(n_groups)])
        centres = centres / centres.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return assign


def fit_groups(
    model: Any, tok: Any, n_groups: int = 16, texts: Sequence[str] | None = None, *, ridge: float = 1e-2, batch_size: int = 16
) -> GroupRouting:
    """Partition every layer's FFN into `n_groups` co-activating groups and fit its router, on
    the tokens of `texts` (default: `FIT_PER_TASK` train examples of every bundled task)."""
    import torch

    texts = list(texts) if texts is not None else calibration_texts(FIT_PER_TASK)
    ffns = gated_ffns(model)
    xs: list[list[Any]] = [[] for _ in ffns]
    hs: list[list[Any]] = [[] for _ in ffns]
    token_mask: list[Any] = []
    handles = []
    for f in ffns:  # the MLP's input and down_proj's input, real tokens only, fp16 to bound memory
        handles.append(f.mlp.register_forward_pre_hook(lambda _m, a, i=f.layer: xs[i].append(a[0][token_mask[-1]].half())))
        handles.append(f.down.register_forward_pre_hook(lambda _m, a, i=f.layer: hs[i].append(a[0][token_mask[-1]].abs().half())))
    forward_texts(model, tok, texts, batch_size, token_mask, handles)
    assign, weight, bias = [], [], []
    for f in ffns:
        x, h = torch.cat(xs[f.layer]).float(), torch.cat(hs[f.layer]).float()
        xs[f.layer] = hs[f.layer] = []
        a = balanced_groups(h.T, n_groups)
        mass = h @ nn.functional.one_hot(a, n_groups).float()  # (tokens, G)
        x1 = torch.cat([x, x.new_ones(len(x), 1)], 1)
        w = torch.linalg.solve(x1.T @ x1 + ridge * len(x1) * torch.eye(x1.shape[1]), x1.T @ mass)
        assign.append(a)
        weight.append(w[:-1].contiguous())
        bias.append(w[-1].contiguous())
    return GroupRouting(n_groups, tuple(assign), tuple(weight), tuple(bias))


class GroupedFFN(nn.Module):
    """A gated MLP that keeps, per token, the `k` neuron groups its router scores highest.

    Holds the original MLP's projections and ``act_fn`` under the same names (PEFT paths are
    unchanged) plus group-major copies of the base weights for the one-token path.
    """

    def __init__(self, mlp: Any, assign: Any, weight: Any, bias: Any, k: int, *, gather: bool = True) -> None:
        super().__init__()
        import torch

        self.gate_proj, self.up_proj, self.down_proj, self.act_fn = mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act_fn
        self.gather = gather
        self.k = k
        self.kept = 0
        self.tokens = 0
        gate, up, down = (core_linear(m) for m in (self.gate_proj, self.up_proj, self.down_proj))
        n_groups = weight.shape[1]
        size = gate.out_features // n_groups
        self.register_buffer("assign", assign, persistent=False)
        self.register_buffer("router_w", weight.to(gate.weight.dtype), persistent=False)
        self.register_buffer("router_b", bias.to(gate.weight.dtype), persistent=False)
        # members[g] = the original neuron ids of group g, in the order of the block copies
        members = torch.argsort(assign, stable=True).view(n_groups, size)
        self.register_buffer("members", members, persistent=False)
        with torch.no_grad():
            gu = torch.stack([gate.weight[members], up.weight[members]], 1)  # (G, 2, size, hidden)
            self.register_buffer("w_gate_up", gu.reshape(n_groups, 2 * size, -1).contiguous(), persistent=False)
            self.register_buffer("w_down_t", down.weight.t()[members].contiguous(), persistent=False)  # (G, size, hidden)

    def forward(self, x: Any) -> Any:
        import torch

        top = torch.addmm(self.router_b, x.reshape(-1, x.shape[-1]), self.router_w).topk(self.k, dim=-1).indices
        self.kept += top.shape[0] * self.k * self.members.shape[1]
        self.tokens += top.shape[0]
        if self.gather and top.shape[0] == 1 and x.dtype == self.w_gate_up.dtype:
            names = [_lora_delta_names(m) for m in (self.gate_proj, self.up_proj, self.down_proj)]
            if all(n is not None for n in names):
                return self._one_token(x, top[0].sort().values, *names).view(*x.shape[:-1], -1)
        keep = torch.zeros(top.shape[0], self.router_w.shape[1], dtype=x.dtype, device=x.device).scatter_(1, top, 1.0)
        mask = keep[:, self.assign].view(*x.shape[:-1], -1)
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x) * mask)

    def _one_token(self, x: Any, groups: Any, gate_names: list[str], up_names: list[str], down_names: list[str]) -> Any:
        import torch

        xv = x.reshape(-1)
        k, size = groups.numel(), self.members.shape[1]
        gu = torch.mv(self.w_gate_up.index_select(0, groups).view(-1, xv.numel()), xv).view(k, 2, size)
        g, u = gu[:, 0].reshape(-1), gu[:, 1].reshape(-1)
        idx = self.members.index_select(0, groups).reshape(-1) if gate_names or up_names or down_names else None
        for m, names, out in ((self.gate_proj, gate_names, g), (self.up_proj, up_names, u)):
            for n in names:  # rows `idx` of B @ A x
                out.add_(torch.mv(m.lora_B[n].weight.index_select(0, idx), m.lora_A[n](xv)), alpha=m.scaling[n])
        h = self.act_fn(g) * u
        y = torch.mv(self.w_down_t.index_select(0, groups).view(-1, xv.numel()).t(), h)
        m = self.down_proj
        for n in down_names:  # B @ (columns `idx` of A) h
            y.add_(m.lora_B[n](torch.mv(m.lora_A[n].weight.index_select(1, idx), h)), alpha=m.scaling[n])
        return y


def grouped_ffn(model: Any, routing: GroupRouting, fraction: float, *, gather: bool = True) -> SparsePatch:
    """Replace every layer's MLP by a `GroupedFFN` keeping ``round(fraction * n_groups)`` groups
    per token (at least one); returns the patch that puts the original MLPs back. ``gather=False``
    uses the mask path for every input (the reference)."""
    fraction = check_fraction(fraction, "fraction")
    ffns = gated_ffns(model)
    problems = []
    if len(routing.assign) != len(ffns):
        problems.append(f"the routing has {len(routing.assign)} layers, the model {len(ffns)}")
    for f in ffns:
        if any(core_linear(m).bias is not None for m in (f.gate, f.up, f.down)):
            problems.append(f"layer {f.layer}'s MLP has biases (not supported)")
        if f.layer < len(routing.assign) and routing.assign[f.layer].numel() != f.size:
            problems.append(f"layer {f.layer}: the routing has {routing.assign[f.layer].numel()} neurons, the FFN {f.size}")
    if problems:
        raise ConfigError("cannot group the FFNs:\n  - " + "\n  - ".join(problems))
    k = max(1, round(fraction * routing.n_groups))
    return install_ffns(
        model,
        lambda f: GroupedFFN(f.mlp, routing.assign[f.layer], routing.weight[f.layer], routing.bias[f.layer], k, gather=gather),
        fraction,
    )


__all__ = ["GroupRouting", "GroupedFFN", "balanced_groups", "fit_groups", "grouped_ffn"]
