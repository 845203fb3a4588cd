"""The FastAPI application: routes, authentication, body limits, errors, streaming.

Example::

    import uvicorn
    from brickwork import Brickwork
    from brickwork.server import create_app

    with Brickwork(engine="peft") as bw:
        uvicorn.run(create_app(bw, api_key="sk-local"), host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from brickwork.prompts import template_source
from brickwork.server import chat, completions, runs
from brickwork.server.errors import ApiError, bad_request, from_exception, from_validation
from brickwork.server.gate import Cancelled, Gate
from brickwork.server.protocol import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    FeedbackRequest,
    TokenizeRequest,
)
from brickwork.server.streaming import DONE, SafeDeltas, sse
from brickwork.server.tokenizer import ServerTokenizer, load_tokenizer, max_model_len

log = logging.getLogger("brickwork.server")

MAX_BODY_BYTES = 1 << 20


class _BodyGuard:
    """ASGI middleware: a body over `max_bytes` is a 413 and a client that stalls mid-body for
    `timeout_s` a 408, raised from `receive` so the route answers it in OpenAI's error shape."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        total, done = 0, False

        async def guarded() -> dict[str, Any]:
            nonlocal total, done
            if done:
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), self.timeout_s)
            except TimeoutError:
                raise ApiError(408, f"the request body did not arrive within {self.timeout_s:g} s", code="timeout") from None
            if msg["type"] == "http.request":
                total += len(msg.get("body", b""))
                if total > self.max_bytes:
                    raise ApiError(413, f"the request body is over {self.max_bytes} bytes", code="body_too_large")
                done = not msg.get("more_body", False)
            return msg

        await self.app(scope, guarded, send)


def create_app(
    bw: Any,
    *,
    api_key: str | None = None,
    max_concurrency: int = 16,
    max_queue: int = 64,
    tokenizer: Any = None,
    prompts: Any = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    body_timeout_s: float = 30.0,
) -> FastAPI:
    """The OpenAI-compatible app for the SDK object `bw` (`brickwork.Brickwork`).

    `api_key`: when set, every route but ``/health`` needs ``Authorization: Bearer <key>``.
    `max_concurrency` requests run at once (their engine calls share batches), `max_queue` more
    wait; beyond that a request gets a 503. `tokenizer`: a Hugging Face tokenizer (default: the
    library's base model's). `prompts`: the `brickwork.prompts.PromptFormat` chats are rendered
    with and stop at (default: the library's, ``bw.store.prompts``).
    """
    tok = ServerTokenizer(tokenizer if tokenizer is not None else load_tokenizer(bw.store))
    fmt = prompts if prompts is not None else bw.store.prompts
    context: list[int | None] = []  # max_model_len, read once on the first /tokenize
    gate = Gate(max_concurrency, max_queue)
    default_max = int(getattr(getattr(bw, "deps", None), "max_tokens", 64))
    app = FastAPI(title="Brickwork", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gate, app.state.tokenizer, app.state.max_body_bytes = gate, tok, max_body_bytes

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return ApiError(exc.status_code, str(exc.detail), kind=kind).response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return from_exception(exc).response()

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send Authorization: Bearer <key>)", kind="authentication_error", code="invalid_api_key")

    api = APIRouter(dependencies=[Depends(check_key)])

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "running": gate.inflight}

    @api.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(n) for n in (runs.PLANNED, runs.BASE, *bw.store.names())]}

    @api.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        try:
            runs.fixed_bricks(bw, model_id)
        except Exception as exc:
            raise _model_error(exc, model_id) from None
        return _model_card(model_id)

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        req = await _parse(request, ChatRequest)
        req.warn_unknown("chat.completions")
        job = chat.prepare(req, default_max, fmt)
        _check_model(bw, req.model)
        if req.stream:
            return _stream(gate, lambda on_text, on_event, c: chat.run(bw, tok, job, on_text=on_text, on_event=on_event, cancelled=c),
                           lambda out, ctx: _chat_tail(out, ctx), _chat_chunker(req), req, request, job.sampling.stop)
        out = await _wait(gate, request, lambda c: chat.run(bw, tok, job, cancelled=c))
        return _chat_response(req, out)

    @api.post("/v1/completions")
    async def text_completions(request: Request) -> Any:
        req = await _parse(request, CompletionRequest)
        req.warn_unknown("completions")
        job = completions.prepare(req, tok.vocab_size, fmt.stop)
        _check_model(bw, req.model)
        if req.stream:
            return _stream(gate, lambda on_text, on_event, c: completions.run(bw, tok, job, on_text=on_text, cancelled=c),
                           lambda out, ctx: _completion_tail(out, ctx), _completion_chunker(req), req, request,
                           job.sampling.stop if job.sampling is not None else ())
        out = await _wait(gate, request, lambda c: completions.run(bw, tok, job, cancelled=c))
        return _envelope(req.model, "text_completion", out.choices, out, usage=True)

    @api.post("/v1/feedback")
    async def feedback(request: Request) -> dict[str, Any]:
        req = await _parse(request, FeedbackRequest)
        if req.good == (req.correction is not None):
            raise bad_request("give exactly one of `good: true` or `correction`")
        event = await _wait(gate, request, lambda c: bw.feedback(req.run_id, req.step_id, good=req.good, correction=req.correction))
        return {"status": "recorded", "event": event if isinstance(event, dict) else getattr(event, "id", None)}

    @api.post("/tokenize")
    async def tokenize(request: Request) -> dict[str, Any]:
        req = await _parse(request, TokenizeRequest)
        if (req.prompt is None) == (req.messages is None):
            raise bad_request("give exactly one of `prompt` or `messages`")
        if req.messages is not None:
            texts = [m.text() for m in req.messages]
            msgs = [{"role": "system" if m.role == "developer" else m.role, "content": t} for m, t in zip(req.messages, texts, strict=True)]
            text = chat.render(fmt, msgs, add_generation_prompt=req.add_generation_prompt)
        else:
            text = req.prompt or ""
        ids = tok.encode(text, add_special_tokens=req.add_special_tokens)
        if not context:
            context.append(max_model_len(bw))
        out: dict[str, Any] = {"count": len(ids), "tokens": ids, "max_model_len": context[0]}
        if req.return_token_strs:
            out["token_strs"] = tok.token_strs(ids)
        return out

    @api.get("/tokenizer_info")
    async def tokenizer_info() -> dict[str, Any]:
        return tok.info(template_source(fmt, tok.tok))

    @api.post("/detokenize")
    async def detokenize(request: Request) -> dict[str, Any]:
        req = await _parse(request, DetokenizeRequest)
        if tok.vocab_size and any(t < 0 or t >= tok.vocab_size for t in req.tokens):
            raise bad_request(f"token ids should be in [0, {tok.vocab_size})", "tokens")
        return {"prompt": tok.decode(req.tokens)}

    app.include_router(api)
    app.add_middleware(_BodyGuard, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    app.router.on_shutdown.append(gate.close)
    return app


# -- helpers ----------------------------------------------------------------------------------
def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "brickwork"}


