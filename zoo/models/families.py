r"""Emission and component families, written once for every model with K discrete components.

A mixture's components, an HMM's emissions and (later) Naive Bayes' class-conditional features
are the same thing: K parameter sets of one family, and a density for an observation given its
component. Each family here states, for K components (or states, or classes):

=======================  ===================================================================
:meth:`~Family.prior`    the ``pyro.sample`` statements of its parameter sites, inside a plate
                         over components that the caller opens
:meth:`~Family.gather`   each datum's component parameters, picked with ``Vindex`` (works
                         under enumeration and under a plate of posterior draws)
:meth:`~Family.distribution`  the distribution of one observation given gathered parameters:
                         what the enumerated definition observes
:meth:`~Family.log_density`  the per-component log-density table (S, *data, K): the fast path
                         every collapsed likelihood (logsumexp over components, the forward
                         algorithm over states) uses
:meth:`~Family.estimates`  weighted estimates from responsibilities (k-means start, EM step)
:meth:`~Family.order_key`  what components are sorted by when relabelling draws
:meth:`~Family.validate`  whether data lie in the family's support
:meth:`~Family.dims`     the ArviZ dims of its sites
=======================  ===================================================================

One density per family
----------------------
The table is computed from the very distribution the enumerated definition observes: the
distribution is built with a batch shape (S, 1, ..., K) and scores the data with a singleton
component dim, (*data, 1, D), so the two cannot drift apart. Where Pyro's own ``log_prob``
would be slow on a large table, the family's distribution is a small subclass whose
``log_prob`` is one function written for broadcasting (:func:`normal_log_density`: three
full-size operations instead of five; :func:`bernoulli_log_density` and
:func:`multinomial_log_density`: one contraction over features, a matrix product, where an
elementwise product would build an (S, *data, K, D) tensor); sampling, support and parameters
stay Pyro's.

Sites, shapes and priors
------------------------
==============  =========================  ================================================
family          sites (K, ...)             prior (per component)
==============  =========================  ================================================
Gaussian        ``locs`` (K, D)            Normal(center, location_scale * spread)
                ``scales`` (K, D)          LogNormal(log(spread), scale_log_sd)
                ``corr_cholesky`` (K,D,D)  LKJCholesky(D, correlation_concentration)
                                           (covariance="full", D >= 2)
Poisson         ``rates`` (K, D)           LogNormal(log(center), rate_log_sd)
Categorical     ``probs`` (K, C)           Dirichlet(concentration * 1_C)
Bernoulli       ``probs`` (K, D)           Beta(concentration, concentration)
Multinomial     ``probs`` (K, D)           Dirichlet(concentration * 1_D)
==============  =========================  ================================================

``center`` and ``spread`` default (in the models) to the training data's mean and standard
deviation: :meth:`Gaussian.empirical_prior`, :meth:`Poisson.empirical_prior`.

Data layout: x is (*data, D) as a :class:`~zoo.datasets.Dataset` holds it (a categorical
observation is one column holding the category index, D = 1).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.ops.indexing import Vindex

from zoo.checks import check_positive_float, check_positive_int
from zoo.ops.markov import safe_log
from zoo.ops.moments import correlation_cholesky, weighted_covariances, weighted_means

__all__ = [
    "Family",
    "Gaussian",
    "Poisson",
    "Categorical",
    "Bernoulli",
    "Multinomial",
    "Normal",
    "IndependentBernoulli",
    "MultinomialCounts",
    "normal_log_density",
    "bernoulli_log_density",
    "multinomial_log_density",
]

Params = dict[str, torch.Tensor]


# =========================================================================== densities
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


# =========================================================================== the families
def _refuse(x: torch.Tensor, bad: torch.Tensor, message: str) -> None:
    """Raise ValueError(message, and the first bad value) if ``bad`` (x's shape) holds anywhere."""
    if bool(bad.any()):
        raise ValueError(f"{message}, found {float(x[bad].reshape(-1)[0])}")


def _not_counts(x: torch.Tensor) -> torch.Tensor:
    """Where x is not a non-negative integer: a bool tensor of x's shape."""
    return (x < 0) | (x != x.round())


class Family(ABC):
    """K components of one family: priors, density, estimates, ordering and support.

    Subclasses are frozen dataclasses of their hyperparameters; see the module docstring.
    """

    #: The family's name, as models spell it (``emission="poisson"``).
    name: ClassVar[str] = ""
    #: Dims of the value one component's distribution scores: 1 (a vector of D features), or
    #: 0 for a categorical's category index.
    value_event_dims: ClassVar[int] = 1

    # ------------------------------------------------------------------ declarations
    @property
    @abstractmethod
    def sites(self) -> tuple[str, ...]:
        """The parameter sites, each shaped (K, ...), in the order :meth:`prior` samples them."""

    def site_event_dims(self, name: str) -> int:
        """How many dims site ``name`` has right of its component dim (1, or 2 for matrices)."""
        return 1

    def dims(self, component: str = "component") -> dict[str, list[str]]:
        """ArviZ dims of the sites (without chain and draw), the component dim named ``component``."""
        return {name: [component, "feature"] for name in self.sites}

    # ------------------------------------------------------------------ the model
    @abstractmethod
    def prior(self, dtype: torch.dtype) -> Params:
        """Sample the parameter sites from their priors.

        Call it inside a plate over the K components (dim -1) that the caller opens: every
        site's batch shape is that plate's, its event the per-component parameter.

        Parameters
        ----------
        dtype : torch.dtype
            Of the hyperparameter tensors (and so of the sampled values).

        Returns
        -------
        dict
            {site: value}, each value (*plates, K, ...) as ``pyro.sample`` returns it.
        """

    @abstractmethod
    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        """The distribution of one observation given its component's parameters.

        Parameters
        ----------
        params : dict
            The family's sites, each (*batch, ...) with the site's own event dims on the right:
            gathered for each datum (:meth:`gather`), or all K components (batch (*B, K)).
        validate_args : bool, optional
            As for every torch distribution (None: Pyro's global setting).

        Returns
        -------
        Distribution
            Batch shape ``*batch``; event shape (D,) (none for a categorical).
        """

    def gather(self, params: Params, component: torch.Tensor) -> Params:
        """Each datum's component parameters: ``value[..., component, :]`` of every site.

        A singleton datum dim is put left of the component dim before indexing, so that
        ``Vindex`` broadcasts the parameters' batch dims against ``component``'s shape
        (..., N): under a plate of posterior draws at dim -2 a site is (S, K, ...), expanded
        to (S, 1, K, ...), and with ``component`` (N,) the result is (S, N, ...); under
        enumeration ``component`` is (K, 1) (its values in a dim of their own, left of the
        data plate) and the result (K, 1, ...); with neither, (N, ...).

        Parameters
        ----------
        params : dict
            The family's sites, each (*B, K, ...).
        component : LongTensor
            Each datum's component, any shape that broadcasts with ``*B`` and a data dim.

        Returns
        -------
        dict
            The sites, each (broadcast(*B, component.shape), ...).
        """
        gathered = {}
        for name in self.sites:
            event_dims = self.site_event_dims(name)
            expanded = params[name].unsqueeze(-(event_dims + 2))  # a singleton datum dim left of K
            gathered[name] = Vindex(expanded)[(..., component) + (slice(None),) * event_dims]
        return gathered

    def observation(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The value :meth:`distribution` scores, from data x (*data, D): x in ``dtype``."""
        return x.to(dtype)

    def log_density(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The per-component log-density table log p(x_i | component k, theta_s).

        Computed by :meth:`distribution` itself (not validating its arguments: the data are
        checked once by :meth:`validate`), with batch shape (S, 1, ..., K).

        Parameters
        ----------
        params : dict
            The family's sites with one leading draw dim S: each (S, K, ...).
        x : Tensor, shape (*data, D)
            Observations, any number of data dims (N points, or N sequences by T steps).

        Returns
        -------
        Tensor, shape (S, *data, K)
        """
        broadcast = self._broadcast(params, data_dims=x.dim() - 1)
        value = self.observation(x, params[self.sites[0]].dtype)
        value = value.unsqueeze(-1 - self.value_event_dims)  # a singleton component dim
        return self.distribution(broadcast, validate_args=False).log_prob(value)

    def _broadcast(self, params: Params, data_dims: int) -> Params:
        """The sites (S, K, ...) with singleton data dims between draw and component: (S, 1, ..., K, ...)."""
        return {
            name: value.reshape(value.shape[:1] + (1,) * data_dims + value.shape[1:])
            for name, value in params.items()
            if name in self.sites
        }

    # ------------------------------------------------------------------ starts and labels
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What k-means clusters and :meth:`estimates` average: x (M, D) itself by default."""
        return x

    @abstractmethod
    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        """Weighted maximum-likelihood parameters, smoothed and floored inside the support.

        Parameters
        ----------
        x : Tensor, shape (M, D)
            Observations (no padding).
        weights : Tensor, shape (M, K)
            Each observation's weight per component: one-hot cluster labels, or posterior
            probabilities (an EM step).

        Returns
        -------
        dict
            The sites, each (K, ...), inside the support even for a component without weight.
        """

    @abstractmethod
    def order_key(self, params: Params) -> torch.Tensor:
        """What components are sorted by: sites (*B, K, ...) -> (*B, K)."""

    @abstractmethod
    def validate(self, x: torch.Tensor) -> None:
        """Raise ValueError, naming what is wrong, unless observations x (M, D) lie in the support."""


@dataclass(frozen=True)
class Gaussian(Family):
    """Gaussian components: diagonal covariance, or scales and an LKJ correlation.

    Parameters
    ----------
    num_features : int, optional
        D; None while unknown (then treated as 1: no correlation site).
    covariance : {"diag", "full"}
    center, spread : tuple of float, optional
        Per-feature prior centre and spread (D,); needed by :meth:`prior` and
        :meth:`estimates` (see :meth:`empirical_prior`).
    location_scale : float
        Prior sd of each location, in units of ``spread``.
    scale_log_sd : float
        sd of log(scale) under its LogNormal prior, centred on log(spread).
    correlation_concentration : float
        LKJ concentration (1: uniform over correlation matrices).
    """

    num_features: int | None = None
    covariance: str = "diag"
    center: tuple[float, ...] | None = None
    spread: tuple[float, ...] | None = None
    location_scale: float = 2.0
    scale_log_sd: float = 1.0
    correlation_concentration: float = 2.0

    name: ClassVar[str] = "gaussian"
    COVARIANCES: ClassVar[tuple[str, ...]] = ("diag", "full")

    def __post_init__(self) -> None:
        if self.covariance not in self.COVARIANCES:
            raise ValueError(f"covariance must be one of {self.COVARIANCES}, got {self.covariance!r}")
        if self.num_features is not None:
            check_positive_int(self.num_features, "num_features")
        for argument in ("location_scale", "scale_log_sd", "correlation_concentration"):
            check_positive_float(getattr(self, argument), argument)
        if (self.center is None) != (self.spread is None):
            raise ValueError("center and spread must be given together, or neither")
        if self.spread is not None and not all(s > 0 for s in self.spread):
            raise ValueError(f"spread must be positive, got {self.spread}")
        if self.center is not None and len(self.center) != len(self.spread or ()):
            raise ValueError("center and spread must have one entry per feature")

    @staticmethod
    def empirical_prior(x: torch.Tensor) -> tuple[list[float], list[float]]:
        """The data's mean and standard deviation per feature, x (M, D) -> two lists (D,);
        a spread of 0 (or a single observation) becomes 1."""
        center = x.mean(0)
        spread = x.std(0) if len(x) > 1 else torch.ones_like(center)
        spread = torch.where(spread > 0, spread, torch.ones_like(spread))
        return center.tolist(), spread.tolist()

    @property
    def has_correlations(self) -> bool:
        return self.covariance == "full" and (self.num_features or 0) >= 2

    @property
    def sites(self) -> tuple[str, ...]:
        return ("locs", "scales") + (("corr_cholesky",) if self.has_correlations else ())

    def site_event_dims(self, name: str) -> int:
        return 2 if name == "corr_cholesky" else 1

    def dims(self, component: str = "component") -> dict[str, list[str]]:
        dims = {"locs": [component, "feature"], "scales": [component, "feature"]}
        if self.has_correlations:
            dims["corr_cholesky"] = [component, "feature", "feature_bis"]
        return dims

    def _hyperparameters(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self.center is None or self.spread is None:
            raise ValueError("the Gaussian family needs center and spread (e.g. Gaussian.empirical_prior(x))")
        return torch.tensor(self.center, dtype=dtype), torch.tensor(self.spread, dtype=dtype)

    def prior(self, dtype: torch.dtype) -> Params:
        center, spread = self._hyperparameters(dtype)
        params = {
            "locs": pyro.sample("locs", dist.Normal(center, self.location_scale * spread).to_event(1)),
            "scales": pyro.sample("scales", dist.LogNormal(spread.log(), self.scale_log_sd).to_event(1)),
        }
        if self.has_correlations:
            concentration = torch.tensor(self.correlation_concentration, dtype=dtype)
            params["corr_cholesky"] = pyro.sample("corr_cholesky", dist.LKJCholesky(self.num_features, concentration))
        return params

    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        locs, scales = params["locs"], params["scales"]
        if self.has_correlations:
            tril = scales.unsqueeze(-1) * params["corr_cholesky"]
            return dist.MultivariateNormal(locs, scale_tril=tril, validate_args=validate_args)
        return Normal(locs, scales, validate_args=validate_args).to_event(1)

    def log_density(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """As :meth:`Family.log_density`; with a diagonal covariance straight from
        :func:`normal_log_density` (the function the distribution's ``log_prob`` calls),
        without building a distribution or summing over a single feature."""
        if self.has_correlations:
            return super().log_density(params, x)
        broadcast = self._broadcast(params, data_dims=x.dim() - 1)
        value = x.to(params["locs"].dtype).unsqueeze(-2)  # (*data, 1, D): a singleton component dim
        density = normal_log_density(value, broadcast["locs"], broadcast["scales"])  # (S, *data, K, D)
        return density[..., 0] if density.shape[-1] == 1 else density.sum(-1)

    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        """Weighted means; weighted sds floored at 1% of ``spread`` (half of it for a component
        with at most 2 observations' weight); correlations shrunk 1% towards 0 (the identity
        where there are too few observations, see :func:`zoo.ops.correlation_cholesky`)."""
        _, spread = self._hyperparameters(x.dtype)
        counts, _, means = weighted_means(x, weights)
        moments = weighted_covariances(x, weights, means, full=self.has_correlations)
        variance = moments.diagonal(dim1=-2, dim2=-1) if self.has_correlations else moments  # (K, D)
        scales = variance.sqrt().clamp(min=1e-2 * spread)
        # too few observations for a spread (or none): half the data's
        scales = torch.where((counts.unsqueeze(-1) > 2) & torch.isfinite(scales), scales, 0.5 * spread)
        values = {"locs": means, "scales": scales}
        if self.has_correlations:
            values["corr_cholesky"] = correlation_cholesky(moments, counts)
        return values

    def order_key(self, params: Params) -> torch.Tensor:
        """The location on the first feature."""
        return params["locs"][..., 0]

    def validate(self, x: torch.Tensor) -> None:
        _refuse(x, ~torch.isfinite(x), "data.x must be finite for the Gaussian family")


@dataclass(frozen=True)
class Poisson(Family):
    """Poisson counts, D independent features per component.

    Parameters
    ----------
    center : tuple of float, optional
        Per-feature prior median of the rates (D,), e.g. the mean count
        (:meth:`empirical_prior`); needed by :meth:`prior`.
    rate_log_sd : float
        sd of log(rate) under its LogNormal prior.
    """

    center: tuple[float, ...] | None = None
    rate_log_sd: float = 1.0

    name: ClassVar[str] = "poisson"

    def __post_init__(self) -> None:
        check_positive_float(self.rate_log_sd, "rate_log_sd")
        if self.center is not None and not all(c > 0 for c in self.center):
            raise ValueError(f"center must be positive (a median rate), got {self.center}")

    @staticmethod
    def empirical_prior(x: torch.Tensor) -> list[float]:
        """The mean count per feature, floored at 0.1: x (M, D) -> a list (D,)."""
        return x.mean(0).clamp(min=0.1).tolist()

    @property
    def sites(self) -> tuple[str, ...]:
        return ("rates",)

    def prior(self, dtype: torch.dtype) -> Params:
        if self.center is None:
            raise ValueError("the Poisson family needs center (e.g. Poisson.empirical_prior(x))")
        center = torch.tensor(self.center, dtype=dtype)
        return {"rates": pyro.sample("rates", dist.LogNormal(center.log(), self.rate_log_sd).to_event(1))}

    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        return dist.Poisson(params["rates"], validate_args=validate_args).to_event(1)

    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        """Weighted mean counts, floored at 0.05."""
        return {"rates": weighted_means(x, weights).means.clamp(min=0.05)}

    def order_key(self, params: Params) -> torch.Tensor:
        """The rate of the first feature."""
        return params["rates"][..., 0]

    def validate(self, x: torch.Tensor) -> None:
        _refuse(x, _not_counts(x), "data.x must hold non-negative integer counts for the Poisson family")


@dataclass(frozen=True)
class Categorical(Family):
    """One category index in 0..C-1 per observation (a single column of x).

    Parameters
    ----------
    num_categories : int, optional
        C >= 2; None while unknown (needed by :meth:`prior`, :meth:`features`, :meth:`estimates`).
    concentration : float
        Of the symmetric Dirichlet prior on each component's probabilities.
    """

    num_categories: int | None = None
    concentration: float = 1.0

    name: ClassVar[str] = "categorical"
    value_event_dims: ClassVar[int] = 0

    def __post_init__(self) -> None:
        check_positive_float(self.concentration, "concentration")
        if self.num_categories is not None:
            check_positive_int(self.num_categories, "num_categories", minimum=2)

    @property
    def sites(self) -> tuple[str, ...]:
        return ("probs",)

    def dims(self, component: str = "component") -> dict[str, list[str]]:
        return {"probs": [component, "category"]}

    def _size(self) -> int:
        if self.num_categories is None:
            raise ValueError("the categorical family needs num_categories")
        return self.num_categories

    def prior(self, dtype: torch.dtype) -> Params:
        concentration = torch.full((self._size(),), self.concentration, dtype=dtype)
        return {"probs": pyro.sample("probs", dist.Dirichlet(concentration))}

    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        return dist.Categorical(logits=safe_log(params["probs"]), validate_args=validate_args)

    def observation(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The category index, x[..., 0] as integers: (*data,)."""
        return x[..., 0].long()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The categories one-hot: (M, C)."""
        return torch.nn.functional.one_hot(x[:, 0].long(), self._size()).to(x.dtype)

    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        """Weighted category frequencies with half a pseudo-count per category."""
        counts, sums, _ = weighted_means(self.features(x), weights)
        return {"probs": (sums + 0.5) / (counts.unsqueeze(-1) + 0.5 * sums.shape[1])}

    def order_key(self, params: Params) -> torch.Tensor:
        """The expected category index."""
        probs = params["probs"]
        return (probs * torch.arange(probs.shape[-1], dtype=probs.dtype)).sum(-1)

    def validate(self, x: torch.Tensor) -> None:
        if x.shape[-1] != 1:
            raise ValueError(
                f"data.x must have one feature (the category index) for the categorical family, got {x.shape[-1]}"
            )
        _refuse(x, _not_counts(x), "data.x must hold category indices 0, 1, ... (integers) for the categorical family")
        if self.num_categories is not None and bool((x >= self.num_categories).any()):
            raise ValueError(
                f"data.x holds category {int(x.max())}, outside the alphabet 0..{self.num_categories - 1} "
                f"(num_categories={self.num_categories})"
            )


@dataclass(frozen=True)
class Bernoulli(Family):
    """D independent binary features per component.

    Parameters
    ----------
    num_features : int, optional
        D; None while unknown (needed by :meth:`prior`).
    concentration : float
        Both parameters of the symmetric Beta prior on each probability.
    """

    num_features: int | None = None
    concentration: float = 1.0

    name: ClassVar[str] = "bernoulli"

    def __post_init__(self) -> None:
        check_positive_float(self.concentration, "concentration")
        if self.num_features is not None:
            check_positive_int(self.num_features, "num_features")

    @property
    def sites(self) -> tuple[str, ...]:
        return ("probs",)

    def prior(self, dtype: torch.dtype) -> Params:
        concentration = torch.full((self.num_features or 1,), self.concentration, dtype=dtype)
        return {"probs": pyro.sample("probs", dist.Beta(concentration, concentration).to_event(1))}

    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        return IndependentBernoulli(params["probs"], validate_args=validate_args)

    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        """Weighted frequencies of 1 with half a pseudo-count each for 0 and 1."""
        counts, sums, _ = weighted_means(x, weights)
        return {"probs": (sums + 0.5) / (counts.unsqueeze(-1) + 1.0)}

    def order_key(self, params: Params) -> torch.Tensor:
        """The mean probability over features."""
        return params["probs"].mean(-1)

    def validate(self, x: torch.Tensor) -> None:
        _refuse(x, (x != 0) & (x != 1), "data.x must hold only 0 and 1 for the Bernoulli family")


@dataclass(frozen=True)
class Multinomial(Family):
    """Counts over D categories per observation (any total), e.g. word counts.

    Parameters
    ----------
    num_features : int, optional
        D; None while unknown (needed by :meth:`prior`).
    concentration : float
        Of the symmetric Dirichlet prior on each component's probabilities.
    total_count : int
        Trials per generated observation (the density scores any total).
    """

    num_features: int | None = None
    concentration: float = 1.0
    total_count: int = 1

    name: ClassVar[str] = "multinomial"

    def __post_init__(self) -> None:
        check_positive_float(self.concentration, "concentration")
        check_positive_int(self.total_count, "total_count")
        if self.num_features is not None:
            check_positive_int(self.num_features, "num_features", minimum=2)

    @property
    def sites(self) -> tuple[str, ...]:
        return ("probs",)

    def prior(self, dtype: torch.dtype) -> Params:
        if self.num_features is None:
            raise ValueError("the multinomial family needs num_features")
        concentration = torch.full((self.num_features,), self.concentration, dtype=dtype)
        return {"probs": pyro.sample("probs", dist.Dirichlet(concentration))}

    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        return MultinomialCounts(self.total_count, probs=params["probs"], validate_args=validate_args)

    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        """Weighted column totals normalised, with half a pseudo-count per column."""
        _, sums, _ = weighted_means(x, weights)
        return {"probs": (sums + 0.5) / (sums.sum(-1, keepdim=True) + 0.5 * sums.shape[1])}

    def order_key(self, params: Params) -> torch.Tensor:
        """The expected column index of one trial."""
        probs = params["probs"]
        return (probs * torch.arange(probs.shape[-1], dtype=probs.dtype)).sum(-1)

    def validate(self, x: torch.Tensor) -> None:
        _refuse(x, _not_counts(x), "data.x must hold non-negative integer counts for the multinomial family")
