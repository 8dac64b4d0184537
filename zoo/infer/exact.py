"""Exact inference: the closed-form posterior of a conjugate model, in milliseconds; the runner of
``zoo.Exact``.

A model that can take ``zoo.Exact()`` declares ``"exact"`` in its ``methods`` and offers
``exact_posterior(data)``, returning an object with

* ``sample(num_samples) -> dict[str, Tensor]``: exact joint draws, each (num_samples, *site_shape),
  drawn with torch's global generator (the runner seeds it privately);
* ``mean() -> dict[str, Tensor]``: the posterior mean of every site;
* ``marginals() -> dict[str, Distribution]`` (optional): each site's marginal posterior.

``exact_posterior`` raises ValueError for data it has no closed form for (e.g. unlabeled rows of
a Naive Bayes), before any work, and must not draw random numbers (its result is a function of
the data). The Fit holds ``num_posterior_samples`` exact draws as one chain and, as its point
estimate, the **posterior mean** (for Naive Bayes: Laplace-smoothed probabilities, the mean of
each class's feature means, and E[precision] = a_n / b_n).

The draws are drawn on first use. The fit keeps the conjugate posterior itself (a few parameters
per site) and an :class:`ExactDraws` that draws from it, seeded with ``Exact.seed``, the first
time anything reads ``fit.draws`` (summaries, ``to_arviz``, ``log_prob``, ``sample``,
``marginals``, ``save``); see :class:`zoo.Fit`. The same seed gives the same draws, whenever and in
whatever order they are read, and the same draws an eager sampler seeded the same way gives.
``fit.wall_time`` is the closed form's time (the conjugate update and the posterior mean; the
data checks run before, in the model's ``prepare``), and so is what tables built from it
(``zoo.compare``, SBC) show for Exact. Drawing the 1000 joint draws costs more than that, once,
on first use: tens of milliseconds for digits' 64 features, about a second for MNIST's 784 x 10
Beta posteriors. Predictions from the point estimate (``fit.point``: ``fit.discrete()``,
``zoo.models.naive_bayes.predict``) never draw them.
"""

from __future__ import annotations

import time
from typing import Protocol

import torch

from zoo.datasets.dataset import Dataset
from zoo.infer.methods import Exact
from zoo.infer.runtime import isolated, threads
from zoo.models.base import Model
from zoo.results import Fit

__all__ = ["Exact", "ExactDraws", "run_exact", "ConjugatePosterior"]


class ConjugatePosterior(Protocol):
    """What a model's ``exact_posterior(data)`` returns."""

    def sample(self, num_samples: int) -> dict[str, torch.Tensor]: ...

    def mean(self) -> dict[str, torch.Tensor]: ...


class ExactDraws:
    """The exact posterior draws of a fit, drawn when first asked for (a ``DrawsSource``).

    Calling it draws ``num_samples`` joint draws from ``posterior`` with torch's generator seeded
    to ``seed`` (privately: the caller's random state is untouched), so every call returns the
    same draws; the Fit calls it once and keeps the result.

    Parameters
    ----------
    model : zoo.models.Model
        The fitted model (its ``relabel`` and thread count apply).
    posterior : ConjugatePosterior
        The closed-form posterior.
    num_samples : int
        Draws in the single chain.
    seed : int
        Seed of the draws.
    """

    def __init__(self, model: Model, posterior: ConjugatePosterior, num_samples: int, seed: int) -> None:
        self.model = model
        self.posterior = posterior
        self.num_samples = num_samples
        self.seed = seed

    def __call__(self) -> dict[str, torch.Tensor]:
        """The draws: {site: Tensor shaped (1, num_samples, *site_shape)}."""
        with isolated(seed=self.seed), threads(self.model.num_threads), torch.no_grad():
            samples = self.posterior.sample(self.num_samples)
        return self.model.relabel({name: value.unsqueeze(0) for name, value in samples.items()})

    def __repr__(self) -> str:
        return f"ExactDraws({type(self.posterior).__name__}, samples={self.num_samples}, seed={self.seed})"


def run_exact(model: Model, data: Dataset, method: Exact) -> Fit:
    """Fit ``model`` (already prepared for ``data``) by its conjugate posterior. See :class:`~zoo.infer.methods.Exact`.

    Only the closed form is computed here (and timed as ``fit.wall_time``); the Fit's draws come
    from an :class:`ExactDraws` on their first use.
    """
    start = time.perf_counter()
    # No seed here: exact_posterior and mean() are deterministic, and seeding torch's generator
    # (torch.manual_seed also queues a CUDA seed, with a stack trace) costs 0.13 ms, a quarter of
    # a whole digits fit; ExactDraws seeds when it draws.
    with isolated() as param_state, threads(model.num_threads), torch.no_grad():
        posterior: ConjugatePosterior = model.exact_posterior(data)  # type: ignore[attr-defined]
        point = posterior.mean()
    return Fit(
        model=model,
        method=method,
        draws=ExactDraws(model, posterior, method.num_posterior_samples, method.seed),
        point=point,
        train=data,
        diagnostics={"exact": True, "converged": True},
        wall_time=time.perf_counter() - start,
        param_state=param_state,
    )
