"""The zero-inflated Poisson (the worked example of docs/add_a_model.md) against independent
computations: scipy's Poisson pmf for its likelihood, a brute-force grid posterior for NUTS.

Everything a model shares with the others (collapsed == enumerated, save/load, bad input, ...) is
checked by tests/test_contract.py over the registry; only what is this model's own is here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import zoo
from zoo.models import ZeroInflatedPoisson


def test_log_likelihood_is_the_zero_inflated_pmf() -> None:
    model, data = ZeroInflatedPoisson.example()
    model = model.prepare(data)
    draws = {"zero_probability": torch.tensor([0.1, 0.45]), "rate": torch.tensor([2.0, 5.5])}
    counts = data.x[:, 0].numpy()
    expected = np.stack([
        np.log(pi * (counts == 0) + (1 - pi) * stats.poisson.pmf(counts, rate))
        for pi, rate in zip(draws["zero_probability"].tolist(), draws["rate"].tolist())
    ])
    np.testing.assert_allclose(model.log_likelihood(draws, data).numpy(), expected, rtol=1e-5)


def test_a_nonzero_count_is_never_a_structural_zero() -> None:
    model, data = ZeroInflatedPoisson.example()
    fit = zoo.fit(model, data, zoo.SVI(guide="delta", progress=False))
    probabilities = fit.marginals(data)  # (N, 2)
    positive = data.x[:, 0] > 0
    assert torch.all(probabilities[positive, 1] == 0)
    assert torch.all(probabilities[~positive, 1] > 0)
    assert torch.all(fit.discrete(data)[positive] == 0)


def test_counts_are_checked() -> None:
    with pytest.raises(ValueError, match="non-negative integer counts"):
        zoo.fit(ZeroInflatedPoisson(), torch.tensor([[1.0], [2.5]]), zoo.SVI(guide="delta"))
    with pytest.raises(ValueError, match=r"one column of counts \(num_data, 1\)"):
        zoo.fit(ZeroInflatedPoisson(), torch.ones(5, 2), zoo.SVI(guide="delta"))
    with pytest.raises(ValueError, match="rate_shape"):
        ZeroInflatedPoisson(rate_shape=0)


@pytest.mark.slow
def test_nuts_matches_the_grid_posterior() -> None:
    """Posterior means and sds of NUTS against the posterior on a 400 x 400 grid over
    (zero_probability, rate), prior times likelihood, normalised: a brute-force computation that
    shares no code with the model. Tolerance: 4 Monte Carlo standard errors of a mean
    (sd / sqrt(ESS)), ESS taken as 1/3 of the 400 draws, with a floor for grid error."""
    model, data = ZeroInflatedPoisson.example()
    fit = zoo.fit(model, data, zoo.NUTS(num_warmup=200, num_samples=400, num_chains=1, seed=0, progress=False))
    counts = data.x[:, 0].double()
    rate_mean = float(counts.mean())
    pi = torch.linspace(1e-4, 1 - 1e-4, 400, dtype=torch.float64)
    rate = torch.linspace(0.5, 12.0, 400, dtype=torch.float64)
    grid_pi, grid_rate = torch.meshgrid(pi, rate, indexing="ij")
    poisson = counts * grid_rate.unsqueeze(-1).log() - grid_rate.unsqueeze(-1) - torch.lgamma(counts + 1)
    per_count = torch.log((1 - grid_pi.unsqueeze(-1)) * poisson.exp() + grid_pi.unsqueeze(-1) * (counts == 0))
    log_post = per_count.sum(-1) - grid_rate / rate_mean  # Beta(1, 1) and Gamma(1, 1 / rate_mean) priors
    weights = (log_post - log_post.max()).exp()
    weights = weights / weights.sum()
    for name, grid in [("zero_probability", grid_pi), ("rate", grid_rate)]:
        mean = float((weights * grid).sum())
        sd = math.sqrt(float((weights * (grid - mean) ** 2).sum()))
        draws = fit.draws[name].double().flatten()
        tolerance = 4 * sd / math.sqrt(draws.numel() / 3) + 0.01 * sd
        assert abs(float(draws.mean()) - mean) < tolerance, (name, float(draws.mean()), mean, tolerance)
        assert abs(float(draws.std()) - sd) < 0.2 * sd, (name, float(draws.std()), sd)
