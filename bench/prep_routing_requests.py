"""Copy the real user requests (Arena-Hard) into brickwork/data/routing/requests.jsonl and give every
out-of-scope row of the routing data a `source` (who wrote it) and a `split` (train / calib).

    python bench/prep_routing_requests.py [--shared ../shared/data/requests]

Idempotent: the split is a hash of the row's id (Arena-Hard) or text (none_train.jsonl), 30% calib.
`scope` of a request is the brick whose task it asks for, or null (no bundled brick serves it);
IN_SCOPE below lists the ones labelled in scope (see brickwork/data/routing/PROVENANCE.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "brickwork" / "data" / "routing"
#: request id -> brick, for real requests that ask for a bundled brick's task (reviewed by hand)
IN_SCOPE: dict[str, str] = {}
#: none_train.jsonl row ranges (1-based, inclusive) -> writer (PROVENANCE.md)
WRITERS = ((1, 420, "project-author"), (421, 753, "helper-1"), (754, 1153, "helper-a"), (1154, 1540, "helper-b"),
           (1541, 1944, "helper-c"), (1945, 2350, "helper-d"))


def split_of(key: str) -> str:
    return "calib" if int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 10 < 3 else "train"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data" / "requests"))
    a = ap.parse_args()
    out = []
    for name in ("arena_hard_v0.1.jsonl", "arena_hard_v2.0.jsonl"):
        for line in (Path(a.shared) / name).read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            r = json.loads(line)
            source = r["source"] if r["source"] == "arena-hard-v0.1" else f"arena-hard-v2.0-{r['category'].replace('_', '-')}"
            out.append({"id": r["id"], "source": source, "category": r["category"], "cluster": r["cluster"],
                        "scope": IN_SCOPE.get(r["id"]), "split": split_of(r["id"]), "prompt": r["prompt"]})
    (DATA / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    rows = [json.loads(x) for x in (DATA / "none_train.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    assert len(rows) == WRITERS[-1][1], len(rows)
    for i, r in enumerate(rows, 1):
        src = next(w for a0, b0, w in WRITERS if a0 <= i <= b0)
        # the project author's calib side is out_of_scope.jsonl (the eval's own set, same writer)
        r.update(source=src, split="train" if src == "project-author" else split_of(r["text"]))
    (DATA / "none_train.jsonl").write_text("".join(json.dumps({k: r[k] for k in ("text", "near", "kind", "source", "split")}, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(len(out), "requests;", len(rows), "none rows")


if __name__ == "__main__":
    main()
