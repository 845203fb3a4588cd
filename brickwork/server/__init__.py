"""Brickwork's OpenAI-compatible HTTP server (FastAPI + uvicorn), on top of the SDK.

`create_app(bw)` builds the ASGI app for a `brickwork.Brickwork`; `serve` runs it with uvicorn
(what ``brickwork serve`` calls). Routes, fields and design: README "HTTP API", docs/serving.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def create_app(bw: Any, **options: Any) -> Any:
    from brickwork.server.app import create_app as _create

    return _create(bw, **options)


def serve(bw: Any, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", **options: Any) -> None:
    """Serve `bw` until interrupted (uvicorn, one process; the engine batches across requests)."""
    import uvicorn

    uvicorn.run(create_app(bw, **options), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
