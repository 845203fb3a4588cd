"""A deterministic stand-in engine for unit tests of the code above the engine seam.

It runs no model: each completion is computed from the request alone, so tests are fast and
repeatable. By default the text names the configuration and echoes the user message; with a
`json_schema` it returns the smallest JSON value that satisfies the schema; `respond` scripts any
other behaviour. Every batch is recorded in `calls`.

Example::

    engine = FakeEngine(respond=lambda req: "Paris" if "France" in req.prompt else None)
    engine.generate([Request(prompt=render_prompt("Capital of France?"))])
    # [Completion(text='Paris', n_tokens=2)]
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from brickwork.errors import ConfigError
from brickwork.prompts import CHATML, PromptFormat
from brickwork.serving.engine import Completion, EngineBase, PromptScore, Request, ScoreRequest, TokenLogprob

def user_message(prompt: str, prompts: PromptFormat = CHATML) -> str:
    """The last user message of a prompt rendered in `prompts` (the default base's ChatML unless
    given; `PromptFormat.user_message`), the prompt itself otherwise."""
    found = prompts.user_message(prompt)
    return prompt.strip() if found is None else found


def minimal_json(schema: dict[str, Any]) -> Any:
    """A small value valid for common JSON schemas (const, enum, type, required properties, items)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return minimal_json(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: minimal_json(props.get(k, {})) for k in schema.get("required", [])}
    if kind == "array":
        n = int(schema.get("minItems", 0))
        return [minimal_json(schema.get("items", {})) for _ in range(n)]
    if kind == "string":
        return "x" * int(schema.get("minLength", 1))
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


class FakeEngine(EngineBase):
    """Implements the `Engine` protocol deterministically, without a model.

    `store`, when given, is used to check that every requested brick version exists (raising
    `BrickNotFound` as real engines do). `respond(request)` may return the text to produce, or
    None for the default behaviour. `prompts` is the format requests are rendered in (ChatML, the
    default base's, unless given): the default text echoes the user message it finds with it.
    """

    name = "fake"

    def __init__(self, store: Any = None, *, respond: Callable[[Request], str | None] | None = None,
                 prompts: PromptFormat = CHATML) -> None:
        if respond is not None and not callable(respond):
            raise ConfigError(f"`respond` should be a callable, got {respond!r}.")
        self.store = store
        self.respond = respond
        self.prompts = prompts
        self.calls: list[list[Request]] = []
        self._lock = threading.Lock()

    def _accept(self, reqs: list[Any]) -> list[Any]:
        """Resolve every brick (unknown ones fail as on a real engine), then record the call."""
        if self.store is not None:
            for r in reqs:
                for b in r.bricks:
                    self.store.get(b.name, b.version)
        with self._lock:
            self.calls.append(reqs)
        return reqs

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return [self._complete(r) for r in self._accept(self._check_batch(requests))]

    def score(self, requests: Sequence[ScoreRequest]) -> list[PromptScore]:
        """Whitespace "tokens"; each token's logprob is a deterministic function of the bricks and
        the token, so tests can tell configurations apart."""
        return [self._score(r) for r in self._accept(self._check_batch(requests, ScoreRequest))]

    @staticmethod
    def _score(req: ScoreRequest) -> PromptScore:
        if isinstance(req.prompt, str):
            pieces = re.findall(r"\s*\S+", req.prompt) or [req.prompt]
            ids = tuple(zlib.crc32(p.encode()) % 50_000 for p in pieces)
        else:
            ids = req.prompt
            pieces = [f" t{t}" for t in ids]
        salt = "+".join(str(b) for b in req.bricks)
        lps = [None] + [-(zlib.crc32(f"{salt}|{p}".encode()) % 1000) / 100 - 0.01 for p in pieces[1:]]
        top = ()
        if req.top_logprobs:
            top = ((),) + tuple(((p, lp),) for p, lp in zip(pieces[1:], lps[1:], strict=True))
        return PromptScore(token_ids=tuple(ids), tokens=tuple(pieces), logprobs=tuple(lps), top=top)

    def _complete(self, req: Request) -> Completion:
        s = req.sampling
        text = self.respond(req) if self.respond is not None else None
        if text is None:
            if s.json_schema is not None:
                text = json.dumps(minimal_json(s.json_schema), separators=(",", ":"))
            else:
                config = "+".join(f"{b.name}@{b.version}:{b.weight:g}" for b in req.bricks) or "base"
                prompt = req.prompt if isinstance(req.prompt, str) else " ".join(map(str, req.prompt))
                text = f"[{config}] {user_message(prompt, self.prompts)}"
        for stop in s.stop:
            if stop in text:
                text = text[: text.index(stop)]
        words = text.split()
        reason = "stop"
        if len(words) >= s.max_tokens:
            words, reason = words[: s.max_tokens], "length"
            text = " ".join(words)
        if req.on_text is not None:
            for k in range(1, len(words) + 1):
                req.on_text(" ".join(words[:k]))
        logprobs = None
        if s.logprobs is not None:
            logprobs = tuple(
                TokenLogprob(token=w, logprob=-0.5, top=tuple((w, -0.5) for _ in range(min(1, s.logprobs))))
                for w in words
            )
        n = s.max_tokens if reason == "length" else len(words) + 1
        return Completion(text=text.strip(), n_tokens=n, finish_reason=reason, logprobs=logprobs)
