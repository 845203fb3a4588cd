"""``POST /v1/chat/completions``: from a request to engine work, and back to OpenAI's shapes.

Two ways a chat request runs (README "HTTP API"):

- **planned**: a single user message and nothing conversation-only (no system message, history,
  tools, response_format, logprobs, n > 1). It runs the SDK's graph: ``model: brickwork`` plans
  and routes every step; ``base`` or brick specs run one step with those bricks, prompted as
  `brickwork run --brick` prompts them. The `brickwork` field is the run's trace (with its
  ``run_id`` for ``/v1/feedback``).
- **one step**: anything else. The whole conversation is rendered with the base model's chat
  template (`PromptFormat.render_chat`; Brickwork's system prompt when the client sends none); the
  reply stops at the template's end of turn as well as the client's `stop`; the bricks are routed from the
  last user message (``model: brickwork``) or named by ``model``. Tools and response formats are
  constrained decoding (`SamplingParams.json_schema`).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from brickwork.prompts import SYSTEM_PROMPT, PromptFormat
from brickwork.server import runs
from brickwork.server.errors import ApiError, bad_request
from brickwork.server.protocol import ChatRequest, Message
from brickwork.serving.engine import Completion, Request, SamplingParams

ANSWER_KEY = "content"


@dataclass
class ChatJob:
    """A validated chat request, ready to run in a worker thread."""

    req: ChatRequest
    mode: str  # "planned" or "step"
    sampling: SamplingParams
    instruction: str = ""  # planned: the user message; step: the routing query
    prompt: str = ""  # step: the conversation rendered by the base model's chat template
    tools: dict[str, Any] = field(default_factory=dict)  # name -> function definition
    tool_mode: str | None = None  # None, "named:<fn>", "required", "auto"
    stream_text: bool = True  # False when the reply is a tool call, sent whole at the end


@dataclass
class ChatOutcome:
    choices: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    trace: dict[str, Any]


def sampling_of(
    req: Any, default_max: int, end_of_turn: str, *, json_schema: dict[str, Any] | None = None, logprobs: int | None = None
) -> SamplingParams:
    """The request's sampling; replies also stop at the base model's `end_of_turn`."""
    limit = req.token_limit if hasattr(req, "token_limit") else req.max_tokens
    return SamplingParams(
        max_tokens=limit or default_max,
        temperature=req.temperature if req.temperature is not None else 0.0,
        top_p=req.top_p if req.top_p is not None else 1.0,
        seed=req.seed,
        stop=tuple(dict.fromkeys((*req.stop, end_of_turn))),
        json_schema=json_schema,
        logprobs=logprobs,
    )


def _text(m: Message, i: int) -> str:
    try:
        return m.text()
    except ValueError as exc:
        raise bad_request(str(exc), f"messages.{i}.content") from None


def _call_schema(fn: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": fn["name"]}, "arguments": fn.get("parameters") or {"type": "object"}},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _tool_setup(req: ChatRequest) -> tuple[dict[str, Any], str | None, dict[str, Any] | None, str]:
    """(tools by name, mode, schema, system hint) for the request's tools and tool_choice."""
    tools = {t.function.name: t.function.model_dump(exclude_none=True) for t in req.tools or []}
    if req.tools is not None and len(tools) != len(req.tools):
        raise bad_request("tool names should be unique", "tools")
    choice = req.tool_choice if req.tool_choice is not None else ("auto" if tools else "none")
    if choice == "none" or not tools:
        return tools, None, None, ""
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if name not in tools:
            raise bad_request(f"`tool_choice` names function {name!r}, which is not in `tools` ({sorted(tools)})", "tool_choice")
        mode, schema = f"named:{name}", tools[name].get("parameters") or {"type": "object"}
        hint = f"Call the function {name} by replying with its arguments as JSON.\n{json.dumps(tools[name])}"
        return tools, mode, schema, hint
    if choice not in ("auto", "required"):
        raise bad_request(f"`tool_choice` should be 'none', 'auto', 'required' or a named function, got {choice!r}", "tool_choice")
    calls = [_call_schema(fn) for fn in tools.values()]
    listing = "\n".join(json.dumps(fn) for fn in tools.values())
    if choice == "required":
        hint = f'Call one of these functions; reply with JSON {{"name": ..., "arguments": {{...}}}}.\n{listing}'
        return tools, "required", {"anyOf": calls}, hint
    answer = {"type": "object", "properties": {ANSWER_KEY: {"type": "string"}}, "required": [ANSWER_KEY], "additionalProperties": False}
    hint = (
        'You may call one of these functions by replying with JSON {"name": ..., "arguments": {...}}, '
        f'or answer with JSON {{"{ANSWER_KEY}": "..."}}.\n{listing}'
    )
    return tools, "auto", {"anyOf": [*calls, answer]}, hint


