r"""Log densities of the emission families, written once for broadcasting, and their support.

Each function scores observations against parameters of any broadcastable shapes, so one call
gives a per-component table: observations (*data, 1, D) against parameters (S, 1, ..., K, D)
score every datum under every component and draw, (S, *data, K). The families of
:mod:`zoo.models.families` build their distributions on them, so the distribution the enumerated
definition observes and the table every collapsed likelihood takes are the same function:

=============================  ===========================================================
:func:`normal_log_density`     elementwise; three full-size operations instead of torch's
                               five (the constant is computed on the parameters' shape)
:func:`bernoulli_log_density`  D binary features as one event: one contraction over D (a
                               matrix product where the shapes broadcast), not an
                               (S, *data, K, D) elementwise product
:func:`multinomial_log_density`  counts of any total, contracted likewise
=============================  ===========================================================

:class:`Normal`, :class:`IndependentBernoulli` and :class:`MultinomialCounts` are Pyro's
distributions (parameters, support, sampling) whose ``log_prob`` is one of these functions.
:func:`all_binary` and :func:`all_counts` decide in one or two passes whether data lie in the
Bernoulli or the count families' support (no bool temporary the size of the data: torch's
elementwise comparisons into bool tensors cost more than the arithmetic here).

Probabilities are floored before their log (:func:`zoo.ops.markov.safe_log`), so a probability
of exactly 0 or 1 gives a finite density and gradient.
"""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from zoo.ops.markov import safe_log

__all__ = [
    "normal_log_density",
    "bernoulli_log_density",
    "multinomial_log_density",
    "masked_gaussian_log_density",
    "conditional_gaussian_sample",
    "masked_covariance",
    "all_binary",
    "all_counts",
    "Normal",
    "IndependentBernoulli",
    "MultinomialCounts",
]


