"""Has a stochastic optimiser's loss stopped falling? A trend test on the late loss window.

Pyro offers no convergence check for SVI; users judge loss curves by eye. zoo asks one
question of the last part of the loss curve (the *late window*): does it still trend?

* The window is the last ``window_fraction`` of the steps (at least ``min_window`` steps).
* It is cut into ``num_batches`` consecutive batches and each batch is averaged: the method of
  batch means (Schmeiser 1982, "Batch size effects in the analysis of simulation output",
  Operations Research 30(3)), which turns the autocorrelated step-to-step noise of Adam's
  loss into nearly independent batch means.
* An ordinary least-squares line through the batch means gives the slope and its t statistic
  with ``num_batches - 2`` degrees of freedom. The loss *still trends* when the slope is both
  significant (``|t|`` above the two-sided 1% critical value of Student's t: 3.355 for 8
  degrees of freedom) and material (the fitted change over the whole window exceeds
  ``tolerance`` nats per datum, where zoo's losses are per datum).

A stationary late window is what "converged" means for a fit by Adam: the loss no longer
moves by more than its noise. It does not mean the optimum was found (a guide can sit on a
plateau), and a flat window of a diverged fit is still flat: R-hat-like checks across several
independent runs would catch what one run cannot.
"""

from __future__ import annotations

import math

import torch

__all__ = ["late_window_trend", "T_CRITICAL_1_PERCENT"]

#: Two-sided 1% critical values of Student's t by degrees of freedom (standard tables).
T_CRITICAL_1_PERCENT = {3: 5.841, 4: 4.604, 5: 4.032, 6: 3.707, 7: 3.499, 8: 3.355, 9: 3.250, 10: 3.169}


def late_window_trend(
    losses: torch.Tensor,
    window_fraction: float = 0.25,
    min_window: int = 100,
    num_batches: int = 10,
    tolerance: float = 1e-3,
) -> dict[str, float | bool | int]:
    """The trend test of the module docs on the late window of ``losses``.

    Parameters
    ----------
    losses : Tensor, shape (num_steps,)
        Loss per datum at each step.
    window_fraction : float
        The share of the last steps that forms the late window.
    min_window : int
        The fewest steps a window may have; a shorter run is "too short to tell".
    num_batches : int
        Batches the window is cut into (5 to 12: their t critical value is tabulated).
    tolerance : float
        The smallest change over the window, in nats per datum, that counts as a trend.

    Returns
    -------
    dict
        ``stationary`` (bool: no significant, material trend; False when too short),
        ``window`` (steps in the window), ``change`` (the fitted change of the loss over the
        window, nats per datum: negative while it still falls), ``t`` (the slope's t statistic)
        and ``noise`` (the standard deviation of the batch means).
    """
    if not 5 <= num_batches <= 12:
        raise ValueError(f"num_batches must be between 5 and 12, got {num_batches}")
    losses = losses.detach().double().reshape(-1)
    losses = losses[torch.isfinite(losses)]
    window = max(min_window, int(math.ceil(window_fraction * losses.numel())))
    if losses.numel() < window:
        return {"stationary": False, "window": int(losses.numel()), "change": math.nan, "t": math.nan, "noise": math.nan}
    per_batch = window // num_batches
    late = losses[-per_batch * num_batches :].reshape(num_batches, per_batch)
    means = late.mean(1)  # (num_batches,)
    position = torch.arange(num_batches, dtype=torch.float64)
    centred = position - position.mean()
    slope = float((centred * (means - means.mean())).sum() / centred.pow(2).sum())
    residuals = means - means.mean() - slope * centred
    degrees = num_batches - 2
    residual_variance = float(residuals.pow(2).sum()) / degrees
    slope_error = math.sqrt(residual_variance / float(centred.pow(2).sum()))
    change = slope * num_batches  # over the window: num_batches batches
    if slope_error > 0:
        t = slope / slope_error
    else:
        t = 0.0 if slope == 0 else math.copysign(math.inf, slope)
    trending = abs(t) > T_CRITICAL_1_PERCENT[degrees] and abs(change) > tolerance
    return {
        "stationary": not trending,
        "window": per_batch * num_batches,
        "change": change,
        "t": t,
        "noise": float(means.std()),
    }
