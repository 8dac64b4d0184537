"""Honest LOO: point-mass fits refused, variational fits importance-weighted, Pareto k warned of."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import zoo
from zoo import diagnostics
from zoo.datasets import simulate
from test_compare_sbc import SumOfTwoNormals as ForwardSumOfTwoNormals  # the model, forward only


class SumOfTwoNormals(ForwardSumOfTwoNormals):
    """a, b ~ Normal(0, 1); x_i ~ Normal(a + b, 1) (test_compare_sbc's model), stating its
    global story and collapsed likelihood too, so that SVI keeps each draw's importance terms.

    The data see only s = a + b ~ Normal(0, 2), so every leave-one-out posterior of s is a
    closed-form Normal: precision 1/2 + (n - 1), mean sum_{j != i} x_j / precision, and the
    exact LOO predictive of x_i is Normal(mean, 1 / precision + 1).
    """

    def sample_globals(self) -> dict[str, torch.Tensor]:
        return {"a": pyro.sample("a", dist.Normal(0.0, 1.0)), "b": pyro.sample("b", dist.Normal(0.0, 1.0))}

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: zoo.Dataset) -> torch.Tensor:
        total = (draws["a"] + draws["b"]).reshape(-1, 1)  # (S, 1)
        return dist.Normal(total, 1.0).log_prob(data.x.reshape(1, -1))  # (S, N)


def exact_loo(x: torch.Tensor) -> float:
    """sum_i log p(x_i | x_{-i}) for SumOfTwoNormals, in closed form (one conjugate update per
    left-out point)."""
    x = x.double().reshape(-1)
    precision = 0.5 + (len(x) - 1)
    means = (x.sum() - x) / precision
    return float(torch.distributions.Normal(means, math.sqrt(1.0 / precision + 1.0)).log_prob(x).sum())


def exact_p_loo(x: torch.Tensor) -> float:
    """lppd - elpd_loo for SumOfTwoNormals in closed form: lppd sums the full posterior's
    predictive densities, Normal(sum x / (1/2 + n), 1 / (1/2 + n) + 1)."""
    x = x.double().reshape(-1)
    precision = 0.5 + len(x)
    predictive = torch.distributions.Normal(x.sum() / precision, math.sqrt(1.0 / precision + 1.0))
    return float(predictive.log_prob(x).sum()) - exact_loo(x)


def _unweighted_loo(fit: zoo.Fit) -> float:
    """PSIS-LOO of a fit's draws as if they were posterior draws (no p / q weights)."""
    log_likelihood = fit.log_likelihood().double().reshape(-1, len(fit.train)).numpy()  # (S, N)
    ratios = -log_likelihood.T
    weights, _ = diagnostics._arviz().psislw(ratios - ratios.max(1, keepdims=True))
    joint = weights + log_likelihood.T
    top = joint.max(1, keepdims=True)
    return float((top[:, 0] + np.log(np.exp(joint - top).sum(1))).sum())


@pytest.mark.slow
def test_loo_of_a_variational_fit_equals_exact_loo_by_refitting_a_conjugate_model() -> None:
    """PSIS-LOO of a full-rank Gaussian guide's draws, importance-weighted by p / q, equals the
    exact LOO (a closed-form refit per left-out point) within its Monte Carlo error.

    The error bound is computed from the draws: the delta-method standard error of each
    self-normalised importance-sampling estimate log sum_s w_s p(x_i | theta_s), with w the
    normalised LOO weights, summed over points (as if their errors were perfectly
    correlated: conservative), times 2. The same draws without the weights p / q (what
    ``az.loo`` computes from them) are further from the truth: q is not the posterior.

    The mean-field guide on the same posterior (too narrow across the a - b ridge) makes the
    importance ratios heavy-tailed: zoo says so with a ParetoKWarning rather than vouch for
    its number.
    """
    generator = torch.Generator().manual_seed(3)
    x = 0.8 + torch.randn(20, generator=generator)
    method = zoo.SVI(
        guide="mvn", num_steps=200, learning_rate=0.2, learning_rate_schedule="exponential",
        num_particles=16, num_posterior_samples=2000, seed=0, progress=False,
    )
    fit = zoo.fit(SumOfTwoNormals(), zoo.Dataset(x), method)
    assert fit.posterior_kind == "approximate"
    scores = diagnostics.loo(fit)
    assert float(scores["pareto_k"].max()) < 0.5

    log_likelihood = fit.log_likelihood().reshape(-1, len(x)).double()  # (S, N)
    log_weight = fit.sample_stats["log_prior"].reshape(-1) + log_likelihood.sum(1) - fit.sample_stats["log_guide"].reshape(-1)
    weights = torch.softmax(log_weight[:, None] - log_likelihood, 0)  # (S, N), LOO weights
    density = log_likelihood.exp()
    mean = (weights * density).sum(0)
    standard_error = float((((weights**2 * (density - mean) ** 2).sum(0)).sqrt() / mean).sum())
    assert 0.0 < standard_error < 0.1

    truth = exact_loo(x)
    assert float(scores["elpd_loo"]) == pytest.approx(truth, abs=2 * standard_error)
    assert float(scores["p_loo"]) == pytest.approx(exact_p_loo(x), abs=2 * standard_error)
    assert abs(_unweighted_loo(fit) - truth) > abs(float(scores["elpd_loo"]) - truth)

    mean_field = zoo.fit(SumOfTwoNormals(), zoo.Dataset(x), dataclasses.replace(method, guide="normal", num_posterior_samples=500))
    with pytest.warns(diagnostics.ParetoKWarning, match="svi:normal"):
        diagnostics.loo(mean_field)


@pytest.mark.slow
def test_loo_refuses_map_fits_and_never_ranks_them() -> None:
    """The trap of issue 14: MAP fits of K = 1..6 components, whose 'LOO' is the in-sample
    log-likelihood and so grows with K. zoo refuses each, and refuses to rank them."""
    data = simulate.gaussian_mixture(num_data=80, num_components=2, num_features=1, seed=0)
    fits = {
        f"K={k}": zoo.fit(zoo.models.GaussianMixture(k), data, zoo.SVI(guide="delta", num_steps=100, progress=False))
        for k in range(1, 7)
    }
    in_sample = [float(fit.log_prob().sum()) for fit in fits.values()]
    assert in_sample[-1] > in_sample[0]  # what a LOO over one point would have ranked by
    for name, fit in fits.items():
        assert fit.posterior_kind == "point"
        with pytest.raises(diagnostics.PointMassError, match="point-mass fit.*held-out.*BIC"):
            diagnostics.loo(fit)
        with pytest.raises(diagnostics.PointMassError, match="point-mass"):
            diagnostics.loo(fit.to_arviz(posterior_predictive=False))  # the attributes travel
    with pytest.raises(diagnostics.PointMassError):
        diagnostics.compare(fits)


def test_loo_of_an_inference_data_of_identical_draws_is_refused() -> None:
    """An InferenceData from elsewhere whose draws all give the same log-likelihood."""
    data = simulate.gaussian_mixture(num_data=20, num_components=2, seed=0)
    fit = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="delta", num_steps=20, progress=False))
    log_likelihood = fit.log_likelihood().expand(1, 5, -1)
    idata = diagnostics.inference_data({"mu": torch.zeros(1, 5)}, log_likelihood={"x": log_likelihood})
    with pytest.raises(diagnostics.PointMassError):
        diagnostics.loo(idata)


