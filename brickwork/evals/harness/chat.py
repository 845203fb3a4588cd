"""Chat prompts for lm-eval's ``--apply_chat_template``: the format Brickwork's bricks are trained on.

lm-eval hands a model raw context strings; with ``--apply_chat_template`` it first asks the model
to render the (few-shot) conversation. Brickwork renders it with the library's `PromptFormat`
(the base model's own chat template, with the system message ``Answer briefly.`` when the harness
gives none, contents stripped), so one user turn becomes exactly the prompt every brick was
trained and measured on (`PromptFormat.render`). For SmolLM2 that is ChatML; SmolLM2's template
alone would put its default system message there instead, a prompt no brick has seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from brickwork.errors import ConfigError
from brickwork.prompts import PromptFormat, template_source

__all__ = ["ROLES", "render_chat", "template_source"]

ROLES: tuple[str, ...] = ("system", "user", "assistant")


def render_chat(prompts: PromptFormat, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
    """`messages` through the base model's chat template. With ``add_generation_prompt=False`` a
    final assistant message is left open (lm-eval's ``gen_prefix``: the model continues it)."""
    msgs = list(messages)
    bad = [m for m in msgs if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str)]
    if bad or not msgs:
        raise ConfigError(f"chat messages should be {{'role': one of {ROLES}, 'content': str}} dicts, got {bad or msgs!r:.200}")
    msgs = [{"role": m["role"], "content": m["content"].strip()} for m in msgs]
    cont = not add_generation_prompt and msgs[-1]["role"] == "assistant"
    return prompts.render_chat(msgs, add_generation_prompt=add_generation_prompt, continue_final_message=cont)
