"""Emergent analysis output schema (tiny model), brick building, the emergent brick validator, CLI."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from brickwork.bricks.emergent.masks import MASK_FILE, NeuronMask, ffn_sizes, load_mask, save_mask  # noqa: E402
from brickwork.errors import AdapterError, ModelError  # noqa: E402

SCHEMA_KEYS = {
    "categories",
    "masking_ppl_increase",
    "masking_ppl_increase_answer",
    "masking_random",
    "masking_summary",
    "overlap",
    "overlap_random",
    "sparsity",
    "funcscore",
    "resident",
    "clusters",
    "layer_importance",
    "n_instances",
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from brickwork.models import resolve_base_model

    return AutoTokenizer.from_pretrained(resolve_base_model().path)


@pytest.fixture(scope="module")
def tiny_analysis(tokenizer, tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    from brickwork.bricks.emergent.analysis import AnalysisConfig, analyze, write_analysis

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    config = AnalysisConfig(n_select=6, n_eval=3, n_sparsity=2, n_clusters=3, sparsity_levels=(0.5, 0.9), shuffles=1, max_input_tokens=16)
    cats = {"arithmetic": ("two_digit_addition", "two_digit_subtraction"), "multilingual": ("language_id",), "lexical": ("antonym",)}
    result = analyze(model, tokenizer, config=config, categories=cats, progress=False)
    out = write_analysis(result, tmp_path_factory.mktemp("analysis"))
    return result, out


def test_analysis_schema(tiny_analysis):
    result, out = tiny_analysis
    s = json.loads((out / "analysis.json").read_text())
    assert SCHEMA_KEYS <= set(s)
    cats = s["categories"]
    assert cats == ["arithmetic", "multilingual", "lexical"]
    for key in ("masking_ppl_increase", "masking_ppl_increase_answer", "overlap", "overlap_by_activation"):
        m = s[key]
        assert len(m) == 3 and all(len(row) == 3 and all(isinstance(v, float) for v in row) for row in m), key
    assert all(abs(s["overlap"][i][i] - 1) < 1e-6 for i in range(3))
    assert 0 <= s["overlap_random"] <= 1
    assert s["n_instances"]["splits"] == {"select": "train", "eval": "test", "sparsity": "test"}
    sp = s["sparsity"]
    assert sp["levels"] == [0.5, 0.9]
    for key in ("act", "act_norm"):
        assert len(sp[key]["loss"]) == 2 and len(sp[key]["relative_loss_increase"]) == 2
        assert abs(sum(sp["histogram"][key]) - 1) < 1e-3
    assert [r["layer"] for r in s["funcscore"]["per_layer"]] == [0, 1]
    assert {"best_mean", "best_shuffled_mean", "top_set_agreement"} <= set(s["funcscore"]["input_only"])
    assert {"best", "mean", "best_shuffled", "mean_shuffled"} <= set(s["funcscore"]["per_layer"][0])
    assert len(s["resident"]["count_per_layer"]) == 2
    assert sorted(s["layer_importance"]["skip_order"]) == [1]
    assert {p.name for p in out.iterdir()} >= {"analysis.json", "scores.safetensors", "report.md", "masking.png", "overlap.png", "sparsity.png", "funcscore.png"}
    assert "Functional partition" in (out / "report.md").read_text()
    assert result.arrays["task_importance"].shape == (4, 2, 40)


def test_load_analysis_roundtrip(tiny_analysis):
    from brickwork.bricks.emergent.analysis import load_analysis

    result, out = tiny_analysis
    again = load_analysis(out)
    assert again.summary["categories"] == result.summary["categories"]
    assert torch.equal(again.arrays["clusters"], result.arrays["clusters"])


def test_analysis_refuses_a_model_without_gated_ffn(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    from brickwork.bricks.emergent.analysis import analyze

    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2)).eval()
    with pytest.raises(ModelError, match="no gated FFN"):
        analyze(model, tokenizer, progress=False)


def test_config_validation_names_the_field():
    from brickwork.bricks.emergent.analysis import AnalysisConfig
    from brickwork.errors import ConfigError

    with pytest.raises(ConfigError, match="`n_select` should be a positive integer, got 0"):
        AnalysisConfig(n_select=0)
    with pytest.raises(ConfigError, match="`top_fraction` should be between 0 and 1, got 1.5"):
        AnalysisConfig(top_fraction=1.5)


# -- bricks in a library (real base model shapes, no weights loaded) ----------------------------


def fake_analysis(directory, base, *, n_layers=30, width=1536, seed=0):
    """An analysis directory of the real model's shape, written without running the model."""
    from safetensors.torch import save_file

    from brickwork.bricks.emergent.data import CATEGORIES

    g = torch.Generator().manual_seed(seed)
    cats = list(CATEGORIES)
    tasks = [t for c in cats for t in CATEGORIES[c]]
    resident = torch.zeros(n_layers, width, dtype=torch.uint8)
    resident[:, :3] = 1
    clusters = torch.randint(0, 4, (n_layers, width), generator=g, dtype=torch.int32)
    arrays = {
        "category_importance": torch.rand(len(cats), n_layers, width, generator=g),
        "task_importance": torch.rand(len(tasks), n_layers, width, generator=g),
        "global_importance": torch.rand(n_layers, width, generator=g),
        "resident": resident,
        "resident_freq": torch.rand(n_layers, width, generator=g),
        "clusters": clusters,
        "block_influence": torch.rand(n_layers, generator=g),
    }
    summary = {
        "format_version": 1,
        "model": base.to_json(),
        "architecture": {"n_layers": n_layers, "intermediate_size": width, "n_neurons": n_layers * width},
        "config": {"seed": seed},
        "categories": cats,
        "category_tasks": {c: list(CATEGORIES[c]) for c in cats},
        "tasks": tasks,
        "masking_ppl_increase": [[0.5 if i == j else 0.1 for j in cats] for i in cats],
        "clusters": [
            {"id": j, "size": int((clusters == j).sum()), "top_tasks": [{"task": tasks[j], "z": 1.0}]} for j in range(4)
        ],
        "layer_importance": {"skip_order": list(range(29, 0, -1))},
    }
    directory.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(directory / "scores.safetensors"))
    (directory / "analysis.json").write_text(json.dumps(summary))
    return directory