def test_loo_over_one_sequence_is_refused() -> None:
    data = zoo.datasets.load("earthquakes")
    assert len(data) == 1
    fit = zoo.fit(zoo.models.HiddenMarkovModel(2), data, zoo.SVI(guide="normal", num_steps=20, num_posterior_samples=20, progress=False))
    with pytest.raises(ValueError, match="over 1 sequence.*nothing to cross-validate"):
        diagnostics.loo(fit)


def test_a_high_pareto_k_is_warned_of_by_name() -> None:
    """Draws of q far narrower than the posterior (20 steps of a mean-field guide started at
    a small scale): the importance ratios have heavy tails, and zoo says so."""
    data = simulate.gaussian_mixture(num_data=40, num_components=2, seed=0)
    fit = zoo.fit(
        zoo.models.GaussianMixture(2), data,
        zoo.SVI(guide="normal", num_steps=20, num_posterior_samples=100, progress=False),
    )
    with pytest.warns(diagnostics.ParetoKWarning, match="svi:normal: Pareto k > .* points"):
        scores = diagnostics.loo(fit)
    assert bool(scores["warning"])


def test_a_variational_fit_scored_on_other_data_is_refused() -> None:
    data = simulate.gaussian_mixture(num_data=40, num_components=2, seed=0)
    train, test = data.split(test_fraction=0.5, seed=0)
    fit = zoo.fit(zoo.models.GaussianMixture(2), train, zoo.SVI(guide="normal", num_steps=20, num_posterior_samples=50, progress=False))
    with pytest.raises(ValueError, match="training data"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", diagnostics.ParetoKWarning)
            diagnostics.loo(fit, test)
