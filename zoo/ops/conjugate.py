r"""Conjugate posterior updates from labeled rows: each class's parameters given its rows.

Every function takes N rows with class labels ``labels`` (N,) in 0..C-1 (N may be 0) and returns
the posterior hyperparameters of each class, (C, ...). Every per-class statistic is one
``index_add_`` over the rows (a scatter-add into C rows, O(N D) work) rather than a one-hot
(C, N) matrix product (O(C N D)) or a (C, N, D) broadcast. No batch dims.

=======================  ==================================================================
update                   posterior of class c
=======================  ==================================================================
:func:`normal_gamma`     precision ~ Gamma(a0 + n_c / 2, b0 + SS_c / 2 + k0 n_c (xbar_c - m0)^2
                         / (2 (k0 + n_c))); loc | precision ~ Normal((k0 m0 + n_c xbar_c) /
                         (k0 + n_c), 1 / sqrt((k0 + n_c) precision)), per column
:func:`beta_bernoulli`   Beta(concentration + s_c, concentration + n_c - s_c), per column
:func:`dirichlet_categorical`  Dirichlet(concentration + counts of each category in class c)
:func:`dirichlet_multinomial`  Dirichlet(concentration + column totals of class c)
=======================  ==================================================================

with n_c the rows of class c, xbar_c their mean, SS_c their sum of squares about it and s_c
their number of ones.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "NormalGamma",
    "class_counts",
    "class_sums",
    "normal_gamma",
    "beta_bernoulli",
    "dirichlet_categorical",
    "dirichlet_multinomial",
]


class NormalGamma(NamedTuple):
    """Posterior Normal-Gamma hyperparameters per (class, column), each (C, D)."""

    #: posterior mean of the location
    loc: torch.Tensor
    #: k0 + n_c: the location's prior count plus the class's rows
    loc_count: torch.Tensor
    #: a0 + n_c / 2: the precision's Gamma shape
    shape: torch.Tensor
    #: the precision's Gamma rate
    rate: torch.Tensor


def class_counts(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """The number of rows of each class.

    Parameters
    ----------
    labels : LongTensor, shape (N,)
        Classes in 0..C-1.
    num_classes : int
        C.
    dtype : torch.dtype
        Of the result.

    Returns
    -------
    Tensor, shape (C,)
    """
    return torch.bincount(labels, minlength=num_classes).to(dtype)


def class_sums(values: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The rows of ``values`` summed within each class.

    Parameters
    ----------
    values : Tensor, shape (N, L)
    labels : LongTensor, shape (N,)
        Classes in 0..C-1.
    num_classes : int
        C.

    Returns
    -------
    Tensor, shape (C, L)
    """
    return values.new_zeros(num_classes, values.shape[1]).index_add_(0, labels, values)


def normal_gamma(
    x: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    prior_loc: torch.Tensor,
    loc_count: float,
    precision_shape: float,
    precision_rate: torch.Tensor,
) -> NormalGamma:
    """Normal-Gamma update of each (class, column): a Gaussian of unknown mean and precision.

    The prior is precision ~ Gamma(``precision_shape``, ``precision_rate``) and loc | precision
    ~ Normal(``prior_loc``, 1 / sqrt(``loc_count`` precision)).

    Parameters
    ----------
    x : Tensor, shape (N, D)
        Real-valued columns.
    labels : LongTensor, shape (N,)
        Classes in 0..C-1.
    num_classes : int
        C.
    prior_loc : Tensor, shape (D,)
        m0, the prior mean of each column's location.
    loc_count : float
        k0 > 0, the prior's weight on ``prior_loc`` in pseudo-rows.
    precision_shape : float
        a0 > 0.
    precision_rate : Tensor, shape (D,)
        b0 > 0 per column.

    Returns
    -------
    NormalGamma
        ``loc``, ``loc_count``, ``shape``, ``rate``, each (C, D). A class without rows keeps
        the prior.
    """
    counts = class_counts(labels, num_classes, x.dtype)[:, None]  # (C, 1)
    sums = class_sums(x, labels, num_classes)  # (C, D)
    mean = sums / counts.clamp(min=1)  # (C, D) class means
    # Two passes (sum of squares about the class mean, not sum x^2 - n mean^2), so no
    # cancellation in float32: each row minus its own class's mean, squared in place.
    squares = class_sums((x - mean.index_select(0, labels)).square_(), labels, num_classes)
    posterior_count = loc_count + counts
    return NormalGamma(
        loc=(loc_count * prior_loc + sums) / posterior_count,
        loc_count=posterior_count.expand_as(sums).clone(),
        shape=(precision_shape + counts / 2).expand_as(sums).clone(),
        rate=precision_rate
        + squares / 2
        + loc_count * counts * (mean - prior_loc).square() / (2 * posterior_count),
    )


def beta_bernoulli(
    x: torch.Tensor, labels: torch.Tensor, num_classes: int, concentration: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beta-Bernoulli update of each (class, column) from a symmetric Beta prior.

    Parameters
    ----------
    x : Tensor, shape (N, D)
        Binary columns (0 or 1).
    labels : LongTensor, shape (N,)
        Classes in 0..C-1.
    num_classes : int
        C.
    concentration : float
        Both parameters of the Beta prior.

    Returns
    -------
    tuple of Tensor, each shape (C, D)
        The posterior Beta's two parameters: concentration + ones, concentration + zeros.
    """
    ones = class_sums(x, labels, num_classes)  # (C, D) rows with a 1
    counts = class_counts(labels, num_classes, x.dtype)[:, None]  # (C, 1)
    return concentration + ones, concentration + counts - ones


def dirichlet_categorical(
    categories: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    num_categories: int,
    concentration: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Dirichlet-categorical update of each class's category probabilities.

    Parameters
    ----------
    categories : LongTensor, shape (N,)
        Each row's category in 0..num_categories-1.
    labels : LongTensor, shape (N,)
        Classes in 0..C-1.
    num_classes : int
        C.
    num_categories : int
        The size of the alphabet.
    concentration : float
        Of the symmetric Dirichlet prior.
    dtype : torch.dtype
        Of the result.

    Returns
    -------
    Tensor, shape (C, num_categories)
        The posterior Dirichlet's concentration.

    Raises
    ------
    ValueError
        If a category is ``num_categories`` or more (it would be counted in the next class).
    """
    if len(categories) and int(categories.max()) >= num_categories:
        raise ValueError(f"a category is {int(categories.max())}, beyond the {num_categories} categories 0..{num_categories - 1}")
    # one bincount over (class, category) cells: class * num_categories + category
    cells = labels * num_categories + categories
    per_cell = torch.bincount(cells, minlength=num_classes * num_categories).to(dtype)
    return concentration + per_cell.reshape(num_classes, num_categories)


def dirichlet_multinomial(
    counts: torch.Tensor, labels: torch.Tensor, num_classes: int, concentration: float
) -> torch.Tensor:
    """Dirichlet-multinomial update of each class's probabilities over D count columns.

    Parameters
    ----------
    counts : Tensor, shape (N, D)
        Non-negative counts per row and column.
    labels : LongTensor, shape (N,)
        Classes in 0..C-1.
    num_classes : int
        C.
    concentration : float
        Of the symmetric Dirichlet prior.

    Returns
    -------
    Tensor, shape (C, D)
        The posterior Dirichlet's concentration: concentration + each class's column totals.
    """
    return concentration + class_sums(counts, labels, num_classes)
