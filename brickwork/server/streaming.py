"""Server-sent events and safe text deltas.

The engine reports the *cumulative raw* text of a reply as it decodes (`Request.on_text`); the
final `Completion.text` is that text cut at the first stop string and stripped of surrounding
whitespace. `SafeDeltas` only emits what can no longer change: it holds back leading and trailing
whitespace, any tail that could be the start of a stop string, and a trailing replacement
character (half a multi-byte character). So the concatenated deltas always equal the final text
(`finish` sends the rest, from the completion itself).
"""

from __future__ import annotations

import json
from typing import Any


class SafeDeltas:
    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.sent = ""
        self.closed = False

    def _safe(self, raw: str) -> str:
        text = raw.lstrip()
        cut = len(text)
        for s in self.stops:
            i = text.find(s)
            if i >= 0:
                cut = min(cut, i)
                self.closed = True  # nothing after a stop string counts
            for k in range(min(len(s) - 1, len(text)), 0, -1):  # a tail that may grow into s
                if text.endswith(s[:k]):
                    cut = min(cut, len(text) - k)
                    break
        text = text[:cut].rstrip()
        while text.endswith("\ufffd"):
            text = text[:-1]
        return text

    def update(self, raw: str) -> str:
        """The new safe delta for cumulative raw text `raw` ('' when nothing is safe yet)."""
        if self.closed:
            return ""
        safe = self._safe(raw)
        if len(safe) <= len(self.sent) or not safe.startswith(self.sent):
            return ""
        delta, self.sent = safe[len(self.sent) :], safe
        return delta

    def finish(self, final: str) -> str:
        """What is left to send once the completion's text is known."""
        self.closed = True
        if final.startswith(self.sent):
            delta, self.sent = final[len(self.sent) :], final
            return delta
        # cannot happen with the engine's documented behaviour; stay truthful to the final text
        delta, self.sent = final, final
        return delta


def sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n"


DONE = sse("[DONE]")
