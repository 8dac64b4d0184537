"""Evaluating a function of parameter draws a chunk of draws at a time, to bound its temporaries.

A fast exact path scores every datum under every component and draw at once: its largest
temporary has (S, *data, K, ...) elements. With many draws (a fit's thousand posterior draws)
that can exceed memory, so the draws are split along their leading dim into chunks whose
temporaries stay under a limit, and the results are joined again.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["CHUNK_ELEMENTS", "over_draw_chunks"]

#: Elements of the largest temporary one chunk may build (2**23 float32 values: 32 MiB).
CHUNK_ELEMENTS = 2**23


def over_draw_chunks(
    function: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    draws: dict[str, torch.Tensor],
    elements_per_draw: int,
    limit: int = CHUNK_ELEMENTS,
) -> torch.Tensor:
    """``function(draws)``, computed on chunks of the draws and concatenated along dim 0.

    Parameters
    ----------
    function : callable
        Maps draws (each (S', ...)) to a tensor (S', ...) whose rows are the draws' own.
    draws : dict of str to Tensor
        Each (S, ...), one leading draw dim.
    elements_per_draw : int
        Elements of the largest temporary ``function`` builds per draw.
    limit : int
        Elements of that temporary per chunk, at most (at least one draw per chunk).

    Returns
    -------
    Tensor, shape (S, ...)
        What ``function`` returns for all draws at once (the same numbers: each row depends
        only on its own draw).
    """
    total = int(next(iter(draws.values())).shape[0])
    step = max(1, limit // max(elements_per_draw, 1))
    if step >= total:
        return function(draws)
    chunks = [{name: value[start : start + step] for name, value in draws.items()} for start in range(0, total, step)]
    return torch.cat([function(chunk) for chunk in chunks])
