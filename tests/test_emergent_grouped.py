"""Grouped per-token FFN selection (`brickwork.bricks.emergent.grouped_ffn`): tiny models built in
code, then the real SmolLM2 with a LoRA brick on its MLP."""

from __future__ import annotations

import contextlib

import pytest

torch = pytest.importorskip("torch")

from brickwork.bricks.emergent.grouped_ffn import GroupedFFN, balanced_groups, fit_groups, grouped_ffn  # noqa: E402
from brickwork.errors import ConfigError  # noqa: E402
from tests.test_emergent import ids, tiny_llama  # noqa: E402, F401
from tests.test_emergent_sparse import one_token_logits, tiny_peft  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeTokenizer:
    """Maps each text to fixed random token ids (length from the text), right-padded."""

    def __call__(self, texts, **_kw):
        rows = [ids(batch=1, seq=3 + len(t) % 9, seed=len(t))[0] for t in texts]
        width = max(len(r) for r in rows)
        input_ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)], mask[i, : len(r)] = r, 1
        return {"input_ids": input_ids, "attention_mask": mask}


TEXTS = [f"text number {i}" * (1 + i % 3) for i in range(12)]


def test_balanced_groups_are_equal_sized_and_refuse_a_bad_count():
    profiles = torch.randn(48, 20)
    groups = balanced_groups(profiles, 8)
    assert torch.bincount(groups, minlength=8).tolist() == [6] * 8
    with pytest.raises(ConfigError, match="`n_groups` should divide the FFN width 48, got 5"):
        balanced_groups(profiles, 5)


def test_all_groups_kept_equals_dense_and_restore_puts_the_mlps_back():
    model = tiny_llama()
    routing = fit_groups(model, FakeTokenizer(), 4, TEXTS)
    x = ids()
    dense = one_token_logits(model, x)
    mlps = [layer.mlp for layer in model.model.layers]
    with grouped_ffn(model, routing, 1.0) as patch:
        assert all(isinstance(layer.mlp, GroupedFFN) for layer in model.model.layers)
        assert torch.allclose(one_token_logits(model, x), dense, atol=1e-5)
        assert torch.allclose(one_token_logits(model, x[:1, :1]), one_token_logits(model, x[:1, :1]), atol=0)
        assert patch.kept_fraction() == 1.0
    assert [layer.mlp for layer in model.model.layers] == mlps


@pytest.mark.parametrize("mode", ["bare", "active", "disabled", "mixed-batch", "mixed-batch-base"])
def test_one_token_block_path_equals_the_mask_path(mode):
    """Gathered group blocks equal masking the dropped groups, with LoRA on gate/up/down exact
    for the kept neurons under every way PEFT picks adapters."""
    model = tiny_llama() if mode == "bare" else tiny_peft()
    token = ids(batch=1, seq=1, seed=3)
    kw, ctx = {}, contextlib.nullcontext
    if mode == "disabled":
        ctx = model.disable_adapter
    elif mode == "mixed-batch":
        kw = {"adapter_names": ["second"]}
    elif mode == "mixed-batch-base":
        kw = {"adapter_names": ["__base__"]}
    routing = fit_groups(model, FakeTokenizer(), 8, TEXTS)
    with ctx():
        with grouped_ffn(model, routing, 0.5, gather=False) as patch:
            want = one_token_logits(model, token, **kw)
            kept = patch.kept_fraction()
        with grouped_ffn(model, routing, 0.5):
            got = one_token_logits(model, token, **kw)
        dense = one_token_logits(model, token, **kw)
    assert kept == 0.5
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert not torch.allclose(got, dense, atol=1e-3)


def test_bad_arguments_are_refused_with_every_problem():
    model = tiny_llama()
    routing = fit_groups(model, FakeTokenizer(), 4, TEXTS)
    with pytest.raises(ConfigError, match="`fraction` should be the kept share"):
        grouped_ffn(model, routing, 0.0)
    other = fit_groups(tiny_llama(layers=3), FakeTokenizer(), 4, TEXTS)
    with pytest.raises(ConfigError, match="the routing has 3 layers, the model 2"):
        grouped_ffn(model, other, 0.5)
    with grouped_ffn(model, routing, 0.5):
        with pytest.raises(ConfigError, match="already sparse"):
            grouped_ffn(model, routing, 0.5)
    assert not any(isinstance(layer.mlp, GroupedFFN) for layer in model.model.layers)


def test_real_model_with_an_mlp_lora_brick(tmp_path, base):
    """SmolLM2 + a LoRA brick on gate/up/down: groups fitted on the base model, half kept per
    token changes the logits, and decode's block path equals masking."""
    from peft import PeftModel

    from brickwork.bricks.emergent.sparse_ffn import calibration_texts
    from brickwork.models import load_base_model
    from brickwork.tasks import render_prompt
    from tests.conftest import write_lora_adapter

    model, tok = load_base_model(base)
    routing = fit_groups(model, tok, 16, calibration_texts(1)[:6])
    write_lora_adapter(tmp_path / "brick", base, rank=4, modules=("q_proj", "gate_proj", "up_proj", "down_proj"), scale=0.05)
    peft = PeftModel.from_pretrained(model, str(tmp_path / "brick"), adapter_name="brick").eval()
    x = tok(render_prompt("Give the plural of 'mouse'."), return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        dense = peft(input_ids=x).logits
        with grouped_ffn(peft, routing, 0.5):
            half = peft(input_ids=x).logits
            fast = peft(input_ids=x[:, -1:], adapter_names=["brick"]).logits
        with grouped_ffn(peft, routing, 0.5, gather=False):
            masked = peft(input_ids=x[:, -1:], adapter_names=["brick"]).logits
    assert (half - dense).abs().max() > 0.1
    assert torch.allclose(fast, masked, atol=1e-4), (fast - masked).abs().max()
