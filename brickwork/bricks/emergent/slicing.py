"""Running a model with part of its FFN neurons or part of its layers, for real savings.

`slice_ffn` replaces each chosen layer's ``gate_proj``/``up_proj`` weights by their kept rows and
``down_proj``'s by its kept columns: the matmuls really get smaller, and the output is exactly the
output with the other neurons zeroed (a test checks this). `skip_layers` replaces whole decoder
layers by the identity (the residual stream passes through untouched). Both return a `Patch`
that undoes the change; both work on a `peft.PeftModel`:

- LoRA on attention projections (``q_proj``...): untouched by slicing, composes as is.
- LoRA on ``gate_proj``/``up_proj``/``down_proj``: sliced with the base weights (``lora_B`` rows,
  resp. ``lora_A`` columns), so the adapter's delta on the kept neurons is exact. DoRA is refused.
  Load or add adapters *before* slicing (PEFT builds new LoRA layers from the sliced shapes).

Example::

    with slice_ffn(model, {0: [3, 5, 8], 1: range(512)}), skip_layers(model, [21, 25]):
        model.generate(...)
    # weights and layers are back here
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from brickwork.bricks.emergent.ffn import core_linear, decoder_layers, gated_ffns
from brickwork.errors import ConfigError

_SLICED_FLAG = "_brickwork_sliced"


class Patch:
    """Undo record of `slice_ffn`/`skip_layers`; a context manager; `restore()` is idempotent."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._undo: list[Callable[[], None]] = []

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    @property
    def active(self) -> bool:
        return bool(self._undo)

    def __enter__(self) -> Patch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def __repr__(self) -> str:
        return f"Patch({self.what}, active={self.active})"


def _set_param(patch: Patch, module: Any, name: str, value: Any) -> None:
    import torch.nn as nn

    old = getattr(module, name)
    setattr(module, name, nn.Parameter(value.contiguous(), requires_grad=False))
    patch._undo.append(lambda: setattr(module, name, old))


def _set_attr(patch: Patch, obj: Any, name: str, value: Any) -> None:
    old = getattr(obj, name)
    setattr(obj, name, value)
    patch._undo.append(lambda: setattr(obj, name, old))


def _lora_parts(module: Any, which: str) -> list[Any]:
    """The per-adapter LoRA linears of a PEFT LoRA layer (`lora_A` or `lora_B`), else []."""
    if getattr(module, "lora_magnitude_vector", None):
        raise ConfigError(f"cannot slice a DoRA layer ({type(module).__name__}): its norm depends on the full weight")
    parts = getattr(module, which, None)
    return list(parts.values()) if parts is not None else []


def _slice_out(patch: Patch, module: Any, idx: Any) -> None:
    """Keep rows `idx` of an output projection (gate/up) and of its LoRA B matrices."""
    lin = core_linear(module)
    _set_param(patch, lin, "weight", lin.weight.data.index_select(0, idx))
    if lin.bias is not None:
        _set_param(patch, lin, "bias", lin.bias.data.index_select(0, idx))
    _set_attr(patch, lin, "out_features", len(idx))
    for b in _lora_parts(module, "lora_B"):
        _set_param(patch, b, "weight", b.weight.data.index_select(0, idx))
        _set_attr(patch, b, "out_features", len(idx))


def _slice_in(patch: Patch, module: Any, idx: Any) -> None:
    """Keep columns `idx` of the input side of down_proj and of its LoRA A matrices."""
    lin = core_linear(module)
    _set_param(patch, lin, "weight", lin.weight.data.index_select(1, idx))
    _set_attr(patch, lin, "in_features", len(idx))
    for a in _lora_parts(module, "lora_A"):
        _set_param(patch, a, "weight", a.weight.data.index_select(1, idx))
        _set_attr(patch, a, "in_features", len(idx))


