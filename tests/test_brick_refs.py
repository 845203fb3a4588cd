"""One representation of "a brick at a weight": `BrickRef` (resolved) and `BrickSpec` (as named)."""

from __future__ import annotations

import pytest

from brickwork.bricks.refs import BrickRef, BrickSpec, brick_refs
from brickwork.errors import BrickNotFound


def test_the_router_the_engines_and_the_orchestrator_share_one_class():
    from brickwork.bricks.merging import MergeSource
    from brickwork.orchestrator.types import BrickChoice
    from brickwork.orchestrator.types import BrickSpec as OrchestratorSpec
    from brickwork.retrieval_index import Route
    from brickwork.serving import BrickRef as ServingRef

    assert Route is BrickRef and ServingRef is BrickRef
    assert OrchestratorSpec is BrickSpec and MergeSource is BrickSpec
    choice = BrickChoice(name="antonym", version=2, weight=1, score=0.71)
    assert isinstance(choice, BrickRef) and choice.ref == BrickRef(name="antonym", version=2)
    assert choice == BrickChoice(name="antonym", version=2, score=0.3)  # the score is evidence, not identity
    assert BrickChoice.of(Route(name="antonym", version=2, weight=0.5), score=0.9).score == 0.9


def test_json_shapes_are_unchanged():
    from brickwork.orchestrator.types import BrickChoice, Step

    choice = BrickChoice(name="antonym", version=2, weight=1, score=0.71)
    assert choice.to_json() == {"name": "antonym", "version": 2, "weight": 1.0, "score": 0.71}
    assert list(choice.to_json()) == ["name", "version", "weight", "score"]
    assert BrickChoice.from_json(choice.to_json()) == choice
    assert BrickChoice.from_json({"name": "a", "version": 1}).to_json() == {"name": "a", "version": 1, "weight": 1.0, "score": None}
    step = Step(id="s1", subgoal="x", bricks=(BrickSpec.parse("a@3:0.5"),))
    assert step.to_json()["bricks"] == [{"name": "a", "weight": 0.5, "version": 3}]
    assert Step.from_json(step.to_json()) == step


def test_specs_resolve_to_pinned_refs(library, make_brick):
    library.add(make_brick("alpha"))
    library.add(make_brick("alpha"))
    library.rollback("alpha", to=1)
    assert BrickSpec.parse("alpha:0.5").resolve(library) == BrickRef(name="alpha", version=1, weight=0.5)
    assert brick_refs(library, ["alpha@2"]) == (BrickRef(name="alpha", version=2),)
    with pytest.raises(BrickNotFound):
        BrickSpec(name="alpha", version=9).resolve(library)
