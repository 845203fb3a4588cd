"""The lm-eval model on the real PEFT engine with starter bricks (integration; ~1 minute).

A brick's loglikelihood path must apply the brick: on its own task's multiple-choice variant the
brick beats the base model by a clear margin; ``simple_evaluate(model="brickwork", ...)``
runs end to end on two small local tasks, one of each kind; and lm-eval's own
``local-completions`` (multiple choice) and ``local-chat-completions`` (2-shot generation) run
against the server on a real uvicorn port, equal to the in-process model.
"""

from __future__ import annotations

import pytest

pytest.importorskip("lm_eval")

from tests.conftest_serving import STARTER_DIR  # noqa: E402

pytestmark = pytest.mark.integration
TASKS = ("sms_spam", "english_plural")
LIMIT = 20


@pytest.fixture(scope="module")
def lib(tmp_path_factory, base):
    from brickwork.bricks import BrickStore

    if not all((STARTER_DIR / t / "brick.json").is_file() for t in TASKS):
        pytest.skip("starter bricks are not built")
    store = BrickStore(tmp_path_factory.mktemp("harness") / "library", base=base)
    for t in TASKS:
        store.add(STARTER_DIR / t)
    return store


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    from brickwork.evals.harness.tasks import write_tasks

    return write_tasks(tmp_path_factory.mktemp("harness-tasks"), list(TASKS))


@pytest.fixture(scope="module")
def bw(lib):
    from brickwork.orchestrator.sdk import Brickwork

    with Brickwork(lib.root, engine="peft", planner="rules", checkpoints=False, store=lib) as bw:
        yield bw


def test_brick_beats_base_on_its_own_multiple_choice_task(bw, task_dir):
    from brickwork.evals.harness.model import BrickworkLM
    from brickwork.evals.harness.suite import evaluate

    acc = {}
    for cfg in ("base", "sms_spam"):
        lm = BrickworkLM(brickwork=bw, bricks=cfg)
        res = evaluate(lm, ["brickwork_sms_spam_mc"], task_dir, limit=LIMIT, use_cache=None)
        acc[cfg] = res["brickwork_sms_spam_mc"]["acc,none"]
    assert acc["sms_spam"] >= 0.9 and acc["sms_spam"] - acc["base"] >= 0.3, acc


def test_loglikelihood_matches_a_direct_score(bw):
    from lm_eval.api.instance import Instance

    from brickwork.evals.harness.model import BrickworkLM
    from brickwork.serving import ScoreRequest
    from brickwork.serving.refs import brick_refs
    from brickwork.tasks import render_prompt

    lm = BrickworkLM(brickwork=bw, bricks="sms_spam")
    ctx = render_prompt("Decide whether the given SMS text message is spam or ham.\nWIN a FREE prize! Text WIN to 80082")
    [(spam, greedy), (ham, _)] = lm.loglikelihood(
        [Instance(request_type="loglikelihood", doc={}, arguments=(ctx, c), idx=0) for c in ("spam", "ham")]
    )
    assert spam > ham and greedy
    ids = lm.tok_encode(ctx + "spam")
    n = len(ids) - len(lm.tok_encode(ctx))
    [direct] = bw.engine.score([ScoreRequest(prompt=tuple(ids), bricks=brick_refs(bw.store, ["sms_spam"]))])
    assert spam == pytest.approx(sum(direct.logprobs[-n:]), abs=1e-4)


def test_simple_evaluate_by_name_end_to_end(lib, task_dir):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    import brickwork.evals.harness.model  # noqa: F401  (registers "brickwork")

    res = simple_evaluate(
        model="brickwork",
        model_args=f"library={lib.root},engine=peft,bricks=sms_spam+english_plural,batch_size=8",
        tasks=["brickwork_sms_spam_mc", "brickwork_english_plural_gen"],
        limit=6,
        task_manager=TaskManager(include_path=str(task_dir)),
        apply_chat_template=True,
        bootstrap_iters=0,
    )
    assert res["results"]["brickwork_sms_spam_mc"]["acc,none"] >= 0.5
    assert res["results"]["brickwork_english_plural_gen"]["exact_match,none"] >= 0.3
    assert res["config"]["brickwork_config"] == ["sms_spam@1:1", "english_plural@1:1"]


