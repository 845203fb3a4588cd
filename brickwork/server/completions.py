"""``POST /v1/completions``: raw continuation for harnesses (no chat template, no planning).

Prompts are a string, a list of strings, token ids or a list of token-id lists; each prompt runs
with the bricks `model` names, or (``model: brickwork``) the bricks routed from its text. With
``echo`` the prompt's own tokens and their log-probabilities under those bricks come first
(`Engine.score`), in the legacy format lm-eval reads (``logprobs.tokens``, ``token_logprobs``,
``top_logprobs``, ``text_offset``); ``max_tokens: 0`` with ``echo`` scores without generating.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brickwork.server import runs
from brickwork.server.chat import sampling_of
from brickwork.server.errors import bad_request
from brickwork.server.protocol import CompletionRequest
from brickwork.serving.engine import PromptScore, Request, SamplingParams, ScoreRequest

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this endpoint


@dataclass
class CompletionJob:
    req: CompletionRequest
    prompts: list[str | tuple[int, ...]]
    sampling: SamplingParams | None  # None: scoring only (echo with max_tokens 0)


@dataclass
class CompletionOutcome:
    choices: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    trace: dict[str, Any]


def prepare(req: CompletionRequest, vocab_size: int | None, end_of_turn: str) -> CompletionJob:
    for param, msg in req.refusals():
        raise bad_request(msg, param)
    try:
        prompts = req.prompts()
    except ValueError as exc:
        raise bad_request(str(exc), "prompt") from None
    for i, p in enumerate(prompts):
        if not p:
            raise bad_request(f"prompt {i} is empty", "prompt")
        if isinstance(p, tuple) and min(p) < 0:
            raise bad_request(f"prompt {i} has a negative token id", "prompt")
        if isinstance(p, tuple) and vocab_size and max(p) >= vocab_size:
            raise bad_request(f"prompt {i} has token id {max(p)}, outside the vocabulary (size {vocab_size})", "prompt")
    if len(prompts) * req.n > 256:
        raise bad_request("at most 256 completions per request (prompts x n)", "n")
    sampling = None
    if req.max_tokens != 0:
        sampling = sampling_of(req, DEFAULT_MAX_TOKENS, end_of_turn, logprobs=req.logprobs)
    return CompletionJob(req=req, prompts=prompts, sampling=sampling)


def _bricks(bw: Any, tok: Any, job: CompletionJob) -> list[runs.Bricks]:
    fixed = runs.fixed_bricks(bw, job.req.model)
    if fixed is not None:
        return [fixed] * len(job.prompts)
    queries = [p if isinstance(p, str) else tok.decode(p) for p in job.prompts]
    routed = bw.retriever.route(queries, [None] * len(queries))
    out = []
    for choices in routed:
        refs = tuple(runs.BrickRef(name=c.name, version=c.version, weight=c.weight) for c in choices)
        out.append(runs.Bricks(refs, "routed", tuple(c.score for c in choices)))
    return out


def run(
    bw: Any,
    tok: Any,
    job: CompletionJob,
    *,
    on_text: Callable[[int, str], None] | None = None,
    cancelled: threading.Event | None = None,
) -> CompletionOutcome | None:
    req, n = job.req, job.req.n
    bricks = _bricks(bw, tok, job)
    k = req.logprobs or 0
    scores: list[PromptScore | None] = [None] * len(job.prompts)
    if req.echo:
        scores = runs.score(bw, [ScoreRequest(prompt=p, bricks=b.refs, top_logprobs=k) for p, b in zip(job.prompts, bricks, strict=True)], cancelled)
    if cancelled is not None and cancelled.is_set():
        return None
    completions: list[Any] = [None] * (len(job.prompts) * n)
    if job.sampling is not None:
        requests = []
        for i, (p, b) in enumerate(zip(job.prompts, bricks, strict=True)):
            for j in range(n):
                s = job.sampling
                if s.seed is not None and j:
                    s = dataclasses.replace(s, seed=s.seed + j)
                hook = (lambda idx: lambda text: on_text(idx, text))(i * n + j) if on_text is not None else None
                requests.append(Request(prompt=p, bricks=b.refs, sampling=s, on_text=hook))
        completions = runs.generate(bw, requests, cancelled)
    stop_lp = _stop_token_logprobs(bw, tok, job, bricks, scores, completions, k, cancelled)
    choices = []
    for i, p in enumerate(job.prompts):
        prompt_text = p if isinstance(p, str) else tok.decode(p)
        for j in range(n):
            idx = i * n + j
            c = completions[idx]
            text = (prompt_text if req.echo else "") + (c.text if c is not None else "")
            logprobs = None
            if req.logprobs is not None:
                logprobs = _legacy_logprobs(scores[i] if req.echo else None, c, stop_lp.get(idx))
            reason = c.finish_reason if c is not None else "length"
            choices.append({"index": idx, "text": text, "logprobs": logprobs, "finish_reason": reason})
    prompt_tokens = sum(len(s.token_ids) if s is not None else tok.count(p) for s, p in zip(scores, job.prompts, strict=True))
    completion_tokens = sum(c.n_tokens for c in completions if c is not None)
    trace = {"mode": "completion", "bricks": [b.trace() for b in bricks], "how": bricks[0].how if bricks else None}
    return CompletionOutcome(choices, prompt_tokens, completion_tokens, trace)


def _stop_token_logprobs(
    bw: Any, tok: Any, job: CompletionJob, bricks: list[runs.Bricks], scores: list[Any], completions: list[Any], k: int,
    cancelled: threading.Event | None,
) -> dict[int, tuple[str, float, tuple[tuple[str, float], ...]]]:
    """With echo, a reply that ended on the end-of-turn token at once has no generated-token
    logprobs; harnesses expect one entry per generated token, so score that token too."""
    eos = getattr(getattr(tok, "tok", None), "eos_token_id", None)
    if not job.req.echo or job.req.logprobs is None or job.sampling is None or eos is None:
        return {}
    todo = [
        idx for idx, c in enumerate(completions)
        if c is not None and c.finish_reason == "stop" and not (c.logprobs or ()) and c.n_tokens >= 1 and not c.text
    ]
    if not todo:
        return {}
    n = job.req.n
    reqs = [ScoreRequest(prompt=(*scores[idx // n].token_ids, eos), bricks=bricks[idx // n].refs, top_logprobs=k) for idx in todo]
    out = {}
    for idx, s in zip(todo, runs.score(bw, reqs, cancelled), strict=True):
        out[idx] = (s.tokens[-1], s.logprobs[-1], s.top[-1] if s.top else ())
    return out


def _legacy_logprobs(score: PromptScore | None, c: Any, stop: Any) -> dict[str, Any]:
    tokens: list[str] = []
    lps: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    if score is not None:
        tokens += list(score.tokens)
        lps += list(score.logprobs)
        tops += [dict(t) if t else None for t in score.top] if score.top else [None] * len(score.tokens)
    if c is not None:
        for t in c.logprobs or ():
            tokens.append(t.token)
            lps.append(t.logprob)
            tops.append(dict(t.top) if t.top else {t.token: t.logprob})
    if stop is not None:
        token, lp, top = stop
        tokens.append(token)
        lps.append(lp)
        tops.append(dict(top) if top else {token: lp})
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}