def normalize_keep(keep: Mapping[int, Iterable[int]], sizes: list[int]) -> dict[int, list[int]]:
    """Check a {layer: neuron indices} map against the layer sizes; report every problem at once."""
    problems = []
    out: dict[int, list[int]] = {}
    for layer, neurons in keep.items():
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < len(sizes):
            problems.append(f"layer {layer!r} is not in 0..{len(sizes) - 1}")
            continue
        try:
            idx = sorted({int(n) for n in (neurons.tolist() if hasattr(neurons, "tolist") else neurons)})
        except (TypeError, ValueError):
            problems.append(f"layer {layer}: neuron indices should be integers, got {neurons!r}")
            continue
        bad = [n for n in idx if not 0 <= n < sizes[layer]]
        if bad:
            problems.append(f"layer {layer}: neuron indices {bad[:5]} are outside 0..{sizes[layer] - 1}")
            continue
        out[layer] = idx
    if problems:
        raise ConfigError("`keep` is invalid:\n  - " + "\n  - ".join(problems))
    return out


def slice_ffn(model: Any, keep: Mapping[int, Iterable[int]]) -> Patch:
    """Keep only `keep[layer]` neurons in each listed layer's FFN (others layers untouched).

    The weights are replaced by smaller copies (the originals are kept for `restore()`), so the
    FFN runs ``len(keep[layer]) / intermediate_size`` of its dense cost. An empty index list
    removes the layer's FFN entirely (its output becomes zero).
    """
    import torch

    ffns = gated_ffns(model)
    keep = normalize_keep(keep, [f.size for f in ffns])
    already = [f.layer for f in ffns if f.layer in keep and getattr(f.mlp, _SLICED_FLAG, False)]
    if already:
        raise ConfigError(f"layers {already} are already sliced: restore() the previous Patch first")
    patch = Patch(f"slice_ffn({len(keep)} layers)")
    try:
        for f in ffns:
            if f.layer not in keep:
                continue
            device = core_linear(f.down).weight.device
            idx = torch.tensor(keep[f.layer], dtype=torch.long, device=device)
            _slice_out(patch, f.gate, idx)
            _slice_out(patch, f.up, idx)
            _slice_in(patch, f.down, idx)
            _flag(patch, f.mlp)
    except BaseException:
        patch.restore()
        raise
    return patch


def _flag(patch: Patch, mlp: Any) -> None:
    setattr(mlp, _SLICED_FLAG, True)
    patch._undo.append(lambda: delattr(mlp, _SLICED_FLAG))


def _skipped_layer_cls() -> type:
    import torch.nn as nn

    class SkippedLayer(nn.Module):
        """A decoder layer replaced by the identity on the residual stream."""

        def __init__(self, layer: nn.Module) -> None:
            super().__init__()
            self.skipped_layer = layer

        def forward(self, hidden_states: Any = None, *args: Any, **kwargs: Any) -> Any:
            return hidden_states

        def __getattr__(self, name: str) -> Any:
            # Models read per-layer attributes (e.g. `attention_type`) while looping over layers.
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(super().__getattr__("skipped_layer"), name)

    return SkippedLayer


def skip_layers(model: Any, layers: Iterable[int]) -> Patch:
    """Replace decoder `layers` by the identity; layer 0 cannot be skipped.

    Layer 0 stays because transformers' KV cache counts the sequence length on layer 0; skipped
    layers simply never write their cache entry.
    """
    mods = decoder_layers(model)
    wanted = sorted(set(layers))
    problems = [f"layer {i} is not in 1..{len(mods) - 1}" for i in wanted if not 0 < i < len(mods)]
    problems += [f"layer {i} is already skipped" for i in wanted if 0 < i < len(mods) and hasattr(mods[i], "skipped_layer")]
    if problems:
        raise ConfigError("cannot skip layers:\n  - " + "\n  - ".join(problems))
    cls = _skipped_layer_cls()
    patch = Patch(f"skip_layers({wanted})")
    for i in wanted:
        orig = mods[i]
        mods[i] = cls(orig)
        patch._undo.append(lambda i=i, orig=orig: mods.__setitem__(i, orig))
    return patch
