"""The emergent brick's file: ``neurons.safetensors`` (never a pickle), and its validator.

Tensors (all optional, at least one mask must select something)::

    ffn.<layer>.mask    uint8 [intermediate]   1 = the neuron belongs to the brick
    ffn.<layer>.score   float32 [intermediate] importance used to rank neurons (pick a budget)
    layers.mask         uint8 [n_layers]       1 = the layer belongs to the brick (layer bricks)
    layers.score        float32 [n_layers]

Metadata: ``format = brickwork-emergent``, ``format_version = 1``, ``n_layers``. Readers use numpy
only (no torch), so validating a library stays light.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brickwork.bricks.manifest import MANIFEST_NAME, Manifest
from brickwork.errors import AdapterError
from brickwork.models import BaseModel, weight_shapes

MASK_FILE = "neurons.safetensors"
MASK_FORMAT = "brickwork-emergent"
MASK_FORMAT_VERSION = "1"
ALLOWED_FILES = (MANIFEST_NAME, MASK_FILE, "README.md")
TARGETS = ("gate_proj", "up_proj", "down_proj", "layers")
_KEY = re.compile(r"^(?:ffn\.(?P<layer>\d+)|layers)\.(?P<what>mask|score)$")
_GATE_KEY = re.compile(r"^model\.layers\.(\d+)\.mlp\.gate_proj\.weight$")


@dataclass(frozen=True, kw_only=True)
class NeuronMask:
    """An emergent brick's content: neurons per layer and/or whole layers, with optional scores.

    `neurons[layer]` is a sorted index array; `sizes[layer]` the layer's FFN width.
    """

    sizes: tuple[int, ...]
    neurons: dict[int, Any] = field(default_factory=dict)
    scores: dict[int, Any] = field(default_factory=dict)
    layers: tuple[int, ...] = ()
    layer_scores: Any = None

    @property
    def n_layers(self) -> int:
        return len(self.sizes)

    def keep(self) -> dict[int, list[int]]:
        """{layer: neuron indices}, the argument `slice_ffn` takes (layers without neurons: none)."""
        return {layer: [int(i) for i in idx] for layer, idx in sorted(self.neurons.items())}

    def fraction(self) -> float:
        return sum(len(v) for v in self.neurons.values()) / max(1, sum(self.sizes))


def ffn_sizes(base: BaseModel) -> tuple[int, ...]:
    """Each layer's FFN width, from the safetensors headers (no weights loaded)."""
    found = {int(m[1]): shape[0] for k, shape in weight_shapes(base).items() if (m := _GATE_KEY.match(k))}
    if not found:
        return ()
    return tuple(found.get(i, 0) for i in range(max(found) + 1))


def save_mask(path: Path, mask: NeuronMask) -> Path:
    """Write `mask` to ``path/neurons.safetensors``; return the file."""
    import numpy as np
    from safetensors.numpy import save_file

    tensors: dict[str, Any] = {}
    for layer, idx in mask.neurons.items():
        m = np.zeros(mask.sizes[layer], dtype=np.uint8)
        m[np.asarray(idx, dtype=np.int64)] = 1
        tensors[f"ffn.{layer}.mask"] = m
    for layer, s in mask.scores.items():
        tensors[f"ffn.{layer}.score"] = np.asarray(s, dtype=np.float32).reshape(mask.sizes[layer])
    if mask.layers:
        lm = np.zeros(mask.n_layers, dtype=np.uint8)
        lm[list(mask.layers)] = 1
        tensors["layers.mask"] = lm
    if mask.layer_scores is not None:
        tensors["layers.score"] = np.asarray(mask.layer_scores, dtype=np.float32).reshape(mask.n_layers)
    meta = {
        "format": MASK_FORMAT,
        "format_version": MASK_FORMAT_VERSION,
        "n_layers": str(mask.n_layers),
        "sizes": ",".join(str(s) for s in mask.sizes),
    }
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / MASK_FILE), metadata=meta)
    return path / MASK_FILE


