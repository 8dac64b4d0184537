"""The Gaussian mixture against independent computations: brute force, scikit-learn, the truth."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

import zoo
from zoo.datasets import simulate


def random_parameters(num_draws: int, num_components: int, num_features: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(num_draws, num_components, generator=generator) + 0.2
    correlation = torch.eye(num_features).repeat(num_draws, num_components, 1, 1)
    correlation[..., 1, 0] = 0.8 * (torch.rand(num_draws, num_components, generator=generator) - 0.5)
    correlation[..., 1, 1] = (1 - correlation[..., 1, 0] ** 2).sqrt()
    return {
        "weights": weights / weights.sum(-1, keepdim=True),
        "locs": torch.randn(num_draws, num_components, num_features, generator=generator),
        "scales": 0.5 + torch.rand(num_draws, num_components, num_features, generator=generator),
        "corr_cholesky": correlation,
    }


def fit_with_draws(model: zoo.models.GaussianMixture, data: zoo.Dataset, draws: dict[str, torch.Tensor]) -> zoo.Fit:
    """A Fit holding given parameter values as its draws (one chain)."""
    prepared = model.prepare(data)
    chained = {name: value.unsqueeze(0) for name, value in draws.items()}
    point = {name: value[0] for name, value in draws.items()}
    return zoo.Fit(model=prepared, method=zoo.SVI(), draws=chained, point=point, train=data)


def brute_force_log_likelihood(x: np.ndarray, draw: dict[str, np.ndarray]) -> float:
    """log sum over every assignment of all points of prod_i w_{z_i} N(x_i | mu_{z_i}, Sigma_{z_i})."""
    weights, locs, scales, cholesky = draw["weights"], draw["locs"], draw["scales"], draw["corr_cholesky"]
    covariances = [
        np.diag(scales[k]) @ cholesky[k] @ cholesky[k].T @ np.diag(scales[k]) for k in range(len(weights))
    ]
    terms = []
    for assignment in itertools.product(range(len(weights)), repeat=len(x)):
        log_term = 0.0
        for point, k in zip(x, assignment):
            log_term += math.log(weights[k]) + multivariate_normal(locs[k], covariances[k]).logpdf(point)
        terms.append(log_term)
    terms = np.array(terms)
    return float(terms.max() + np.log(np.exp(terms - terms.max()).sum()))


def test_log_prob_equals_brute_force_summation_over_assignments() -> None:
    x = torch.tensor([[0.1, -0.4], [1.5, 0.3], [-0.7, 2.2], [0.9, 0.9]])
    data = zoo.Dataset(x)
    draws = random_parameters(num_draws=3, num_components=3, num_features=2, seed=0)
    fit = fit_with_draws(zoo.models.GaussianMixture(3), data, draws)
    per_draw = fit.log_likelihood(data)[0]  # (draw, datum)
    for s in range(3):
        draw = {name: value[s].double().numpy() for name, value in draws.items()}
        # all 3^4 joint assignments of the whole data set
        expected_total = brute_force_log_likelihood(x.double().numpy(), draw)
        assert per_draw[s].sum().item() == pytest.approx(expected_total, abs=1e-4)
        for i in range(len(x)):
            expected_point = brute_force_log_likelihood(x[i : i + 1].double().numpy(), draw)
            assert per_draw[s, i].item() == pytest.approx(expected_point, abs=1e-5)
    # the log predictive density averages densities (not log densities) over draws
    expected = per_draw.logsumexp(0) - math.log(3)
    torch.testing.assert_close(fit.log_prob(data), expected)
    # and the ArviZ log_likelihood group holds the same numbers, draw by draw
    stored = torch.as_tensor(fit.to_arviz(posterior_predictive=False).log_likelihood["x"].values)
    torch.testing.assert_close(stored[0], per_draw)


def test_diagonal_covariance_log_likelihood_matches_scipy() -> None:
    data = simulate.gaussian_mixture(num_data=50, num_components=2, seed=1)
    draws = random_parameters(2, 2, 2, seed=3)
    del draws["corr_cholesky"]
    fit = fit_with_draws(zoo.models.GaussianMixture(2, covariance="diag"), data, draws)
    per_draw = fit.log_likelihood(data)[0]
    for s in range(2):
        densities = sum(
            draws["weights"][s, k].item()
            * multivariate_normal(draws["locs"][s, k].numpy(), np.diag(draws["scales"][s, k].numpy() ** 2)).pdf(data.x.numpy())
            for k in range(2)
        )
        np.testing.assert_allclose(per_draw[s].numpy(), np.log(densities), rtol=1e-5)


def test_map_matches_scikit_learn_held_out_log_likelihood() -> None:
    """10,000 points in 2-D with K=3 (plus 2,000 held out): MAP within 0.002 nats/point of EM."""
    data = simulate.gaussian_mixture(num_data=12_000, num_components=3, num_features=2, seed=0)
    train, test = data.subset(range(10_000)), data.subset(range(10_000, 12_000))
    reference = SklearnGaussianMixture(3, covariance_type="full", random_state=0, tol=1e-6, max_iter=500)
    reference.fit(train.x.double().numpy())
    expected = reference.score(test.x.double().numpy())
    fit = zoo.fit(zoo.models.GaussianMixture(3), train, zoo.SVI(guide="delta", num_steps=200, progress=False))
    assert fit.diagnostics["converged"]
    held_out = fit.log_prob(test).mean().item()
    assert abs(held_out - expected) < 0.002, (held_out, expected)


def test_cluster_labels_are_the_most_probable_component() -> None:
    data = simulate.gaussian_mixture(num_data=300, num_components=3, seed=2)
    fit = zoo.fit(zoo.models.GaussianMixture(3), data, zoo.SVI(guide="delta", num_steps=200, progress=False))
    labels = fit.discrete(data)
    point = {name: value.double().numpy() for name, value in fit.point.items()}
    covariances = [
        np.diag(point["scales"][k]) @ point["corr_cholesky"][k] @ point["corr_cholesky"][k].T @ np.diag(point["scales"][k])
        for k in range(3)
    ]
    scores = np.stack(
        [np.log(point["weights"][k]) + multivariate_normal(point["locs"][k], covariances[k]).logpdf(data.x.double().numpy()) for k in range(3)],
        axis=1,
    )
    np.testing.assert_array_equal(labels.numpy(), scores.argmax(1))
    # and they recover the simulated assignment up to a relabelling
    truth = data.truth["assignment"].numpy()
    agreement = max(
        np.mean(np.array(permutation)[labels.numpy()] == truth) for permutation in itertools.permutations(range(3))
    )
    assert agreement > 0.95
    sampled = fit.discrete(data, temperature=1, seed=0)
    assert sampled.shape == labels.shape and np.mean(sampled.numpy() == labels.numpy()) > 0.9


def test_relabelling_sorts_components_by_first_feature() -> None:
    model = zoo.models.GaussianMixture(3)
    draws = random_parameters(5, 3, 2, seed=4)
    chained = {name: value.unsqueeze(0) for name, value in draws.items()}
    relabelled = model.relabel(chained)
    assert (relabelled["locs"][..., 0].diff(dim=-1) >= 0).all()
    # a relabelling permutes whole components: every (weight, loc, scale, corr) stays together
    for s in range(5):
        for k in range(3):
            source = int((draws["locs"][s, :, 0] == relabelled["locs"][0, s, k, 0]).nonzero()[0])
            for name in draws:
                assert torch.equal(relabelled[name][0, s, k], draws[name][s, source])


def test_bad_mixture_settings() -> None:
    data = simulate.gaussian_mixture(num_data=5, num_components=2, seed=0)
    with pytest.raises(ValueError, match="num_components must be at least 1"):
        zoo.models.GaussianMixture(0)
    with pytest.raises(TypeError, match="num_components must be an integer"):
        zoo.models.GaussianMixture(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="larger than the number of points"):
        zoo.fit(zoo.models.GaussianMixture(6), data, zoo.SVI(progress=False))
    with pytest.raises(ValueError, match="covariance must be one of"):
        zoo.models.GaussianMixture(2, covariance="spherical")
    with pytest.raises(ValueError, match="must be 2-D"):
        zoo.fit(zoo.models.GaussianMixture(2), torch.zeros(5, 2, 2), zoo.SVI(progress=False))
    with pytest.raises(ValueError, match="infinite"):
        zoo.fit(zoo.models.GaussianMixture(2), torch.tensor([[1.0, float("inf")], [0.0, 0.0]]), zoo.SVI())


@pytest.mark.slow
def test_nuts_recovers_simulated_parameters() -> None:
    """Posterior means within 4 posterior sd of the truth; R-hat < 1.01; no divergences.

    With 400 points the posterior is close to Normal around the truth (Bernstein-von Mises), so
    |mean - truth| / sd exceeds 4 with probability about 6e-5 per scalar; 14 scalars give a
    family-wise false alarm rate near 1e-3. The Monte Carlo error of the mean (sd / sqrt(ESS),
    ESS > 500) adds at most 0.05 sd. R-hat (rank-normalised, bulk and tail) must be below 1.01:
    its sampling noise shrinks with the draws, so 2 chains of 1,000 keep the max over 14 scalars
    clear of that bar where 500 did not (1.015 from tail R-hat alone with identical chain means).
    """
    data = simulate.gaussian_mixture(num_data=400, num_components=2, seed=5)
    fit = zoo.fit(
        zoo.models.GaussianMixture(2),
        data,
        zoo.NUTS(num_warmup=300, num_samples=1000, num_chains=2, seed=0, progress=False),
    )
    assert fit.diagnostics["num_divergences"] == 0
    assert fit.diagnostics["max_rhat"] < 1.01
    order = data.truth["locs"][:, 0].argsort()  # the truth under zoo's labelling
    for name in ("weights", "locs", "scales"):
        true_value = data.truth[name][order]
        mean = fit.draws[name].mean((0, 1))
        sd = fit.draws[name].std((0, 1))
        z = ((mean - true_value) / sd).abs()
        assert (z < 4).all(), (name, z)
    corr = fit.draws["corr_cholesky"][..., 1, 0]
    true_corr = data.truth["corr_cholesky"][order][:, 1, 0]
    assert (((corr.mean((0, 1)) - true_corr) / corr.std((0, 1))).abs() < 4).all()