def test_out_of_scope_bbh_items_routed_to_no_brick_score_exactly_as_base(bw, tmp_path):
    """Shipped BBH items (no brick made for them) under the real router: each item's route is
    recorded, and every item routing sends to no brick gets base's loglikelihoods exactly (the
    same prompt on the same engine), so routed can differ from base only where a brick was chosen."""
    from lm_eval.tasks import TaskManager

    from brickwork.evals.harness.bbh import write_bbh_tasks
    from brickwork.evals.harness.model import BrickworkLM
    from brickwork.evals.harness.suite import evaluate, item_routes, routing_summary

    task, root = "brickwork_bbh_sports_understanding_mc", write_bbh_tasks(tmp_path / "bbh")
    tm, samples = TaskManager(include_path=str(root)), {}
    for cfg in ("base", "routed"):
        lm = BrickworkLM(brickwork=bw, bricks=cfg)
        samples[cfg] = {}
        evaluate(lm, [task], root, limit=6, use_cache=None, samples=samples[cfg], task_manager=tm)
    items = item_routes(lm, samples)
    assert [it["doc_id"] for it in items] == list(range(6))
    assert {it["route"].split("@")[0] for it in items} <= {"base", *TASKS}
    summary = routing_summary(items)[task]
    assert summary["items"] == 6 and summary["to_brick"] == sum(summary["bricks"].values())
    assert summary["to_brick"] < 6  # (with this two-brick library) some items go to no brick: the check below runs
    resps = {cfg: {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in samples[cfg][task]} for cfg in samples}
    for it in items:
        if it["route"] == "base":
            assert resps["routed"][it["doc_id"]] == pytest.approx(resps["base"][it["doc_id"]], abs=1e-6)
            assert it["routed"] == it["base"]


# -- lm-eval's own API models against `brickwork serve` ------------------------------------------
KEY = "sk-harness"


class Recording:
    """The engine seam over the real engine, keeping the generation requests that reach it."""

    def __init__(self, engine):
        self.engine, self.name, self.requests = engine, engine.name, []

    def generate(self, requests):
        self.requests += list(requests)
        return self.engine.generate(requests)

    def score(self, requests):
        return self.engine.score(requests)

    def close(self):  # the shared engine belongs to the `bw` fixture
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.fixture(scope="module")
def served(bw, lib):
    """The in-process app on a real uvicorn port, over the same engine as `bw`."""
    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.server import create_app
    from tests.test_server_real import uvicorn_app

    engine = Recording(bw.engine.engine)
    sbw = Brickwork(lib.root, engine=engine, store=lib, planner="rules", checkpoints=False)
    with uvicorn_app(create_app(sbw, api_key=KEY)) as url:
        yield url, engine
    sbw.close()


def _samples(model, model_args, task, task_dir, *, apply_chat_template=True, **kw):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    res = simple_evaluate(
        model=model, model_args=model_args, tasks=[task], task_manager=TaskManager(include_path=str(task_dir)),
        apply_chat_template=apply_chat_template, bootstrap_iters=0, log_samples=True, **kw,
    )
    return res["results"][task], sorted(res["samples"][task], key=lambda s: s["doc_id"])


def test_lm_eval_local_completions_loglikelihoods_equal_in_process(served, bw, lib, task_dir, monkeypatch):
    """lm-eval's ``local-completions`` (token-id prompts, ``echo`` + ``logprobs``, SmolLM2's own
    chat template with Brickwork's system message) against the server, and ``--model brickwork``
    in-process: the same contexts, loglikelihoods equal to 1e-4, and the brick applied."""
    from brickwork.evals.harness.model import BrickworkLM

    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # lm-eval's API models send it as the Bearer token
    task, kw = "brickwork_sms_spam_mc", {"limit": 2, "system_instruction": "Answer briefly."}
    args = (f"model=sms_spam,base_url={served[0]}/completions,tokenizer_backend=huggingface,"
            f"tokenizer={lib.base.path},tokenized_requests=True,batch_size=4,max_retries=1")
    remote, remote_samples = _samples("local-completions", args, task, task_dir, **kw)
    local, local_samples = _samples(BrickworkLM(brickwork=bw, bricks="sms_spam"), None, task, task_dir, **kw)
    assert [s["arguments"] for s in remote_samples] == [s["arguments"] for s in local_samples]  # one prompt format
    pairs = [(r[0], lo[0]) for rs, ls in zip(remote_samples, local_samples, strict=True) for r, lo in zip(rs["resps"], ls["resps"], strict=True)]
    assert len(pairs) == 4 and max(abs(float(a[0]) - float(b[0])) for a, b in pairs) < 1e-4, pairs
    assert remote["acc,none"] == local["acc,none"] >= 0.5