def _response_schema(req: ChatRequest) -> tuple[dict[str, Any] | None, str]:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None, ""
    if rf.type == "json_object":
        return {"type": "object"}, "Reply with a JSON object."
    if rf.json_schema is None or rf.json_schema.schema_ is None:
        raise bad_request("`response_format` json_schema needs `json_schema.schema`", "response_format")
    schema = rf.json_schema.schema_
    return schema, f"Reply with JSON matching this schema: {json.dumps(schema)}"


def prepare(req: ChatRequest, default_max: int, prompts: PromptFormat) -> ChatJob:
    """Check the request and decide how it runs (no engine work here); `prompts` is the base
    model's format (its chat template and end of turn)."""
    for param, msg in req.refusals():
        raise bad_request(msg, param)
    texts = [_text(m, i) for i, m in enumerate(req.messages)]
    simple = (
        len(req.messages) == 1
        and req.messages[0].role == "user"
        and not req.tools
        and (req.response_format is None or req.response_format.type == "text")
        and req.n == 1
        and not req.logprobs
    )
    if simple:
        if not texts[0].strip():
            raise bad_request("the user message is empty", "messages.0.content")
        return ChatJob(req=req, mode="planned", sampling=sampling_of(req, default_max, prompts.stop), instruction=texts[0])
    tools, tool_mode, tool_schema, tool_hint = _tool_setup(req)
    fmt_schema, fmt_hint = _response_schema(req)
    if tool_schema is not None and fmt_schema is not None:
        raise bad_request("`response_format` together with `tools` is not supported; send one of them", "response_format")
    users = [t for m, t in zip(req.messages, texts, strict=True) if m.role == "user" and t.strip()]
    if not users:
        raise bad_request("`messages` should contain a user message with text", "messages")
    prompt = render(prompts, _messages(req.messages, texts, tool_hint or fmt_hint))
    logprobs = (req.top_logprobs or 0) if req.logprobs else None
    sampling = sampling_of(req, default_max, prompts.stop, json_schema=tool_schema or fmt_schema, logprobs=logprobs)
    return ChatJob(
        req=req, mode="step", sampling=sampling, instruction=users[-1], prompt=prompt,
        tools=tools, tool_mode=tool_mode, stream_text=tool_mode is None,
    )