def mask_problems(path: Path, sizes: tuple[int, ...] | None = None) -> tuple[list[str], NeuronMask | None]:
    """Every problem with ``path/neurons.safetensors`` (against `sizes` if given), and the mask."""
    import numpy as np
    from safetensors import SafetensorError, safe_open

    f = Path(path) / MASK_FILE
    if not f.is_file():
        return [f"no {MASK_FILE}"], None
    problems: list[str] = []
    try:
        with safe_open(str(f), framework="numpy") as st:
            meta = st.metadata() or {}
            tensors = {k: st.get_tensor(k) for k in st.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        return [f"{MASK_FILE} is corrupt or not safetensors ({exc})"], None
    if meta.get("format") != MASK_FORMAT:
        problems.append(f"{MASK_FILE}: metadata `format` should be {MASK_FORMAT!r}, got {meta.get('format')!r}")
    if meta.get("format_version") != MASK_FORMAT_VERSION:
        problems.append(f"{MASK_FILE}: `format_version` {meta.get('format_version')!r} is not supported (reads {MASK_FORMAT_VERSION})")
    try:
        file_sizes = tuple(int(s) for s in str(meta.get("sizes", "")).split(","))
    except ValueError:
        file_sizes = ()
        problems.append(f"{MASK_FILE}: metadata `sizes` should be comma-separated integers, got {meta.get('sizes')!r}")
    if sizes is not None and file_sizes and file_sizes != sizes:
        problems.append(
            f"{MASK_FILE}: made for FFN sizes {_short(file_sizes)}, but the base model has {_short(sizes)}"
        )
    sizes = sizes or file_sizes
    neurons: dict[int, Any] = {}
    scores: dict[int, Any] = {}
    layers: tuple[int, ...] = ()
    layer_scores = None
    if not tensors:
        problems.append(f"{MASK_FILE} holds no tensors")
    for key, t in sorted(tensors.items()):
        m = _KEY.match(key)
        if not m:
            problems.append(f"unexpected tensor {key!r} (allowed: ffn.<layer>.mask|score, layers.mask|score)")
            continue
        layer = int(m["layer"]) if m["layer"] is not None else None
        if layer is not None and not 0 <= layer < len(sizes):
            problems.append(f"{key}: layer {layer} is outside 0..{len(sizes) - 1}")
            continue
        want = (sizes[layer],) if layer is not None else (len(sizes),)
        if tuple(t.shape) != want:
            problems.append(f"{key}: shape {list(t.shape)} does not fit the base model (expected {list(want)})")
            continue
        if m["what"] == "mask":
            if t.dtype != np.uint8 or not np.isin(t, (0, 1)).all():
                problems.append(f"{key}: should be uint8 0/1, got dtype {t.dtype}")
                continue
            sel = np.flatnonzero(t)
            if layer is None:
                layers = tuple(int(i) for i in sel)
            else:
                neurons[layer] = sel
        else:
            if t.dtype != np.float32 or not np.isfinite(t).all():
                problems.append(f"{key}: should be finite float32, got dtype {t.dtype}")
                continue
            if layer is None:
                layer_scores = t
            else:
                scores[layer] = t
    if not problems and not layers and not any(len(v) for v in neurons.values()):
        problems.append(f"{MASK_FILE}: the masks select no neuron and no layer")
    if problems:
        return problems, None
    return [], NeuronMask(sizes=sizes, neurons=neurons, scores=scores, layers=layers, layer_scores=layer_scores)


def _short(sizes: tuple[int, ...]) -> str:
    return f"{len(sizes)} layers x {sorted(set(sizes))}"


def load_mask(path: Path, base: BaseModel | None = None) -> NeuronMask:
    """Read and check an emergent brick's mask file (against `base`'s FFN sizes if given)."""
    problems, mask = mask_problems(Path(path), ffn_sizes(base) if base is not None else None)
    if problems or mask is None:
        raise AdapterError(f"{path}: invalid emergent brick:\n  - " + "\n  - ".join(problems))
    return mask


def validate_emergent_dir(path: Path, manifest: Manifest, base: BaseModel) -> None:
    """The `KIND_VALIDATORS["emergent"]` hook: manifest fields, files and masks, all problems at once."""
    path = Path(path)
    problems: list[str] = []
    if manifest.rank is not None:
        problems.append(f"brick.json: `rank` should be null for an emergent brick, got {manifest.rank!r}")
    bad_targets = [t for t in manifest.target_modules if t not in TARGETS]
    if bad_targets:
        problems.append(f"brick.json: `target_modules` should be among {list(TARGETS)}, got {bad_targets}")
    extra = sorted(p.name for p in path.iterdir() if p.name not in ALLOWED_FILES)
    if extra:
        problems.append(f"unexpected files {extra} (an emergent brick holds {MANIFEST_NAME} and {MASK_FILE})")
    sizes = ffn_sizes(base)
    if not sizes:
        problems.append(f"base model {base.id!r} has no gated FFN (no mlp.gate_proj weights); emergent bricks need one")
    else:
        problems += mask_problems(path, sizes)[0]
    if problems:
        raise AdapterError(f"{path}: invalid emergent brick:\n  - " + "\n  - ".join(problems))
