"""The orchestrator on the real graph and the real embedded (peft) engine.

Bricks: the real starter bricks when the library build has them (brickwork/data/starter), else
random-weight LoRA stand-ins under the same names (enough to check what flows where). Retrieval:
the real index when `brickwork.retrieval_index` is there, else a keyword router.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from brickwork.serving.fake import user_message
from tests.conftest import make_manifest, write_lora_adapter
from tests.conftest_orchestrator import KeywordRetriever

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
BRICKS = ("english_plural", "spell_word", "country_capital")
MAX_TOKENS = 12  # keeps random stand-in bricks from rambling on 2 shared cores


def _has_index() -> bool:
    try:
        from brickwork.retrieval_index import BrickIndex  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def real_library(tmp_path_factory, base):
    from brickwork.bricks.store import BrickStore
    from brickwork.tasks import load_tasks

    root = tmp_path_factory.mktemp("orch") / "lib"
    store = BrickStore(root, base=base)
    tasks = load_tasks()
    starter = REPO / "brickwork" / "data" / "starter"
    for i, name in enumerate(BRICKS):
        src = starter / name
        if (src / "adapter_model.safetensors").is_file() and (src / "brick.json").is_file():
            store.add(src)
            continue
        d = tmp_path_factory.mktemp(f"src-{name}")
        write_lora_adapter(d, base, seed=i)
        (d / "brick.json").write_text(
            json.dumps(make_manifest(name, base, description=tasks[name].definition, examples=[tasks[name].source_instruction or name]).to_json())
        )
        store.add(d)
    return root


@pytest.fixture(scope="session")
def peft_engine(real_library, base):
    from brickwork.bricks.store import BrickStore
    from brickwork.orchestrator.planners.brick import planner_sources
    from brickwork.serving.engine import create_engine

    engine = create_engine("peft", BrickStore(real_library, base=base), adapter_sources=planner_sources())
    yield engine
    engine.close()


class Spy:
    """Counts what reaches the real engine; `corrupt_plans` replaces planner replies with garbage."""

    def __init__(self, inner, *, corrupt_plans: bool = False):
        self.inner, self.corrupt = inner, corrupt_plans
        self.name = inner.name
        self.requests: list = []

    def generate(self, requests):
        from brickwork.serving.engine import Completion

        self.requests += list(requests)
        if not self.corrupt:
            return self.inner.generate(requests)
        # a planner that ran out of tokens mid-string: what a truncated or broken plan looks like
        real = iter(self.inner.generate([r for r in requests if r.sampling.json_schema is None]))
        return [Completion(text='[{"subgoal":"unfinished', n_tokens=3) if r.sampling.json_schema else next(real) for r in requests]

    def close(self):
        pass


def _brickwork(lib, engine, base, **kw):
    from brickwork.bricks.store import BrickStore
    from brickwork.orchestrator.sdk import Brickwork

    store = BrickStore(lib, base=base)
    kw.setdefault("planner", "rules")
    kw.setdefault("retriever", None if _has_index() else KeywordRetriever())
    return Brickwork(engine=engine, store=store, max_tokens=MAX_TOKENS, **kw)


def test_two_step_dependent_passes_output(real_library, peft_engine, base):
    spy = Spy(peft_engine)
    with _brickwork(real_library, spy, base) as bw:
        r = bw.run("Give the plural of 'mouse', then spell it letter by letter.")
    s1, s2 = r.steps
    assert s2.depends_on == ("s1",)
    assert s1.output and s1.output in s2.subgoal
    second = [user_message(q.prompt) for q in spy.requests][-1]
    assert s1.output in second  # the engine really got step 1's output in step 2's prompt
    assert [b.name for b in s1.bricks] == ["english_plural"] and [b.name for b in s2.bricks] == ["spell_word"]
    assert r.answer == s2.output and all(s.engine == "peft" for s in r.steps)


def test_killed_run_resumes_without_redoing_finished_steps(real_library, peft_engine, base, tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(
        "import os, signal, sys\n"
        "from brickwork.bricks.store import BrickStore\n"
        "from brickwork.orchestrator.planners.brick import planner_sources\n"
        "from brickwork.orchestrator.sdk import Brickwork\n"
        "from brickwork.serving.engine import create_engine\n"
        "from tests.conftest_orchestrator import KeywordRetriever\n"
        "class KillOnSecondCall:\n"
        "    name = 'peft'\n"
        "    def __init__(self, inner): self.inner, self.n = inner, 0\n"
        "    def generate(self, reqs):\n"
        "        self.n += 1\n"
        "        if self.n == 2: os.kill(os.getpid(), signal.SIGKILL)  # dies mid-run, like a crash\n"
        "        return self.inner.generate(reqs)\n"
        "    def close(self): pass\n"
        "store = BrickStore(sys.argv[1])\n"
        "engine = create_engine('peft', store, adapter_sources=planner_sources())\n"
        "bw = Brickwork(engine=KillOnSecondCall(engine), store=store, planner='rules',\n"
        f"               retriever=KeywordRetriever(), max_tokens={MAX_TOKENS})\n"
        "bw.run(\"Give the plural of 'mouse', then spell it letter by letter.\", run_id='killed-run')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script), str(real_library)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    spy = Spy(peft_engine)
    with _brickwork(real_library, spy, base, retriever=KeywordRetriever()) as bw:
        partial = bw.get_run("killed-run")
        assert [s.id for s in partial.steps] == ["s1"] and not partial.answer
        r = bw.resume("killed-run")
    assert len(spy.requests) == 1  # only step 2 ran again
    assert partial.steps[0].output in user_message(spy.requests[0].prompt)
    assert r.steps[0] == partial.steps[0] and r.answer == r.steps[1].output


@pytest.mark.skipif(not _has_index(), reason="needs brickwork.retrieval_index")
def test_no_brick_fits_runs_on_base_model(real_library, peft_engine, base):
    with _brickwork(real_library, Spy(peft_engine), base) as bw:
        r = bw.run("Write a haiku about autumn leaves.")
    assert len(r.steps) == 1 and r.steps[0].bricks == ()
    step = r.to_json()["steps"][0]
    assert step["bricks"] == []
    # the trace says why: the closest brick and the calibrated threshold it missed
    why = step["why"]
    assert why["decision"] == "base" and why["best"]["score"] < why["best"]["threshold"]
    assert why["reason"].startswith("no brick fits")


@pytest.mark.skipif(not _has_index(), reason="needs brickwork.retrieval_index")
def test_unserved_step_of_a_composite_instruction_runs_on_the_base_model(real_library, peft_engine, base):
    """Issue 21 item 4: one step a brick serves, one no brick serves; the second is base (bricks: [])."""
    spy = Spy(peft_engine)
    with _brickwork(real_library, spy, base) as bw:
        r = bw.run("Give the plural of 'mouse', and write a short poem about autumn.")
    steps = r.to_json()["steps"]
    assert len(steps) == 2
    assert [b["name"] for b in steps[0]["bricks"]] == ["english_plural"]
    assert steps[1]["bricks"] == [] and steps[1]["why"]["decision"] == "base"
    assert sorted(len(q.bricks) for q in spy.requests) == [0, 1]  # the base-model request reached the engine as one


def test_no_brick_fits_keyword_router(real_library, peft_engine, base):
    """Without an index: the empty route reaches the real engine as a base-model request."""
    spy = Spy(peft_engine)
    with _brickwork(real_library, spy, base, retriever=KeywordRetriever()) as bw:
        r = bw.run("Write a haiku about autumn leaves.")
    assert r.steps[0].bricks == () and spy.requests[0].bricks == ()


def test_malformed_plan_falls_back_to_rules(real_library, peft_engine, base):
    from brickwork.orchestrator.planners.brick import BrickPlanner

    spy = Spy(peft_engine, corrupt_plans=True)
    with _brickwork(real_library, spy, base, planner=BrickPlanner(spy, check_grounding=True)) as bw:
        r = bw.run("Give the plural of 'mouse', then spell it letter by letter.")
    assert r.plan.planner == "rules" and "not JSON" in r.plan.fallback_reason
    assert [s.depends_on for s in r.steps] == [(), ("s1",)]
    assert spy.requests[0].sampling.json_schema is not None  # the planner request was schema-constrained


def test_planner_brick_plans_a_chain(real_library, peft_engine, base):
    from brickwork.orchestrator.planners.brick import BrickPlanner, planner_brick_dir

    if planner_brick_dir() is None:
        pytest.skip("the planner brick is not built")
    [plan] = BrickPlanner(peft_engine).plan_batch(["Give the plural of 'mouse', then spell it letter by letter."])
    # the shipped brick answered (schema-valid JSON) ...
    assert plan.raw is not None and plan.raw.startswith("[")
    # ... and the plan that comes out is right, the brick's own or, if validation rejected it
    # (this brick sometimes writes the answer 'mice' as the input), the rules plan, with the reason
    assert plan.planner == "brick" or plan.fallback_reason
    assert [s.depends_on for s in plan.steps] == [(), ("s1",)]
    assert plan.steps[0].input == "mouse"


def test_cli_json_contract_on_real_engine(real_library, capsys):
    from brickwork.cli import main

    assert main(["run", "mouse", "--brick", "english_plural", "--json", "--library", str(real_library), "--max-tokens", "8"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert list(d) == ["run_id", "instruction", "answer", "steps", "seconds"]
    [s] = d["steps"]
    assert list(s) == ["id", "subgoal", "depends_on", "bricks", "output", "engine", "seconds"]
    assert s["engine"] == "peft" and s["bricks"][0]["name"] == "english_plural" and s["bricks"][0]["score"] is None
