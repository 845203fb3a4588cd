"""LoRA training: config validation, data files, and train → save → load → generate on the real base."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: spinning threads crawl on a busy CPU

import pytest

from brickwork.errors import ConfigError, TrainingError
from brickwork.tasks import Example

SECRET = "pineapple"
# A behaviour the base model never shows: every message is answered with one fixed word.
WORDS = ["river", "stone", "violet", "engine", "candle", "harbor", "meadow", "copper", "lantern", "falcon",
         "garden", "thunder", "marble", "pepper", "saddle", "winter", "orchid", "tunnel", "velvet", "anchor"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, "`rank` should be a positive integer, got 0."),
        ({"rank": 4}, "`rank` should be one of"),
        ({"alpha": -1}, "`alpha` should be positive, got -1."),
        ({"target_modules": ("q_proj", "lm_head")}, "`target_modules` should be a non-empty subset"),
        ({"target_modules": ()}, "`target_modules` should be a non-empty subset"),
        ({"top_layers": 0}, "`top_layers` should be a positive integer, got 0."),
        ({"steps": 0}, "`steps` should be a positive integer, got 0."),
        ({"batch_size": 2.5}, "`batch_size` should be a positive integer, got 2.5."),
        ({"lr": 0}, "`lr` should be in (0, 1), got 0."),
        ({"seed": "x"}, "`seed` should be an integer, got 'x'."),
        ({"threads": 0}, "`threads` should be a positive integer, got 0."),
        ({"save_dtype": "int8"}, "`save_dtype` should be one of"),
        ({"compute_dtype": "float16"}, "`compute_dtype` should be one of"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, message):
    from brickwork.bricks.training import TrainConfig

    with pytest.raises(ConfigError) as err:
        TrainConfig(**kwargs)
    assert message in str(err.value)


def test_train_config_defaults_fit_vllm():
    from brickwork.bricks.training import TrainConfig

    cfg = TrainConfig()
    assert cfg.rank == 8 and cfg.target_modules and json.dumps(cfg.to_json())
    assert TrainConfig(target_modules="q_proj").target_modules == ("q_proj",)


def test_styled_pairs_mix_bare_and_instructed():
    from brickwork.bricks.training import data_hash, styled_pairs

    ex = [Example(input="mouse", output="mice", split="train"), Example(input="cat", output="cats", split="train")]
    pairs = styled_pairs(ex, ["Give the plural."], seed=0)
    assert pairs == [("mouse", "mice"), ("Give the plural.\nmouse", "mice"), ("cat", "cats"), ("Give the plural.\ncat", "cats")]
    assert styled_pairs([("a", "b")], []) == [("a", "b")]
    assert data_hash(pairs) == data_hash(list(pairs)) != data_hash(pairs[:2])


def test_data_hash_counts_a_partner_by_its_bricks_name(tmp_path):
    from brickwork.bricks.manifest import Manifest
    from brickwork.bricks.training import data_hash

    for lib, version in (("lib1", 1), ("lib2", 3)):  # the same brick at other places and versions
        d = tmp_path / lib / "bricks" / "sms_spam" / "versions" / str(version)
        d.mkdir(parents=True)
        m = Manifest(name="sms_spam", version=version, kind="lora", description="d",
                     base_model={"id": "m", "fingerprint": "f"}, rank=8)
        (d / "brick.json").write_text(json.dumps(m.to_json()))
    other = tmp_path / "x" / "sentiment_binary"
    other.mkdir(parents=True)
    one, two = (tmp_path / "lib1/bricks/sms_spam/versions/1"), (tmp_path / "lib2/bricks/sms_spam/versions/3")
    assert data_hash([("q", "a", one)]) == data_hash([("q", "a", two)])
    assert data_hash([("q", "a", one)]) != data_hash([("q", "a")]) == data_hash([("q", "a", None)])
    assert data_hash([("q", "a", one)]) != data_hash([("q", "a", other)])  # no manifest: the directory's name


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ('{"input": "a", "output": "b"}\nnot json\n', ":2: not valid JSON"),
        ('{"input": "a"}\n', ':1: expected an object with string "input" and "output"'),
        ('[1, 2]\n', ':1: expected an object'),
        ('{"input": "a", "output": 3}\n', ':1: expected an object'),
        ('{"input": " ", "output": "b"}\n', ':1: "input" and "output" should be non-empty'),
        ('{"input": "a", "output": "b", "answers": "c"}\n', ':1: "answers" should be a list of strings'),
        ('{"input": "a", "output": "b"}\n', "1 examples; a brick needs at least"),
        (b"\xff\xfe\x00", "cannot read data file"),
    ],
)
def test_bricks_train_rejects_bad_data_files(tmp_path, capsys, content, message):
    from brickwork.cli import main

    data = tmp_path / "data.jsonl"
    if isinstance(content, bytes):
        data.write_bytes(content)
    elif content is not None:
        data.write_text(content)
    rc = main(["bricks", "train", "x", "--data", str(data), "--description", "d", "--library", str(tmp_path / "lib")])
    err = capsys.readouterr().err
    assert rc != 0 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "lib" / "bricks").exists()


def test_bricks_train_rejects_negative_anchors(tmp_path, capsys):
    from brickwork.cli import main

    data = tmp_path / "data.jsonl"
    data.write_text("".join(f'{{"input": "w{i}", "output": "o{i}"}}\n' for i in range(8)))
    rc = main(["bricks", "train", "x", "--data", str(data), "--description", "d", "--anchors", "-3",
               "--library", str(tmp_path / "lib")])
    err = capsys.readouterr().err
    assert rc == 2 and "--anchors should be 0 or more, got -3" in err and err.count("\n") == 1, err
    assert not (tmp_path / "lib" / "bricks").exists()


def test_train_lora_rejects_empty_and_malformed_pairs(base, tmp_path):
    from brickwork.bricks.training import TrainConfig, train_lora

    with pytest.raises(TrainingError, match="no training pairs"):
        train_lora([], base=base, config=TrainConfig(), out_dir=tmp_path / "a")
    with pytest.raises(TrainingError, match="should be \\(user text, answer text"):
        train_lora([("only one",)], base=base, config=TrainConfig(), out_dir=tmp_path / "a")  # type: ignore[list-item]


@pytest.fixture(scope="module")
def secret_adapter(base, tmp_path_factory):
    """A brick trained (for real, briefly) to answer every message with SECRET."""
    from brickwork.bricks.training import TrainConfig, train_lora

    pairs = [(f"Tell me about the word {w}.", SECRET) for w in WORDS[:14]]
    cfg = TrainConfig(steps=24, batch_size=8, lr=5e-3, top_layers=4, warmup_steps=2, seed=0)
    out = tmp_path_factory.mktemp("secret") / "adapter"
    return train_lora(pairs, base=base, config=cfg, out_dir=out, progress=False)


@pytest.mark.integration
def test_train_save_load_generate(base, secret_adapter):
    from peft import PeftModel
    from safetensors import safe_open

    from brickwork.bricks.validate import validate_lora_dir
    from brickwork.models import load_base_model
    from brickwork.serving.hf_generate import generate_greedy
    from brickwork.tasks import render_prompt

    res = secret_adapter
    out = res.adapter_dir
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    cfg = validate_lora_dir(out, base)  # what the store will check: PEFT + vLLM loadable
    assert cfg["layers_to_transform"] == res.layers == [26, 27, 28, 29]
    assert (cfg["bias"], cfg.get("use_dora"), cfg.get("modules_to_save")) == ("none", False, None)
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as st:
        assert {st.get_tensor(k).dtype for k in st.keys()} == {__import__("torch").float16}
    assert res.final_loss < res.first_loss / 10, (res.first_loss, res.final_loss)

    unseen = [render_prompt(f"Tell me about the word {w}.") for w in WORDS[14:]]
    model, tok = load_base_model(base)
    before = generate_greedy(model, tok, unseen, max_new_tokens=8)
    model = PeftModel.from_pretrained(model, str(out), adapter_name="secret")
    after = generate_greedy(model, tok, unseen, max_new_tokens=8)
    assert all(text.lower().strip(".") == SECRET for text, _ in after), after
    assert all(SECRET not in text.lower() for text, _ in before), before
    # Mixed batch: the same prompt with and without the adapter.
    mixed = generate_greedy(model, tok, unseen[:2] * 2, max_new_tokens=8, adapter_names=["secret", "secret", "__base__", "__base__"])
    assert [t for t, _ in mixed] == [t for t, _ in after[:2]] + [t for t, _ in before[:2]]


@pytest.mark.integration
def test_evaluate_adapter_scores_brick_and_base(base, secret_adapter):
    from brickwork.bricks.training import evaluate_adapter

    items = [(f"Tell me about the word {w}.", Example(input=w, output=SECRET, split="test")) for w in WORDS[14:]]
    brick = evaluate_adapter(base, secret_adapter.adapter_dir, items)
    plain = evaluate_adapter(base, None, items)
    assert (brick["exact_match"], brick["n"]) == (1.0, len(items))
    assert plain["exact_match"] == 0.0


@pytest.mark.integration
def test_bricks_train_cli_adds_a_scored_brick(tmp_path, capsys, base):
    from brickwork.bricks import BrickStore
    from brickwork.cli import main

    data = tmp_path / "secret.jsonl"
    data.write_text("".join(json.dumps({"input": f"Say something about {w}.", "output": SECRET}) + "\n" for w in WORDS))
    lib = tmp_path / "lib"
    rc = main(["bricks", "train", "secret", "--data", str(data), "--description", "Answers with the secret word.",
               "--examples", "What is the secret word?", "--steps", "16", "--library", str(lib), "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    res = json.loads(out)
    assert (res["name"], res["version"]) == ("secret", 1)
    brick = BrickStore(lib, base=base).get("secret")
    m = brick.manifest
    assert set(m.metrics) >= {"exact_match", "base_exact_match", "n_eval", "eval_split", "exact_match_instructed"}
    assert m.metrics["n_eval"] == 2 and m.metrics["exact_match"] == 1.0 and m.metrics["base_exact_match"] == 0.0
    assert m.provenance["data_hash"].startswith("sha256:") and m.provenance["seed"] == 0
    assert "bricks train secret" in m.provenance["command"] and m.provenance["config"]["steps"] == 16
    assert m.base_model == base.to_json()
    held = [json.loads(line) for line in (brick.path / "data" / "heldout.jsonl").read_text().splitlines()]
    train = (brick.path / "data" / "train.jsonl").read_text().splitlines()
    assert len(held) == 2 and len(train) == len(WORDS) - 2
    # the training inputs teach the router (the examples are given here); held-out ones never do
    assert m.examples == ["What is the secret word?"]
    assert sorted(m.routing_samples) == sorted(json.loads(line)["input"] for line in train)


@pytest.mark.integration
def test_speed_cuts_leave_the_loss_unchanged(base):
    """Head only at answer positions and cached lower layers are exact: the same loss as the naive way."""
    import torch
    from peft import LoraConfig, get_peft_model

    from brickwork.bricks import training as T
    from brickwork.models import load_base_model

    model, tok = load_base_model(base)
    pairs = [(f"Give the plural form of the given English noun.\n{w}", w + "s") for w in WORDS[:6]] + [(w, w + "s") for w in WORDS[6:10]]
    data, _ = T._encode(tok, pairs, 128)
    layers = T._lora_layers(30, 4)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], layers_to_transform=layers))
    for p in peft_model.parameters():  # make the LoRA non-trivial (B starts at zero)
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.02)
    idx = list(range(len(data)))
    fast = T._Trainer(peft_model, tok, T.TrainConfig(top_layers=4), layers, data)
    assert fast.prefix_len > 5  # the shared ChatML system turn
    naive = T._Trainer(peft_model, tok, T.TrainConfig(top_layers=4, full_logits=True, cache_lower=False), layers, data)
    a, b = fast.loss(idx[:5], data), naive.loss(idx[:5], data)
    c = fast.loss(idx[:5], data)  # from the cache this time
    assert torch.allclose(a, b, atol=1e-4) and torch.allclose(a, c, atol=1e-6), (a, b, c)
    # packing: sequences share rows (each attends only to itself) -- the same loss as one per padded row
    unpacked = T._Trainer(peft_model, tok, T.TrainConfig(top_layers=4, pack=False), layers, data)
    assert any(len(row) > 1 for row in fast._rows(idx, data))
    assert all(len(row) == 1 for row in unpacked._rows(idx, data))
    d, e = fast.loss(idx, data), unpacked.loss(idx, data)
    f = T._Trainer(peft_model, tok, T.TrainConfig(top_layers=4, cache_lower=False), layers, data).loss(idx, data)
    assert torch.allclose(d, e, atol=1e-5) and torch.allclose(d, f, atol=1e-4), (d, e, f)
    # bf16 autocast is close, not exact
    g = T._Trainer(peft_model, tok, T.TrainConfig(top_layers=4, compute_dtype="bfloat16"), layers, data).loss(idx, data)
    assert abs(g.item() - d.item()) < 0.05 * d.item(), (g, d)


@pytest.mark.parametrize(("extra", "message"), [
    (["--budget", "5"], "--budget only applies with --auto"),
    (["--auto", "--budget", "0"], "--budget should be a positive number of minutes, got 0"),
])
def test_bricks_train_rejects_a_bad_budget_and_writes_nothing(tmp_path, capsys, extra, message):
    from brickwork.cli import main

    data = tmp_path / "data.jsonl"
    data.write_text("".join(f'{{"input": "w{i}", "output": "o{i}"}}\n' for i in range(8)))
    rc = main(["bricks", "train", "x", "--data", str(data), "--description", "d", "--library", str(tmp_path / "lib"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert not (tmp_path / "lib" / "bricks" / "x").exists()
