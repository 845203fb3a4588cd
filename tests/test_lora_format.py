"""brickwork.lora: the one owner of the adapter format (names, scaling, ranks, reading, writing)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from brickwork import lora
from brickwork.errors import AdapterError

MOD = "model.layers.2.self_attn.q_proj"


def _write(path, tensors, **cfg):
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / lora.ADAPTER_WEIGHTS))
    (path / lora.ADAPTER_CONFIG).write_text(json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], **cfg}))
    return path


def test_key_names_round_trip_and_accept_an_adapter_infix():
    assert lora.parse_key(lora.tensor_key(MOD, "A")) == (MOD, "A")
    assert lora.parse_key(f"base_model.model.{MOD}.lora_B.default.weight") == (MOD, "B")
    assert lora.parse_key(f"{MOD}.weight") is None
    assert lora.layer_index(MOD) == 2 and lora.layer_index("lm_head") is None


def test_scaling_follows_peft_including_patterns_and_rslora():
    cfg = {"r": 8, "lora_alpha": 16, "alpha_pattern": {"q_proj": 32}, "rank_pattern": {"v_proj": 16}}
    assert lora.scaling(cfg, MOD) == 32 / 8
    assert lora.scaling(cfg, "model.layers.2.self_attn.v_proj") == 16 / 16
    assert lora.scaling(cfg, "model.layers.2.self_attn.k_proj") == 16 / 8
    assert lora.module_rank(cfg, "model.layers.2.self_attn.v_proj") == 16
    assert lora.scaling({"r": 16, "lora_alpha": 16, "use_rslora": True}, MOD) == pytest.approx(16 / 4)


def test_padded_rank_uses_vllm_ranks_and_names_the_limit():
    assert [lora.padded_rank(r) for r in (1, 2, 8, 9, 300, 512)] == [1, 8, 8, 16, 320, 512]
    with pytest.raises(AdapterError, match="largest usable rank 64"):
        lora.padded_rank(65, max_rank=64)


def test_read_factors_and_write_adapter_round_trip(tmp_path):
    a, b = torch.randn(8, 4), torch.randn(6, 8)
    src = _write(tmp_path / "src", {lora.tensor_key(MOD, "A"): a, lora.tensor_key(MOD, "B"): b})
    cfg, factors = lora.read_factors(src)
    assert cfg["r"] == 8 and torch.equal(factors[MOD][0], a) and torch.equal(factors[MOD][1], b)
    pa, pb = lora.pad_factors(a, b, 16)
    assert pa.shape == (16, 4) and pb.shape == (6, 16) and torch.allclose(pb @ pa, b @ a)
    lora.write_adapter(tmp_path / "out", {MOD: (pa, pb)}, lora.plain_config(16, ["q_proj"], [2], base_name=None))
    cfg2, again = lora.read_factors(tmp_path / "out")
    assert cfg2["r"] == cfg2["lora_alpha"] == 16 and lora.config_problems(cfg2) == []
    assert torch.equal(again[MOD][0], pa)
    assert lora.header_shapes(tmp_path / "out")[lora.tensor_key(MOD, "B")] == (6, 16)


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ({f"base_model.model.{MOD}.weight": torch.zeros(2, 2)}, "unexpected tensor"),
        ({lora.tensor_key(MOD, "A"): torch.zeros(8, 4)}, "has lora_A but not both factors"),
    ],
    ids=["not-a-factor", "one-factor"],
)
def test_read_factors_refuses_what_is_not_a_lora(tmp_path, tensors, match):
    with pytest.raises(AdapterError, match=match):
        lora.read_factors(_write(tmp_path / "bad", tensors))


def test_corrupt_weights_and_pickles_are_refused(tmp_path):
    bad = _write(tmp_path / "bad", {lora.tensor_key(MOD, "A"): torch.zeros(8, 4)})
    (bad / lora.ADAPTER_WEIGHTS).write_bytes(b"\x00garbage")
    with pytest.raises(AdapterError, match="corrupt or not safetensors"):
        lora.header_shapes(bad)
    with pytest.raises(AdapterError, match="cannot read"):
        lora.read_factors(bad)
    (bad / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(AdapterError, match="refusing pickled weight files"):
        lora.read_factors(bad)


def test_config_problems_name_what_vllm_refuses():
    problems = lora.config_problems({"peft_type": "LORA", "r": 12, "use_dora": True, "bias": "all", "target_modules": []})
    text = " ".join(problems)
    assert "vLLM's ranks" in text and "DoRA" in text and "bias" in text and "target_modules" in text
