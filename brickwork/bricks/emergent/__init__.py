"""Emergent bricks: FFN neuron analysis, neuron partitions, and running with part of the model.

- `analysis.analyze` reproduces the FFN analysis of "Configurable Foundation Models" (§4):
  sparse activation, functional specialisation (FuncScore), functional partition (masking matrix,
  overlaps), plus resident neurons, co-activation clusters and layer influence.
- `build.build_bricks` turns an analysis into emergent bricks in a library (kind ``emergent``:
  ``neurons.safetensors`` + ``brick.json``).
- `slicing.slice_ffn` / `slicing.skip_layers` run an HF model (PEFT-wrapped or not) with only
  some FFN neurons or some layers, by slicing the weights (real smaller matmuls).

Importing this package is light (no torch); it registers the emergent brick validator.
"""

from __future__ import annotations

from brickwork.bricks.emergent.ffn import capture_ffn_inputs, gated_ffns
from brickwork.bricks.emergent.masks import MASK_FILE, NeuronMask, load_mask, save_mask, validate_emergent_dir
from brickwork.bricks.emergent.select import apply_masks, keep_from_masks, keep_from_scores
from brickwork.bricks.emergent.slicing import Patch, skip_layers, slice_ffn
from brickwork.bricks.validate import KIND_VALIDATORS

__all__ = [
    "MASK_FILE",
    "NeuronMask",
    "Patch",
    "apply_masks",
    "capture_ffn_inputs",
    "gated_ffns",
    "keep_from_masks",
    "keep_from_scores",
    "load_mask",
    "save_mask",
    "skip_layers",
    "slice_ffn",
    "validate_emergent_dir",
]

KIND_VALIDATORS["emergent"] = validate_emergent_dir