def test_build_bricks_into_a_library_via_the_cli(tmp_path, base, library):
    from brickwork.bricks.emergent.select import keep_from_masks
    from brickwork.cli import main

    src = fake_analysis(tmp_path / "analysis", base)
    rc = main(["emergent", "build", "--library", str(library.root), "--from", str(src), "--skip", "3"])
    assert rc == 0
    names = library.names()
    assert {"emergent-arithmetic", "emergent-multilingual", "emergent-resident", "emergent-skippable", "emergent-cluster-00"} <= set(names)
    b = library.get("emergent-arithmetic")
    assert b.manifest.kind == "emergent" and b.manifest.rank is None
    assert b.manifest.examples[0] == "Add the two numbers and give the result."
    assert "category:arithmetic" in b.manifest.tags
    mask = load_mask(b.path, base)
    assert mask.sizes == (1536,) * 30 and abs(mask.fraction() - 0.5) < 1e-3
    assert all(set(range(3)) <= set(mask.neurons[layer].tolist()) for layer in range(30))  # resident included
    skip = load_mask(library.get("emergent-skippable").path, base)
    assert skip.layers == (27, 28, 29) and not skip.neurons
    resident = load_mask(library.get("emergent-resident").path, base)
    keep = keep_from_masks([mask, resident], fraction=0.25)
    assert all(len(v) == 384 for v in keep.values())


def _valid_mask(base):
    import numpy as np

    sizes = ffn_sizes(base)
    return NeuronMask(sizes=sizes, neurons={0: np.arange(10), 29: np.arange(5)}, scores={0: np.ones(sizes[0])})


def _brick_dir(tmp_path, base, *, mask=None, rank=None, targets=("gate_proj",), extra=None, tensors=None):
    from tests.conftest import make_manifest

    d = tmp_path / "brick"
    if tensors is not None:
        from safetensors.numpy import save_file

        d.mkdir(parents=True)
        save_file(tensors, str(d / MASK_FILE), metadata={"format": "brickwork-emergent", "format_version": "1", "sizes": ",".join(["1536"] * 30)})
    elif mask is not False:
        save_mask(d, mask or _valid_mask(base))
    d.mkdir(parents=True, exist_ok=True)
    man = make_manifest("emergent-x", base).replace(kind="emergent", rank=rank, target_modules=list(targets))
    (d / "brick.json").write_text(json.dumps(man.to_json()))
    for name, data in (extra or {}).items():
        (d / name).write_bytes(data)
    return d


