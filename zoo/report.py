"""Tables that compare fits: shared by the notebooks and the ``zoo tour`` command.

Kept apart from :mod:`zoo.plots` (figures) because a command-line report needs the table without
importing matplotlib, and apart from :mod:`zoo.diagnostics` because it needs no ArviZ: every
number comes from the ``Fit`` itself (its method, timing, losses and diagnostics) and from
``fit.log_prob`` on held-out data.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import torch

from zoo.datasets.dataset import as_dataset
from zoo.results import Fit

__all__ = ["comparison_table", "final_loss", "fit_flags", "COLUMNS"]

#: The columns of :func:`comparison_table`, in order.
COLUMNS: tuple[str, ...] = (
    "method",
    "wall_time_s",
    "final_loss",
    "test_log_lik",
    "max_rhat",
    "divergences",
    "flags",
)


def final_loss(losses: torch.Tensor) -> float:
    """The mean of the last ``max(1, min(50, len(losses) // 10))`` losses; NaN if there are none.

    A window rather than the last value: a stochastic ELBO estimate has Monte Carlo noise
    (about 0.005 per datum for a Gaussian mixture on Old Faithful), enough to misrank two
    fits that have both converged. For a short deterministic run (L-BFGS, tens of steps) the
    window is the last step alone.
    """
    losses = losses.detach().reshape(-1)
    if losses.numel() == 0:
        return math.nan
    window = max(1, min(50, losses.numel() // 10))
    return float(losses[-window:].double().mean())


def fit_flags(fit: Fit) -> list[str]:
    """What ``fit`` cannot vouch for, one phrase each; empty when nothing: chains that did not
    mix (R-hat, ESS, divergences), SVI whose loss still trends or that stopped early
    (:meth:`zoo.Fit.convergence_problem`)."""
    problem = fit.convergence_problem()
    return [problem] if problem else []


def comparison_table(fits: dict[str, Fit], test: Any) -> pd.DataFrame:
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
            Loss per datum (negative ELBO / N) at the end of an SVI fit: the mean over its last
            ``min(50, num_steps // 10)`` steps (at least one), since single stochastic ELBO
            estimates are noisy; NaN for MCMC.
        ``test_log_lik``
            Mean held-out log predictive density per datum (higher is better); NaN for a model
            with no density (e.g. a GAN).
        ``max_rhat``
            Worst R-hat over all scalars (MCMC only; NaN otherwise).
        ``divergences``
            Divergent transitions (NUTS only; missing otherwise).
        ``flags``
            What the fit cannot vouch for, empty when nothing (:func:`fit_flags`): for NUTS,
            chains that did not mix (R-hat above 1.01, ESS below 100 per chain, divergences);
            for SVI, a loss that still trends at the end, or a run stopped early.
        ``test_log_lik_per_step``
            Only when ``test`` holds sequences (a Dataset with lengths): the held-out log
            predictive density summed over sequences and divided by the number of time steps,
            comparable across data sets whose sequences differ in length.
    """
    test = as_dataset(test)
    sequences = test.lengths is not None
    rows = []
    for label, fit in fits.items():
        losses = fit.losses.reshape(-1)
        test_log_lik = per_step = float("nan")
        if fit.model.capability("log_prob"):
            scores = fit.log_prob(test)
            test_log_lik = float(scores.mean())
            if sequences:
                per_step = float(scores.sum()) / test.num_observations
        divergences = fit.diagnostics.get("num_divergences")
        rows.append(
            {
                "method": fit.method_name,
                "wall_time_s": float(fit.wall_time),
                "final_loss": final_loss(losses),
                "test_log_lik": test_log_lik,
                "max_rhat": float(fit.diagnostics.get("max_rhat", math.nan)),
                "divergences": pd.NA if divergences is None else int(divergences),
                "flags": "; ".join(fit_flags(fit)),
                "test_log_lik_per_step": per_step,
            }
        )
    columns = list(COLUMNS) + (["test_log_lik_per_step"] if sequences else [])
    table = pd.DataFrame(rows, index=pd.Index(list(fits), name="fit"), columns=columns)
    return table.astype({"divergences": "Int64"})
