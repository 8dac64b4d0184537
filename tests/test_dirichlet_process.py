"""Dirichlet-process mixture: stick-breaking weights, clusters in use, and galaxies / Old Faithful
against scikit-learn's BayesianGaussianMixture and the published analyses."""

from __future__ import annotations

import pyro
import pytest
import torch

import zoo
from zoo.infer.runtime import isolated
from zoo.models.dirichlet_process import clusters_in_use


def test_stick_breaking_weights_have_the_dirichlet_process_prior_means() -> None:
    """E[w_k] = (1 / (1 + alpha)) (alpha / (1 + alpha)) ** (k - 1) for k < T (Sethuraman), the last
    weight the mass left, (alpha / (1 + alpha)) ** (T - 1); Monte Carlo over 20,000 prior draws
    (standard error below 0.003)."""
    alpha, truncation = 2.0, 5
    model = zoo.models.DirichletProcessMixture(truncation, concentration=alpha)
    with isolated(seed=0), pyro.plate("draws", 20000, dim=-1):
        weights = model.weights(model.sample_weights())  # (20000, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(20000))
    ratio = alpha / (1 + alpha)
    expected = torch.tensor([ratio**k / (1 + alpha) for k in range(truncation - 1)] + [ratio ** (truncation - 1)])
    torch.testing.assert_close(weights.mean(0), expected, atol=0.01, rtol=0)


def test_clusters_in_use_counts_distinct_assignments() -> None:
    """Three well-separated groups fitted with eight components: every draw of the assignments
    occupies exactly the three components that hold the groups."""
    x = torch.cat([torch.full((20, 1), -10.0), torch.zeros(20, 1), torch.full((20, 1), 10.0)]) + 0.1 * torch.randn(
        60, 1, generator=torch.Generator().manual_seed(0)
    )
    fit = zoo.fit(zoo.models.DirichletProcessMixture(8, concentration=0.5), x, zoo.SVI(guide="delta", num_steps=100, progress=False))
    assert torch.equal(clusters_in_use(fit), torch.tensor([3]))


@pytest.mark.slow
def test_galaxies_clusters_in_use_against_published_analyses_and_sklearn() -> None:
    """Galaxies (Roeder 1990; 82 velocities, standardised), T = 10, alpha = 1, mean-field SVI.

    Published: Richardson and Green (1997, reversible-jump MCMC) put most posterior mass on
    5 to 7 components, Roeder and Wasserman (1997) settled on 3; Escobar and West (1995, a
    Dirichlet-process mixture like this one) found a posterior on the number of clusters in use
    centred near 6 to 7 (all as recalled: these figures could not be checked offline). zoo's
    posterior of the clusters in use must lie in the published range 3..9 with its mode in 4..7,
    and scikit-learn's BayesianGaussianMixture (variational DP, weights > 0.01 counted) must also
    leave most of the truncation empty."""
    from sklearn.mixture import BayesianGaussianMixture

    x = zoo.datasets.load("galaxies").x
    data = zoo.Dataset((x - x.mean(0)) / x.std(0), name="galaxies")
    method = zoo.SVI(guide="normal", num_steps=400, learning_rate=0.05, num_posterior_samples=100, progress=False, seed=0)
    fit = zoo.fit(zoo.models.DirichletProcessMixture(10, concentration=1.0), data, method)
    in_use = clusters_in_use(fit)
    counts = torch.bincount(in_use, minlength=11)
    assert 3 <= int(in_use.min()) and int(in_use.max()) <= 9, counts
    assert 4 <= int(counts.argmax()) <= 7, counts
    sklearn_fit = BayesianGaussianMixture(
        n_components=10, weight_concentration_prior_type="dirichlet_process", weight_concentration_prior=1.0,
        covariance_type="diag", max_iter=2000, random_state=0,
    ).fit(data.x.double().numpy())
    assert 2 <= int((sklearn_fit.weights_ > 0.01).sum()) <= 7
