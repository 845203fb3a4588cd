"""Request models of the OpenAI-compatible API (pydantic, at the HTTP edge only).

Every field OpenAI defines for these endpoints is declared: the ones Brickwork honours, and the
ones it refuses with a 400 when set to anything but their neutral value (`refusals`). Fields no
one defines are kept (``extra="allow"``) and logged as a warning, as vLLM does.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from brickwork.serving.engine import MAX_TOP_LOGPROBS

log = logging.getLogger("brickwork.server")

MAX_TOKENS_LIMIT = 4096
MAX_N = 16
MAX_STOP = 8


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", strict=False)

    def warn_unknown(self, where: str) -> list[str]:
        extra = sorted(self.model_extra or {})
        if extra:
            log.warning("%s: ignoring unknown field(s) %s", where, ", ".join(extra))
        return extra


class FunctionDef(_Model):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Model):
    type: Literal["function"]
    function: FunctionDef


class ToolCallFunction(_Model):
    name: str
    arguments: str


class ToolCall(_Model):
    id: str | None = None
    type: Literal["function"] = "function"
    function: ToolCallFunction


class Message(_Model):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The text of `content`; text parts are joined, other parts are refused by the caller."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        out = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"only text content parts are supported, got a {part.get('type')!r} part")
            out.append(part["text"])
        return "".join(out)


class JsonSchemaFormat(_Model):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Model):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class _Sampling(_Model):
    """Fields both endpoints share."""

    model: str = "brickwork"
    max_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS_LIMIT)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = Field(default=None, validate_default=True)
    n: int = Field(default=1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # refused unless neutral
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    # accepted metadata that does not change the output
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP or not all(stops):
            raise ValueError(f"`stop` takes up to {MAX_STOP} non-empty strings")
        return stops

    def refusals(self) -> list[tuple[str, str]]:
        """(param, message) for each set field Brickwork cannot honour."""
        out = []
        for f in ("presence_penalty", "frequency_penalty"):
            if getattr(self, f) not in (None, 0, 0.0):
                out.append((f, f"`{f}` is not supported (only 0)"))
        if self.logit_bias:
            out.append(("logit_bias", "`logit_bias` is not supported"))
        if self.stream_options is not None and not self.stream:
            out.append(("stream_options", "`stream_options` is only allowed with `stream: true`"))
        return out


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # refused unless neutral
    functions: list[Any] | None = None
    function_call: Any = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    # metadata
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None

    def refusals(self) -> list[tuple[str, str]]:
        out = super().refusals()
        if self.functions or self.function_call is not None:
            out.append(("functions", "legacy `functions`/`function_call` are not supported; use `tools`"))
        if self.modalities not in (None, ["text"]) or self.audio is not None:
            out.append(("modalities", "only text output is supported"))
        if self.prediction is not None:
            out.append(("prediction", "`prediction` is not supported"))
        if self.max_tokens == 0:
            out.append(("max_tokens", "`max_tokens` should be at least 1"))
        if self.top_logprobs is not None and not self.logprobs:
            out.append(("top_logprobs", "`top_logprobs` needs `logprobs: true`"))
        if self.tool_choice is not None and not self.tools and self.tool_choice != "none":
            out.append(("tool_choice", "`tool_choice` needs `tools`"))
        return out

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(_Sampling):
    prompt: Prompt
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    best_of: int | None = None
    suffix: str | None = None

    def refusals(self) -> list[tuple[str, str]]:
        out = super().refusals()
        if self.best_of not in (None, self.n):
            out.append(("best_of", "`best_of` is not supported (only equal to `n`)"))
        if self.suffix:
            out.append(("suffix", "`suffix` (insertion) is not supported"))
        if self.max_tokens == 0 and not self.echo:
            out.append(("max_tokens", "`max_tokens: 0` is only allowed with `echo: true` (scoring)"))
        if self.max_tokens == 0 and self.stream:
            out.append(("stream", "scoring (`max_tokens: 0`) cannot stream"))
        return out

    def prompts(self) -> list[str | tuple[int, ...]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise ValueError("`prompt` is empty")
        if all(isinstance(x, int) for x in p):
            return [tuple(p)]  # type: ignore[arg-type]
        if all(isinstance(x, str) for x in p):
            return list(p)  # type: ignore[arg-type]
        return [tuple(x) for x in p]  # type: ignore[union-attr]


class TokenizeRequest(_Model):
    model: str = "brickwork"
    prompt: str | None = None
    messages: list[Message] | None = None
    add_generation_prompt: bool = True
    add_special_tokens: bool = False
    return_token_strs: bool = False


class DetokenizeRequest(_Model):
    model: str = "brickwork"
    tokens: list[int]


class FeedbackRequest(_Model):
    run_id: str
    step_id: str
    good: bool = False
    correction: str | None = None
