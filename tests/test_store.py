from __future__ import annotations

import pytest

from brickwork.bricks import Manifest
from brickwork.errors import BrickNotFound


def test_add_list_history_rollback_remove(library, make_brick):
    b1 = library.add(make_brick("alpha", description="first"))
    assert (b1.name, b1.version) == ("alpha", 1)
    b2 = library.add(make_brick("alpha", description="second"))
    assert b2.version == 2 and library.active_version("alpha") == 2
    assert [h["version"] for h in library.history("alpha")] == [1, 2]
    library.rollback("alpha", to=1)
    assert library.get("alpha").manifest.description == "first"
    assert library.state() == {"alpha": 1}
    library.remove("alpha")
    assert library.names() == []
    with pytest.raises(BrickNotFound, match="no brick named 'alpha'"):
        library.get("alpha")


def test_manifest_roundtrip(base):
    from tests.conftest import make_manifest

    m = make_manifest("x", base, examples=["a"])
    assert Manifest.from_json(m.to_json()) == m
    with_samples = m.replace(routing_samples=["b", "c"])
    assert Manifest.from_json(with_samples.to_json()) == with_samples
    older = m.to_json()
    del older["routing_samples"]  # written before routing samples existed: still valid, none
    assert Manifest.from_json(older) == m
