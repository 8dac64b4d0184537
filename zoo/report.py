"""Tables that compare fits: shared by the notebooks and the ``zoo tour`` command.

Kept apart from :mod:`zoo.plots` (figures) because a command-line report needs the table without
importing matplotlib, and apart from :mod:`zoo.diagnostics` because it needs no ArviZ: every
number comes from the ``Fit`` itself (its method, timing, losses and diagnostics) and from
``fit.log_prob`` on held-out data.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from zoo.results import Fit

__all__ = ["comparison_table", "COLUMNS"]

#: The columns of :func:`comparison_table`, in order.
COLUMNS: tuple[str, ...] = (
    "method",
    "wall_time_s",
    "final_loss",
    "test_log_lik",
    "max_rhat",
    "divergences",
)


def comparison_table(fits: dict[str, "Fit"], test: Any) -> pd.DataFrame:
    """One row per fit: how long it took and how well it predicts held-out data.

    Parameters
    ----------
    fits : dict of str to zoo.Fit
        Label -> fit; the labels become the table's index.
    test : Dataset, tensor or array
        Held-out data, scored with ``fit.log_prob(test).mean()``.

    Returns
    -------
    pandas.DataFrame
        Indexed by label, with columns

        ``method``
            ``fit.method_name`` ("svi:delta", "nuts", ...).
        ``wall_time_s``
            Seconds spent fitting.
        ``final_loss``
            Last loss per datum (negative ELBO / N) of an SVI fit; NaN for MCMC.
        ``test_log_lik``
            Mean held-out log predictive density per datum (higher is better); NaN for a model
            with no density (e.g. a GAN).
        ``max_rhat``
            Worst R-hat over all scalars (MCMC only; NaN otherwise).
        ``divergences``
            Divergent transitions (NUTS only; missing otherwise).
    """
    rows = []
    for label, fit in fits.items():
        losses = fit.losses.reshape(-1)
        test_log_lik = float("nan")
        if fit.model.capability("log_prob"):
            test_log_lik = float(fit.log_prob(test).mean())
        divergences = fit.diagnostics.get("num_divergences")
        rows.append(
            {
                "method": fit.method_name,
                "wall_time_s": float(fit.wall_time),
                "final_loss": float(losses[-1]) if losses.numel() else math.nan,
                "test_log_lik": test_log_lik,
                "max_rhat": float(fit.diagnostics.get("max_rhat", math.nan)),
                "divergences": pd.NA if divergences is None else int(divergences),
            }
        )
    table = pd.DataFrame(rows, index=pd.Index(list(fits), name="fit"), columns=list(COLUMNS))
    return table.astype({"divergences": "Int64"})
