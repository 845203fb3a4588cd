"""Brickwork's own OpenAI-compatible HTTP API (``brickwork serve``).

Agent frameworks that speak the OpenAI API can use a brick library as a model:

- ``POST /v1/chat/completions`` — the last user message is the instruction. ``model`` picks the
  configuration: ``brickwork`` (plan + route, the default), ``base`` (base model only), or brick
  names ``NAME[:WEIGHT][+NAME[:WEIGHT]...]`` (one step with exactly those bricks).
  The reply is a ``chat.completion`` object plus a ``brickwork`` field holding the run's trace
  (the ``brickwork run --json`` object), so ``run_id`` and step ids are there for feedback.
- ``POST /v1/completions`` — the same with ``prompt``.
- ``POST /v1/feedback`` — ``{"run_id", "step_id", "good": true}`` or ``{..., "correction": "..."}``.
- ``GET /v1/models`` — ``brickwork``, ``base`` and every brick; ``GET /health``.

Streaming is not offered (``stream: true`` is a 400). Requests are served one at a time
(the engine batches internally); bind to loopback unless you put an authenticating proxy in front.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from brickwork.errors import BrickworkError, ConfigError

MAX_BODY = 1 << 20
PLANNED, BASE = "brickwork", "base"


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


def _instruction_from_chat(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(HTTPStatus.BAD_REQUEST, "`messages` should be a non-empty list")
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
            if isinstance(content, str) and content.strip():
                return content
    raise ApiError(HTTPStatus.BAD_REQUEST, "no user message with text content in `messages`")


def _bricks_for_model(model: str) -> tuple[list[str] | None, bool]:
    """(bricks, base_only) for a request's `model` field."""
    if model in ("", PLANNED):
        return None, False
    if model == BASE:
        return None, True
    return [part for part in model.split("+") if part], False


class BrickworkAPI:
    """The request handling, independent of the HTTP server (tests call `handle` directly)."""

    def __init__(self, bw: Any) -> None:
        self.bw = bw
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[HTTPStatus, dict[str, Any]]:
        try:
            route = (method, path.rstrip("/") or "/")
            if route == ("GET", "/health"):
                return HTTPStatus.OK, {"status": "ok"}
            if route == ("GET", "/v1/models"):
                return HTTPStatus.OK, self._models()
            if method != "POST":
                raise ApiError(HTTPStatus.NOT_FOUND, f"no route {method} {path}", "not_found")
            if body is None:
                raise ApiError(HTTPStatus.BAD_REQUEST, "the request body should be a JSON object")
            if route[1] == "/v1/chat/completions":
                return HTTPStatus.OK, self._complete(body, _instruction_from_chat(body), chat=True)
            if route[1] == "/v1/completions":
                prompt = body.get("prompt")
                if not isinstance(prompt, str) or not prompt.strip():
                    raise ApiError(HTTPStatus.BAD_REQUEST, "`prompt` should be a non-empty string")
                return HTTPStatus.OK, self._complete(body, prompt, chat=False)
            if route[1] == "/v1/feedback":
                return HTTPStatus.OK, self._feedback(body)
            raise ApiError(HTTPStatus.NOT_FOUND, f"no route {method} {path}", "not_found")
        except ApiError as exc:
            return exc.status, {"error": {"message": str(exc), "type": exc.kind}}
        except ConfigError as exc:
            return HTTPStatus.BAD_REQUEST, {"error": {"message": str(exc), "type": "invalid_request_error"}}
        except BrickworkError as exc:
            status = HTTPStatus.NOT_FOUND if type(exc).__name__ == "BrickNotFound" else HTTPStatus.UNPROCESSABLE_ENTITY
            if type(exc).__name__ == "BackendError":
                status = HTTPStatus.BAD_GATEWAY
            return status, {"error": {"message": str(exc), "type": type(exc).__name__}}

    def _models(self) -> dict[str, Any]:
        names = [PLANNED, BASE, *self.bw.store.names()]
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "brickwork"} for n in names]}

    def _complete(self, body: dict[str, Any], instruction: str, *, chat: bool) -> dict[str, Any]:
        if body.get("stream"):
            raise ApiError(HTTPStatus.BAD_REQUEST, "streaming is not supported; send stream=false")
        model = body.get("model") or PLANNED
        if not isinstance(model, str):
            raise ApiError(HTTPStatus.BAD_REQUEST, "`model` should be a string")
        bricks, base_only = _bricks_for_model(model)
        with self._lock:
            result = self.bw.run(instruction, bricks=bricks, base_only=base_only)
        trace = result.to_json()
        tokens = sum(len(s.get("output") or "") for s in trace["steps"])  # characters: no tokenizer here
        common = {"id": f"bw-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": model, "brickwork": trace}
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": result.answer}, "finish_reason": "stop"}
            return {**common, "object": "chat.completion", "choices": [choice], "usage": {"completion_characters": tokens}}
        choice = {"index": 0, "text": result.answer, "finish_reason": "stop"}
        return {**common, "object": "text_completion", "choices": [choice], "usage": {"completion_characters": tokens}}

    def _feedback(self, body: dict[str, Any]) -> dict[str, Any]:
        run_id, step_id = body.get("run_id"), body.get("step_id")
        if not isinstance(run_id, str) or not isinstance(step_id, str):
            raise ApiError(HTTPStatus.BAD_REQUEST, "`run_id` and `step_id` should be strings")
        good, correction = bool(body.get("good")), body.get("correction")
        if good == (correction is not None):
            raise ApiError(HTTPStatus.BAD_REQUEST, "give exactly one of `good: true` or `correction`")
        with self._lock:
            event = self.bw.feedback(run_id, step_id, good=good, correction=correction)
        return {"status": "recorded", "event": getattr(event, "id", None) if not isinstance(event, dict) else event}


def make_server(api: BrickworkAPI, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "brickwork"

        def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any] | None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {MAX_BODY} bytes")
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError(HTTPStatus.BAD_REQUEST, "the request body is not valid JSON") from None
            return body if isinstance(body, dict) else None

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._send(*api.handle("GET", self.path, None))

        def do_POST(self) -> None:  # noqa: N802
            try:
                body = self._body()
            except ApiError as exc:
                self._send(exc.status, {"error": {"message": str(exc), "type": exc.kind}})
                return
            self._send(*api.handle("POST", self.path, body))

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet by default; one line per request
            pass

    return ThreadingHTTPServer((host, port), Handler)
