"""The HTTP server under 1, 4 and 16 concurrent clients vs the same requests one at a time.

One uvicorn server on the `peft` engine over a temporary library of starter bricks; each request
is a one-step chat completion (a starter brick or the base model, greedy, `--max-tokens` tokens).
"Sequential" sends all requests one after another from one client; "concurrent c" sends the same
requests from c client threads. Reports total throughput (requests/s), p50/p95 latency and the
speed-up over sequential; JSON to bench/results/bench_server.json.

    python bench/bench_server.py --requests 16 --max-tokens 8
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BRICKS = ("english_plural", "spell_word", "antonym")
WORDS = ("mouse", "wolf", "child", "cactus", "goose", "knife", "leaf", "tooth")


def start(engine: str, lib: Path):
    import uvicorn

    from brickwork.bricks import BrickStore
    from brickwork.models import resolve_base_model
    from brickwork.orchestrator.context import NoRetriever
    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.server import create_app

    store = BrickStore(lib, base=resolve_base_model())
    starter = Path(__file__).resolve().parents[1] / "brickwork" / "data" / "starter"
    for b in BRICKS:
        store.add(starter / b)
    bw = Brickwork(engine=engine, store=store, planner="rules", retriever=NoRetriever(), checkpoints=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(bw, max_concurrency=32), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    return srv, bw, f"http://127.0.0.1:{port}"


def bodies(n: int, max_tokens: int) -> list[dict]:
    out = []
    for i in range(n):
        model = (*BRICKS, "base")[i % (len(BRICKS) + 1)]
        msgs = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": f"{WORDS[i % len(WORDS)]}"}]
        out.append({"model": model, "messages": msgs, "max_tokens": max_tokens, "temperature": 0})
    return out


def run(url: str, reqs: list[dict], clients: int) -> dict:
    import httpx

    lat: list[float] = []
    texts: list[str] = [""] * len(reqs)

    def one(i: int, http: httpx.Client) -> None:
        t0 = time.perf_counter()
        r = http.post(url + "/v1/chat/completions", json=reqs[i], timeout=600)
        r.raise_for_status()
        texts[i] = r.json()["choices"][0]["message"]["content"]
        lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with httpx.Client() as http:
        if clients == 1:
            for i in range(len(reqs)):
                one(i, http)
        else:
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(lambda i: one(i, http), range(len(reqs))))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=20) if len(lat) > 1 else lat * 19
    return {"clients": clients, "requests": len(reqs), "wall_s": round(wall, 3), "req_per_s": round(len(reqs) / wall, 3),
            "p50_s": round(statistics.median(lat), 3), "p95_s": round(q[18], 3), "texts": texts}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="peft")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_server.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv, bw, url = start(args.engine, Path(tmp) / "lib")
        try:
            reqs = bodies(args.requests, args.max_tokens)
            run(url, reqs[:2], 1)  # warm-up: load adapters
            seq = run(url, reqs, 1)
            rows = [seq]
            for c in (4, 16):
                r = run(url, reqs, c)
                r["speedup_vs_sequential"] = round(r["req_per_s"] / seq["req_per_s"], 2)
                r["same_texts_as_sequential"] = r["texts"] == seq["texts"]
                rows.append(r)
            batches = bw.engine.stats.batch_sizes
        finally:
            srv.should_exit = True
            bw.close()
    for r in rows:
        r.pop("texts")
    result = {"engine": args.engine, "max_tokens": args.max_tokens, "runs": rows, "engine_batch_sizes": batches}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
