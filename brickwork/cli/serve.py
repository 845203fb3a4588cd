"""`brickwork serve`: the brick library behind an OpenAI-compatible HTTP API (brickwork.server)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from brickwork.cli import add_engine_arg, add_library_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the library over an OpenAI-compatible HTTP API")
    add_library_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    add_engine_arg(p)
    p.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` (default: $BRICKWORK_API_KEY; none)")
    p.add_argument("--allow-insecure", action="store_true", help="allow a non-loopback --host without --api-key")
    p.add_argument("--max-concurrency", type=int, default=16, help="requests run at once, sharing engine batches (default: %(default)s)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting beyond those; more get a 503 (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=64, help="reply length when a request sets none (default: %(default)s)")
    p.set_defaults(func=main)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(args: argparse.Namespace) -> int:
    from brickwork.errors import ConfigError

    api_key = args.api_key or os.environ.get("BRICKWORK_API_KEY") or None
    if not is_loopback(args.host) and api_key is None and not args.allow_insecure:
        raise ConfigError(f"--host {args.host} is reachable from other machines: set --api-key (or $BRICKWORK_API_KEY), or pass --allow-insecure")
    if args.max_concurrency < 1 or args.max_queue < 0:
        raise ConfigError(f"--max-concurrency should be >= 1 and --max-queue >= 0, got {args.max_concurrency} and {args.max_queue}")
    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.server import serve

    with Brickwork(args.library, engine=args.engine, max_tokens=args.max_tokens) as bw:
        auth = "API key required" if api_key else "no API key"
        print(f"brickwork: serving {bw.store.root} on http://{args.host}:{args.port}/v1 (engine {args.engine}, {auth})", file=sys.stderr)
        serve(bw, host=args.host, port=args.port, api_key=api_key, max_concurrency=args.max_concurrency, max_queue=args.max_queue)
    return 0
