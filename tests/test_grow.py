"""Growing bricks from uncovered feedback: clustering, descriptions from data, the beat-the-base gate."""

from __future__ import annotations

import random

import numpy as np
import pytest

from brickwork.bricks.growing import GrowConfig, GrowExample, cluster, cluster_examples, describe, free_name
from brickwork.errors import ConfigError
from tests.conftest_update import WORDS, add_step_feedback, secret

FAST = dict(steps=16, batch_size=8, lr=3e-3, top_layers=2)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"min_examples": 0}, "`min_examples` should be a positive integer"),
        ({"similarity": 1.5}, "`similarity` should be in"),
        ({"min_gain": -0.1}, "`min_gain` should be in"),
        ({"min_examples": 4, "min_holdout": 4}, "`min_examples` \\(4\\) should exceed `min_holdout` \\(4\\)"),
        ({"steps": 0}, "`steps` should be a positive integer or None"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        GrowConfig(**kw)


def test_cluster_groups_by_cosine_largest_first():
    e = np.eye(3, dtype=np.float32)
    near = (e[0] + 0.1 * e[1]) / np.linalg.norm(e[0] + 0.1 * e[1])
    vecs = np.stack([e[1], e[0], near, e[2], e[0]])
    assert cluster(vecs, 0.9) == [[1, 2, 4], [0], [3]]
    assert cluster(vecs, 0.0) == [[0, 1, 2, 3, 4]]


def test_description_comes_from_the_data():
    exs = [GrowExample(text=f"Reformat the given YYYY-MM-DD date as !MM!DD!YYYY!.\n2020-01-0{i}", answer=f"!01!0{i}!2020!")
           for i in range(1, 9)]
    name, desc, examples = describe(exs)
    assert name == "reformat_yyyy_mm"
    assert desc == "Reformat the given YYYY-MM-DD date as !MM!DD!YYYY!."
    assert examples[0] == "Reformat the given YYYY-MM-DD date as !MM!DD!YYYY!." and exs[0].text in examples
    assert "2020-01-01" in examples  # the bare input too: bare requests must reach the brick
    labels = [GrowExample(text=f"Is {w} a fruit?", answer="yes" if i % 2 else "no") for i, w in enumerate(WORDS[:10])]
    name, desc, _ = describe(labels)
    assert desc.startswith("Maps inputs such as 'Is apple a fruit?'") and desc.endswith("Answers with one of: no, yes.")
    assert name == "apple_fruit_river"


def test_routing_samples_are_what_the_examples_leave_out():
    from brickwork.bricks.growing import N_EXAMPLES, routing_samples

    exs = [GrowExample(text=f"Reformat the given YYYY-MM-DD date as !MM!DD!YYYY!.\n2020-{m:02d}-{d:02d}", answer="x")
           for m in range(1, 4) for d in range(1, 21)]
    _, _, examples = describe(exs)
    assert len(examples) == N_EXAMPLES
    extra = routing_samples(exs, examples)
    assert not set(extra) & set(examples) and len(extra) == len(set(extra))
    assert set(extra) | set(examples) == {t for e in exs for t in (e.text, e.bare)} | {examples[0]}
    assert routing_samples(exs, examples, cap=10) == extra[:10]


def test_free_name_never_reuses_a_brick(library, make_brick):
    library.add(make_brick("plural"))
    assert free_name(library, "plural") == "plural_2" and free_name(library, "spell") == "spell"


@pytest.mark.integration
def test_uncovered_examples_cluster_by_task():
    """The real embedder separates two bundled tasks' instructions."""
    from brickwork.tasks import load_tasks

    tasks = load_tasks()
    exs = [GrowExample(text=tasks[t].query(e), answer=e.output)
           for t in ("date_reformat", "spell_word") for e in tasks[t].split("train")[:20]]
    random.Random(0).shuffle(exs)
    from brickwork.retrieval_index.embedder import load_embedder

    groups = cluster_examples(exs, GrowConfig(), embedder=load_embedder(None))
    assert [len(g) for g in groups[:2]] == [20, 20]
    for g in groups[:2]:
        assert len({e.instruction for e in g}) == 1


@pytest.mark.integration
def test_grow_from_feedback_adds_a_brick_that_beats_the_base_and_indexes_it(library, base):
    from brickwork.bricks.lineage import BaseRunner
    from brickwork.bricks.updating import UpdateConfig
    from brickwork.feedback import FeedbackStore
    from brickwork.library import Library

    fb = FeedbackStore(library.root)
    for w in WORDS[:16]:  # steps the base model answered (no brick), corrected by the user
        add_step_feedback(fb, text=secret(w), output="I don't know", correction="zebra", bricks=[])
    runner = BaseRunner(base)
    report = Library(store=library).update(config=UpdateConfig(), grow_config=GrowConfig(**FAST), runner=runner, command="pytest")
    (g,) = report.grown
    assert g.added, g.reasons
    assert g.metrics["exact_match"] >= g.metrics["base_exact_match"] + 0.3
    m = library.get(g.name).manifest
    assert m.provenance["operation"] == "grow" and m.provenance["n_examples"] == 16
    assert m.description.startswith("Maps inputs such as 'Secret word for") and "zebra" in m.description
    assert all(e.status == "applied" for e in fb.list())
    assert (library.get(g.name).path / "data" / "heldout.jsonl").is_file()
    from brickwork.retrieval_index import BrickIndex

    index = BrickIndex.open(library)
    assert index.state == {g.name: 1} and index.search(secret("banana"))[0].name == g.name


@pytest.mark.integration
def test_a_brick_that_does_not_beat_the_base_is_not_added(library, base):
    from brickwork.bricks.growing import grow_brick
    from brickwork.bricks.lineage import BaseRunner

    rng = random.Random(0)  # unlearnable: an unrelated random answer per input
    exs = [GrowExample(text=secret(w), answer=rng.choice(["kiwi", "mango", "plum", "lime", "pear", "fig"]))
           for w in WORDS[:16]]
    outcome = grow_brick(library, exs, config=GrowConfig(**{**FAST, "steps": 4}), runner=BaseRunner(base))
    assert not outcome.added and "does not beat the base model" in outcome.reasons[0]
    assert library.names() == [] and not any((library.root / ".staging").iterdir())


def test_too_few_examples_wait(library):
    from brickwork.bricks.growing import grow_from_examples
    from brickwork.retrieval_index.embedder import load_embedder

    exs = [GrowExample(text=secret(w), answer="zebra") for w in WORDS[:5]]
    outcomes, waiting = grow_from_examples(library, exs, config=GrowConfig(), embedder=load_embedder("hash"))
    assert outcomes == [] and sum(len(w) for w in waiting) == 5
