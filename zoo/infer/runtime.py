"""What every inference method shares: isolation from global state, seeding, threads, progress.

Pyro keeps parameters in one global store, so two guides of the same model fitted in one notebook
silently share parameters (both autoguides name theirs "AutoNormal.locs...", say). zoo runs every
fit and every evaluation inside :func:`isolated`: parameters (an autoguide's, or those a
hand-written guide registers with ``pyro.param``) go to a private store that the `Fit` keeps, and
the global random number generator is forked, so a user's own ``pyro.param`` entries and random
state are untouched and two fits in one process give what each gives alone.

A fit that cannot go on raises ``zoo.FitError``, which holds the partial Fit and so lives with
it, in :mod:`zoo.results`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import pyro
import torch
from tqdm import tqdm  # the terminal bar: zoo shows bars only on a terminal

__all__ = ["isolated", "threads", "progress_bar"]


@contextlib.contextmanager
def isolated(param_state: dict[str, Any] | None = None, seed: int | None = None) -> Iterator[dict[str, Any]]:
    """Run Pyro code with a private parameter store and, if ``seed`` is given, a private RNG.

    Parameters
    ----------
    param_state : dict, optional
        A parameter-store state from an earlier call, to continue with; a fresh store otherwise.
    seed : int, optional
        Seed for torch's global generator inside the block; the caller's generator state is
        restored afterwards.

    Yields
    ------
    dict
        The private store's state; it is filled in when the block exits.
    """
    store = pyro.get_param_store()
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng, store.scope(param_state) as state:
        if seed is not None:
            torch.manual_seed(int(seed))
        yield state


@contextlib.contextmanager
def threads(num_threads: int | None) -> Iterator[None]:
    """Run torch on ``num_threads`` intra-op threads inside the block (None: leave as is).

    Samplers make many small tensor operations one after the other; on them several threads
    only add start-up and contention costs (measured: 10x slower NUTS with 2 threads than with
    1 on a busy 2-core machine).
    """
    if num_threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def progress_bar(total: int, description: str, enabled: bool) -> tqdm:
    """A tqdm bar, silent unless ``enabled`` and standard error is a terminal."""
    interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=total, desc=description, disable=not (enabled and interactive), leave=False)
