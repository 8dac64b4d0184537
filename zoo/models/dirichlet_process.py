r"""Dirichlet-process mixture: a mixture whose number of components is learned, by stick-breaking.

Generative story
----------------
Sethuraman's (1994) stick-breaking construction of a Dirichlet process with concentration
alpha, truncated at T components (Ishwaran and James 2001), over one shared family of
:mod:`zoo.models.families`::

    for k in 1..T-1:
        sticks[k]     ~ Beta(1, alpha)                        the fraction broken off what is left
    weights[k]       = sticks[k] * prod_{j<k} (1 - sticks[j]),  weights[T] = prod_{j<T} (1 - sticks[j])
    for k in 1..T:                                             (component plate)
        theta[k]     ~ the family's prior
    for i in 1..N:                                             (data plate)
        assignment[i] ~ Categorical(weights)                   (enumerated)
        x[i]          ~ family(theta[assignment[i]])

The prior expects ``alpha log(1 + N / alpha)`` clusters among N points: a small alpha asks for
few. Truncation at T is exact where the last weights are negligible (the expected weight left
after T - 1 breaks is ``(alpha / (1 + alpha)) ** (T - 1)``).

Sample sites
------------
==============  ============  ====================================================
name            shape         support
==============  ============  ====================================================
``sticks``      (T - 1,)      (0, 1)
family sites    (T, ...)      as :class:`~zoo.models.Mixture`
``assignment``  (N,)          {0, ..., T-1}; enumerated, never seen by a guide
``x``           (N, D)        observed
==============  ============  ====================================================

``model.weights(fit.draws)`` gives the weights of each draw; :func:`clusters_in_use` the
posterior of the number of clusters the data occupy (distinct values of the assignments,
drawn from ``p(assignment | x, theta)`` for each posterior draw).

Labels
------
Stick-breaking is not exchangeable (earlier sticks get more weight a priori), so the draws are
not relabelled: the components of a well-mixed fit come roughly in order of size, but a chain
may still swap two of similar weight. Summaries that name no component (weights sorted,
:func:`clusters_in_use`, densities) are free of it.
"""

from __future__ import annotations

from typing import Any

import pyro
import pyro.distributions as dist
import torch

from zoo.checks import check_positive_float, check_positive_int
from zoo.datasets import simulate
from zoo.datasets.dataset import Dataset
from zoo.models.family_mixture import Mixture
from zoo.models.registry import register

__all__ = ["DirichletProcessMixture", "clusters_in_use"]


@register("dp_mixture")
class DirichletProcessMixture(Mixture):
    """A truncated stick-breaking Dirichlet-process mixture of one family.

    Parameters
    ----------
    truncation : int
        T, the number of components kept (>= 2).
    concentration : float
        alpha of the Dirichlet process.
    family, features, covariance, component_concentration, num_features, num_categories, prior_center, prior_spread
        As for :class:`~zoo.models.Mixture`.

    Examples
    --------
    >>> import zoo
    >>> model = zoo.models.DirichletProcessMixture(truncation=8, concentration=1.0)
    >>> fit = zoo.fit(model, zoo.datasets.load("old_faithful"), zoo.SVI(guide="delta", num_steps=20))
    >>> fit.model.weights(fit.point).shape
    torch.Size([8])
    """

    def __init__(
        self,
        truncation: int,
        concentration: float = 1.0,
        family: str = "gaussian",
        features: list[str] | None = None,
        covariance: str = "diag",
        component_concentration: float = 1.0,
        num_features: int | None = None,
        num_categories: int | list[int] | None = None,
        prior_center: list[float] | None = None,
        prior_spread: list[float] | None = None,
    ) -> None:
        check_positive_int(truncation, "truncation", minimum=2)
        super().__init__(
            truncation, family, features, covariance, 1.0, component_concentration, num_features, num_categories, prior_center, prior_spread
        )
        self.truncation = truncation
        self.concentration = check_positive_float(concentration, "concentration")

    @classmethod
    def example(cls) -> tuple["DirichletProcessMixture", Dataset]:
        return cls(truncation=3), simulate.gaussian_mixture(num_data=60, num_components=2, seed=0)

    @classmethod
    def examples(cls) -> list[tuple["DirichletProcessMixture", Dataset]]:
        """Gaussian (the stick-breaking weights are what differs from :class:`Mixture`)."""
        return [cls.example()]

    def dims(self) -> dict[str, list[str]]:
        dims = super().dims()
        del dims["weights"]
        return dims | {"sticks": ["break"]}

    def coords(self, data: Dataset | None = None) -> dict[str, list[Any]]:
        return super().coords(data) | {"break": list(range(self.truncation - 1))}

    def sample_weights(self) -> dict[str, torch.Tensor]:
        """{"sticks": (T - 1,)}, each ~ Beta(1, alpha)."""
        ones = torch.ones(self.truncation - 1)
        return {"sticks": pyro.sample("sticks", dist.Beta(ones, self.concentration * ones).to_event(1))}

    def weights(self, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """The stick-breaking weights (*B, T) of sticks (*B, T - 1)."""
        sticks = draws["sticks"]
        left = torch.cumprod(1 - sticks, -1)  # what remains after each break: (*B, T - 1)
        ones = torch.ones_like(sticks[..., :1])
        return torch.cat([sticks, ones], -1) * torch.cat([ones, left], -1)

    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """The mixture's start, its components sorted by weight and the weights turned into sticks."""
        values = super().initial_values(data, seed)
        weights = values.pop("weights")
        order = weights.argsort(descending=True)
        weights = weights[order]
        left = 1 - torch.cat([torch.zeros(1), weights.cumsum(0)[:-1]])  # stick remaining before each break
        sticks = (weights[:-1] / left[:-1]).clamp(1e-3, 1 - 1e-3)
        return {"sticks": sticks} | {name: value[order] for name, value in values.items()}

    def relabel(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """None: stick-breaking is not exchangeable (see the module docs)."""
        return draws


def clusters_in_use(fit: Any, data: Dataset | None = None, seed: int = 0) -> torch.Tensor:
    """The posterior of the number of clusters the data occupy.

    For each posterior draw theta_s, one draw of every point's assignment from
    ``p(assignment | x, theta_s)`` (exact, the responsibilities), and the number of distinct
    components among them.

    Parameters
    ----------
    fit : zoo.Fit
        A fit of a mixture (:class:`DirichletProcessMixture` or :class:`~zoo.models.Mixture`).
    data : Dataset, optional
        Default: the training data.
    seed : int

    Returns
    -------
    LongTensor, shape (num_chains * num_draws,)
    """
    data = fit.train if data is None else data
    flat = {name: value.reshape((-1,) + value.shape[2:]) for name, value in fit.draws.items()}
    responsibilities = fit.model.marginals(flat, data)["assignment"]  # (S, N, T)
    generator = torch.Generator().manual_seed(seed)
    assignments = torch.multinomial(responsibilities.reshape(-1, responsibilities.shape[-1]), 1, generator=generator)
    occupied = torch.nn.functional.one_hot(assignments.reshape(responsibilities.shape[:-1]), responsibilities.shape[-1])
    return (occupied.sum(-2) > 0).sum(-1)
