"""The out-of-scope ("none") requests shipped with Brickwork, by source and split.

Three files of ``brickwork/data/routing/`` (provenance: ``PROVENANCE.md`` there):

- ``none_train.jsonl``: near misses and everyday requests written for this project by seven
  writers (`source`: ``project-author``, ``helper-1``, ``helper-a`` … ``helper-d``, and
  ``helper-e-multilingual``: requests in 23 languages other than English);
- ``requests.jsonl``: 1,250 real user prompts (Arena-Hard v0.1, v2.0 hard prompts, v2.0 creative
  writing; Apache-2.0); only rows whose `scope` is null (no bundled brick serves them) are none
  texts, the few labelled with a brick are in-scope requests and never trained as none;
- ``out_of_scope.jsonl``: the routing eval's own out-of-scope set (by the project author).

Every row has a `split`: ``train`` rows are what an index's none class and nearest-none-text
penalty learn from (`none_texts`); ``calib`` rows are only for fitting the router's threshold;
``report`` rows (half of ``out_of_scope.jsonl``) are only measured. The split of a written or
real row is a hash of its text or id (30% calib), so a source's calib rows are new texts of a
source the router has seen; the leave-one-source-out eval (``evals/routing_sources.py``) measures
sources it has not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

DATA = Path(__file__).resolve().parents[1] / "data" / "routing"
Split = Literal["train", "calib", "report"]


@dataclass(frozen=True)
class NoneText:
    """One request no brick serves."""

    text: str
    source: str
    split: Split
    near: str | None = None  # the brick it is a near miss of (written rows), else None


def _jsonl(path: Path) -> list[dict]:
    # split on "\n" only: real prompts hold U+2028 and other characters str.splitlines() splits at
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


@cache
def none_rows() -> tuple[NoneText, ...]:
    """Every shipped out-of-scope request (all sources, all splits)."""
    out = [NoneText(r["text"], r["source"], r["split"], r.get("near")) for r in _jsonl(DATA / "none_train.jsonl")]
    out += [NoneText(r["prompt"], r["source"], r["split"]) for r in _jsonl(DATA / "requests.jsonl") if r.get("scope") is None]
    out += [
        NoneText(r["text"], "project-author", "calib" if r["split"] == "calib" else "report", r.get("near"))
        for r in _jsonl(DATA / "out_of_scope.jsonl")
    ]
    return tuple(out)


@cache
def in_scope_requests() -> tuple[tuple[str, str], ...]:
    """Real requests labelled as asking for a bundled brick's task: (text, brick)."""
    return tuple((r["prompt"], r["scope"]) for r in _jsonl(DATA / "requests.jsonl") if r.get("scope"))


def sources() -> tuple[str, ...]:
    """The sources of the none rows, in first-seen order."""
    return tuple(dict.fromkeys(r.source for r in none_rows()))


def none_texts(exclude: frozenset[str] | set[str] = frozenset()) -> tuple[str, ...]:
    """The train-split none texts (deduplicated, in file order), leaving out the sources in `exclude`."""
    return tuple(dict.fromkeys(r.text for r in none_rows() if r.split == "train" and r.source not in exclude))
