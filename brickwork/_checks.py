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
