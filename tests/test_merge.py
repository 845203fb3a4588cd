"""Merging bricks: method registry, exactness of `cat`, rank padding, lineage, retention, CLI."""

from __future__ import annotations

import json

import pytest

from brickwork.bricks.merging import METHODS, MergeConfig, MergeSource, allowed_rank, merge_adapters, merge_bricks
from brickwork.errors import ConfigError, InvalidBrickName
from tests.conftest import make_manifest, write_lora_adapter


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("spell_word", MergeSource(name="spell_word", weight=1.0)),
        ("spell_word:0.5", MergeSource(name="spell_word", weight=0.5)),
        ("spell_word@2:-1", MergeSource(name="spell_word", weight=-1.0, version=2)),
        ("spell_word@3", MergeSource(name="spell_word", weight=1.0, version=3)),
    ],
)
def test_parse_source(text, want):
    assert MergeSource.parse(text) == want


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("spell_word:abc", ConfigError, "weight 'abc' is not a number"),
        ("spell_word:0", ConfigError, "weight must be non-zero"),
        ("spell_word:nan", ConfigError, "weight must be finite"),
        ("spell_word@x:1", ConfigError, "version 'x' is not an integer"),
        ("spell_word@0", ConfigError, "version 0 should be 1 or more"),
        ("Bad Name:1", InvalidBrickName, "invalid brick name"),
        ("../up:1", InvalidBrickName, "invalid brick name"),
    ],
)
def test_parse_source_errors(text, error, match):
    with pytest.raises(error, match=match):
        MergeSource.parse(text)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"method": "average"}, "unknown merge method 'average'; choose one of: cat, linear"),
        ({"density": 0.0}, "`density` should be in"),
        ({"density": 1.5}, "`density` should be in"),
        ({"svd_rank": 0}, "`svd_rank` should be a positive integer"),
        ({"majority_sign_method": "vote"}, "`majority_sign_method`"),
        ({"max_rank": 24}, "`max_rank` should be one of"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        MergeConfig(**kw)


def test_allowed_rank():
    assert [allowed_rank(r) for r in (1, 2, 8, 9, 16, 24, 300, 512)] == [1, 8, 8, 16, 16, 32, 320, 512]
    with pytest.raises(ConfigError, match="exceeds the maximum rank 64"):
        allowed_rank(72, max_rank=64)


def _delta(tensors, module, scale):
    a = tensors.get(f"base_model.model.{module}.lora_A.weight")
    if a is None:
        return 0
    return scale * tensors[f"base_model.model.{module}.lora_B.weight"] @ a


@pytest.fixture(scope="module")
def runner(base):
    from brickwork.bricks.lineage import BaseRunner

    return BaseRunner(base)


@pytest.fixture(scope="module")
def model(runner):
    return runner.model


class FakeRunner:
    """Scores without generating: sources 0.8, anything else (the merged adapter) 0.6."""

    model = None

    def __init__(self, sources):
        self.sources = {str(p) for p in sources}
        self.calls = []

    def score(self, adapter_dir, items):
        from brickwork.bricks.lineage import Score

        self.calls.append((adapter_dir, len(items)))
        correct = round(len(items) * (0.8 if str(adapter_dir) in self.sources else 0.6))
        return Score(n=len(items), correct=correct, outputs=[""] * len(items))


@pytest.mark.integration
def test_cat_is_the_exact_weighted_sum_across_ranks_modules_and_layers(tmp_path, base, model):
    """cat of bricks with different ranks, modules and layers = w1*delta1 + w2*delta2, padded to 32."""
    from safetensors.torch import load_file

    a = write_lora_adapter(tmp_path / "a", base, seed=1, layers=range(20, 30))  # r8 q,v upper layers, alpha 16
    b = write_lora_adapter(tmp_path / "b", base, seed=2, rank=16, modules=("q_proj", "k_proj"))  # r16 all layers
    cfg = merge_adapters(base, [(a, 1.0), (b, -0.5)], tmp_path / "out", config=MergeConfig(method="cat"), model=model)
    assert (cfg["merged_rank"], cfg["r"]) == (32, 32)  # 2 sources aligned to r16 -> 32, already allowed
    ta, tb, tm = (load_file(str(p / "adapter_model.safetensors")) for p in (a, b, tmp_path / "out"))
    for module in ("model.layers.25.self_attn.q_proj", "model.layers.3.self_attn.k_proj", "model.layers.25.self_attn.v_proj",
                   "model.layers.3.self_attn.v_proj"):
        want = _delta(ta, module, 2.0) + (-0.5) * _delta(tb, module, 2.0)
        got = _delta(tm, module, cfg["lora_alpha"] / cfg["r"])
        assert float((got - want).abs().max()) < 1e-6 if not isinstance(want, int) else float(got.abs().max()) == 0.0
    # the model handed in is left bare for the next user
    assert not any("lora" in n for n, _ in model.named_modules())


@pytest.mark.integration
def test_cat_pads_to_a_vllm_rank_and_svd_is_the_best_low_rank_sum(tmp_path, base, model):
    import torch
    from safetensors.torch import load_file

    srcs = [(write_lora_adapter(tmp_path / f"s{i}", base, seed=i, layers=range(28, 30)), 1.0) for i in range(3)]
    cat = merge_adapters(base, srcs, tmp_path / "cat", config=MergeConfig(method="cat"), model=model)
    assert (cat["merged_rank"], cat["r"], cat["lora_alpha"]) == (24, 32, 32)
    svd = merge_adapters(base, srcs, tmp_path / "svd", config=MergeConfig(method="svd", svd_rank=8), model=model)
    assert svd["r"] == 8
    tc, ts = load_file(str(tmp_path / "cat" / "adapter_model.safetensors")), load_file(str(tmp_path / "svd" / "adapter_model.safetensors"))
    assert tc["base_model.model.model.layers.29.self_attn.q_proj.lora_A.weight"].shape[0] == 32
    module = "model.layers.29.self_attn.q_proj"
    full = _delta(tc, module, 1.0)
    u, s, vh = torch.linalg.svd(full)
    best = (u[:, :8] * s[:8]) @ vh[:8]
    assert float((_delta(ts, module, 1.0) - best).abs().max()) < 1e-5


@pytest.mark.integration
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_adds_a_valid_brick_with_lineage(library, make_brick, runner, method):
    library.add(make_brick("alpha", seed=1, description="Give the plural form of a noun.", examples=["cat", "mouse"],
                           tags=["starter"]))
    library.add(make_brick("beta", seed=2, description="Spell the word letter by letter.", examples=["house"]))
    library.add(make_brick("beta", seed=3, description="Spell the word letter by letter.", examples=["house", "tree"]))
    result = merge_bricks(library, "ab", ["alpha:0.7", "beta@1:0.3"], config=MergeConfig(method=method), measure=False,
                          command="brickwork bricks merge ab ...", runner=runner)
    m = library.get("ab").manifest
    assert result.brick is not None and result.brick.version == 1
    assert m.provenance["parents"] == [{"name": "alpha", "version": 1, "weight": 0.7}, {"name": "beta", "version": 1, "weight": 0.3}]
    assert m.provenance["method"] == method and m.provenance["operation"] == "merge"
    assert m.description == "Give the plural form of a noun. | Spell the word letter by letter."
    assert m.examples == ["cat", "house", "mouse"]
    assert {"merged", f"merge:{method}", "starter"} <= set(m.tags)
    assert m.rank == (16 if method == "cat" else 8)
    assert library.history("ab")[0]["parents"] == m.provenance["parents"]


@pytest.mark.integration
def test_failed_merge_leaves_the_library_as_it_was(library, make_brick):
    library.add(make_brick("alpha", seed=1))
    library.add(make_brick("beta", seed=2))
    before = library.state()
    with pytest.raises(ConfigError, match="exceeds the maximum rank 8"):
        merge_bricks(library, "ab", ["alpha", "beta"], config=MergeConfig(method="cat", max_rank=8), measure=False)
    with pytest.raises(ConfigError, match="at least two"):
        merge_bricks(library, "ab", ["alpha"], measure=False)
    assert library.state() == before and "ab" not in library
    assert not any((library.root / ".staging").iterdir())


@pytest.mark.integration
def test_retention_is_recorded_per_source(library, make_brick):
    """Bricks named after bundled tasks are scored on those tasks' test items, source vs merged."""
    srcs = [library.add(make_brick(n, seed=i)) for i, n in enumerate(("country_capital", "english_plural"))]
    fake = FakeRunner([b.path for b in srcs])
    result = merge_bricks(library, "cp", ["country_capital", "english_plural"], eval_items=10, runner=fake)
    assert [(r.source, r.task, r.n, r.source_accuracy, r.merged_accuracy) for r in result.retention] == [
        ("country_capital", "country_capital", 10, 0.8, 0.6),
        ("english_plural", "english_plural", 10, 0.8, 0.6),
    ]
    assert result.mean_retention() == pytest.approx(0.75)
    m = library.get("cp").manifest
    assert m.metrics["mean_retention"] == 0.75 and m.metrics["exact_match"] == 0.6
    assert m.provenance["tasks"] == ["country_capital", "english_plural"]


@pytest.mark.integration
@pytest.mark.slow
def test_retention_is_measured_on_each_sources_test_items(tmp_path, base, library):
    """Real generation: zero-delta bricks score exactly what their merge scores."""
    for name in ("country_capital", "english_plural"):
        d = write_lora_adapter(tmp_path / name, base, scale=0.0)
        (d / "brick.json").write_text(json.dumps(make_manifest(name, base).to_json()))
        library.add(d)
    result = merge_bricks(library, "capital_plural", ["country_capital", "english_plural"], eval_items=3)
    rows = {r.source: r for r in result.retention}
    assert set(rows) == {"country_capital", "english_plural"} and all(r.n == 3 for r in rows.values())
    # zero-weight deltas: the merged brick is the base model, exactly as each source is
    assert all(r.merged_accuracy == r.source_accuracy for r in rows.values())
    m = library.get("capital_plural").manifest
    assert m.provenance["tasks"] == ["country_capital", "english_plural"]
    assert [r["source"] for r in m.metrics["retention"]] == ["country_capital", "english_plural"]


@pytest.mark.integration
def test_cli_merge_json(library, make_brick, capsys):
    from brickwork.cli import main

    library.add(make_brick("alpha", seed=1))
    library.add(make_brick("beta", seed=2))
    rc = main(["bricks", "merge", "ab", "--from", "alpha:1", "--from", "beta:0.5", "--method", "ties",
               "--library", str(library.root), "--no-eval", "--json", "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "ties" and out["rank"] == 8 and out["parents"][1] == {"name": "beta", "version": 1, "weight": 0.5}
    rc = main(["bricks", "merge", "ab", "--from", "alpha", "--from", "nope", "--library", str(library.root), "--no-eval"])
    assert rc == 3 and "no brick named 'nope'" in capsys.readouterr().err


def test_merge_eval_judges_the_capped_mean():
    """A merged brick that beats its source on a small sample earns no credit for it."""
    from brickwork.evals.merge import aggregate

    rows = [{"method": "cat", "a": {"retention": 1.1}, "b": {"retention": 0.9}},
            {"method": "cat", "a": {"retention": 0.92}, "b": {"retention": None}}]
    agg = aggregate(rows, ["cat", "svd"])
    assert agg["cat"] == {"mean_retention": 0.9733, "mean_retention_capped": 0.94, "worst_source_retention": 0.9}
    assert agg["svd"] == {"mean_retention": None, "mean_retention_capped": None, "worst_source_retention": None}
