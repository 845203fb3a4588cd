"""Any base model: a library for a tiny Qwen2 (a second architecture: SmolLM2 is Llama) with its own
chat template, a brick trained on it, imported, routed to, and run on ``peft`` and ``vllm``.

The model is random (built here, no hub) and tiny, so everything but the vLLM start takes
seconds. Its chat template is not ChatML (``<|user|>`` ... ``<|end|>``), so a prompt or stop
hard-coded to SmolLM2 anywhere on the path shows up as a failure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brickwork.cli import main as cli

TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
TURN_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
PAIRS = [(f"ping {w}", "pong") for w in ("red", "blue", "green", "gold", "grey", "pink", "teal", "navy")]
DESCRIPTION = "Answer a ping with a pong: reply to a ping request."
EXAMPLES = ["ping red", "send a ping", "ping the server"]


def make_tiny_qwen2(out: Path, tokenizer_src: Path, *, seed: int = 0, pickles: bool = False) -> Path:
    """A random Qwen2 (2 layers, hidden 128, head dim 32: what vLLM-CPU's attention takes) with
    SmolLM2's tokenizer plus four turn tokens and a non-ChatML chat template."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_src))
    tok.add_special_tokens({"additional_special_tokens": TURN_TOKENS})
    tok.eos_token, tok.pad_token = "<|end|>", "<|endoftext|>"
    tok.chat_template = TEMPLATE
    end = tok.convert_tokens_to_ids("<|end|>")
    # not eos: the embedding row of `padding_idx` starts at zero, and (tied) eos could never win
    cfg = Qwen2Config(
        vocab_size=(len(tok) + 63) // 64 * 64, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        initializer_range=0.1, eos_token_id=end, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).eval()
    model.generation_config = GenerationConfig(eos_token_id=end, pad_token_id=tok.pad_token_id)
    out.mkdir(parents=True, exist_ok=True)
    if pickles:
        cfg.save_pretrained(out)
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    else:
        model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def qwen_dir(base, tmp_path_factory) -> Path:
    return make_tiny_qwen2(tmp_path_factory.mktemp("qwen") / "tiny-qwen2", base.path)


@pytest.fixture(scope="module")
def qwen_lib(qwen_dir, tmp_path_factory) -> Path:
    """A library initialised for the tiny Qwen2 with one trained brick, `ping`."""
    lib = tmp_path_factory.mktemp("qwen-lib") / "library"
    assert cli(["library", "init", "--library", str(lib), "--base-model", str(qwen_dir)]) == 0
    data = lib.parent / "ping.jsonl"
    data.write_text("".join(json.dumps({"input": q, "output": a}) + "\n" for q, a in PAIRS * 4))
    assert cli(["bricks", "train", "ping", "--library", str(lib), "--data", str(data), "--description", DESCRIPTION,
                "--examples", *EXAMPLES, "--steps", "100", "--anchors", "0", "--json"]) == 0
    return lib


# -- prompts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["mouse", "  Give the plural form of the given English noun.\nwolf \n", "{x} 100%"])
def test_smollm2_template_renders_render_prompt_byte_for_byte(base, text):
    """The starter bricks were trained on `render_prompt`: SmolLM2's own template must give the same bytes."""
    from transformers import AutoTokenizer

    from brickwork.prompts import CHATML, PromptFormat
    from brickwork.tasks import STOP, render_prompt

    fmt = PromptFormat.from_tokenizer(AutoTokenizer.from_pretrained(str(base.path)))
    assert fmt.render(text) == render_prompt(text) == CHATML.render(text) == base.prompts.render(text)
    assert fmt.stop == STOP == base.prompts.stop
    assert fmt.render(text, system="Be terse.") == render_prompt(text, system="Be terse.")


def test_another_template_is_used_with_its_own_end_of_turn(qwen_dir):
    from brickwork.models import resolve_base_model

    fmt = resolve_base_model(qwen_dir).prompts
    assert fmt.render(" ping red ") == "<|system|>\nAnswer briefly.<|end|>\n<|user|>\nping red<|end|>\n<|assistant|>\n"
    assert fmt.stop == "<|end|>"
    assert fmt.target("pong ") == "pong<|end|>"


def test_a_template_without_a_system_role_folds_the_system_message_into_the_user_turn(qwen_dir):
    from transformers import AutoTokenizer

    from brickwork.prompts import PromptFormat

    tok = AutoTokenizer.from_pretrained(str(qwen_dir))
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    )
    fmt = PromptFormat.from_tokenizer(tok, name="nosys")
    assert fmt.render("hi") == "<|user|>Answer briefly.\nhi<|end|><|assistant|>"
    assert fmt.stop == "<|end|>"


LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
GEMMA = (  # no system role: Gemma's own template folds it into the first user turn
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\n' + m['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@pytest.mark.parametrize(("template", "system"), [(None, ""), (TEMPLATE, ""), (LLAMA3, ""), (GEMMA, "Answer briefly.\n")])
def test_the_last_user_message_is_read_back_through_the_format(qwen_dir, template, system):
    """`PromptFormat.user_message` inverts `render`/`render_chat` for any template (what the fake
    engine echoes and the harness routes on)."""
    from transformers import AutoTokenizer

    from brickwork.prompts import CHATML, PromptFormat
    from brickwork.serving import FakeEngine, Request
    from brickwork.serving.fake import user_message

    fmt = CHATML
    if template is not None:
        tok = AutoTokenizer.from_pretrained(str(qwen_dir))
        tok.chat_template = template
        fmt = PromptFormat.from_tokenizer(tok, name="probe")
    assert fmt.user_message(fmt.render(" ping red ")) == system + "ping red"
    chat = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"}, {"role": "user", "content": "second one"}]
    assert fmt.user_message(fmt.render_chat(chat)) == "second one"
    assert fmt.user_message(fmt.render_chat([*chat, {"role": "assistant", "content": "so"}], continue_final_message=True)) == "second one"
    assert fmt.user_message("a plain context, no chat turns") is None
    assert user_message("  plain  ", fmt) == "plain"
    [out] = FakeEngine(prompts=fmt).generate([Request(prompt=fmt.render("ping blue"))])
    assert out.text == f"[base] {system}ping blue"


def test_a_tokenizer_without_a_chat_template_is_refused(qwen_dir):
    from transformers import AutoTokenizer

    from brickwork.errors import ModelError
    from brickwork.prompts import PromptFormat

    tok = AutoTokenizer.from_pretrained(str(qwen_dir))
    tok.chat_template = None
    with pytest.raises(ModelError, match="no chat template"):
        PromptFormat.from_tokenizer(tok, name="bare")


# -- library init -----------------------------------------------------------------------------
def test_init_records_the_base_and_every_later_command_uses_it(qwen_dir, tmp_path, capsys):
    from brickwork.bricks import BrickStore
    from brickwork.orchestrator.planners import brick_planner_usable

    lib = tmp_path / "lib"
    assert cli(["library", "init", "--library", str(lib), "--base-model", str(qwen_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["created"] and out["base_model"]["path"] == str(qwen_dir.resolve())
    assert out["stop"] == "<|end|>" and out["starter_bricks"] is False and "rules planner" in out["note"]
    recorded = json.loads((lib / "library.json").read_text())["base_model"]
    assert recorded == out["base_model"]

    store = BrickStore(lib)  # no base given: the library's own
    assert store.base.path == qwen_dir.resolve() and store.prompts.stop == "<|end|>"
    usable, why = brick_planner_usable(store)
    assert not usable and "smollm2" in why

    # idempotent for the same base; another base is refused, naming both
    assert cli(["library", "init", "--library", str(lib), "--base-model", str(qwen_dir)]) == 0
    assert "already set up" in capsys.readouterr().out
    assert cli(["library", "init", "--library", str(lib), "--base-model", "smollm2-135m-instruct"]) != 0
    assert "was built for base model" in capsys.readouterr().err

    # the starter bricks are SmolLM2's: build says so and installs nothing (not an error)
    assert cli(["library", "build", "--library", str(lib)]) == 0
    err = capsys.readouterr().err
    assert "no starter bricks installed" in err and "smollm2" in err
    assert BrickStore(lib).names() == []


def test_init_refuses_pickled_weights_and_missing_directories(base, tmp_path, capsys):
    pick = make_tiny_qwen2(tmp_path / "pickled", base.path, pickles=True)
    assert cli(["library", "init", "--library", str(tmp_path / "a"), "--base-model", str(pick)]) != 0
    err = capsys.readouterr().err
    assert "no .safetensors weights" in err and "pytorch_model.bin" in err and "only safetensors" in err
    assert not (tmp_path / "a" / "library.json").exists()
    assert cli(["library", "init", "--library", str(tmp_path / "b"), "--base-model", str(tmp_path / "nope")]) != 0
    assert "unknown base model" in capsys.readouterr().err


def test_a_library_whose_base_directory_is_gone_says_so(qwen_dir, tmp_path):
    from brickwork.bricks import BrickStore
    from brickwork.errors import LibraryError

    lib = tmp_path / "lib"
    BrickStore(lib, base=str(qwen_dir)).init()
    data = json.loads((lib / "library.json").read_text())
    data["base_model"]["path"] = str(tmp_path / "moved")
    (lib / "library.json").write_text(json.dumps(data))
    with pytest.raises(LibraryError, match="which is gone"):
        BrickStore(lib).base  # noqa: B018


# -- a brick on the second architecture --------------------------------------------------------
def test_brick_trained_imported_routed_and_run_on_qwen2(qwen_lib, qwen_dir, tmp_path, capsys):
    from brickwork.bricks import BrickStore
    from brickwork.orchestrator.sdk import Brickwork

    store = BrickStore(qwen_lib)
    brick = store.get("ping")
    assert brick.manifest.base_model["fingerprint"] == store.base.fingerprint
    assert brick.manifest.metrics["exact_match"] > brick.manifest.metrics["base_exact_match"]

    # import it back as someone else's bare PEFT adapter, with a description and examples
    bare = tmp_path / "peft-adapter"
    bare.mkdir()
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        (bare / f).write_bytes((brick.path / f).read_bytes())
    capsys.readouterr()
    assert cli(["bricks", "import", str(bare), "--library", str(qwen_lib), "--name", "pong", "--description",
                "Reply pong to a ping.", "--examples", "ping red", "ping blue", "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["name"] == "pong" and store.get("pong").manifest.examples == ["ping red", "ping blue"]

    with Brickwork(qwen_lib, engine="peft", engine_options={"num_threads": 1}, checkpoints=False) as bw:
        assert any("rules planner" in n and "smollm2" in n for n in bw.notes)
        routed = bw.run("ping red")
        [step] = routed.steps
        assert [b.name for b in step.bricks] in (["ping"], ["pong"])
        assert step.output == "pong"
        base = bw.run("ping red", base_only=True)
        assert base.steps[0].output != "pong"


@pytest.mark.integration
def test_peft_and_vllm_agree_greedily_on_qwen2(qwen_lib):
    """Parity on the second architecture: the same requests, base and brick, on both engines."""
    from brickwork.bricks import BrickStore
    from brickwork.serving import BrickRef, Request, SamplingParams, create_engine
    from tests.conftest_serving import VLLM_ENV

    store = BrickStore(qwen_lib)
    fmt = store.prompts
    sampling = SamplingParams(max_tokens=12, stop=(fmt.stop,))
    ping = (BrickRef(name="ping", version=1),)
    requests = [
        Request(prompt=fmt.render(text), bricks=bricks, sampling=sampling)
        for text in ("ping red", "ping navy", "hello there", "what is two plus two?")
        for bricks in ((), ping)
    ]
    with create_engine("peft", store, num_threads=1) as peft:
        want = [c.text for c in peft.generate(requests)]
    assert want[1] == "pong" and want[0] != want[1]
    with create_engine("vllm", store, max_lora_rank=8, max_loras=2, kv_cache_gb=0.5, max_model_len=256, enforce_eager=True,
                       env=VLLM_ENV) as vllm:
        got = [c.text for c in vllm.generate(requests)]
    assert got == want
