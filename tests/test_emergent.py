"""Emergent bricks on tiny models built in code: hooks, slicing == masking, layer skipping, errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from brickwork.bricks.emergent.ffn import capture_ffn_inputs, ffn_input_hooks, gated_ffns  # noqa: E402
from brickwork.bricks.emergent.select import apply_masks, keep_from_masks, keep_from_scores  # noqa: E402
from brickwork.bricks.emergent.slicing import skip_layers, slice_ffn  # noqa: E402
from brickwork.errors import ConfigError, ModelError  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_llama(layers: int = 2, vocab: int = 128, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=64)).eval()


def ids(batch: int = 2, seq: int = 7, vocab: int = 128, seed: int = 1):
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def logits(model, x):
    with torch.no_grad():
        return model(input_ids=x).logits


def masked_logits(model, x, keep):
    """Reference: zero the dropped neurons in down_proj's input (what slicing must equal)."""

    def zero(layer, a):
        if layer not in keep:
            return None
        m = torch.zeros(a.shape[-1], dtype=a.dtype)
        m[list(keep[layer])] = 1
        return a * m

    with ffn_input_hooks(model, zero):
        return logits(model, x)


def test_hooks_capture_down_proj_input():
    model = tiny_llama()
    x = ids()
    mlp_in = {}
    ffns = gated_ffns(model)
    handles = [f.mlp.register_forward_pre_hook(lambda m, a, i=f.layer: mlp_in.__setitem__(i, a[0])) for f in ffns]
    with capture_ffn_inputs(model) as acts:
        logits(model, x)
    for h in handles:
        h.remove()
    assert sorted(acts) == [0, 1]
    for f in ffns:
        h = mlp_in[f.layer]
        want = f.mlp.act_fn(f.gate(h)) * f.up(h)
        assert acts[f.layer].shape == (2, 7, 48)
        torch.testing.assert_close(acts[f.layer], want)
        torch.testing.assert_close(f.down(acts[f.layer]), f.mlp(h))


@pytest.mark.parametrize("fraction", [1.0, 0.75, 0.5, 0.25, 0.0])
def test_slicing_equals_masking(fraction):
    model = tiny_llama()
    x = ids()
    dense = logits(model, x)
    g = torch.Generator().manual_seed(3)
    keep = {layer: torch.randperm(48, generator=g)[: int(fraction * 48)].tolist() for layer in range(2)}
    want = masked_logits(model, x, keep)
    with slice_ffn(model, keep) as patch:
        f0 = gated_ffns(model)[0]
        assert f0.gate.weight.shape == (len(keep[0]), 32) and f0.down.weight.shape == (32, len(keep[0]))
        torch.testing.assert_close(logits(model, x), want, atol=1e-5, rtol=1e-5)
    assert not patch.active
    assert torch.equal(logits(model, x), dense)  # restored exactly


def test_slicing_composes_with_lora_on_attention_and_mlp():
    from peft import LoraConfig, get_peft_model

    model = tiny_llama()
    targets = ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)).eval()
    x = ids()
    keep = {0: list(range(0, 48, 2)), 1: list(range(10, 30))}
    want = masked_logits(peft_model, x, keep)
    with slice_ffn(peft_model, keep):
        got = logits(peft_model, x)
        lora_b = peft_model.base_model.model.model.layers[0].mlp.gate_proj.lora_B["default"].weight
        assert lora_b.shape == (24, 4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with peft_model.disable_adapter():
        assert not torch.allclose(logits(peft_model, x), got)  # the LoRA really contributes


def test_skip_layers_is_identity_and_generation_uses_the_cache_correctly():
    model = tiny_llama(layers=3)
    x = ids(batch=1, seq=5)
    with torch.no_grad():
        hs = model.model(input_ids=x, output_hidden_states=True).hidden_states
    with skip_layers(model, [1, 2]):
        with torch.no_grad():
            last = model.model(input_ids=x).last_hidden_state
        torch.testing.assert_close(last, model.model.norm(hs[1]))
    with slice_ffn(model, {1: range(24)}), skip_layers(model, [2]):
        with torch.no_grad():
            cached = model.generate(x, max_new_tokens=6, do_sample=False, pad_token_id=0)
            uncached = model.generate(x, max_new_tokens=6, do_sample=False, pad_token_id=0, use_cache=False)
        assert torch.equal(cached, uncached)
    assert all(not hasattr(layer, "skipped_layer") for layer in model.model.layers)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: slice_ffn(m, {5: [0]}), "layer 5 is not in 0..1"),
        (lambda m: slice_ffn(m, {0: [48]}), "outside 0..47"),
        (lambda m: slice_ffn(m, {0: ["a"]}), "should be integers"),
        (lambda m: skip_layers(m, [0]), "layer 0 is not in 1..1"),
        (lambda m: skip_layers(m, [2]), "layer 2 is not in 1..1"),
    ],
)
def test_bad_keep_or_skip_arguments(call, message):
    with pytest.raises(ConfigError, match=message):
        call(tiny_llama())


def test_double_slice_is_refused_and_nothing_changes():
    model = tiny_llama()
    with slice_ffn(model, {0: range(10)}):
        with pytest.raises(ConfigError, match="already sliced"):
            slice_ffn(model, {0: range(5), 1: range(5)})
        assert gated_ffns(model)[1].size == 48  # the failed call left layer 1 whole