def _model_error(exc: BaseException, model_id: str) -> ApiError:
    err = from_exception(exc)
    if err.status in (400, 404):
        return ApiError(404, f"unknown model {model_id!r}: {err}", param="model", code="model_not_found")
    return err


def _check_model(bw: Any, model: str) -> None:
    try:
        runs.fixed_bricks(bw, model)
    except Exception as exc:
        raise _model_error(exc, model) from None


async def _parse(request: Request, cls: type[BaseModel]) -> Any:
    length = request.headers.get("content-length")
    guard_max = request.app.state.max_body_bytes
    if length is not None and length.isdigit() and int(length) > guard_max:
        raise ApiError(413, f"the request body is over {guard_max} bytes", code="body_too_large")
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the request body should be a JSON object")
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        raise from_validation(exc.errors(include_url=False, include_input=False)) from None


async def _wait(gate: Gate, request: Request, fn: Callable[[threading.Event], Any]) -> Any:
    """Run `fn` on a worker; if the client disconnects first, flag it cancelled and stop waiting."""
    cancelled = threading.Event()
    gate.admit()
    fut = gate.start(lambda: fn(cancelled), cancelled)
    while True:
        done, _ = await asyncio.wait({fut}, timeout=0.5)
        if done:
            break
        if await request.is_disconnected():
            cancelled.set()
            raise ApiError(499, "client closed the request", code="client_closed")
    try:
        return fut.result()
    except Cancelled:
        raise ApiError(499, "client closed the request", code="client_closed") from None
    except Exception as exc:
        raise _mapped(exc) from exc


def _mapped(exc: BaseException) -> ApiError:
    err = from_exception(exc)
    if err.status >= 500 and err.kind == "server_error" and not isinstance(exc, ApiError):
        log.error("request failed", exc_info=exc)
    return err


def _usage(out: Any) -> dict[str, int]:
    return {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens, "total_tokens": out.prompt_tokens + out.completion_tokens}


def _envelope(model: str, obj: str, choices: list[dict[str, Any]], out: Any, *, usage: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"id": f"{'chatcmpl' if obj.startswith('chat') else 'cmpl'}-{uuid.uuid4().hex[:24]}", "object": obj,
                            "created": int(time.time()), "model": model, "choices": choices}
    if usage:
        body["usage"] = _usage(out)
    body["brickwork"] = out.trace
    return body


