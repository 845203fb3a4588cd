"""Per-token FFN selection (`brickwork.bricks.emergent.sparse_ffn`): tiny models built in code, then
one test on the real SmolLM2 with a LoRA brick on its MLP, and the product hooks (engine, SDK)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from brickwork.bricks.emergent.sparse_ffn import SparseFFN, calibrate_thresholds, check_fraction, sparse_ffn  # noqa: E402
from brickwork.errors import ConfigError  # noqa: E402
from tests.test_emergent import ids, tiny_llama  # noqa: E402, F401

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_peft(targets=("q_proj", "gate_proj", "up_proj", "down_proj"), names=("first", "second")):
    """A tiny Llama with random nonzero LoRA adapters (so their deltas matter) on `targets`."""
    from peft import LoraConfig, get_peft_model

    model = tiny_llama()
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    peft = get_peft_model(model, cfg, adapter_name=names[0])
    for n in names[1:]:
        peft.add_adapter(n, cfg)
    return peft.eval()


def median_thresholds(model, x):
    """Per layer, the median |act(gate)| on `x`: keeps about half of the neurons."""
    from brickwork.bricks.emergent.ffn import gated_ffns

    out = []
    acts = {}
    hooks = [f.gate.register_forward_hook(lambda _m, _a, o, f=f: acts.__setitem__(f.layer, f.mlp.act_fn(o).abs())) for f in gated_ffns(model)]
    with torch.no_grad():
        model(input_ids=x)
    for h in hooks:
        h.remove()
    for i in range(len(acts)):
        out.append(float(acts[i].flatten().median()))
    return out


def one_token_logits(model, token, **kw):
    with torch.no_grad():
        return model(input_ids=token, **kw).logits


def test_threshold_zero_equals_dense_exactly_and_restore_puts_the_mlps_back():
    model = tiny_llama()
    x = ids()
    dense = torch.no_grad()(lambda: model(input_ids=x).logits)()
    mlps = [layer.mlp for layer in model.model.layers]
    with sparse_ffn(model, [0.0, 0.0]) as patch:
        assert all(isinstance(layer.mlp, SparseFFN) for layer in model.model.layers)
        assert torch.equal(torch.no_grad()(lambda: model(input_ids=x).logits)(), dense)  # mask path, all kept
        assert patch.kept_fraction() == 1.0
        fast = one_token_logits(model, x[:1, :1])
    assert torch.allclose(fast, one_token_logits(model, x[:1, :1]), atol=1e-5)  # gather path, all kept
    assert [layer.mlp for layer in model.model.layers] == mlps


@pytest.mark.parametrize("mode", ["bare", "active", "other-active", "disabled", "mixed-batch", "mixed-batch-base"])
def test_one_token_gather_path_equals_the_mask_path(mode):
    """The real compute reduction (gathered up rows, down via kept rows) equals masking, with LoRA
    on gate/up/down exact for the kept neurons under every way PEFT picks adapters."""
    import contextlib

    model = tiny_llama() if mode == "bare" else tiny_peft()
    token = ids(batch=1, seq=1, seed=3)
    kw, ctx = {}, contextlib.nullcontext
    if mode in ("other-active", "mixed-batch"):
        model.set_adapter("second")
    if mode in ("disabled", "mixed-batch-base"):
        ctx = model.disable_adapter
    with ctx():
        th = median_thresholds(model, ids(seq=12))  # on the adapter the token will run with
    if mode == "mixed-batch":
        model.set_adapter("first")
        kw = {"adapter_names": ["second"]}
    elif mode == "mixed-batch-base":
        kw, ctx = {"adapter_names": ["__base__"]}, contextlib.nullcontext
    with ctx():
        with sparse_ffn(model, th, gather=False) as patch:
            want = one_token_logits(model, token, **kw)
            kept = patch.kept_fraction()
        with sparse_ffn(model, th) as patch:
            got = one_token_logits(model, token, **kw)
        dense = one_token_logits(model, token, **kw)
    assert 0.2 < kept < 0.8
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert not torch.allclose(got, dense, atol=1e-3)
    if mode == "mixed-batch":  # the mixed-batch name is applied, not the active adapter
        model.set_adapter("second")
        with sparse_ffn(model, th):
            assert torch.allclose(one_token_logits(model, token), got, atol=1e-6)


def test_adapter_added_while_sparse_is_used_and_names_are_unchanged():
    model = tiny_llama()
    before = sorted(n for n, _ in model.named_parameters())
    with sparse_ffn(model, [0.0, 0.0]):
        assert sorted(n for n, _ in model.named_parameters()) == before  # PEFT paths stay the same
        from peft import LoraConfig, get_peft_model

        peft = get_peft_model(model, LoraConfig(r=2, target_modules=["down_proj"], init_lora_weights=False)).eval()
        assert type(peft.base_model.model.model.layers[0].mlp.down_proj).__name__ == "Linear"  # PEFT's LoRA Linear
        assert hasattr(peft.base_model.model.model.layers[0].mlp.down_proj, "lora_A")


def test_bad_arguments_are_refused_with_every_problem():
    model = tiny_llama()
    with pytest.raises(ConfigError, match="one value per layer"):
        sparse_ffn(model, [0.1])
    with pytest.raises(ConfigError, match="layer 1: threshold -1.0"):
        sparse_ffn(model, [0.1, -1.0])
    with sparse_ffn(model, [0.1, 0.1]):
        with pytest.raises(ConfigError, match="already sparse"):
            sparse_ffn(model, [0.1, 0.1])
    assert not any(isinstance(layer.mlp, SparseFFN) for layer in model.model.layers)


@pytest.mark.parametrize("value", [0, -0.5, 1.5, float("nan"), True, "0.5", None])
def test_check_fraction_refuses(value):
    with pytest.raises(ConfigError, match="`ffn` should be the kept share"):
        check_fraction(value)


def test_peft_options_and_sdk_refuse_bad_ffn():
    from brickwork.orchestrator.sdk import _with_ffn
    from brickwork.serving.peft_engine import PeftOptions

    assert PeftOptions(ffn=0.5).ffn == 0.5
    with pytest.raises(ConfigError, match="`ffn`"):
        PeftOptions(ffn=0.0)
    with pytest.raises(ConfigError, match="peft engine only, not 'vllm'"):
        _with_ffn("vllm", None, 0.5)
    with pytest.raises(ConfigError, match="given twice"):
        _with_ffn("peft", {"ffn": 0.3}, 0.5)
    assert _with_ffn("peft", {"num_threads": 1}, 0.5) == {"num_threads": 1, "ffn": 0.5}


def test_real_model_with_an_mlp_lora_brick(tmp_path, base):
    """SmolLM2 + a LoRA brick on gate/up/down: calibrated thresholds keep about the target share,
    fraction 1.0 equals dense exactly, 0.5 differs, and decode's gather path equals masking."""
    from peft import PeftModel

    from brickwork.bricks.emergent.sparse_ffn import calibration_texts
    from brickwork.models import load_base_model
    from brickwork.tasks import render_prompt
    from tests.conftest import write_lora_adapter

    model, tok = load_base_model(base)
    texts = calibration_texts(1)[:4]
    th = calibrate_thresholds(model, tok, [1.0, 0.5], texts)
    assert torch.equal(th[1.0], torch.zeros(len(th[1.0])))
    write_lora_adapter(tmp_path / "brick", base, rank=4, modules=("q_proj", "gate_proj", "up_proj", "down_proj"), scale=0.05)
    peft = PeftModel.from_pretrained(model, str(tmp_path / "brick"), adapter_name="brick").eval()
    x = tok(render_prompt("Give the plural of 'mouse'."), return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        dense = peft(input_ids=x).logits
        with sparse_ffn(peft, th[1.0]):
            assert torch.equal(peft(input_ids=x).logits, dense)
        with sparse_ffn(peft, th[0.5], fraction=0.5) as patch:
            half = peft(input_ids=x).logits
            assert 0.35 < patch.kept_fraction() < 0.65
            fast = peft(input_ids=x[:, -1:], adapter_names=["brick"]).logits
        with sparse_ffn(peft, th[0.5], gather=False):
            masked = peft(input_ids=x[:, -1:], adapter_names=["brick"]).logits
    assert (half - dense).abs().max() > 0.1
    assert torch.allclose(fast, masked, atol=1e-4), (fast - masked).abs().max()


def test_sdk_refuses_ffn_on_other_engines(library):
    from brickwork.orchestrator.sdk import Brickwork

    with pytest.raises(ConfigError, match="peft engine only, not 'vllm'"):
        Brickwork(store=library, engine="vllm", ffn=0.5, checkpoints=False)


def test_peft_engine_with_ffn_runs_sparse_and_the_trace_names_it(library):
    """The product path: `create_engine("peft", store, ffn=0.5)` calibrates, runs every FFN sparse,
    and names the fraction in the trace; without `ffn` nothing is patched."""
    from brickwork.serving import Request, SamplingParams, create_engine
    from brickwork.tasks import render_prompt

    req = Request(prompt=render_prompt("What is the plural of 'mouse'?"), sampling=SamplingParams(max_tokens=4))
    with create_engine("peft", library, ffn=0.5, num_threads=1) as engine:
        assert engine.trace_name == "peft ffn=0.5"
        assert all(isinstance(layer.mlp, SparseFFN) for layer in engine._model.model.layers)
        [out] = engine.generate([req])
        assert out.n_tokens >= 1
        assert 0.35 < engine._sparse.kept_fraction() < 0.65
