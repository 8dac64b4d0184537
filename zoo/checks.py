"""Argument checks shared by models, inference methods, results and metrics.

Bad input is refused before any work starts, with an error that names the argument, says what
was wrong and what is expected: ``TypeError`` for a value of the wrong kind, ``ValueError`` for
one out of range. This module imports nothing from zoo, so every room may use it.

Checks that accept a value in more than one form (a numpy integer for a seed, an int for a
float) return it in the one form zoo keeps (a Python ``int`` or ``float``): a frozen method
configuration stores what they return, so that it compares, prints and saves (JSON) the same
whatever form the caller used.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "check_positive_int",
    "check_positive_float",
    "check_seed",
    "derived_seed",
    "check_probability",
    "check_flag",
    "check_choice",
    "check_device",
    "check_output_file",
    "check_output_directory",
    "check_count",
    "check_options",
    "check_memory",
    "check_integer_levels",
    "MAX_SEED",
    "MAX_BYTES",
]

#: The largest seed: torch's generators take seeds in [0, 2**64 - 1], numpy's and Python's any
#: non-negative integer; 2**63 - 1 is also the largest an int64 tensor (and a JSON reader in
#: other languages) holds.
MAX_SEED = 2**63 - 1


def _is_integer(value: Any) -> bool:
    """An integer of Python or numpy (``numbers.Integral``), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(value: Any, argument: str, minimum: int = 1) -> None:
    """Raise TypeError / ValueError unless ``value`` is an integer (Python or numpy) >= ``minimum``."""
    check_count(value, argument, minimum)


def check_count(value: Any, argument: str, minimum: int = 1) -> int:
    """Return ``value`` as a Python int if it is an integer (Python or numpy, not a bool) >=
    ``minimum``; raise TypeError / ValueError otherwise."""
    if not _is_integer(value):
        raise TypeError(f"{argument} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{argument} must be at least {minimum}, got {value}")
    return value


def check_positive_float(value: Any, argument: str, allow_zero: bool = False) -> float:
    """Raise TypeError / ValueError unless ``value`` is a finite number > 0 (or >= 0); return it
    as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{argument} must be finite, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        expected = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{argument} must be {expected}, got {value}")
    return value


def check_seed(value: Any, argument: str = "seed") -> int:
    """Return ``value`` as a Python int if it is a seed: an integer (Python or numpy) in
    [0, 2**63 - 1]; raise TypeError / ValueError otherwise."""
    if not _is_integer(value):
        raise TypeError(f"{argument} must be an integer in [0, 2**63 - 1], got {type(value).__name__} {value!r}")
    value = int(value)
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"{argument} must be in [0, 2**63 - 1], got {value}")
    return value


def derived_seed(seed: int, offset: int) -> int:
    """The seed of a part of a run (a chain, a start, a process): ``seed + offset``, wrapped into
    [0, 2**63 - 1] so that every seed a user may give has parts with valid seeds too."""
    return (int(seed) + int(offset)) % (MAX_SEED + 1)


def check_probability(value: Any, argument: str) -> float:
    """Return ``value`` as a float if it is a probability strictly between 0 and 1; raise
    TypeError / ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a number in (0, 1), got {type(value).__name__} {value!r}")
    value = float(value)
    if not 0.0 < value < 1.0:  # NaN fails this too
        raise ValueError(f"{argument} must be in (0, 1), got {value}")
    return value


def check_flag(value: Any, argument: str, allow_none: bool = False) -> None:
    """Raise TypeError unless ``value`` is True or False (or None, if ``allow_none``)."""
    if isinstance(value, bool) or (allow_none and value is None):
        return
    expected = "True, False or None" if allow_none else "True or False"
    raise TypeError(f"{argument} must be {expected}, got {value!r}")


def check_choice(value: Any, argument: str, choices: Collection[Any]) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{argument} must be one of {tuple(choices)}, got {value!r}")


def check_device(value: Any, argument: str = "device") -> None:
    """Raise ValueError unless ``value`` names a torch device ("cpu", "cuda", "cuda:1").

    Only the name is checked; whether such a device is present is a question for the moment a
    fit starts (a configuration may be written on one machine and run on another).
    """
    try:
        torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{argument} must name a torch device ('cpu', 'cuda'), got {value!r}") from None


#: The most bytes one result may take before zoo refuses to allocate it (16 GiB, or the
#: ``ZOO_MAX_BYTES`` environment variable): beyond it an allocation fails late, or pushes the
#: machine into swap, after the work before it is lost.
MAX_BYTES = int(os.environ.get("ZOO_MAX_BYTES", 16 * 2**30))


def check_memory(num_bytes: int, what: str, argument: str) -> None:
    """Raise ValueError, with the estimate, if ``num_bytes`` (the estimated size of ``what``,
    set by ``argument``) exceeds :data:`MAX_BYTES`."""
    if num_bytes > MAX_BYTES:
        raise ValueError(
            f"{argument}: {what} would take about {num_bytes / 2**30:,.1f} GiB, more than the "
            f"{MAX_BYTES / 2**30:,.0f} GiB zoo allocates at once (ZOO_MAX_BYTES); ask for fewer"
        )


def check_integer_levels(
    values: torch.Tensor, num_levels: int, argument: str, taker: str, hint: str, unit: str = "levels"
) -> None:
    """Raise ValueError unless every entry of ``values`` (any shape) is an integer in
    0..num_levels-1: discrete data of K = ``num_levels`` levels (grey levels, categories).

    The message names ``argument`` ("data.x") and its first value outside, and says that
    ``taker`` ("a Diffusion model with num_levels=17") takes integer ``unit`` ("levels",
    "pixels") 0..K-1, then ``hint`` (what to do instead) in parentheses.
    """
    outside = (values != values.round()) | (values < 0) | (values > num_levels - 1)
    if bool(outside.any()):
        raise ValueError(
            f"{argument} holds {float(values[outside][0]):g}: {taker} takes integer {unit} 0..{num_levels - 1} ({hint})"
        )


def check_options(options: dict[str, Any], valid: Iterable[str], where: str) -> None:
    """Raise TypeError if ``options`` holds a keyword not in ``valid``, listing the valid ones."""
    valid = tuple(valid)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        raise TypeError(f"{where} got unknown keyword argument(s) {', '.join(map(repr, unknown))}; it takes: {listed}")


def check_output_file(path: Any, argument: str = "path") -> Path:
    """Return ``path`` as a Path if a file can be written there: not a directory, its folder an
    existing, writable directory (and the file, if present, writable); raise TypeError /
    ValueError saying which of these fails."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a path (str or pathlib.Path), got {type(path).__name__} {path!r}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{argument} {str(path)!r} is a directory; give a file name")
    folder = path.parent
    if not folder.exists():
        raise ValueError(f"{argument} {str(path)!r}: its folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{argument} {str(path)!r}: {str(folder)!r} is a file, not a folder")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{argument} {str(path)!r} cannot be written (permission denied)")
    return path


def check_output_directory(path: Any, argument: str = "out") -> Path:
    """Return ``path`` as a Path if a directory can be written there (existing, or creatable
    under its nearest existing folder); raise TypeError / ValueError saying why not."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a path (str or pathlib.Path), got {type(path).__name__} {path!r}")
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {str(existing)!r}, which is a file"
        raise ValueError(f"{argument} {str(path)!r} {where}; give a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{argument} {str(path)!r} cannot be written (permission denied on {str(existing)!r})")
    return path
