"""Option checks shared by the config dataclasses: each raises `ConfigError` naming the option."""

from __future__ import annotations

import math

from brickwork.errors import ConfigError


def positive_int(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"`{name}` should be a positive integer, got {value!r}.")


def non_negative_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"`{name}` should be a non-negative integer, got {value!r}.")


def positive_float(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"`{name}` should be a positive number, got {value!r}.")


def fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"`{name}` should be in [0, 1], got {value!r}.")


def optional_positive_int(name: str, value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(f"`{name}` should be a positive integer or None, got {value!r}.")


class StepBudget:
    """Mixed into a training recipe's config: `steps`, or `epochs` over the pairs clamped to
    [`min_steps`, `max_steps`]. The fields are the config's own (dataclass fields)."""

    steps: int | None
    epochs: float
    min_steps: int
    max_steps: int
    batch_size: int

    def check_steps(self) -> None:
        for name in ("min_steps", "max_steps", "batch_size"):
            positive_int(name, getattr(self, name))
        optional_positive_int("steps", self.steps)
        if self.max_steps < self.min_steps:
            raise ConfigError(f"`max_steps` ({self.max_steps}) should be >= `min_steps` ({self.min_steps}).")

    def steps_for(self, n_pairs: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(self.min_steps, min(self.max_steps, math.ceil(self.epochs * n_pairs / self.batch_size)))