def normal_log_density(value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log Normal(value | loc, scale), elementwise.

    Parameters
    ----------
    value, loc, scale : Tensor
        Any shapes that broadcast together; ``scale`` > 0.

    Returns
    -------
    Tensor, the broadcast shape
        The same numbers as ``torch.distributions.Normal(loc, scale).log_prob(value)`` (up to
        rounding), in three full-size operations: the constant -log(scale) - log(2 pi) / 2 is
        computed on the parameters' (small) shape.
    """
    standardised = (value - loc) * scale.reciprocal()
    constant = -scale.log() - 0.5 * math.log(2 * math.pi)
    return torch.addcmul(constant, standardised, standardised, value=-0.5)


def bernoulli_log_density(value: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """log prod_d Bernoulli(value_d | probs_d): D independent binary features as one event.

    Parameters
    ----------
    value : Tensor, shape (*A, D)
        0 or 1.
    probs : Tensor, shape (*B, D)
        In [0, 1]; logs floored at the smallest normal number (:func:`zoo.ops.safe_log`), so a
        probability of exactly 0 or 1 gives a finite density and gradient.

    Returns
    -------
    Tensor, shape broadcast(A, B)
        sum_d value_d log p_d + (1 - value_d) log(1 - p_d), as one contraction over d (a matrix
        product when ``value`` and ``probs`` broadcast against each other's singleton dims).
    """
    log_p, log_q = safe_log(probs), safe_log(1 - probs)
    return torch.einsum("...d,...d->...", value.to(probs.dtype), log_p - log_q) + log_q.sum(-1)


def multinomial_log_density(value: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """log Multinomial(value | sum_d value_d, probs): counts over D categories, any total.

    Parameters
    ----------
    value : Tensor, shape (*A, D)
        Non-negative integer counts; each row's total is its own number of trials.
    probs : Tensor, shape (*B, D)
        Each row a point of the simplex; logs floored at the smallest normal number.

    Returns
    -------
    Tensor, shape broadcast(A, B)
        log (n! / prod_d value_d!) + sum_d value_d log p_d with n = sum_d value_d.
    """
    value = value.to(probs.dtype)
    coefficient = torch.lgamma(value.sum(-1) + 1) - torch.lgamma(value + 1).sum(-1)
    return torch.einsum("...d,...d->...", value, safe_log(probs)) + coefficient


def masked_covariance(scale_tril: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """M Sigma M + (I - M), M = diag(observed): Sigma's observed sub-block, the identity elsewhere.

    A block-diagonal matrix (after permuting coordinates) whose Cholesky factor, solves and
    log-determinant are those of the observed sub-block ``Sigma_oo`` of each datum, all data at
    once, whatever their patterns of missing entries.

    Parameters
    ----------
    scale_tril : Tensor, shape (*B, D, D)
        Lower Cholesky factors of Sigma.
    observed : BoolTensor, shape (*A, D)
        Observed coordinates of each datum; ``*A`` broadcasts against ``*B``.

    Returns
    -------
    Tensor, shape (broadcast(A, B), D, D)
    """
    mask = observed.to(scale_tril.dtype)
    covariance = scale_tril @ scale_tril.transpose(-1, -2)
    outer = mask.unsqueeze(-1) * mask.unsqueeze(-2)
    return covariance * outer + torch.diag_embed(1 - mask)


def masked_gaussian_log_density(
    value: torch.Tensor, observed: torch.Tensor, loc: torch.Tensor, scale_tril: torch.Tensor
) -> torch.Tensor:
    """log N(x_o | mu_o, Sigma_oo): the multivariate normal density of each datum's observed
    coordinates, its missing ones integrated out exactly.

    With A = :func:`masked_covariance` (Sigma_oo on the observed block, I elsewhere) and the
    missing coordinates of ``value - loc`` set to 0, the full D-dimensional density of A is
    N(x_o | mu_o, Sigma_oo) N(0 | 0, I_m) = N(x_o | mu_o, Sigma_oo) (2 pi)^(-m / 2), m the number
    of missing coordinates; the constant is added back.

    Parameters
    ----------
    value : Tensor, shape (*A, D)
        Observations; missing entries any finite value.
    observed : BoolTensor, shape (*A, D)
    loc : Tensor, shape (*B, D)
    scale_tril : Tensor, shape (*B, D, D)
        Lower Cholesky factors of the covariances.

    Returns
    -------
    Tensor, shape broadcast(A, B)
    """
    mask = observed.to(loc.dtype)
    cholesky = torch.linalg.cholesky(masked_covariance(scale_tril, observed))
    centred = ((value.to(loc.dtype) - loc) * mask).unsqueeze(-1)
    standardised = torch.linalg.solve_triangular(cholesky, centred.expand(cholesky.shape[:-1] + (1,)), upper=False)[..., 0]
    half_log_det = cholesky.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * standardised.pow(2).sum(-1) - half_log_det - 0.5 * mask.sum(-1) * math.log(2 * math.pi)


def conditional_gaussian_sample(
    value: torch.Tensor, observed: torch.Tensor, loc: torch.Tensor, scale_tril: torch.Tensor
) -> torch.Tensor:
    """``value`` with its missing coordinates drawn from N(x_m | x_o): mean mu_m + Sigma_mo
    Sigma_oo^-1 (x_o - mu_o), covariance Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om.

    Parameters
    ----------
    value : Tensor, shape (*A, D)
    observed : BoolTensor, shape (*A, D)
    loc : Tensor, shape (*A, D)
    scale_tril : Tensor, shape (*A, D, D)
        Each datum's mean and Cholesky factor (already gathered for its component).

    Returns
    -------
    Tensor, shape (*A, D)
        Observed coordinates as given, missing ones drawn (torch's global generator).
    """
    mask = observed.to(loc.dtype)
    covariance = scale_tril @ scale_tril.transpose(-1, -2)
    blocked = masked_covariance(scale_tril, observed)
    # A^-1 M (x - mu): Sigma_oo^-1 (x_o - mu_o) on the observed coordinates, 0 on the missing
    weights = torch.linalg.solve(blocked, ((value - loc) * mask).unsqueeze(-1))
    mean = loc + (covariance @ weights)[..., 0]
    # Sigma - Sigma M A^-1 M Sigma: the conditional covariance on the missing block, 0 elsewhere;
    # the identity put on the observed block keeps it positive definite for the factorisation
    masked = covariance * mask.unsqueeze(-2)
    conditional = covariance - masked @ torch.linalg.solve(blocked, masked.transpose(-1, -2))
    conditional = conditional * (1 - mask).unsqueeze(-1) * (1 - mask).unsqueeze(-2) + torch.diag_embed(mask)
    noise = torch.linalg.cholesky(conditional) @ torch.randn_like(mean).unsqueeze(-1)
    return torch.where(observed, value, mean + noise[..., 0])


def all_binary(values: torch.Tensor) -> bool:
    """Whether every entry of ``values`` is exactly 0 or 1.

    Parameters
    ----------
    values : Tensor, any shape
        Finite values (a :class:`~zoo.datasets.Dataset`'s x is), any dtype.

    Returns
    -------
    bool
    """
    if values.dtype == torch.bool:
        return True
    if not values.dtype.is_floating_point:
        low, high = torch.aminmax(values)
        return bool(low >= 0) and bool(high <= 1)
    # For a finite float v, the rounded product v * v equals v only for v = 0 (or -0.0, equal to
    # 0 as in v == 0) and v = 1: for 0 < v < 1 the gap v - v^2 = v (1 - v) exceeds half an ulp of
    # v, a subnormal v squares to 0, and v > 1 or v < 0 gives v * v > v.
    return torch.equal(values * values, values)


def all_counts(values: torch.Tensor) -> bool:
    """Whether every entry of ``values`` is a non-negative integer (counts, category indices).

    Parameters
    ----------
    values : Tensor, any shape

    Returns
    -------
    bool
        False for an infinite value (its fractional part is NaN).
    """
    if values.dtype == torch.bool or values.numel() == 0:
        return True
    if bool(values.min() < 0):  # a reduction: no temporary tensor
        return False
    # frac() then any(): one temporary, where (v < 0) | (v != v.round()) makes three
    return not values.dtype.is_floating_point or not bool(values.frac().any())


class Normal(dist.Normal):
    """Pyro's ``Normal`` (same parameters, support and sampling) whose ``log_prob`` is
    :func:`normal_log_density`: the one Gaussian density the enumerated definition and the
    log-density table share."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return normal_log_density(value, self.loc, self.scale)


class IndependentBernoulli(dist.TorchDistribution):
    """D independent Bernoulli features as one event, scored by :func:`bernoulli_log_density`.

    The density of ``dist.Bernoulli(probs).to_event(1)``; its ``log_prob`` contracts over the
    features instead of building one term per feature.

    Parameters
    ----------
    probs : Tensor, shape (*batch, D)
        Probability of a 1 for each feature.
    validate_args : bool, optional
        As for every torch distribution.
    """

    arg_constraints = {"probs": constraints.independent(constraints.unit_interval, 1)}
    support = constraints.independent(constraints.boolean, 1)

    def __init__(self, probs: torch.Tensor, validate_args: bool | None = None) -> None:
        self.probs = probs
        super().__init__(probs.shape[:-1], probs.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape: Any, _instance: Any = None) -> "IndependentBernoulli":
        new = self._get_checked_instance(IndependentBernoulli, _instance)
        batch_shape = torch.Size(batch_shape)
        new.probs = self.probs.expand(batch_shape + self.event_shape)
        super(IndependentBernoulli, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return self.probs

    @property
    def variance(self) -> torch.Tensor:
        return self.probs * (1 - self.probs)

    def sample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            return torch.bernoulli(self.probs.expand(shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return bernoulli_log_density(value, self.probs)

    def feature_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log Bernoulli(value_d | probs_d) per feature, not summed: shape broadcast(value, probs)."""
        value = value.to(self.probs.dtype)
        return value * safe_log(self.probs) + (1 - value) * safe_log(1 - self.probs)


class MultinomialCounts(dist.Multinomial):
    """Pyro's ``Multinomial`` scoring counts of any total with :func:`multinomial_log_density`.

    The density of counts does not depend on the constructor's ``total_count`` (each value
    brings its own number of trials); ``total_count`` is what :meth:`sample` draws.
    """

    support = constraints.independent(constraints.nonnegative_integer, 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return multinomial_log_density(value, self.probs)
