"""`brickwork serve`: the brick library behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse
import sys

from brickwork.cli import add_library_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the library over an OpenAI-compatible HTTP API")
    add_library_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--engine", choices=("peft", "vllm", "vllm-server"), default="peft", help="serving engine (default: %(default)s)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from brickwork.orchestrator.sdk import Brickwork
    from brickwork.serving.openai_api import BrickworkAPI, make_server

    with Brickwork(args.library, engine=args.engine) as bw:
        server = make_server(BrickworkAPI(bw), args.host, args.port)
        print(f"brickwork: serving {bw.store.root} on http://{args.host}:{server.server_address[1]}/v1 (engine {args.engine})", file=sys.stderr)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0
