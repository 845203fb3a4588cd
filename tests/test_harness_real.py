"""The lm-eval model on the real PEFT engine with starter bricks (integration; ~1 minute).

A brick's loglikelihood path must apply the brick: on its own task's multiple-choice variant the
brick beats the base model by a clear margin; and ``simple_evaluate(model="brickwork", ...)``
runs end to end on two small local tasks, one of each kind.
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