def test_lm_eval_local_chat_completions_sends_the_few_shot_conversation(served, bw, task_dir, monkeypatch):
    """lm-eval's ``local-chat-completions`` with 2-shot multi-turn chats: the server renders the
    whole conversation (both shots, then the question) and generates with the named brick, scoring
    as ``--model brickwork`` does in-process on the same few-shot prompts."""
    from brickwork.evals.harness.model import BrickworkLM

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    task, kw = "brickwork_english_plural_gen", {"limit": 3, "num_fewshot": 2}
    before = len(served[1].requests)
    remote, remote_samples = _samples("local-chat-completions", f"model=english_plural,base_url={served[0]}/chat/completions,max_retries=1",
                                      task, task_dir, **kw)
    reqs = served[1].requests[before:]
    assert len(reqs) == 3 and all(r.prompt.count("<|im_start|>user\n") == 3 and r.prompt.count("<|im_start|>assistant\n") == 3 for r in reqs)
    assert all([b.name for b in r.bricks] == ["english_plural"] and "\n" in r.sampling.stop for r in reqs)
    local, local_samples = _samples(BrickworkLM(brickwork=bw, bricks="english_plural"), None, task, task_dir, **kw)
    assert [s["filtered_resps"] for s in remote_samples] == [s["filtered_resps"] for s in local_samples]
    assert remote["exact_match,none"] == local["exact_match,none"] >= 2 / 3


def test_lm_eval_remote_tokenizer_is_auto_detected_and_scores_as_in_process(served, bw, lib, task_dir, monkeypatch):
    """lm-eval's ``local-completions`` with no tokenizer named (``tokenizer_backend=auto``) finds
    ``/tokenizer_info`` and tokenizes through ``/tokenize``; its loglikelihoods equal in-process.
    No ``--apply_chat_template``: lm-eval 0.4.13's remote backend hands loglikelihood a message
    list it cannot split (``'list' object has no attribute 'rstrip'``), whatever the server."""
    from lm_eval.models.openai_completions import LocalCompletionsAPI
    from transformers import AutoTokenizer

    from brickwork.evals.harness.model import BrickworkLM

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    lm = LocalCompletionsAPI(base_url=f"{served[0]}/completions", auth_token=KEY, model="sms_spam", tokenized_requests=True, batch_size=4, max_retries=1)
    hf = AutoTokenizer.from_pretrained(lib.base.path)
    assert lm.tokenizer_backend == "remote" and (lm.eot_token_id, lm.prefix_token_id) == (hf.eos_token_id, hf.bos_token_id)
    task, kw = "brickwork_sms_spam_mc", {"limit": 2, "apply_chat_template": False}
    remote, remote_samples = _samples(lm, None, task, task_dir, **kw)
    local, local_samples = _samples(BrickworkLM(brickwork=bw, bricks="sms_spam"), None, task, task_dir, **kw)
    assert [s["arguments"] for s in remote_samples] == [s["arguments"] for s in local_samples]
    pairs = [(r[0], lo[0]) for rs, ls in zip(remote_samples, local_samples, strict=True) for r, lo in zip(rs["resps"], ls["resps"], strict=True)]
    assert len(pairs) == 4 and max(abs(float(a[0]) - float(b[0])) for a, b in pairs) < 1e-4, pairs
    assert remote["acc,none"] == local["acc,none"]
