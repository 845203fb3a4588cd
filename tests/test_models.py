from __future__ import annotations

import pytest

from brickwork.errors import ModelError
from brickwork.models import DEFAULT_BASE_MODEL, resolve_base_model, weight_shapes


def _tiny_llama_dir(path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    return path


def test_default_resolves_to_cached_safetensors_with_stable_fingerprint(base):
    again = resolve_base_model(DEFAULT_BASE_MODEL)
    assert again == base
    assert base.fingerprint.startswith("sha256:") and (base.path / "model.safetensors").is_file()
    assert weight_shapes(base)["model.layers.0.self_attn.q_proj.weight"] == (576, 576)


def test_local_directory_is_a_base_model(tmp_path):
    d = _tiny_llama_dir(tmp_path / "tiny")
    a = resolve_base_model(d)
    assert a.path == d.resolve() and a.fingerprint == resolve_base_model(str(d)).fingerprint


def test_fingerprint_changes_with_the_weights(tmp_path):
    a = resolve_base_model(_tiny_llama_dir(tmp_path / "a"))
    d = tmp_path / "b"
    _tiny_llama_dir(d)
    from safetensors.torch import load_file, save_file

    t = load_file(str(d / "model.safetensors"))
    k = next(iter(t))
    t[k] = t[k] + 1
    save_file(t, str(d / "model.safetensors"), metadata={"format": "pt"})
    assert resolve_base_model(d).fingerprint != a.fingerprint



@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "unknown base model"),
        (lambda p: p.mkdir(), "no config.json"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{}"), (p / "pytorch_model.bin").write_bytes(b"x")), "pickled"),
    ],
)
def test_bad_base_models(tmp_path, setup, message):
    p = tmp_path / "m"
    setup(p)
    with pytest.raises(ModelError, match=message):
        resolve_base_model(p if p.exists() else "not-a-model")


def test_import_brickwork_is_light():
    import subprocess
    import sys

    code = "import sys, brickwork, brickwork.cli; print(' '.join(m for m in ('torch','faiss','vllm','transformers','peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
