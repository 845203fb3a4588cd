"""Partner deltas: another brick's LoRA, frozen, added per batch row beside the brick in training."""

from __future__ import annotations

import pytest

from tests.conftest import write_lora_adapter

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def loaded(base):
    from brickwork.models import load_base_model

    return load_base_model(base)


def _ids(tok):
    from brickwork.tasks import render_prompt

    return tok([render_prompt("Spell the word: house"), render_prompt("hello there, how are you?")],
               return_tensors="pt", padding=True)


def test_partner_rows_get_exactly_the_partners_adapter_and_other_rows_none(loaded, base, tmp_path):
    import torch

    from tests.conftest import loaded_adapter
    from brickwork.bricks.partners import NO_PARTNER, PartnerDeltas

    model, tok = loaded
    partner = write_lora_adapter(tmp_path / "p", base, modules=("q_proj", "down_proj"), scale=0.05)
    ids = _ids(tok)
    with torch.no_grad():
        plain = model(**ids).logits
        with loaded_adapter(model, partner) as m:
            ref = m(**ids).logits
        assert (ref - plain).abs().max() > 1e-2  # the partner really changes the output
        with PartnerDeltas(model, [partner]) as deltas:
            with deltas.rows([0, NO_PARTNER]):
                got = model(**ids).logits
            outside = model(**ids).logits  # no rows assigned outside the block
        after = model(**ids).logits  # hooks removed
    assert torch.allclose(got[0], ref[0], atol=1e-4)
    assert torch.allclose(got[1], plain[1], atol=1e-5)
    assert torch.equal(outside, plain) and torch.equal(after, plain)


def test_partner_slots_out_of_range_and_foreign_modules_are_refused(loaded, base, tmp_path):
    from brickwork.bricks.partners import PartnerDeltas
    from brickwork.errors import AdapterError

    model, _ = loaded
    partner = write_lora_adapter(tmp_path / "p", base)
    with PartnerDeltas(model, [partner]) as deltas, pytest.raises(ValueError, match="out of range"):
        with deltas.rows([1]):
            pass
    other = write_lora_adapter(tmp_path / "q", base)
    from safetensors.torch import load_file, save_file

    t = load_file(str(other / "adapter_model.safetensors"))
    t = {k.replace("layers.0.", "layers.99."): v for k, v in t.items()}
    save_file(t, str(other / "adapter_model.safetensors"))
    with pytest.raises(AdapterError, match="not in the base model"):
        PartnerDeltas(model, [other])
    wide = write_lora_adapter(tmp_path / "w", base)  # factors of another model's width
    t = load_file(str(wide / "adapter_model.safetensors"))
    t = {k: (v[:, :100] if ".lora_A." in k else v) for k, v in t.items()}
    save_file({k: v.contiguous() for k, v in t.items()}, str(wide / "adapter_model.safetensors"))
    with pytest.raises(AdapterError, match="another base model"):
        PartnerDeltas(model, [partner, wide])
    assert all(not m._forward_hooks for m in model.modules())  # a refused partner leaves no hook behind


def test_training_with_a_partner_keeps_the_cached_loss_exact(loaded, base, tmp_path):
    """Cached lower layers with a partner active on every layer give the naive loss."""
    import torch
    from peft import LoraConfig, get_peft_model

    from brickwork.bricks import training as T
    from brickwork.bricks.lineage import strip_adapters
    from brickwork.bricks.partners import PartnerDeltas

    model, tok = loaded
    partner = write_lora_adapter(tmp_path / "p", base, modules=("q_proj", "v_proj", "down_proj"), scale=0.05)
    pairs = [(f"Give the plural form of the given English noun.\n{w}", w + "s") for w in ("cat", "dog", "fox", "box")]
    data, _ = T._encode(tok, pairs, 128)
    slots = [0, -1, 0, -1]
    layers = T._lora_layers(30, 4)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  layers_to_transform=layers))
    try:
        for p in peft_model.parameters():
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.02)
        idx = [0, 1, 2, 3]
        with PartnerDeltas(peft_model.base_model.model, [partner]) as deltas:
            fast = T._Trainer(peft_model, tok, T.TrainConfig(top_layers=4), layers, data, slots, deltas)
            assert fast.prefix_len == 0  # the partner changes the shared prefix too
            naive = T._Trainer(peft_model, tok, T.TrainConfig(top_layers=4, cache_lower=False), layers, data, slots, deltas)
            a, b = fast.loss(idx, data), naive.loss(idx, data)
        without = T._Trainer(peft_model, tok, T.TrainConfig(top_layers=4), layers, data).loss(idx, data)
    finally:
        strip_adapters(model)
    assert torch.allclose(a, b, atol=1e-4), (a, b)
    assert abs(a.item() - without.item()) > 1e-3  # the partner is really in the loss


def test_train_lora_refuses_a_malformed_partner(base, tmp_path):
    from brickwork.bricks.training import TrainConfig, train_lora
    from brickwork.errors import TrainingError

    with pytest.raises(TrainingError, match="partner adapter dir"):
        train_lora([("q", "a", 3)], base=base, config=TrainConfig(steps=1), out_dir=tmp_path / "o")
