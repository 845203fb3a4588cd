"""Anchors (other tasks' requests with today's answers, for locality): sampling and pairing."""

from __future__ import annotations

from brickwork.bricks.anchors import anchor_pairs, anchor_texts
from brickwork.bricks.lineage import Item
from brickwork.bricks.updating import UpdateConfig


def _pool(prefix, n):
    return [Item(text=f"{prefix} request {i}", answer=str(i)) for i in range(n)]


def test_anchor_texts_are_seeded_even_and_never_the_bricks_own():
    pools = {"a": _pool("a", 50), "b": _pool("b", 50), "c": _pool("c", 3)}
    own = ["a request 1", "b request 2"]
    texts = anchor_texts(pools, n=30, seed=0, exclude=own)
    assert texts == anchor_texts(pools, n=30, seed=0, exclude=own)
    assert texts != anchor_texts(pools, n=30, seed=1, exclude=own)
    assert len(texts) == len(set(texts)) <= 30
    assert not set(own) & set(texts)
    by_source = {p: sum(t.startswith(p) for t in texts) for p in pools}
    assert by_source["c"] == 3  # a small pool gives what it has
    assert by_source["a"] >= 10 and by_source["b"] >= 10


def test_anchor_texts_of_nothing_is_nothing():
    assert anchor_texts({}, n=10, seed=0) == []
    assert anchor_texts({"a": _pool("a", 5)}, n=0, seed=0) == []


class _Tok:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


class _Runner:
    tok = _Tok()

    def __init__(self):
        self.calls = []

    def generate(self, adapter_dir, texts, *, max_new_tokens):
        self.calls.append((adapter_dir, list(texts), max_new_tokens))
        # the second request rambles until the token budget is spent
        return ["short answer" if i != 1 else " ".join(["w"] * max_new_tokens) for i in range(len(texts))]


def test_anchor_pairs_keep_todays_answers_and_drop_cut_off_ones(tmp_path):
    runner = _Runner()
    pairs = anchor_pairs(runner, tmp_path, ["q0", "q1", "q2"], max_new_tokens=8)
    assert pairs == [("q0", "short answer"), ("q2", "short answer")]
    assert runner.calls == [(tmp_path, ["q0", "q1", "q2"], 8)]  # answered by the given adapter
    assert anchor_pairs(runner, None, []) == []


def test_update_config_rejects_negative_anchors():
    import pytest

    from brickwork.errors import ConfigError

    with pytest.raises(ConfigError, match="`anchors` should be a non-negative integer"):
        UpdateConfig(anchors=-1)
    assert UpdateConfig(anchors=0).anchors == 0


class _PartnerRunner(_Runner):
    def generate(self, adapter_dir, texts, *, max_new_tokens):
        self.calls.append((adapter_dir, list(texts), max_new_tokens))
        return [f"{'base' if adapter_dir is None else adapter_dir.name} says {t}" for t in texts]


def test_partner_anchors_come_twice_answered_by_base_and_by_their_tasks_brick(tmp_path):
    from brickwork.bricks.anchors import pool_anchors

    pools = {"a": _pool("a", 10), "b": _pool("b", 10)}
    runner = _PartnerRunner()
    partner = tmp_path / "a-brick"
    got = pool_anchors(runner, pools, n=8, seed=0, partners={"a": partner})
    plain = [p for p in got if len(p) == 2]
    paired = [p for p in got if len(p) == 3]
    assert [t for t, _ in plain] == anchor_texts(pools, n=8, seed=0)  # the plain anchors are unchanged
    assert all(a == f"base says {t}" for t, a in plain)
    assert paired and all(t.startswith("a ") and a == f"a-brick says {t}" and p == partner for t, a, p in paired)
    assert len(paired) == sum(t.startswith("a ") for t, _ in plain)  # b has no brick: no partner anchors
    for (t, _, _p) in paired:  # each partner anchor follows its plain twin
        k = got.index((t, f"base says {t}"))
        assert got[k + 1][0] == t and len(got[k + 1]) == 3


def test_partner_anchors_and_an_answering_adapter_do_not_mix(tmp_path):
    import pytest

    from brickwork.bricks.anchors import pool_anchors

    with pytest.raises(ValueError, match="not both"):
        pool_anchors(_PartnerRunner(), {"a": _pool("a", 4)}, n=2, seed=0, adapter_dir=tmp_path,
                     partners={"a": tmp_path})


def test_partner_versions_name_the_bricks_the_anchors_carry(tmp_path):
    import json

    from brickwork.bricks.anchors import partner_versions
    from brickwork.bricks.manifest import Manifest

    a, b = tmp_path / "lib/bricks/a/versions/3", tmp_path / "loose"
    a.mkdir(parents=True)
    b.mkdir()
    m = Manifest(name="a", version=3, kind="lora", description="d", base_model={"id": "m", "fingerprint": "f"}, rank=8)
    (a / "brick.json").write_text(json.dumps(m.to_json()))
    anchors = [("t1", "x"), ("t2", "y", a), ("t3", "z", a), ("t4", "w", b)]
    assert partner_versions(anchors) == {"a": 3, "loose": None}
    assert partner_versions([("t", "x")]) == {}
