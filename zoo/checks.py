"""Argument checks shared by models, inference methods and metrics.

Bad input is refused before any work starts, with an error that names the argument, says what
was wrong and what is expected: ``TypeError`` for a value of the wrong kind, ``ValueError`` for
one out of range. This module imports nothing from zoo, so every room may use it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_positive_int", "check_positive_float"]


def check_positive_int(value: Any, argument: str, minimum: int = 1) -> None:
    """Raise TypeError / ValueError unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{argument} must be at least {minimum}, got {value}")


def check_positive_float(value: Any, argument: str, allow_zero: bool = False) -> float:
    """Raise TypeError / ValueError unless ``value`` is a finite number > 0 (or >= 0); return it
    as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{argument} must be finite, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        expected = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{argument} must be {expected}, got {value}")
    return value
