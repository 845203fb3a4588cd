"""Update gates and training evaluations score through the engine seam (`lineage.BaseRunner`).

The runner hands adapter folders to the engine as `BrickRef`s through its adapter-source chain, so a
starter brick scored by path gives exactly the engine's own outputs for it by name, and the same as
PEFT applied by hand on the same base model (what the gates' private decode loop did before).
"""

from __future__ import annotations

import shutil

import pytest

from brickwork.bricks import lineage
from brickwork.bricks.lineage import BaseRunner, max_new_tokens_for
from brickwork.serving import BrickRef, Request, SamplingParams
from tests.conftest import loaded_adapter
from tests.conftest_serving import (  # noqa: F401 - fixtures
    composite_cache,
    peft_engine,
    serving_root,
    serving_store,
    starter_dirs,
)

BRICK = "english_plural"


@pytest.mark.integration
@pytest.mark.skipif(not any(p.name == BRICK for p in starter_dirs()), reason=f"no {BRICK} starter brick")
def test_runner_scores_a_brick_as_the_engine_and_peft_do(serving_store, peft_engine, tmp_path):
    from brickwork.serving.hf_generate import generate_greedy

    brick = serving_store.get(BRICK)
    items = lineage.test_items(brick.manifest, brick.path, n=6, seed=0)
    runner = BaseRunner(serving_store, engine=peft_engine)  # the caller's engine: no second base model
    budget = max_new_tokens_for(items, runner.tok)
    prompts = [serving_store.base.prompts.render(it.text) for it in items]

    def engine_outputs(bricks: tuple[BrickRef, ...]) -> list[str]:
        sampling = SamplingParams(max_tokens=budget)
        return [c.text for c in peft_engine.generate([Request(prompt=p, bricks=bricks, sampling=sampling) for p in prompts])]

    by_name = engine_outputs((BrickRef(name=brick.name, version=brick.version),))
    by_path = runner.score(brick.path, items)
    assert by_path.outputs == by_name
    assert by_path.correct == sum(it.correct(o) for it, o in zip(items, by_name, strict=True))
    bare = tmp_path / "bare"  # adapter files only, as a candidate an update gates
    bare.mkdir()
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(brick.path / f, bare / f)
    assert runner.score(bare, items).outputs == by_name
    plain = runner.score(None, items).outputs
    assert plain == engine_outputs(())
    assert plain != by_name  # the brick changes the answers

    with loaded_adapter(runner.model, brick.path) as m:  # the engine lends its base model (merges use it)
        by_hand = [t for t, _ in generate_greedy(m, runner.tok, prompts, max_new_tokens=budget)]
    assert by_hand == by_name
    assert runner.score(brick.path, items).outputs == by_name  # the engine reloads its adapters after
    runner.close()  # not this runner's engine: it stays open
    assert engine_outputs(()) == plain


def resolving_fake(base):
    """A `FakeEngine` that, like every built-in engine, loads adapters through an `AdapterResolver`."""
    from brickwork.serving import FakeEngine
    from brickwork.serving.adapters import AdapterResolver, NoLibrary

    engine = FakeEngine()
    engine.resolver = AdapterResolver(NoLibrary(base))
    return engine


def test_runner_refuses_an_engine_without_a_resolver_up_front(base):
    from brickwork.errors import ConfigError
    from brickwork.serving import FakeEngine

    with pytest.raises(ConfigError, match="the fake engine has no adapter resolver"):
        BaseRunner(base, engine=FakeEngine())


def test_runner_closes_and_refuses_a_named_engine_without_a_resolver(base, monkeypatch):
    import brickwork.serving.engine as engines
    from brickwork.errors import ConfigError
    from brickwork.serving import FakeEngine

    made = []
    monkeypatch.setitem(engines._ENGINES, "fake-noresolver", "x:y")
    monkeypatch.setitem(engines._FACTORIES, "fake-noresolver", lambda store, **kw: made.append(FakeEngine(store)) or made[-1])
    runner = BaseRunner(base, engine="fake-noresolver")
    with pytest.raises(ConfigError, match="no adapter resolver"):
        runner.generate(None, ["x"])
    assert made and made[0]._closed


def test_runner_names_an_adapter_folder_through_the_engines_resolver(base, make_brick):
    engine = resolving_fake(base)
    runner = BaseRunner(base, engine=engine)
    folder = make_brick("alpha")
    ref = runner.ref(folder)
    assert ref.name.startswith("path-") and engine.resolver.brick(ref).path == folder.resolve()
    [out] = runner.generate(folder, ["hello"])
    assert out == f"[{ref.name}@{ref.version}:1] hello"