def test_valid_emergent_brick_is_accepted(tmp_path, base, library):
    b = library.add(_brick_dir(tmp_path, base))
    assert b.manifest.kind == "emergent"
    assert load_mask(b.path, base).keep() == {0: list(range(10)), 29: list(range(5))}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": False}, "no neurons.safetensors"),
        ({"rank": 8}, "`rank` should be null"),
        ({"targets": ("q_proj",)}, "`target_modules` should be among"),
        ({"extra": {"notes.txt": b"x"}}, r"unexpected files \['notes.txt'\]"),
        ({"extra": {"weights.bin": b"x"}}, "refusing pickled weight files"),
        ({"tensors": {"ffn.0.mask": __import__("numpy").zeros(10, dtype="uint8")}}, r"shape \[10\] does not fit"),
        ({"tensors": {"ffn.0.mask": __import__("numpy").zeros(1536, dtype="float32")}}, "should be uint8 0/1"),
        ({"tensors": {"ffn.31.mask": __import__("numpy").ones(1536, dtype="uint8")}}, "layer 31 is outside 0..29"),
        ({"tensors": {"lora_A": __import__("numpy").ones(3, dtype="uint8")}}, "unexpected tensor 'lora_A'"),
        ({"tensors": {"ffn.0.mask": __import__("numpy").zeros(1536, dtype="uint8")}}, "select no neuron and no layer"),
    ],
)
def test_invalid_emergent_bricks_are_refused(tmp_path, base, library, kwargs, message):
    with pytest.raises(AdapterError, match=message):
        library.add(_brick_dir(tmp_path, base, **kwargs))
    assert library.names() == []


def test_validator_reports_every_problem_at_once(tmp_path, base, library):
    import numpy as np

    d = _brick_dir(tmp_path, base, rank=8, tensors={"ffn.0.mask": np.zeros(7, dtype="uint8")}, extra={"x.txt": b""})
    with pytest.raises(AdapterError) as err:
        library.add(d)
    text = str(err.value)
    assert "`rank` should be null" in text and "unexpected files" in text and "does not fit" in text


def test_prefix_cached_pass_equals_full_sequence_forward(tokenizer):
    """The per-task prefix KV cache + right-padded suffix batches give the plain forward's NLL."""
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    from brickwork.bricks.emergent.data import build_instances
    from brickwork.bricks.emergent.runner import Recorder, run_pass

    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    pre, inst = build_instances(tokenizer, split="test", per_category=3, categories={"c": ("sentence_negation",)})
    rec = Recorder(len(inst), [40, 40], torch.ones(2, 40))
    with rec.attached(model):
        res = run_pass(model, pre, inst, batch_size=2, recorder=rec)
    acts = {}
    hooks = [model.model.layers[i].mlp.down_proj.register_forward_pre_hook(lambda m, a, i=i: acts.__setitem__(i, a[0])) for i in range(2)]
    for k, x in enumerate(inst):
        p = pre[x.task_id]
        full = torch.tensor([list(p.ids) + list(x.ids)])
        with torch.no_grad():
            logp = F.log_softmax(model(input_ids=full).logits[0], -1)
        off = len(p.ids)
        nll = -sum(logp[off + t - 1, full[0, off + t]].item() for t in x.content)
        assert abs(res.nll_content[k].item() - nll) < 1e-3 * max(1.0, abs(nll))
        assert res.n_content[k].item() == len(x.content)
        prompt_pos = list(range(p.prompt_from, off)) + [off + t for t in x.prompt]
        input_pos = [off + t for t in x.prompt]
        assert tokenizer.decode(full[0, input_pos]) == tokenizer.decode(tokenizer(x.text.split("\n", 1)[1], add_special_tokens=False)["input_ids"])
        for layer in range(2):
            want = acts[layer][0, prompt_pos].abs().mean(0)
            torch.testing.assert_close(rec.values()[k, layer], want, atol=1e-4, rtol=1e-4)
            want_in = acts[layer][0, input_pos].abs().mean(0)
            torch.testing.assert_close(rec.values(with_definition=False)[k, layer], want_in, atol=1e-4, rtol=1e-4)
    for h in hooks:
        h.remove()


