"""Serving: the engine seam, its engines (peft, vllm, vllm-server), composite adapters.

Light to import: engines load torch / vLLM only when created (``create_engine``).

Example::

    from brickwork.serving import BrickRef, Request, create_engine
    with create_engine("vllm", store, max_lora_rank=64) as engine:
        outs = engine.generate([Request(prompt=p, bricks=(BrickRef(name="antonym", version=1),))])
"""

from brickwork.serving.engine import (
    BrickRef,
    Completion,
    Engine,
    EngineBase,
    EngineName,
    PromptScore,
    Request,
    SamplingParams,
    ScoreRequest,
    TokenLogprob,
    available_engines,
    create_engine,
    register_engine,
)
from brickwork.serving.fake import FakeEngine
from brickwork.serving.refs import brick_refs, parse_brick_spec

__all__ = [
    "BrickRef",
    "Completion",
    "Engine",
    "EngineBase",
    "EngineName",
    "FakeEngine",
    "PromptScore",
    "Request",
    "SamplingParams",
    "ScoreRequest",
    "TokenLogprob",
    "available_engines",
    "brick_refs",
    "create_engine",
    "parse_brick_spec",
    "register_engine",
]