def render(prompts: PromptFormat, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
    """`messages` through the base model's chat template; a template that cannot render them is a 400."""
    from jinja2 import TemplateError

    try:
        return prompts.render_chat(messages, add_generation_prompt=add_generation_prompt)
    except (TemplateError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise bad_request(f"the base model's chat template cannot render these messages: {exc}", "messages") from None


def _messages(messages: list[Message], texts: list[str], hint: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m, text in zip(messages, texts, strict=True):
        role = "system" if m.role == "developer" else m.role
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for c in m.tool_calls:
                try:
                    args = json.loads(c.function.arguments or "{}")
                except json.JSONDecodeError:
                    args = c.function.arguments
                calls.append(json.dumps({"name": c.function.name, "arguments": args}))
            text = "\n".join([text, *calls]) if text else "\n".join(calls)
        out.append({"role": role, "content": text})
    if not out or out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
    if hint:
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n{hint}"}
    return out


# -- running (in a worker thread) -------------------------------------------------------------
def run(
    bw: Any,
    tok: Any,
    job: ChatJob,
    *,
    on_text: Callable[[int, str], None] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    cancelled: threading.Event | None = None,
) -> ChatOutcome | None:
    model = job.req.model
    fixed = runs.fixed_bricks(bw, model)
    if job.mode == "planned":
        final = (lambda text: on_text(0, text)) if on_text is not None else None
        result, engine = runs.run_planned(
            bw, job.instruction, fixed=fixed, sampling=job.sampling, on_event=on_event, on_final_text=final, cancelled=cancelled
        )
        if result is None:
            return None
        reason = "length" if any(c.finish_reason == "length" for c in engine.completions) else "stop"
        message = {"role": "assistant", "content": result.answer}
        return ChatOutcome(
            choices=[{"index": 0, "message": message, "finish_reason": reason, "logprobs": None, "streamed": engine.streamed}],
            prompt_tokens=sum(tok.count(r.prompt) for r in engine.requests),
            completion_tokens=sum(c.n_tokens for c in engine.completions),
            trace={"mode": "planned", **result.to_json()},
        )
    bricks = fixed if fixed is not None else runs.route(bw, job.instruction)
    if on_event is not None:
        on_event({"event": "route", "step": "s1", "subgoal": job.instruction, "bricks": bricks.trace()})
    prompt = job.prompt
    requests = []
    for i in range(job.req.n):
        sampling = job.sampling
        if sampling.seed is not None and i:
            import dataclasses

            sampling = dataclasses.replace(sampling, seed=sampling.seed + i)  # n samples, not n copies
        hook = None
        if on_text is not None and job.stream_text:
            hook = (lambda k: lambda text: on_text(k, text))(i)
        requests.append(Request(prompt=prompt, bricks=bricks.refs, sampling=sampling, on_text=hook))
    if cancelled is not None and cancelled.is_set():
        return None
    completions = runs.generate(bw, requests, cancelled)
    choices = [_choice(job, i, c, tok) for i, c in enumerate(completions)]
    trace = {"mode": "step", "bricks": bricks.trace(), "how": bricks.how, "routed_on": job.instruction if bricks.how == "routed" else None}
    return ChatOutcome(
        choices=choices,
        prompt_tokens=tok.count(prompt),
        completion_tokens=sum(c.n_tokens for c in completions),
        trace=trace,
    )


def _choice(job: ChatJob, i: int, c: Completion, tok: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": c.text}
    reason: str = c.finish_reason
    if job.tool_mode is not None and c.finish_reason == "stop":
        call = _parse_call(job, c.text)
        if call is not None:
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            reason = "tool_calls"
        elif job.tool_mode == "auto":
            try:
                message["content"] = json.loads(c.text)[ANSWER_KEY]
            except (json.JSONDecodeError, KeyError, TypeError):
                pass
    logprobs = None
    if c.logprobs is not None:
        logprobs = {"content": [_lp(t.token, t.logprob, t.top) for t in c.logprobs], "refusal": None}
    return {"index": i, "message": message, "finish_reason": reason, "logprobs": logprobs, "streamed": job.stream_text}


def _lp(token: str, logprob: float, top: tuple[tuple[str, float], ...]) -> dict[str, Any]:
    return {
        "token": token, "logprob": logprob, "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in top],
    }


def _parse_call(job: ChatJob, text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if job.tool_mode and job.tool_mode.startswith("named:"):
        name, args = job.tool_mode.split(":", 1)[1], value
    elif isinstance(value, dict) and value.get("name") in job.tools and "arguments" in value:
        name, args = value["name"], value["arguments"]
    else:
        return None
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def check_model(bw: Any, model: str) -> None:
    """Fail fast (404/400) on an unknown model before queueing any work."""
    runs.fixed_bricks(bw, model)


__all__ = ["ApiError", "ChatJob", "ChatOutcome", "check_model", "prepare", "run"]
