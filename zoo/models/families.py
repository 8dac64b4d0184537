r"""Emission and component families, written once for every model with K discrete components.

A mixture's components, an HMM's emissions and Naive Bayes' class-conditional features are the
same thing: K parameter sets of one family, and a density for an observation given its
component. What a family states (its priors as Pyro sites, its distribution, its log-density
table, its weighted estimates, ordering and support) is :class:`zoo.models.family.Family`; the
continuous and count families are here, the families of probabilities (categorical, Bernoulli,
multinomial) in :mod:`zoo.models.families_discrete`. Their densities (written once, for broadcasting) and support checks are
:mod:`zoo.ops.densities`.

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

from dataclasses import dataclass
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch

from zoo.checks import check_positive_float, check_positive_int
from zoo.models.family import Family, Params, not_counts, refuse_values
from zoo.ops.densities import (
    Normal,
    all_counts,
    conditional_gaussian_sample,
    masked_gaussian_log_density,
    normal_log_density,
)
from zoo.ops.moments import correlation_cholesky, weighted_covariances, weighted_means

__all__ = ["Family", "Gaussian", "Poisson"]

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

    def log_density(self, params: Params, x: torch.Tensor, observed: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`Family.log_density`; with a diagonal covariance straight from
        :func:`normal_log_density` (the function the distribution's ``log_prob`` calls),
        without building a distribution or summing over a single feature. With a full
        covariance and missing entries, the density of the observed sub-block
        (:func:`zoo.ops.densities.masked_gaussian_log_density`)."""
        if self.has_correlations:
            if observed is None:
                return super().log_density(params, x)
            broadcast = self._broadcast(params, data_dims=x.dim() - 1)
            tril = broadcast["scales"].unsqueeze(-1) * broadcast["corr_cholesky"]
            return masked_gaussian_log_density(x.unsqueeze(-2), observed.unsqueeze(-2), broadcast["locs"], tril)
        broadcast = self._broadcast(params, data_dims=x.dim() - 1)
        value = x.to(params["locs"].dtype).unsqueeze(-2)  # (*data, 1, D): a singleton component dim
        density = normal_log_density(value, broadcast["locs"], broadcast["scales"])  # (S, *data, K, D)
        if observed is not None:
            density = density * observed.unsqueeze(-2).to(density.dtype)
        return density[..., 0] if density.shape[-1] == 1 else density.sum(-1)

    def fill(self, params: Params, component: torch.Tensor, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """As :meth:`Family.fill`; with a full covariance, from the conditional Gaussian of the
        missing coordinates given the observed ones (:func:`zoo.ops.densities.conditional_gaussian_sample`)."""
        if not self.has_correlations:
            return super().fill(params, component, x, observed)
        gathered = self.gather(params, component)
        tril = gathered["scales"].unsqueeze(-1) * gathered["corr_cholesky"]
        return conditional_gaussian_sample(x, observed, gathered["locs"], tril)

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

    def in_support(self, x: torch.Tensor) -> bool:
        return bool(torch.isfinite(x).all())

    def validate(self, x: torch.Tensor) -> None:
        if not self.in_support(x):
            refuse_values(x, ~torch.isfinite(x), "data.x must be finite for the Gaussian family")


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

    def in_support(self, x: torch.Tensor) -> bool:
        return all_counts(x)

    def validate(self, x: torch.Tensor) -> None:
        if not self.in_support(x):
            refuse_values(x, not_counts(x), "data.x must hold non-negative integer counts for the Poisson family")
