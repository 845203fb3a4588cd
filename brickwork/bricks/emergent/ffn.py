"""Finding the gated FFNs of a Hugging Face causal LM and capturing their neuron activations.

A *neuron* is one hidden unit of a gated FFN ``down(act(gate(x)) * up(x))``; its activation is
the corresponding entry of ``down_proj``'s input. Llama, Mistral, Qwen2, Gemma and SmolLM2 have
this shape (``mlp.gate_proj/up_proj/down_proj``); GPT-2-style FFNs (``c_fc``/``c_proj``) and MoE
blocks do not, and get a `ModelError` that says so.

Works on a bare transformers model and on a `peft.PeftModel` (LoRA layers wrap the projections;
the wrapped ``base_layer`` is what holds the weights).

Example::

    with capture_ffn_inputs(model) as acts:
        model(**batch)
    acts[3]          # (batch, seq, intermediate) input of layer 3's down_proj
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from brickwork.errors import ModelError

GATED_NAMES = ("gate_proj", "up_proj", "down_proj")
_LAYER_PATHS = ("model.layers", "model.decoder.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers", "layers")


def unwrap(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def decoder_layers(model: Any) -> Any:
    """The `nn.ModuleList` of decoder layers (``model.model.layers`` for Llama-like models)."""
    import torch.nn as nn

    inner = unwrap(model)
    for path in _LAYER_PATHS:
        obj = inner
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    raise ModelError(f"cannot find the decoder layers of {type(inner).__name__} (looked at {', '.join(_LAYER_PATHS)})")


def core_linear(module: Any) -> Any:
    """The `nn.Linear` holding a projection's weights (PEFT's LoRA layers keep it as `base_layer`)."""
    import torch.nn as nn

    base = getattr(module, "base_layer", None)
    if isinstance(base, nn.Linear):
        return base
    if isinstance(module, nn.Linear):
        return module
    raise ModelError(f"expected an nn.Linear (or a PEFT LoRA layer around one), got {type(module).__name__}")


@dataclass(frozen=True)
class GatedFFN:
    """One layer's gated FFN: the MLP module and its three projections (possibly PEFT-wrapped)."""

    layer: int
    mlp: Any
    gate: Any
    up: Any
    down: Any

    @property
    def size(self) -> int:
        """The current number of neurons (smaller than the model's after `slice_ffn`)."""
        return int(core_linear(self.down).weight.shape[1])


def gated_ffns(model: Any) -> list[GatedFFN]:
    """Every layer's gated FFN, in order; `ModelError` if the model has none."""
    out = []
    for i, layer in enumerate(decoder_layers(model)):
        layer = getattr(layer, "skipped_layer", layer)  # see slicing.skip_layers
        mlp = getattr(layer, "mlp", None)
        if mlp is None or not all(hasattr(mlp, n) for n in GATED_NAMES):
            kind = type(mlp).__name__ if mlp is not None else "no `mlp` attribute"
            children = [n for n, _ in mlp.named_children()] if mlp is not None else [n for n, _ in layer.named_children()]
            raise ModelError(
                f"{type(unwrap(model)).__name__} has no gated FFN: layer {i}'s MLP ({kind}; children {children}) "
                f"lacks {'/'.join(GATED_NAMES)}. Emergent analysis and FFN slicing need a gated (SwiGLU/GeGLU) "
                "FFN as in Llama, Mistral, Qwen2, Gemma or SmolLM2."
            )
        out.append(GatedFFN(layer=i, mlp=mlp, gate=mlp.gate_proj, up=mlp.up_proj, down=mlp.down_proj))
    return out


def down_column_norms(model: Any) -> Any:
    """(n_layers, intermediate) tensor: the L2 norm of each neuron's `down_proj` column."""
    import torch

    with torch.no_grad():
        return torch.stack([core_linear(f.down).weight.float().norm(dim=0) for f in gated_ffns(model)])


@contextmanager
def ffn_input_hooks(model: Any, fn: Callable[[int, Any], Any]) -> Iterator[None]:
    """Call ``fn(layer, activation)`` on every `down_proj` input during forwards in the block.

    If `fn` returns a tensor, it replaces the input (how the sparsity experiments zero neurons).
    """
    handles = []

    def make(layer: int) -> Callable[..., Any]:
        def hook(_module: Any, args: tuple[Any, ...]) -> Any:
            new = fn(layer, args[0])
            return None if new is None else (new, *args[1:])

        return hook

    try:
        for f in gated_ffns(model):
            handles.append(f.down.register_forward_pre_hook(make(f.layer)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def capture_ffn_inputs(model: Any) -> Iterator[dict[int, Any]]:
    """Record the latest `down_proj` input of every layer (detached) into the yielded dict."""
    acts: dict[int, Any] = {}

    def keep(layer: int, a: Any) -> None:
        acts[layer] = a.detach()

    with ffn_input_hooks(model, keep):
        yield acts
