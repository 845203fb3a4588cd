"""Chat prompts for lm-eval's ``--apply_chat_template``: the format Brickwork's bricks are trained on.

lm-eval hands a model raw context strings; with ``--apply_chat_template`` it first asks the model
to render the (few-shot) conversation. Brickwork renders it as `brickwork.tasks.render_prompt`
does (ChatML, with the system message ``Answer briefly.`` when the harness gives none), so one
user turn becomes exactly the prompt every brick was trained and measured on. The tokenizer's own
template would put SmolLM2's default system message there instead, a prompt no brick has seen.
"""

from __future__ import annotations

from collections.abc import Sequence

from brickwork.errors import ConfigError
from brickwork.tasks import STOP, SYSTEM_PROMPT

ROLES: tuple[str, ...] = ("system", "user", "assistant")

# What `chat_template` reports (lm-eval records it with the results and keys its request cache on it).
TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def render_chat(messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
    """ChatML for `messages`. With ``add_generation_prompt=False`` a final assistant message is left
    open (lm-eval's ``gen_prefix``: the model continues it)."""
    msgs = list(messages)
    bad = [m for m in msgs if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str)]
    if bad or not msgs:
        raise ConfigError(f"chat messages should be {{'role': one of {ROLES}, 'content': str}} dicts, got {bad or msgs!r:.200}")
    if msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
    parts = [f"<|im_start|>{m['role']}\n{m['content'].strip()}{STOP}\n" for m in msgs]
    if add_generation_prompt:
        return "".join(parts) + "<|im_start|>assistant\n"
    if msgs[-1]["role"] == "assistant":  # continue the prefilled answer
        parts[-1] = parts[-1][: -len(STOP) - 1]
    return "".join(parts)
