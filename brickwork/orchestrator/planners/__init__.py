"""Planners by name: ``brick`` (the planner LoRA, default), ``rules`` (deterministic), ``openai``.

``auto`` is ``brick`` when the planner brick is bundled and made for the library's base model,
otherwise ``rules``.
"""

from __future__ import annotations

from typing import Any

from brickwork.errors import ConfigError
from brickwork.orchestrator.planners.base import PLAN_SCHEMA, Planner, parse_plan
from brickwork.orchestrator.planners.rules import RulesPlanner

PLANNERS: tuple[str, ...] = ("auto", "brick", "openai", "rules")


def make_planner(name: str, *, engine: Any = None, store: Any = None, **options: Any) -> Planner:
    """Build the planner called `name`; brick planners run on `engine` (bricks of `store`)."""
    if name == "rules":
        return RulesPlanner()
    if name == "openai":
        from brickwork.orchestrator.planners.openai import OpenAIPlanner

        return OpenAIPlanner(**options)
    if name in ("brick", "auto"):
        from brickwork.orchestrator.planners.brick import BrickPlanner, planner_brick_dir

        usable, why = brick_planner_usable(store)
        if not usable:
            if name == "brick":
                raise ConfigError(f"the planner brick cannot be used: {why}")
            return RulesPlanner()
        if engine is None:
            raise ConfigError("the brick planner needs an engine")
        assert planner_brick_dir() is not None
        return BrickPlanner(engine, **options)
    raise ConfigError(f"unknown planner {name!r}; available planners: {', '.join(PLANNERS)}")


def brick_planner_usable(store: Any) -> tuple[bool, str]:
    from brickwork.bricks.manifest import Manifest
    from brickwork.orchestrator.planners.brick import planner_brick_dir

    d = planner_brick_dir()
    if d is None:
        return False, "it is not built (python -m brickwork.orchestrator.planners.train)"
    if store is not None:
        made_for = Manifest.load(d).base_model
        fp = made_for.get("fingerprint")
        if fp != store.base.fingerprint:
            return False, (f"it was trained for base model {made_for.get('id')!r} ({fp}), the library uses "
                           f"{store.base.id!r} ({store.base.fingerprint})")
    return True, ""


__all__ = ["PLANNERS", "PLAN_SCHEMA", "Planner", "RulesPlanner", "brick_planner_usable", "make_planner", "parse_plan"]
