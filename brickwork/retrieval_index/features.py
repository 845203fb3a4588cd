"""The vector space of an index: a semantic embedding joined with hashed surface-form features.

A sentence embedding captures topic ("a question about a country") but not the *form* that
tells bare task inputs apart: ``rgb(12, 40, 9)``, ``1995-01-08``, ``What is 26 minus 10?``, an
SMS in txt-speak, a list of lowercase words. So every text becomes

    v = [ sqrt(1 - w) * embed(text) ,  sqrt(w) * lexical(text) ]

where ``lexical`` is a signed hashing of character n-grams, words and a character-shape sketch,
L2-normalised. Both halves are unit vectors, so ``v·u = (1 - w) cos_sem + w cos_lex`` and the
whole vector stays unit length: FAISS inner product is still cosine. ``w`` (``lexical_weight``)
was chosen on the calibration half of the routing eval (docs/retrieval.md); 0 gives the plain
embedding.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from brickwork.errors import ConfigError

_WORD = re.compile(r"\S+")
_LOWER = re.compile(r"[a-z]")
_UPPER = re.compile(r"[A-Z]")
_DIGIT = re.compile(r"[0-9]")
_REPEAT = re.compile(r"(.)\1+")


@dataclass(frozen=True, kw_only=True)
class FeatureConfig:
    """How texts become index vectors (recorded in the index; a mismatch forces a rebuild)."""

    lexical_weight: float = 0.5
    lexical_dim: int = 512
    #: beta of the brick classifier blended into each brick's score (classifier.py); 0: off
    classifier_weight: float = 0.8
    #: the classifier also learns a "none" class from shipped out-of-scope requests (classifier.py)
    none_class: bool = True
    #: with the none class: every brick's score drops by this times the excess of the nearest none
    #: text's cosine over the nearest brick row's, beyond `none_neighbour_margin` (classifier.py); 0: off
    none_neighbour_weight: float = 2.0
    none_neighbour_margin: float = 0.05
    #: the form penalty (form.py): a request longer than `form_slack` times a brick's longest text,
    #: or with more lines, loses `form_weight` x the log of the excess from that brick's score; 0: off
    form_weight: float = 0.8
    form_slack: float = 1.5

    #: a brick whose manifest has ``bare_inputs: false`` is passed over unless the request's
    #: semantic cosine to its description is at least this (search.py, "asked for")
    ask_min_cos: float = 0.35

    def __post_init__(self) -> None:
        if not 0.0 <= self.lexical_weight < 1.0:
            raise ConfigError(f"`lexical_weight` should be in [0, 1), got {self.lexical_weight!r}.")
        if self.lexical_dim < 16:
            raise ConfigError(f"`lexical_dim` should be at least 16, got {self.lexical_dim!r}.")
        if not 0.0 <= self.classifier_weight <= 10.0:
            raise ConfigError(f"`classifier_weight` should be in [0, 10], got {self.classifier_weight!r}.")
        if not isinstance(self.none_class, bool):
            raise ConfigError(f"`none_class` should be true or false, got {self.none_class!r}.")
        if not 0.0 <= self.none_neighbour_weight <= 10.0:
            raise ConfigError(f"`none_neighbour_weight` should be in [0, 10], got {self.none_neighbour_weight!r}.")
        if not -1.0 <= self.none_neighbour_margin <= 1.0:
            raise ConfigError(f"`none_neighbour_margin` should be in [-1, 1], got {self.none_neighbour_margin!r}.")
        if not 0.0 <= self.form_weight <= 10.0:
            raise ConfigError(f"`form_weight` should be in [0, 10], got {self.form_weight!r}.")
        if not self.form_slack >= 1.0:
            raise ConfigError(f"`form_slack` should be at least 1, got {self.form_slack!r}.")
        if not -1.0 <= self.ask_min_cos <= 1.0:
            raise ConfigError(f"`ask_min_cos` should be in [-1, 1], got {self.ask_min_cos!r}.")

    def dim(self, embed_dim: int) -> int:
        return embed_dim + (self.lexical_dim if self.lexical_weight > 0 else 0)

    def semantic_part(self, dim: int) -> tuple[int, float]:
        """Where the semantic embedding sits in a `dim`-wide index vector: its width and the factor
        its dot products carry (``1 - lexical_weight``; see `combine`)."""
        if self.lexical_weight == 0:
            return dim, 1.0
        return dim - self.lexical_dim, 1.0 - self.lexical_weight

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FeatureConfig:
        # a missing key is an index from before that feature: incomplete, so it gets rebuilt
        return cls(
            lexical_weight=float(d["lexical_weight"]),
            lexical_dim=int(d["lexical_dim"]),
            classifier_weight=float(d["classifier_weight"]),
            none_class=bool(d["none_class"]),
            none_neighbour_weight=float(d["none_neighbour_weight"]),
            none_neighbour_margin=float(d["none_neighbour_margin"]),
            form_weight=float(d["form_weight"]),
            form_slack=float(d["form_slack"]),
            ask_min_cos=float(d["ask_min_cos"]),
        )


def _grams(text: str) -> list[str]:
    out: list[str] = []
    words = _WORD.findall(text)
    for w in words:
        s = f"<{w}>"
        for n in (1, 2, 3, 4):
            out.extend(s[i : i + n] for i in range(len(s) - n + 1))
        out.append("W:" + w.lower())
    shape = _REPEAT.sub(r"\1\1", _UPPER.sub("A", _LOWER.sub("a", _DIGIT.sub("9", text))))
    out.extend("S:" + shape[i : i + 3] for i in range(len(shape) - 2))
    out.append(f"L:{min(len(words), 30)}")
    return out


def lexical(texts: Sequence[str], dim: int) -> np.ndarray:
    """Signed feature hashing with square-root term frequencies; rows of unit length."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for r, text in enumerate(texts):
        row = out[r]
        for g in _grams(text):
            h = zlib.crc32(g.encode("utf-8"))
            row[h % dim] += 1.0 if (h >> 31) & 1 else -1.0
    out = np.sign(out) * np.sqrt(np.abs(out))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (out / norms).astype(np.float32)


def combine(semantic: np.ndarray, texts: Sequence[str], cfg: FeatureConfig) -> np.ndarray:
    """Index vectors for `texts` given their (unit) semantic embeddings."""
    semantic = np.asarray(semantic, dtype=np.float32)
    if cfg.lexical_weight == 0:
        return np.ascontiguousarray(semantic)
    w = cfg.lexical_weight
    lex = lexical(texts, cfg.lexical_dim)
    return np.ascontiguousarray(np.hstack([np.sqrt(1 - w) * semantic, np.sqrt(w) * lex]).astype(np.float32))
