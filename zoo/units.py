"""One unit for every explicit model on discrete data: nats per datum, bits per dimension, and
whether the number is exact or a bound.

A model of discrete pixels (:class:`zoo.models.Autoregressive`, Naive Bayes with a categorical
family) gives log P(x) of the data itself. A density model of continuous data (a flow, a
Gaussian mixture) gives a density, not a probability, and its number on the raw integers means
nothing: it must be scored on the same discrete data, by **uniform dequantization** (Theis et
al., 2016): the model is fitted to ``y = (x + u) / K`` with ``u ~ Uniform[0, 1)^D`` and K the
number of levels (:func:`dequantize`), and then, for every datum, the probability of its cell,

    ``P(x) = integral over u of p((x + u) / K) K^-D du  >=  exp E_u[log p((x + u) / K)] K^-D``

(Jensen), so the averaged log-density minus ``D log K`` is a lower bound on log P(x)
(:func:`dequantized_log_prob`; with S draws of u per datum the importance-weighted average of the
densities gives a tighter one, still a bound in expectation). A VAE's importance-weighted
estimate and a diffusion model's ELBO are bounds too. :class:`Score` carries the number, its
standard error and whether it is a bound, and prints bounds as such (``>=``), so that a table
never ranks a bound as if it were exact without saying so.

Bits per dimension: ``-log P(x) / (D ln 2)``, averaged over data (lower is better); a lower bound
on log P(x) is an upper bound on bits per dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from zoo.checks import check_integer_levels, check_positive_int, check_seed
from zoo.datasets.dataset import Dataset, as_dataset

__all__ = ["Score", "score", "dequantize", "check_levels", "dequantized_log_prob"]


@dataclass(frozen=True)
class Score:
    """A held-out log-likelihood in the units a table compares.

    Attributes
    ----------
    nats_per_datum : float
        Mean of log P(x_i) (higher is better).
    standard_error : float
        Its standard error over data (the spread of log P(x_i) / sqrt(N)).
    bits_per_dim : float
        ``-nats_per_datum / (D ln 2)`` (lower is better).
    num_dims : int
        D, the dimensions of one datum.
    bound : bool
        True when ``nats_per_datum`` is a lower bound on the log-likelihood (then
        ``bits_per_dim`` is an upper bound).
    """

    nats_per_datum: float
    standard_error: float
    bits_per_dim: float
    num_dims: int
    bound: bool

    def __str__(self) -> str:
        relation = ">=" if self.bound else "="
        return (
            f"log p {relation} {self.nats_per_datum:.3f} +- {self.standard_error:.3f} nats per datum; "
            f"bits/dim {'<=' if self.bound else '='} {self.bits_per_dim:.4f}"
        )


def score(log_probs: torch.Tensor, num_dims: int, bound: bool) -> Score:
    """Summarise log P(x_i) of N held-out data (a (N,) tensor) as a :class:`Score`.

    Parameters
    ----------
    log_probs : Tensor, shape (N,)
    num_dims : int
        D, the dimensions of one datum.
    bound : bool
        Whether the values are lower bounds.
    """
    check_positive_int(num_dims, "num_dims")
    values = torch.as_tensor(log_probs, dtype=torch.float64).reshape(-1)
    if values.numel() == 0 or not bool(torch.isfinite(values).all()):
        raise ValueError("log_probs must be a non-empty tensor of finite values")
    mean = float(values.mean())
    spread = float(values.std()) / math.sqrt(values.numel()) if values.numel() > 1 else float("nan")
    return Score(mean, spread, -mean / (num_dims * math.log(2.0)), int(num_dims), bool(bound))


def check_levels(data: Any, num_levels: int, argument: str = "data") -> Dataset:
    """``data`` as a Dataset, after checking that every value is an integer in 0..num_levels-1.

    Raises
    ------
    ValueError
        Naming the first value outside, and what is expected.
    """
    check_positive_int(num_levels, "num_levels", minimum=2)
    dataset = as_dataset(data, argument)
    check_integer_levels(
        dataset.x, num_levels, f"{argument}.x", "dequantization",
        "the raw discrete data, e.g. the digits' grey levels 0..16 with num_levels=17",
    )
    return dataset


def dequantize(data: Any, num_levels: int, seed: int = 0) -> Dataset:
    """Uniform dequantization: ``(x + u) / K`` with ``u ~ Uniform[0, 1)`` per value, K = ``num_levels``.

    Parameters
    ----------
    data : Dataset, tensor or array, shape (N, ...)
        Integer levels 0..K-1.
    num_levels : int
        K.
    seed : int
        Seed of a private generator (the global random state is untouched).

    Returns
    -------
    Dataset
        The same rows (labels kept), values in [0, 1).
    """
    dataset = check_levels(data, num_levels)
    generator = torch.Generator().manual_seed(check_seed(seed))
    noise = torch.rand(dataset.x.shape, generator=generator)
    return replace(dataset, x=(dataset.x + noise) / num_levels, truth=None)


def dequantized_log_prob(
    fit: Any, data: Any, num_levels: int, num_samples: int = 1, seed: int = 0, **options: Any
) -> torch.Tensor:
    """A lower bound on log P(x_i) of discrete data under a density fitted to dequantized data.

    ``log (1/S) sum_s p((x + u_s) / K) - D log K`` with S = ``num_samples`` draws of u per datum:
    a lower bound in expectation (Jensen), tighter with S.

    Parameters
    ----------
    fit : zoo.Fit
        A fit of a density model to ``dequantize(train, num_levels)``.
    data : Dataset, tensor or array, shape (N, ...)
        Integer levels 0..K-1 (held-out data).
    num_levels : int
        K.
    num_samples : int
        S.
    seed : int
        Seed of the dequantization noise.
    **options
        Passed to ``fit.log_prob`` (e.g. ``num_particles=K`` for a VAE's importance-weighted
        bound on the density, itself a lower bound: the result stays one).

    Returns
    -------
    Tensor, shape (N,)
        Nats per datum; summarise with :func:`score` (``bound=True``).
    """
    dataset = check_levels(data, num_levels)
    check_positive_int(num_samples, "num_samples")
    num_dims = math.prod(dataset.x.shape[1:])
    # the S copies of the data in one call of the density: (S * N, ...) -> (S, N)
    copies = Dataset(x=dataset.x.repeat(num_samples, *([1] * (dataset.x.dim() - 1))))
    draws = fit.log_prob(dequantize(copies, num_levels, seed=seed), **options).reshape(num_samples, len(dataset))
    return draws.logsumexp(0) - math.log(num_samples) - num_dims * math.log(num_levels)
