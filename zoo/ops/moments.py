"""Weighted moment estimates per component, from responsibilities.

``weights`` (M, K) gives each of M observations a weight per component: one-hot cluster labels
(a k-means start) or posterior probabilities (an EM step). The estimates are the weighted
maximum-likelihood ones (divided by the total weight, not by total weight - 1), computed in
two passes (second moments about each component's own mean, not E[x^2] - mean^2, which
cancels catastrophically in float32 when the spread is small next to the mean).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["WeightedMeans", "mean_and_spread", "weighted_means", "weighted_covariances", "correlation_cholesky"]


class WeightedMeans(NamedTuple):
    """Per-component totals and means: what :func:`weighted_means` returns."""

    #: (K,) total weight of each component (its expected number of observations)
    counts: torch.Tensor
    #: (K, D) weighted sum of the observations
    sums: torch.Tensor
    #: (K, D) weighted mean; the unweighted mean of all observations where a count is 0
    means: torch.Tensor


def mean_and_spread(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's mean and sample standard deviation (divided by N - 1), for an empirical prior.

    Parameters
    ----------
    x : Tensor, shape (N, D)
        The observations (no batch dims), N >= 1.

    Returns
    -------
    mean, spread : Tensor, each shape (D,)
        A spread of 0, or from a single observation, is 1 (a spread scales a prior).
    """
    mean = x.mean(0)
    if len(x) > 1:
        # two passes, written out: Tensor.std(0) is several times slower on a small matrix,
        # where it would be a large part of an exact (conjugate) fit
        spread = ((x - mean).square_().sum(0) / (len(x) - 1)).sqrt_()
    else:
        spread = torch.ones_like(mean)
    return mean, torch.where(spread > 0, spread, torch.ones_like(spread))


def weighted_means(x: torch.Tensor, weights: torch.Tensor) -> WeightedMeans:
    """Each component's total weight, weighted sum and weighted mean.

    Parameters
    ----------
    x : Tensor, shape (M, D)
        The observations (no batch dims).
    weights : Tensor, shape (M, K)
        Non-negative weight of each observation for each component.

    Returns
    -------
    WeightedMeans
        ``counts`` (K,), ``sums`` (K, D), ``means`` (K, D). A component without weight (an
        empty cluster) gets the overall mean of ``x``, so that it starts somewhere sensible.
    """
    counts = weights.sum(0)  # (K,)
    sums = weights.T @ x  # (K, D)
    present = counts.unsqueeze(-1) > 0
    means = torch.where(present, sums / counts.clamp(min=1e-12).unsqueeze(-1), x.mean(0))
    return WeightedMeans(counts, sums, means)


def weighted_covariances(
    x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, full: bool = False
) -> torch.Tensor:
    """Weighted second moments of the observations about each component's mean.

    Parameters
    ----------
    x : Tensor, shape (M, D)
        The observations (no batch dims).
    weights : Tensor, shape (M, K)
        Non-negative weight of each observation for each component.
    means : Tensor, shape (K, D)
        The centre of each component (e.g. :func:`weighted_means`'s ``means``).
    full : bool
        Full covariance matrices, or only their diagonals (the variances).

    Returns
    -------
    Tensor, shape (K, D, D) if ``full`` else (K, D)
        sum_m w_mk (x_m - mean_k)(x_m - mean_k)^T / sum_m w_mk (its diagonal if not ``full``);
        0 / 1e-12 = 0 for a component without weight.
    """
    counts = weights.sum(0)  # (K,)
    # component by component: memory (M, D), not (M, K, D)
    covariances = []
    for k in range(weights.shape[1]):
        centred = x - means[k]  # (M, D)
        weighted = weights[:, k, None] * centred
        covariances.append(weighted.T @ centred if full else (weighted * centred).sum(0))
    moments = torch.stack(covariances)
    return moments / counts.clamp(min=1e-12).reshape(-1, *[1] * (moments.dim() - 1))


def correlation_cholesky(covariance: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Cholesky factors of the correlation matrices of estimated covariances.

    Parameters
    ----------
    covariance : Tensor, shape (K, D, D)
        One covariance estimate per component.
    counts : Tensor, shape (K,)
        How many observations (total weight) each estimate rests on.

    Returns
    -------
    Tensor, shape (K, D, D)
        Lower-triangular factors of 0.99 * correlation + 0.01 * identity (strictly inside the
        support: every |r| < 1); the identity where a component has too few observations
        (at most D + 1) or its estimate is not positive definite.
    """
    num_features = covariance.shape[-1]
    sd = covariance.diagonal(dim1=-2, dim2=-1).clamp(min=torch.finfo(covariance.dtype).tiny).sqrt()  # (K, D)
    correlation = covariance / (sd.unsqueeze(-1) * sd.unsqueeze(-2))
    eye = torch.eye(num_features, dtype=covariance.dtype)
    correlation = 0.99 * correlation + 0.01 * eye  # strictly inside: |r| < 1
    cholesky, info = torch.linalg.cholesky_ex(correlation)
    usable = (info == 0) & (counts > num_features + 1) & torch.isfinite(cholesky).all((-2, -1))
    return torch.where(usable[:, None, None], cholesky, eye)
