"""Fakes shared by the orchestrator's tests: a keyword retriever, scripted brick answers, a store."""

from __future__ import annotations

from brickwork.orchestrator.types import BrickChoice
from brickwork.serving.fake import user_message


class KeywordRetriever:
    """Routes by keyword, like a tiny index: 'spell' -> spell_word, 'plural' -> english_plural, ..."""

    RULES = {"spell": "spell_word", "plural": "english_plural", "capital": "country_capital"}

    def __init__(self) -> None:
        self.queries: list[str] = []

    def route(self, queries, inputs=None):
        self.queries += list(queries)
        out = []
        for q in queries:
            hit = next((b for k, b in self.RULES.items() if k in q.lower()), None)
            out.append([BrickChoice(name=hit, version=1, weight=1.0, score=0.9)] if hit else [])
        return out


def brick_answer(req):
    """What the fake 'bricks' answer: a plural, a spelling, a capital; None = FakeEngine's echo."""
    text = user_message(req.prompt)
    last = text.splitlines()[-1].strip(" '\"")
    names = [b.name for b in req.bricks]
    if "english_plural" in names:
        return {"mouse": "mice", "wolf": "wolves"}.get(last, last + "s")
    if "spell_word" in names:
        word = last.split()[-1] if " " in last else last
        return " ".join(word)
    if "country_capital" in names:
        return "Lima" if "Peru" in text else "?"
    return None


class FakeStore:
    """Enough of a BrickStore for the graph: active versions and descriptions."""

    DESCRIPTIONS = {
        "english_plural": "Give the plural form of the given English noun.",
        "spell_word": "Write the given word with a space between each of its letters.",
        "country_capital": "Give the capital city of the given country.",
    }

    def __init__(self, root):
        self.root = root
        self.base = type("B", (), {"fingerprint": "sha256:fake"})()

    def names(self):
        return sorted(self.DESCRIPTIONS)

    def active_version(self, name):
        from brickwork.errors import BrickNotFound

        if name not in self.DESCRIPTIONS:
            raise BrickNotFound(f"no brick named {name!r}")
        return 1

    def get(self, name, version=None):
        from types import SimpleNamespace

        return SimpleNamespace(manifest=SimpleNamespace(description=self.DESCRIPTIONS[name]), version=1, name=name)