def test_record_all_averages_every_suffix_token_and_task_context_wraps_each_task(tokenizer):
    """record="all": a neuron's value is its mean |a| over definition + the whole suffix (input,
    assistant header, answer); task_context is entered once around each task's instances."""
    import contextlib

    from transformers import LlamaConfig, LlamaForCausalLM

    from brickwork.bricks.emergent.data import build_instances
    from brickwork.bricks.emergent.runner import Recorder, run_pass

    torch.manual_seed(2)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    cats = {"a": ("sentence_negation",), "b": ("antonym",)}
    pre, inst = build_instances(tokenizer, split="test", per_category=2, categories=cats)
    entered = []

    @contextlib.contextmanager
    def ctx(task_id):
        entered.append(task_id)
        yield

    rec = Recorder(len(inst), [40, 40], torch.ones(2, 40))
    with rec.attached(model):
        run_pass(model, pre, inst, batch_size=2, recorder=rec, record="all", task_context=ctx)
    assert sorted(entered) == ["antonym", "sentence_negation"]
    acts = {}
    hooks = [model.model.layers[i].mlp.down_proj.register_forward_pre_hook(lambda m, a, i=i: acts.__setitem__(i, a[0])) for i in range(2)]
    for k, x in enumerate(inst):
        p = pre[x.task_id]
        with torch.no_grad():
            model(input_ids=torch.tensor([list(p.ids) + list(x.ids)]))
        off = len(p.ids)
        positions = list(range(p.prompt_from, off)) + [off + t for t in range(len(x.ids))]
        assert len(x.answer) > 0 and set(x.answer) <= set(range(len(x.ids)))
        for layer in range(2):
            torch.testing.assert_close(rec.values()[k, layer], acts[layer][0, positions].abs().mean(0), atol=1e-4, rtol=1e-4)
    for h in hooks:
        h.remove()
    with pytest.raises(ValueError, match="`record`"):
        run_pass(model, pre, inst, record="answers")


@pytest.mark.integration
@pytest.mark.slow  # ~25 s idle, ~70 s on a busy machine: outside the default run's budget
def test_eval_suite_runs_end_to_end_on_one_task(tmp_path):
    from brickwork.evals.emergent import run

    report = run(tmp_path, tasks=["english_plural"], configs=["dense", "task-50", "skip-2"], n_per_task=2, n_importance=2)
    assert set(report["summary"]) == {"dense", "task-50", "skip-2"}
    row = report["results"]["task-50"]
    assert row["fraction"] == 0.5 and 0 <= row["tasks"]["english_plural"]["accuracy"] <= 1
    assert len(report["results"]["skip-2"]["skipped_layers"]) == 2
    assert report["summary"]["task-50"]["tasks_within_5_points"] in (0, 1)
    assert {p.name for p in tmp_path.iterdir()} >= {"emergent.json", "emergent.md", "emergent.png"}


@pytest.mark.parametrize(("configs", "ranks"), [(["dense", "act-50"], False), (["dense", "task-50"], True), (["skip-2"], True)])
def test_eval_suite_ranks_neurons_only_for_static_masks_and_skips(tokenizer, tmp_path, monkeypatch, configs, ranks):
    """Neuron importance (the costly part without --analysis) is computed only when a config needs it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    import brickwork.evals.emergent as suite
    import brickwork.models

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=40, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    monkeypatch.setattr(brickwork.models, "load_base_model", lambda base: (LlamaForCausalLM(cfg).eval(), tokenizer))
    calls = []
    real = suite._importance
    monkeypatch.setattr(suite, "_importance", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    report = suite.run(tmp_path, tasks=["english_plural"], configs=configs, n_per_task=1, n_importance=1, use_starter=False)
    assert set(report["results"]) == set(configs)
    assert bool(calls) is ranks


def test_emergent_bricks_are_not_indexed_or_routed(tmp_path, base, library):
    """No engine serves a static mask as a brick, so the index leaves emergent bricks out (an index
    row every engine refuses would route requests to an error); the index is not drifted by them."""
    from brickwork.retrieval_index import BrickIndex

    library.add(_brick_dir(tmp_path, base))
    index = BrickIndex.open(library)
    assert "emergent-x" in library.names() and index.names == []
    report = index.check()
    assert report.ok and not report.missing
