"""The one owner of "render a prompt for this base model": its own chat template and end of turn.

Every prompt Brickwork sends (training, evaluation, steps, the planner, update gates) is one
system message and one user message rendered by the base model's chat template with
``add_generation_prompt``; the training target ends with the template's end-of-turn token, which
is also the stop string. Whole conversations (the server's chats, lm-eval's few-shot chats) go
through the same template with `render_chat`. `PromptFormat.for_base` reads the format from the
base model's tokenizer (``tokenizer.apply_chat_template``), so any local Hugging Face model with a
chat template works.

SmolLM2's template, given a system message, renders exactly ChatML; `CHATML` is that format
written out, used for the default base without loading a tokenizer (tests check the two are
byte-identical: the starter bricks were trained on these bytes).

Example::

    fmt = PromptFormat.for_base(store.base)
    Request(prompt=fmt.render("Plural of 'mouse'?"), sampling=SamplingParams(stop=(fmt.stop,)))
    fmt.render_chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, ...])
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brickwork.errors import ModelError

if TYPE_CHECKING:
    from brickwork.models import BaseModel

SYSTEM_PROMPT = "Answer briefly."
CHATML_STOP = "<|im_end|>"
_MARK = "\x00brickwork-reply\x00"

Messages = list[dict[str, Any]]
ChatRenderer = Callable[[Messages, bool, bool], str]  # (messages, add_generation_prompt, continue_final_message)


def chatml(text: str, *, system: str = SYSTEM_PROMPT) -> str:
    """SmolLM2's ChatML prompt for one user message (what its chat template renders)."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{text.strip()}<|im_end|>\n<|im_start|>assistant\n"


def _chatml_chat(messages: Messages, add_generation_prompt: bool, continue_final_message: bool) -> str:
    """What SmolLM2's template writes for a conversation that starts with a system message."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}{CHATML_STOP}\n" for m in messages)
    if continue_final_message:
        return text[: -len(CHATML_STOP) - 1]
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


@dataclass(frozen=True, kw_only=True)
class PromptFormat:
    """How one base model is prompted: `render` one user message, `stop` ends its reply.

    `name` says where the format came from (``chatml`` or the model directory's chat template).
    """

    name: str
    stop: str
    _render: Callable[[str, str], str] = field(repr=False, compare=False)
    _render_chat: ChatRenderer = field(repr=False, compare=False)

    def render(self, text: str, *, system: str = SYSTEM_PROMPT) -> str:
        """The prompt for one user message (stripped), ready for generation."""
        return self._render(text.strip(), system)

    def render_chat(
        self,
        messages: Messages,
        *,
        system: str = SYSTEM_PROMPT,
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
    ) -> str:
        """A conversation (``{"role", "content"}`` dicts, contents as given) as the base's chat
        template writes it, `system` first when it opens with no system message (a template that
        refuses a system role gets it folded into the first user message, as `render` does).
        `continue_final_message` leaves a final assistant message open for the model to continue."""
        msgs = [dict(m) for m in messages]
        if not msgs or msgs[0].get("role") != "system":
            msgs.insert(0, {"role": "system", "content": system})
        if continue_final_message and msgs[-1].get("role") != "assistant":
            raise ValueError("`continue_final_message` needs the conversation to end with an assistant message")
        return self._render_chat(msgs, add_generation_prompt and not continue_final_message, continue_final_message)

    def user_message(self, prompt: str) -> str | None:
        """The last user message of a prompt this format rendered (`render`, `render_chat`), or
        None when it holds none. The user turn's opening and closing text are read off this
        format's own rendering of a probe conversation, so any chat template is understood (one
        without a system role gives the message with the system text folded in, as rendered)."""
        marks = self._user_marks
        if marks is None:
            return None
        head, end = marks
        i = prompt.rfind(head)
        if i < 0:
            return None
        start = i + len(head)
        j = prompt.find(end, start) if end else -1
        return (prompt[start:] if j < 0 else prompt[start:j]).strip()

    @cached_property
    def _user_marks(self) -> tuple[str, str] | None:
        """(what opens a user turn, what closes it), from a probe rendered with and without the
        generation prompt; None when the template cannot render the probe."""
        u1, a1, u2 = "BWPROBEUSERONE", "BWPROBEREPLY", "BWPROBEUSERTWO"
        msgs = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": u1},
                {"role": "assistant", "content": a1}, {"role": "user", "content": u2}]
        from jinja2 import TemplateError

        try:
            text = self._render_chat(msgs, False, False)
        except (TemplateError, ValueError, TypeError, KeyError, IndexError):
            return None
        if not (0 <= text.find(u1) < text.find(a1) < text.find(u2)):
            return None
        after_user = text[text.find(u1) + len(u1) : text.find(a1)]  # user end + assistant opening
        end = os.path.commonprefix([after_user, text[text.find(u2) + len(u2) :]]).rstrip()
        head = text[text.find(a1) + len(a1) : text.find(u2)].lstrip()  # assistant end + user opening
        for close in (self.stop, end):  # what ends the reply (often what ends a user turn too)
            if close and head.startswith(close):
                head = head[len(close) :].lstrip()
        return (head, end) if head.strip() else None

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
        render, render_chat = _template_renderer(tok, name)
        return PromptFormat(name=f"chat template of {name}", stop=_end_of_turn(tok, name), _render=render, _render_chat=render_chat)


CHATML = PromptFormat(
    name="chatml", stop=CHATML_STOP, _render=lambda text, system: chatml(text, system=system), _render_chat=_chatml_chat
)

_formats: dict[Path, PromptFormat] = {}
_lock = threading.Lock()


# What a server's `/tokenizer_info` and lm-eval's `chat_template` report for the default base
# (lm-eval records it with the results and keys its request cache on it): `CHATML.render_chat`
# as jinja. Other bases report their tokenizer's own template.
CHATML_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def template_source(prompts: PromptFormat, tokenizer: Any) -> str:
    """The chat template `prompts.render_chat` applies, as jinja source."""
    if prompts == CHATML:
        return CHATML_TEMPLATE
    return str(getattr(tokenizer, "chat_template", None) or prompts.name)


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


def _template_renderer(tok: Any, name: str) -> tuple[Callable[[str, str], str], ChatRenderer]:
    def apply(messages: Messages, add_generation_prompt: bool = True, continue_final_message: bool = False) -> str:
        if continue_final_message:
            return tok.apply_chat_template(messages, tokenize=False, continue_final_message=True)
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

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

    def render_chat(messages: Messages, add_generation_prompt: bool, continue_final_message: bool) -> str:
        if not with_system:
            messages = _fold_system(messages)
        return apply(messages, add_generation_prompt, continue_final_message)

    return render, render_chat


def _fold_system(messages: Messages) -> Messages:
    """System messages folded into the next user message (for templates without a system role)."""
    out: Messages = []
    pending: list[str] = []
    for m in messages:
        if m.get("role") == "system":
            pending.append(str(m.get("content") or ""))
            continue
        if pending and m.get("role") == "user":
            m = {**m, "content": "\n".join([*(p for p in pending if p), str(m.get("content") or "")])}
            pending = []
        out.append(m)
    if pending:  # no user message after them
        out.insert(0, {"role": "user", "content": "\n".join(p for p in pending if p)})
    return out


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
