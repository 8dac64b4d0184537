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

:func:`class_conditional` applies them together to rows of mixed columns (the posterior of a
Naive Bayes model given labeled rows): a Dirichlet over the class weights and, per class, each
column's parameters by its family's update. The :class:`ClassConditionalPosterior` it returns
draws from that posterior exactly and gives its means and marginals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.distributions import Beta, Dirichlet, Distribution

__all__ = [
    "ClassConditionalPosterior",
    "NormalGamma",
    "class_conditional",
    "class_counts",
    "class_sums",
    "normal_gamma",
    "beta_bernoulli",
    "dirichlet_categorical",
    "dirichlet_multinomial",
]


class NormalGamma(NamedTuple):
    """Posterior Normal-Gamma hyperparameters per (class, column), each (C, D): precision ~
    Gamma(shape, rate), loc | precision ~ Normal(loc, 1 / sqrt(loc_count precision))."""

    #: posterior mean of the location
    loc: torch.Tensor
    #: k0 + n_c: the location's prior count plus the class's rows
    loc_count: torch.Tensor
    #: a0 + n_c / 2: the precision's Gamma shape
    shape: torch.Tensor
    #: the precision's Gamma rate
    rate: torch.Tensor

    def sample(self, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact joint draws (loc, precision), each (num_samples, C, D); torch's global RNG,
        the precision drawn first."""
        precision = torch.distributions.Gamma(self.shape, self.rate).sample(torch.Size([num_samples]))
        loc = self.loc + torch.randn_like(precision) * (self.loc_count * precision).rsqrt()
        return loc, precision

    def mean(self) -> tuple[torch.Tensor, torch.Tensor]:
        """E[loc] = loc and E[precision] = shape / rate, each (C, D)."""
        return self.loc.clone(), self.shape / self.rate

    def marginals(self) -> tuple[torch.distributions.StudentT, torch.distributions.Gamma]:
        """The marginal posteriors of loc (a Student-t: the precision integrated out) and of
        the precision, batch (C, D)."""
        scale = (self.rate / (self.shape * self.loc_count)).sqrt()
        loc = torch.distributions.StudentT(2 * self.shape, self.loc, scale)
        return loc, torch.distributions.Gamma(self.shape, self.rate)


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


@dataclass
class ClassConditionalPosterior:
    """The conjugate posterior of class weights and class-conditional column parameters.

    The sites are those of :class:`zoo.models.NaiveBayes`: ``weights`` (C,); ``loc`` and
    ``precision`` (C, D_g) of the real columns; ``bernoulli_probs`` (C, D_b);
    ``categorical_probs_j`` (C, K_j) of categorical column j; ``multinomial_probs`` (C, D_m).

    Attributes
    ----------
    params : dict of str to Tensor
        Posterior hyperparameters: ``class_concentration`` (C,); for real columns ``loc``,
        ``loc_count``, ``shape``, ``rate`` (C, D_g) (:class:`NormalGamma`); ``bernoulli_alpha``,
        ``bernoulli_beta`` (C, D_b); ``categorical_probs_j`` (C, K_j) and ``multinomial_probs``
        (C, D_m) Dirichlet concentrations.
    """

    params: dict[str, torch.Tensor]

    def _normal_gamma(self) -> NormalGamma | None:
        """The real columns' joint posterior of (loc, precision), if there are any."""
        p = self.params
        return NormalGamma(p["loc"], p["loc_count"], p["shape"], p["rate"]) if "shape" in p else None

    def _dirichlet_sites(self) -> list[str]:
        """The probability sites with a Dirichlet posterior (categorical and multinomial)."""
        return [name for name in self.params if name.startswith("categorical_probs_") or name == "multinomial_probs"]

    def _probabilities(self) -> dict[str, Distribution]:
        """The posterior of each probability site besides the weights: a Beta or a Dirichlet."""
        p = self.params
        out: dict[str, Distribution] = {}
        if "bernoulli_alpha" in p:
            out["bernoulli_probs"] = Beta(p["bernoulli_alpha"], p["bernoulli_beta"])
        return out | {name: Dirichlet(p[name]) for name in self._dirichlet_sites()}

    def marginals(self) -> dict[str, Distribution]:
        """Marginal posterior of each site (``loc``'s is a Student-t: precision integrated out)."""
        out: dict[str, Distribution] = {"weights": Dirichlet(self.params["class_concentration"])}
        normal_gamma = self._normal_gamma()
        if normal_gamma is not None:
            out["loc"], out["precision"] = normal_gamma.marginals()
        return out | self._probabilities()

    def sample(self, num_samples: int) -> dict[str, torch.Tensor]:
        """Exact joint draws, each site shaped (num_samples, *site_shape); uses torch's global RNG."""
        shape = torch.Size([num_samples])
        draws = {"weights": Dirichlet(self.params["class_concentration"]).sample(shape)}
        normal_gamma = self._normal_gamma()
        if normal_gamma is not None:
            loc, draws["precision"] = normal_gamma.sample(num_samples)
            draws["loc"] = loc
        return draws | {name: posterior.sample(shape) for name, posterior in self._probabilities().items()}

    def mean(self) -> dict[str, torch.Tensor]:
        """Posterior mean of each site (E[loc] = m_n, E[precision] = a_n / b_n), from the
        hyperparameters directly (no distribution objects: this is what an Exact fit computes)."""
        p = self.params
        out = {"weights": p["class_concentration"] / p["class_concentration"].sum(-1, keepdim=True)}
        normal_gamma = self._normal_gamma()
        if normal_gamma is not None:
            out["loc"], out["precision"] = normal_gamma.mean()
        if "bernoulli_alpha" in p:
            out["bernoulli_probs"] = p["bernoulli_alpha"] / (p["bernoulli_alpha"] + p["bernoulli_beta"])
        return out | {name: p[name] / p[name].sum(-1, keepdim=True) for name in self._dirichlet_sites()}


def class_conditional(
    labels: torch.Tensor,
    num_classes: int,
    dtype: torch.dtype,
    *,
    class_concentration: float,
    gaussian: torch.Tensor | None = None,
    bernoulli: torch.Tensor | None = None,
    categorical: Sequence[tuple[int, torch.Tensor, int]] = (),
    multinomial: torch.Tensor | None = None,
    concentration: float = 1.0,
    prior_loc: torch.Tensor | None = None,
    loc_count: float = 1.0,
    precision_shape: float = 1.0,
    precision_rate: torch.Tensor | None = None,
) -> ClassConditionalPosterior:
    """The conjugate update of every class's weight and column parameters from labeled rows.

    Parameters
    ----------
    labels : LongTensor, shape (N,)
        Classes in 0..C-1 (N may be 0).
    num_classes : int
        C.
    dtype : torch.dtype
        Of the hyperparameters (that of the rows).
    class_concentration : float
        Of the symmetric Dirichlet prior on the weights.
    gaussian, bernoulli : Tensor, shape (N, D_g) / (N, D_b), optional
        The real and the binary columns.
    categorical : sequence of (int, Tensor, int)
        Per categorical column: its index j (which names its site), its values (N,) and its
        number of categories.
    multinomial : Tensor, shape (N, D_m), optional
        The count columns, one vector of counts per row.
    concentration : float
        Of the Beta and Dirichlet priors of the probabilities.
    prior_loc, loc_count, precision_shape, precision_rate
        The Normal-Gamma prior of the real columns (:func:`normal_gamma`); prior_loc and
        precision_rate (D_g,).

    Returns
    -------
    ClassConditionalPosterior
    """
    params = {"class_concentration": class_concentration + class_counts(labels, num_classes, dtype)}
    if gaussian is not None:
        if prior_loc is None or precision_rate is None:
            raise ValueError("real columns need their Normal-Gamma prior (prior_loc and precision_rate)")
        params.update(normal_gamma(gaussian, labels, num_classes, prior_loc, loc_count, precision_shape, precision_rate)._asdict())
    if bernoulli is not None:
        params["bernoulli_alpha"], params["bernoulli_beta"] = beta_bernoulli(bernoulli, labels, num_classes, concentration)
    for column, values, size in categorical:
        params[f"categorical_probs_{column}"] = dirichlet_categorical(
            values.long(), labels, num_classes, size, concentration, dtype
        )
    if multinomial is not None:
        params["multinomial_probs"] = dirichlet_multinomial(multinomial, labels, num_classes, concentration)
    return ClassConditionalPosterior(params)
