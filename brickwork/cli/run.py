"""`brickwork run`: answer an instruction (or a file of them) with the brick library.

::

    brickwork run "INSTRUCTION" [--library DIR] [--engine peft|vllm|vllm-server] [--json]
    brickwork run "INSTRUCTION" --brick NAME[:WEIGHT] ...   # one step, these bricks, no planning/routing
    brickwork run "INSTRUCTION" --base                      # one step, base model only
    brickwork run --file FILE --json                        # one JSON per line, input order
    brickwork run --resume RUN_ID                           # finish an interrupted run

The default output is readable (plan, bricks per step, step outputs, answer) and appears as the
run progresses; ``--json`` prints exactly the DESIGN.md §5 object. ``--file`` sends the whole
file through the engine in shared batches (one instruction per non-empty line; ``-`` is stdin)
with progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from brickwork.cli import add_engine_arg, add_library_arg
from brickwork.cli._output import print_json
from brickwork.errors import BrickworkError, ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="answer an instruction: plan, route to bricks, run, aggregate")
    p.add_argument("instruction", nargs="?", help="the instruction (omit with --file or --resume)")
    add_library_arg(p)
    add_engine_arg(p)
    p.add_argument(
        "--engine-option", action="append", default=[], metavar="KEY=VALUE",
        help="engine option, repeatable (e.g. url=http://127.0.0.1:8000 for vllm-server; VALUE is JSON or text)",
    )
    p.add_argument("--json", action="store_true", help="print the run as JSON (one object per instruction)")
    p.add_argument("--ffn", type=float, default=None, metavar="FRACTION", help="peft engine: keep about this share of FFN neurons per token (e.g. 0.5)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--brick", action="append", metavar="NAME[:WEIGHT]", help="run as one step with these bricks (repeatable)")
    mode.add_argument("--base", action="store_true", help="run as one step on the base model only")
    p.add_argument("--file", metavar="FILE", help="one instruction per line ('-' for stdin)")
    p.add_argument("--resume", metavar="RUN_ID", help="finish an interrupted run from its checkpoint")
    p.add_argument("--planner", choices=("auto", "brick", "rules", "openai"), default="auto", help="planner (default: %(default)s)")
    p.add_argument("--planner-url", metavar="URL", help="OpenAI-compatible base URL for --planner openai")
    p.add_argument("--planner-model", metavar="MODEL", help="model name for --planner openai")
    p.add_argument("--prompt-style", choices=("brick", "subgoal"), default="brick", help="how a routed step is asked (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=64, metavar="N", help="tokens per step output (default: %(default)s)")
    p.add_argument("--k", type=int, default=5, metavar="K", help="bricks retrieved per step before routing (default: %(default)s)")
    p.set_defaults(func=main)


def _engine_options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--engine-option should be KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _read_file(path: str) -> list[str]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"cannot read --file {path}: {exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def _check(args: argparse.Namespace) -> None:
    given = sum(x is not None for x in (args.instruction, args.file, args.resume))
    if given != 1:
        raise ConfigError("give exactly one of an INSTRUCTION, --file FILE or --resume RUN_ID")
    if args.resume and (args.brick or args.base):
        raise ConfigError("--resume continues a run as it was planned; it takes no --brick/--base")
    if args.max_tokens < 1 or args.k < 1:
        raise ConfigError("--max-tokens and --k should be positive")


def open_brickwork(args: argparse.Namespace) -> Any:
    from brickwork.orchestrator.sdk import Brickwork

    planner_options = {}
    if args.planner == "openai":
        planner_options = {"base_url": args.planner_url, "model": args.planner_model}
    _status(f"loading the {args.engine} engine ...", args)
    bw = Brickwork(
        args.library,
        engine=args.engine,
        engine_options=_engine_options(args.engine_option),
        planner=args.planner,
        planner_options=planner_options,
        prompt_style=args.prompt_style,
        max_tokens=args.max_tokens,
        k=args.k,
        ffn=args.ffn,
    )
    for note in bw.notes:
        _status(f"note: {note}", args)
    return bw


def main(args: argparse.Namespace) -> int:
    _check(args)
    instructions = _read_file(args.file) if args.file else None
    bw = open_brickwork(args)
    with bw:
        if args.resume:
            result = bw.resume(args.resume)
            print_json(result.to_json()) if args.json else print_result(result)
            return 0
        if instructions is not None:
            return _run_file(bw, instructions, args)
        if args.json:
            print_json(bw.run(args.instruction, bricks=args.brick, base_only=args.base).to_json())
            return 0
        return _run_readable(bw, args)


# -- readable output ----------------------------------------------------------------------------
def _status(msg: str, args: argparse.Namespace) -> None:
    print(msg, file=sys.stderr, flush=True)


def _bricks_text(bricks: list[dict[str, Any]]) -> str:
    if not bricks:
        return "base model (no brick fits)"
    parts = []
    for b in bricks:
        s = f"{b['name']}@{b['version']}"
        if b.get("weight") not in (None, 1, 1.0):
            s += f" x{b['weight']:g}"
        if b.get("score") is not None:
            s += f" (score {b['score']:.2f})"
        parts.append(s)
    return " + ".join(parts)


def _run_readable(bw: Any, args: argparse.Namespace) -> int:
    result: dict[str, Any] | None = None
    for ev in bw.stream(args.instruction, bricks=args.brick, base_only=args.base):
        kind = ev["event"]
        if kind == "plan":
            note = f", fell back: {ev['fallback_reason']}" if ev.get("fallback_reason") else ""
            print(f"plan ({ev['planner']} planner{note}): {len(ev['steps'])} step{'s' * (len(ev['steps']) != 1)}")
            for s in ev["steps"]:
                after = f"   (after {', '.join(s['depends_on'])})" if s["depends_on"] else ""
                print(f"  {s['id']}  {s['subgoal']}{after}")
        elif kind == "route":
            print(f"  {ev['step']}  bricks: {_bricks_text(ev['bricks'])}", flush=True)
        elif kind == "step":
            s = ev["step"]
            print(f"  {s['id']}  -> {s['output']}   [{s['seconds']:.2f} s]", flush=True)
        elif kind == "done":
            result = ev["result"]
    assert result is not None
    _footer(result)
    return 0


def _footer(result: dict[str, Any]) -> None:
    answer = result["answer"]
    print("answer:" + ("\n  " + answer.replace("\n", "\n  ") if "\n" in answer else f" {answer}"))
    first = result["steps"][0]["id"] if result["steps"] else "s1"
    print(f"run {result['run_id']} ({result['seconds']:.2f} s). Feedback: brickwork feedback {result['run_id']} --step {first} --good")


def print_result(result: Any) -> None:
    d = result.to_json()
    for s in d["steps"]:
        print(f"  {s['id']}  {s['subgoal']}\n      bricks: {_bricks_text(s['bricks'])}\n      -> {s['output']}")
    _footer(d)


# -- batch mode ---------------------------------------------------------------------------------
def _run_file(bw: Any, instructions: list[str], args: argparse.Namespace) -> int:
    n = len(instructions)
    if n == 0:
        return 0
    done = 0
    pending: dict[int, Any] = {}
    next_out = 0
    failures = 0
    bar = _progress(n)
    every = max(1, n // 10)

    def emit(i: int, item: Any) -> None:
        nonlocal failures
        if isinstance(item, BrickworkError):
            failures += 1
            obj = {"run_id": None, "instruction": instructions[i], "error": str(item)}
            if args.json:
                print_json(obj)
            else:
                print(f"[{i + 1}] {instructions[i]}\n  error: {item}")
            return
        if args.json:
            print_json(item.to_json())
        else:
            print(f"[{i + 1}] {item.instruction}")
            print_result(item)

    def on_result(i: int, item: Any) -> None:
        nonlocal done, next_out
        done += 1
        pending[i] = item
        while next_out in pending:  # keep input order on stdout
            emit(next_out, pending.pop(next_out))
            next_out += 1
        if bar is not None:
            bar.update(1)
        elif done % every == 0 or done == n:
            print(f"progress: {done}/{n} instructions", file=sys.stderr, flush=True)

    bw.run_batch(instructions, bricks=args.brick, base_only=args.base, on_result=on_result, return_exceptions=True)
    if bar is not None:
        bar.close()
    stats = bw.engine.stats
    print(
        f"{n} instructions, {stats.requests} generations in {stats.calls} engine batches"
        + (f", {failures} failed" if failures else ""),
        file=sys.stderr,
    )
    return 1 if failures else 0


def _progress(n: int) -> Any:
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=n, desc="run", unit="instr", file=sys.stderr)
