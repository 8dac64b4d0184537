"""Whether the operations now running are being recorded for replay.

A recording (``torch.jit.trace``, or the joint value-and-gradient graph that
:func:`zoo.infer.potential.compiled` records with ``make_fx``) keeps the branch Python took at
the point it was recorded at, for every later point. A function that branches on a tensor's
value (a numerical fallback) must take its value-free path while it is recorded:
:func:`is_recording` says when.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

__all__ = ["is_recording", "recording"]

_RECORDING: ContextVar[bool] = ContextVar("zoo_recording", default=False)


def is_recording() -> bool:
    """True under ``torch.jit.trace`` or inside :func:`recording`."""
    return _RECORDING.get() or torch.jit.is_tracing()


@contextmanager
def recording() -> Iterator[None]:
    """Mark the operations run inside as recorded for replay (see :func:`is_recording`)."""
    token = _RECORDING.set(True)
    try:
        yield
    finally:
        _RECORDING.reset(token)
