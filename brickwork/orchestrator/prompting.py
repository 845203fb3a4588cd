"""The user text a step's request carries, given its subgoal, input and bricks.

Style ``brick`` (default): a step routed to bricks that has an input is asked the way its top
brick was trained — the brick's own description, a newline, the input (``"Give the plural form
of the given English noun.\\nmouse"``); a step without bricks or without an input is asked its
subgoal. Style ``subgoal``: always the subgoal as written. The `compose` eval measures both.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brickwork.bricks.refs import BrickRef
    from brickwork.bricks.store import BrickStore


def user_text(subgoal: str, inp: str | None, bricks: Sequence[BrickRef], store: BrickStore, *, style: str) -> str:
    if style == "subgoal" or not bricks or not inp:
        return subgoal
    top = max(bricks, key=lambda b: b.weight)
    desc = _description(store, top.name, top.version)
    return f"{desc}\n{inp}" if desc else subgoal


def _description(store: BrickStore, name: str, version: int) -> str:
    return _cached_description(store, str(store.root), name, version)


@lru_cache(maxsize=1024)
def _cached_description(store: BrickStore, root: str, name: str, version: int) -> str:
    # versions are immutable, so (library, name, version) -> description never changes
    return store.get(name, version).manifest.description.strip()
