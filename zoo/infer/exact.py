"""Exact inference: the closed-form posterior of a conjugate model, in milliseconds.

A model that can take ``zoo.Exact()`` declares ``"exact"`` in its ``methods`` and offers
``exact_posterior(data)``, returning an object with

* ``sample(num_samples) -> dict[str, Tensor]``: exact joint draws, each (num_samples, *site_shape),
  drawn with torch's global generator (the runner seeds it privately);
* ``mean() -> dict[str, Tensor]``: the posterior mean of every site;
* ``marginals() -> dict[str, Distribution]`` (optional): each site's marginal posterior.

``exact_posterior`` raises ValueError for data it has no closed form for (e.g. unlabeled rows of
a Naive Bayes), before any work. The Fit holds ``num_posterior_samples`` exact draws as one chain
and, as its point estimate, the **posterior mean** (for Naive Bayes: Laplace-smoothed
probabilities, the mean of each class's feature means, and E[precision] = a_n / b_n).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from zoo.datasets.dataset import Dataset
from zoo.infer.runtime import check_positive_int, isolated, threads
from zoo.models.base import Model
from zoo.results import Fit

__all__ = ["Exact", "run_exact", "ConjugatePosterior"]


class ConjugatePosterior(Protocol):
    """What a model's ``exact_posterior(data)`` returns."""

    def sample(self, num_samples: int) -> dict[str, torch.Tensor]: ...

    def mean(self) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class Exact:
    """The closed-form posterior of a conjugate model (e.g. Naive Bayes with every row labeled).

    Parameters
    ----------
    num_posterior_samples : int
        Exact posterior draws kept (one chain).
    seed : int
        Seed of the draws.
    progress : bool
        Accepted for symmetry with the other methods; there is nothing to show.
    """

    num_posterior_samples: int = 1000
    seed: int = 0
    progress: bool = True

    kind = "exact"

    def __post_init__(self) -> None:
        check_positive_int(self.num_posterior_samples, "num_posterior_samples")
        check_positive_int(self.seed, "seed", minimum=0)

    def label(self, model: Model | None = None) -> str:
        return "exact"

    def validate(self, model: Model, data: Dataset) -> None:
        """The model must offer ``exact_posterior`` (its data checks run in the runner, first)."""
        if not callable(getattr(model, "exact_posterior", None)):
            raise ValueError(f"{type(model).__name__} has no closed-form posterior (exact_posterior)")

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def run_exact(model: Model, data: Dataset, method: Exact) -> Fit:
    """Fit ``model`` (already prepared for ``data``) by its conjugate posterior. See :class:`Exact`."""
    start = time.perf_counter()
    with isolated(seed=method.seed) as param_state, threads(model.num_threads):
        posterior: ConjugatePosterior = model.exact_posterior(data)  # type: ignore[attr-defined]
        with torch.no_grad():
            samples = posterior.sample(method.num_posterior_samples)
            point = posterior.mean()
    draws = model.relabel({name: value.unsqueeze(0) for name, value in samples.items()})
    return Fit(
        model=model,
        method=method,
        draws=draws,
        point=point,
        train=data,
        diagnostics={"exact": True, "converged": True},
        wall_time=time.perf_counter() - start,
        param_state=param_state,
    )