def _chat_response(req: ChatRequest, out: Any) -> dict[str, Any]:
    choices = [{k: v for k, v in c.items() if k != "streamed"} for c in out.choices]
    return _envelope(req.model, "chat.completion", choices, out, usage=True)


# -- streaming --------------------------------------------------------------------------------
class _Ctx:
    def __init__(self, req: Any, stops: tuple[str, ...]) -> None:
        self.req = req
        self.id = f"{'chatcmpl' if isinstance(req, ChatRequest) else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        n = req.n * (len(req.prompts()) if isinstance(req, CompletionRequest) else 1)
        self.deltas = [SafeDeltas(stops) for _ in range(n)]

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        obj = "chat.completion.chunk" if isinstance(self.req, ChatRequest) else "text_completion"
        return sse({"id": self.id, "object": obj, "created": self.created, "model": self.req.model, "choices": choices, **extra})


def _chat_chunker(req: ChatRequest) -> Callable[[_Ctx, int, str], dict[str, Any]]:
    return lambda ctx, i, text: {"index": i, "delta": {"content": text}, "logprobs": None, "finish_reason": None}


def _completion_chunker(req: CompletionRequest) -> Callable[[_Ctx, int, str], dict[str, Any]]:
    return lambda ctx, i, text: {"index": i, "text": text, "logprobs": None, "finish_reason": None}


def _chat_tail(out: Any, ctx: _Ctx) -> list[str]:
    chunks = []
    for c in out.choices:
        i, msg = c["index"], c["message"]
        if msg.get("tool_calls"):
            calls = [{"index": k, **call} for k, call in enumerate(msg["tool_calls"])]
            chunks.append(ctx.chunk([{"index": i, "delta": {"tool_calls": calls}, "logprobs": None, "finish_reason": None}]))
        else:
            rest = ctx.deltas[i].finish(msg.get("content") or "")
            if rest:
                chunks.append(ctx.chunk([{"index": i, "delta": {"content": rest}, "logprobs": None, "finish_reason": None}]))
        chunks.append(ctx.chunk([{"index": i, "delta": {}, "logprobs": c.get("logprobs"), "finish_reason": c["finish_reason"]}]))
    return chunks


def _completion_tail(out: Any, ctx: _Ctx) -> list[str]:
    chunks = []
    for c in out.choices:
        i = c["index"]
        rest = c["text"] if ctx.req.echo else ctx.deltas[i].finish(c["text"])
        chunks.append(ctx.chunk([{"index": i, "text": rest, "logprobs": c["logprobs"], "finish_reason": c["finish_reason"]}]))
    return chunks


def _stream(
    gate: Gate,
    work: Callable[..., Any],
    tail: Callable[[Any, _Ctx], list[str]],
    chunker: Callable[[_Ctx, int, str], dict[str, Any]],
    req: Any,
    request: Request,
    stops: tuple[str, ...],
) -> StreamingResponse:
    """`stops`: the request's stop strings (the client's and the end of turn), held back from
    deltas until a reply cannot end in one."""
    gate.admit()  # a full server answers 503 before the stream starts
    ctx = _Ctx(req, stops)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    cancelled = threading.Event()

    def put(*item: Any) -> None:
        if not cancelled.is_set():
            loop.call_soon_threadsafe(queue.put_nowait, item)

    fut = gate.start(lambda: work(lambda i, text: put("text", i, text), lambda ev: put("event", ev), cancelled), cancelled)
    fut.add_done_callback(lambda _: queue.put_nowait(("done",)))
    echo = isinstance(req, CompletionRequest) and req.echo

    async def body() -> AsyncIterator[str]:
        try:
            if isinstance(req, ChatRequest):
                yield ctx.chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None} for i in range(req.n)])
            while True:
                item = await queue.get()
                if item[0] == "done":
                    break
                if item[0] == "event":
                    yield ctx.chunk([], brickwork=item[1])
                elif not echo:
                    delta = ctx.deltas[item[1]].update(item[2])
                    if delta:
                        yield ctx.chunk([chunker(ctx, item[1], delta)])
            try:
                out = fut.result()
            except Cancelled:
                return  # the client left: nobody reads the rest
            except Exception as exc:
                yield sse(_mapped(exc).body())
                yield DONE
                return
            for chunk in tail(out, ctx):
                yield chunk
            extra: dict[str, Any] = {"brickwork": out.trace}
            yield ctx.chunk([], **extra)
            if req.stream_options is not None and req.stream_options.include_usage:
                yield ctx.chunk([], usage=_usage(out))
            yield DONE
        finally:
            if not fut.done():
                cancelled.set()  # the client left mid-stream

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
