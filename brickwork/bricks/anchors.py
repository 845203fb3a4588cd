"""Anchors: other tasks' requests paired with the model's own current answers, for locality.

A LoRA brick trained only on its task is unconstrained everywhere else: summed with another brick
(a ``cat`` merge, a composed step) or run on another task's request, it changes answers it was
never meant to touch. Mixing *anchors* into its training fixes that at the source: requests of
other tasks, each paired with what the model answers today (the base model for a new brick, the
current version for an update's residual), teach the adapter to leave those answers alone.

The anchor requests come from other tasks' *train* splits (or other bricks' data), never from any
test split, so the locality measured on test items is not trained on.

*Partner anchors* (``partners=``) repeat each request with its own task's brick active and that
brick's answer as the target (`bricks.partners`): the state the new brick meets when it is summed
with that brick in a ``cat`` merge or a composed step, which base-model anchors never show it.

Example::

    texts = anchor_texts(pools, n=128, seed=0)           # {"task": [Item, ...]} -> request texts
    pairs = anchor_pairs(runner, None, texts)            # [(request, the base model's answer), ...]
    pairs = library_anchors(store, runner, n=64, seed=0, skip="my_brick")   # from the other bricks' data
    pairs = library_anchors(store, runner, n=64, seed=0, skip="my_brick", partners=True)  # + (text, answer, dir)
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brickwork.bricks.lineage import BaseRunner, Item
    from brickwork.bricks.store import BrickStore

#: answer length (tokens) kept for an anchor; an answer that fills it is cut off and dropped
ANCHOR_MAX_TOKENS = 32


def anchor_texts(pools: Mapping[str, Sequence[Item]], *, n: int, seed: int, exclude: Sequence[str] = ()) -> list[str]:
    """About `n` request texts drawn evenly from `pools` ({source: items}), seeded, without duplicates.

    Texts in `exclude` (the brick's own requests) are never drawn: an anchor must not contradict
    what the brick is trained to answer.
    """
    return [t for _, t in _draw(pools, n=n, seed=seed, exclude=exclude)]


def _draw(pools: Mapping[str, Sequence[Item]], *, n: int, seed: int, exclude: Sequence[str]) -> list[tuple[str, str]]:
    """`anchor_texts` with each text's source: ``[(source, text), ...]``."""
    if n <= 0 or not pools:
        return []
    banned = {t.strip() for t in exclude}
    rng = random.Random(seed)
    names = sorted(pools)
    per = max(1, -(-n // len(names)))
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name in names:
        texts = [it.text for it in pools[name] if it.text.strip() not in banned]
        for t in rng.sample(texts, min(per, len(texts))):
            if t.strip() not in seen:
                seen.add(t.strip())
                out.append((name, t))
    rng.shuffle(out)
    return out[:n]


def anchor_pairs(runner: BaseRunner, adapter_dir: Path | None, texts: Sequence[str],
                 *, max_new_tokens: int = ANCHOR_MAX_TOKENS) -> list[tuple[str, str]]:
    """``(text, answer today)`` for each text: greedy answers of base (+ `adapter_dir`).

    Answers that fill `max_new_tokens` were cut off; they are dropped, since training on a cut-off
    answer would teach the model to stop early.
    """
    if not texts:
        return []
    outs = runner.generate(adapter_dir, list(texts), max_new_tokens=max_new_tokens)
    tok = runner.tok
    return [(t, o) for t, o in zip(texts, outs, strict=True)
            if len(tok(o, add_special_tokens=False)["input_ids"]) < max_new_tokens - 1]


def pool_anchors(runner: BaseRunner, pools: Mapping[str, Sequence[Item]], *, n: int, seed: int,
                 exclude: Sequence[str] = (), adapter_dir: Path | None = None,
                 partners: Mapping[str, Path] | None = None) -> list[tuple]:
    """`n` anchors drawn from `pools` ({source: items}), answered by base (+ `adapter_dir`).

    With `partners` ({source: adapter dir}), an anchor from a source that has one comes twice: as
    above, and answered by that brick, carrying it as a third element ``(text, answer, partner
    dir)``: training keeps the partner's delta active on it (`bricks.partners`), so the new brick
    learns to leave the partner's answers alone also where the two are summed (a merge, a
    composed step).
    """
    if partners and adapter_dir is not None:
        raise ValueError("anchors are answered either by `adapter_dir` or by their partners, not both")
    drawn = _draw(pools, n=n, seed=seed, exclude=exclude)
    plain = anchor_pairs(runner, adapter_dir, [t for _, t in drawn])
    if not partners:
        return plain
    by_partner: dict[str, list[str]] = {}
    for source, t in drawn:
        if source in partners:
            by_partner.setdefault(source, []).append(t)
    with_partner: dict[str, tuple] = {}
    for source, texts in by_partner.items():
        partner = Path(partners[source])
        for t, a in anchor_pairs(runner, partner, texts):
            with_partner[t] = (t, a, partner)
    kept = {t: (t, a) for t, a in plain}
    return [p for _, t in drawn for p in (kept.get(t), with_partner.get(t)) if p is not None]


def library_anchors(store: BrickStore, runner: BaseRunner, *, n: int, seed: int, skip: str | None = None,
                    adapter_dir: Path | None = None, exclude: Sequence[str] = (),
                    partners: bool = False) -> list[tuple]:
    """`n` anchors from the training requests of the bricks in `store` other than `skip`, answered by
    base (+ `adapter_dir`: the version being updated), or with `partners` by the brick each request
    belongs to (see `pool_anchors`). Empty when no other brick has data."""
    from brickwork.bricks.lineage import train_items

    if n <= 0:
        return []
    pools, owners = {}, {}
    for name in store.names():
        if name != skip:
            b = store.get(name)
            items = train_items(b.manifest, b.path)
            if items:
                pools[name] = items
                owners[name] = b.path
    return pool_anchors(runner, pools, n=n, seed=seed, exclude=exclude, adapter_dir=adapter_dir,
                        partners=owners if partners else None)


def partner_versions(anchors: Sequence[tuple]) -> dict[str, int | None]:
    """{brick name: version} of the partners that `anchors` carry (from each partner's brick.json),
    recorded in provenance so a rebuild can tell whether it trains beside the same bricks."""
    from brickwork.bricks.partners import partner_identity

    dirs = {Path(a[2]) for a in anchors if len(a) == 3 and a[2] is not None}
    return dict(sorted(partner_identity(p) for p in dirs))