def test_model_without_gated_ffn_gets_a_clear_error():
    model = tiny_gpt2()
    with pytest.raises(ModelError, match="has no gated FFN.*gate_proj/up_proj/down_proj"):
        gated_ffns(model)
    with pytest.raises(ModelError, match="no gated FFN"):
        slice_ffn(model, {0: [1]})


def test_keep_from_scores_puts_resident_first():
    scores = torch.arange(20, dtype=torch.float32).reshape(2, 10)
    resident = torch.zeros(2, 10, dtype=torch.bool)
    resident[0, 0] = True
    keep = keep_from_scores(scores, 0.3, resident=resident)
    assert keep == {0: [0, 8, 9], 1: [7, 8, 9]}
    with pytest.raises(ConfigError, match="`fraction` should be in"):
        keep_from_scores(scores, 0)


def test_keep_from_masks_union_and_budget():
    import numpy as np

    from brickwork.bricks.emergent.masks import NeuronMask

    a = NeuronMask(sizes=(8, 8), neurons={0: np.array([0, 1])}, scores={0: np.arange(8.0)})
    b = NeuronMask(sizes=(8, 8), neurons={0: np.array([5]), 1: np.array([2])})
    assert keep_from_masks([a, b]) == {0: [0, 1, 5], 1: [2]}
    # Budget 50%: members first (0, 1, 5), then the best-scored non-members (7).
    assert keep_from_masks([a, b], fraction=0.5)[0] == [0, 1, 5, 7]


def test_apply_masks_slices_and_skips_then_restores():
    import numpy as np

    from brickwork.bricks.emergent.masks import NeuronMask

    model = tiny_llama(layers=3)
    x = ids()
    dense = logits(model, x)
    m = NeuronMask(sizes=(48, 48, 48), neurons={0: np.arange(12)}, layers=(2,))
    with apply_masks(model, [m]):
        assert gated_ffns(model)[0].size == 12 and hasattr(model.model.layers[2], "skipped_layer")
    assert torch.equal(logits(model, x), dense)


@pytest.mark.integration
def test_real_model_with_a_lora_brick_sliced_to_half_equals_masking(base, tmp_path):
    """SmolLM2 + a PEFT LoRA on q_proj/v_proj (as starter bricks are), FFNs sliced to 50%."""
    from peft import PeftModel

    from brickwork.bricks.emergent.ffn import down_column_norms
    from brickwork.models import load_base_model
    from brickwork.serving.hf_generate import generate_greedy
    from brickwork.tasks import render_prompt
    from tests.conftest import write_lora_adapter

    model, tok = load_base_model(base)
    peft_model = PeftModel.from_pretrained(model, str(write_lora_adapter(tmp_path / "lora", base)), is_trainable=False).eval()
    keep = keep_from_scores(down_column_norms(model), 0.5)
    x = tok(render_prompt("Give the plural form of the given English noun.\nmouse"), return_tensors="pt")["input_ids"]
    want = masked_logits(peft_model, x, keep)
    with slice_ffn(peft_model, keep), skip_layers(peft_model, []):
        torch.testing.assert_close(logits(peft_model, x), want, atol=1e-3, rtol=1e-3)  # 30 layers of float32 reordering
        (text, n), = generate_greedy(peft_model, tok, [render_prompt("Give the plural form of 'mouse'.")], max_new_tokens=4)
        assert n >= 1
    assert gated_ffns(peft_model)[0].size == 1536


def test_slicing_with_starter_style_loras_in_a_mixed_adapter_batch():
    """Two LoRAs on q/v/o/down_proj of the top layer only (as the starter bricks are), one batch
    mixing them and the bare base model: sliced == masked for every row."""
    from peft import LoraConfig, PeftModel, get_peft_model

    model = tiny_llama()
    targets = ["q_proj", "v_proj", "o_proj", "down_proj"]
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, layers_to_transform=[1], init_lora_weights=False)
    peft_model: PeftModel = get_peft_model(model, cfg, adapter_name="a")
    torch.manual_seed(5)
    peft_model.add_adapter("b", LoraConfig(r=4, lora_alpha=8, target_modules=targets, layers_to_transform=[1], init_lora_weights=False))
    peft_model.eval()
    x = ids(batch=3)
    names = ["a", "b", "__base__"]
    keep = {0: list(range(0, 48, 3)), 1: list(range(5, 40))}

    def run():
        with torch.no_grad():
            return peft_model(input_ids=x, adapter_names=names).logits

    def zero(layer, a):
        m = torch.zeros(a.shape[-1])
        m[keep[layer]] = 1
        return a * m

    with ffn_input_hooks(peft_model, zero):
        want = run()
    with slice_ffn(peft_model, keep):
        got = run()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[0], got[1])  # the two adapters really differ


def test_public_api_is_pinned_and_import_stays_light():
    import subprocess
    import sys

    import brickwork.bricks.emergent as emergent

    assert emergent.__all__ == sorted(emergent.__all__)
    assert {"slice_ffn", "skip_layers", "apply_masks", "load_mask", "NeuronMask", "Patch"} <= set(emergent.__all__)
    code = "import sys, brickwork.bricks.emergent; print(sorted(m for m in ('torch', 'transformers', 'vllm', 'faiss') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
