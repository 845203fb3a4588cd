"""The one owner of "render a prompt for this base model": its own chat template and end of turn.

Every prompt Brickwork sends (training, evaluation, steps, the planner, update gates) is one
system message and one user message rendered by the base model's chat template with
``add_generation_prompt``; the training target ends with the template's end-of-turn token, which
is also the stop string. `PromptFormat.for_base` reads both from the base model's tokenizer
(``tokenizer.apply_chat_template``), so any local Hugging Face model with a chat template works.

SmolLM2's template, given a system message, renders exactly ChatML; `CHATML` is that format
written out, used for the default base without loading a tokenizer (tests check the two are
byte-identical: the starter bricks were trained on these bytes).

Example::

    fmt = PromptFormat.for_base(store.base)
    Request(prompt=fmt.render("Plural of 'mouse'?"), sampling=SamplingParams(stop=(fmt.stop,)))
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork.errors import ModelError

if TYPE_CHECKING:
    from brickwork.models import BaseModel

SYSTEM_PROMPT = "Answer briefly."
CHATML_STOP = "<|im_end|>"
_MARK = "\x00brickwork-reply\x00"


def chatml(text: str, *, system: str = SYSTEM_PROMPT) -> str:
    """SmolLM2's ChatML prompt for one user message (what its chat template renders)."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{text.strip()}<|im_end|>\n<|im_start|>assistant\n"


@dataclass(frozen=True, kw_only=True)
class PromptFormat:
    """How one base model is prompted: `render` one user message, `stop` ends its reply.

    `name` says where the format came from (``chatml`` or the model directory's chat template).
    """

    name: str
    stop: str
    _render: Callable[[str, str], str] = field(repr=False, compare=False)

    def render(self, text: str, *, system: str = SYSTEM_PROMPT) -> str:
        """The prompt for one user message (stripped), ready for generation."""
        return self._render(text.strip(), system)

    def target(self, answer: str) -> str:
        """What a brick is trained to reply: the answer, then the end-of-turn token."""
        return answer.strip() + self.stop

    @staticmethod
    def for_base(base: BaseModel | None = None) -> PromptFormat:
        """The format of `base` (None: the default base model); cached per model directory."""
        from brickwork.models import DEFAULT_BASE_MODEL

        if base is None or base.id == DEFAULT_BASE_MODEL:
            return CHATML
        return _from_dir(base.path)

    @staticmethod
    def from_tokenizer(tok: Any, *, name: str = "the model") -> PromptFormat:
        """The format a Hugging Face tokenizer's chat template defines (a `ModelError` if it has none);
        `name` names the model in messages."""
        if not getattr(tok, "chat_template", None):
            raise ModelError(
                f"the tokenizer of {name} has no chat template; Brickwork prompts every base model "
                "through its own template (add chat_template.jinja or `chat_template` in tokenizer_config.json)"
            )
        render = _template_renderer(tok, name)
        return PromptFormat(name=f"chat template of {name}", stop=_end_of_turn(tok, name), _render=render)


CHATML = PromptFormat(name="chatml", stop=CHATML_STOP, _render=lambda text, system: chatml(text, system=system))

_formats: dict[Path, PromptFormat] = {}
_lock = threading.Lock()


def _from_dir(path: Path) -> PromptFormat:
    with _lock:
        if path not in _formats:
            from transformers import AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(str(path))
            except (OSError, ValueError) as exc:
                raise ModelError(f"cannot load the tokenizer of {path}: {exc}") from exc
            _formats[path] = PromptFormat.from_tokenizer(tok, name=str(path))
        return _formats[path]


def _template_renderer(tok: Any, name: str) -> Callable[[str, str], str]:
    def apply(messages: list[dict[str, str]]) -> str:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    from jinja2 import TemplateError

    refused = (TemplateError, ValueError, TypeError, KeyError, IndexError)
    try:
        apply([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "x"}])
        with_system = True
    except refused as exc:  # jinja's raise_exception: templates that refuse a system role
        try:
            apply([{"role": "user", "content": "x"}])
        except refused as exc2:
            raise ModelError(f"the chat template of {name} cannot render a user message: {exc2}") from exc
        with_system = False

    def render(text: str, system: str) -> str:
        if with_system:
            return apply([{"role": "system", "content": system}, {"role": "user", "content": text}])
        return apply([{"role": "user", "content": f"{system}\n{text}" if system else text}])

    return render


def _end_of_turn(tok: Any, name: str) -> str:
    """The special token the template puts right after an assistant reply (else the eos token)."""
    from jinja2 import TemplateError

    try:
        full = tok.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": _MARK}], tokenize=False
        )
    except (TemplateError, ValueError, TypeError, KeyError, IndexError):  # cannot close a turn: use eos
        full = ""
    after = full.split(_MARK, 1)[1] if _MARK in full else ""
    specials = sorted({str(t) for t in (*tok.all_special_tokens, *tok.get_added_vocab())}, key=len, reverse=True)
    for s in specials:
        if s and after.startswith(s):
            return s
    if tok.eos_token:
        return str(tok.eos_token)
    raise ModelError(f"cannot tell the end-of-turn token of {name}: its template ends a reply with {after[:20]!r} and it has no eos token")


__all__ = ["CHATML", "CHATML_STOP", "SYSTEM_PROMPT", "PromptFormat", "chatml"]
