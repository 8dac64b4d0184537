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
from zoo import comparison, diagnostics, selection
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


# ---------------------------------------------------------------------- zoo.select
@pytest.mark.slow
def test_select_by_bic_of_map_fits_matches_scikit_learn_and_ranks_the_truth_first() -> None:
    """BIC of MAP fits against scikit-learn's BIC at its maximum-likelihood fit (EM, 5 starts):
    the same parameter count (K - 1 + K D + K D (D + 1) / 2), and log-likelihoods within 0.1
    nats (the MAP sits a prior's pull below the maximum: never above it, up to EM's own
    tolerance). K = 1, 2 only: with 3 components EM stops in a different local optimum."""
    from sklearn.mixture import GaussianMixture as ScikitLearnMixture

    data = simulate.gaussian_mixture(num_data=150, num_components=2, seed=0, separation=6.0)
    train, test = data.split(test_fraction=0.3, seed=0)
    table = zoo.select(zoo.models.GaussianMixture, train, test, values=[1, 2, 3], method="svi:delta", criterion="bic", name="K")
    assert tuple(table.columns) == selection.COLUMNS["bic"] and table.attrs["criterion"] == "bic"
    assert table["rank"].idxmin() == 2
    x = train.x.numpy()
    for k in (1, 2):
        reference = ScikitLearnMixture(k, n_init=5, random_state=0).fit(x)
        assert table.loc[k, "num_parameters"] == reference._n_parameters() == k - 1 + k * 2 + k * 3
        reference_log_lik = reference.score(x) * len(x)
        assert reference_log_lik - 0.1 < table.loc[k, "log_lik"] < reference_log_lik + 1e-3
        assert table.loc[k, "bic"] == pytest.approx(reference.bic(x), abs=0.2)
    aic = zoo.select(zoo.models.GaussianMixture, train, test, values=[1, 2], method="svi:delta", criterion="aic")
    assert aic.loc[2, "aic"] == pytest.approx(2 * 11 - 2 * table.loc[2, "log_lik"], abs=1e-6)
    by_test = zoo.select(zoo.models.GaussianMixture, train, test, values=[1, 2], method="svi:delta", criterion="test")
    assert by_test["rank"].idxmin() == 2 and set(by_test["datum"]) == {"point"}


def test_select_refuses_what_it_cannot_rank_before_fitting() -> None:
    data = simulate.gaussian_mixture(num_data=40, num_components=2, seed=0)
    with pytest.raises(diagnostics.PointMassError, match="point-mass fit \\(svi:delta\\)"):
        zoo.select(zoo.models.GaussianMixture, data, data, [1, 2], method="svi:delta")
    with pytest.raises(ValueError, match="criterion='bic' is for MAP fits"):
        zoo.select(zoo.models.GaussianMixture, data, data, [1, 2], method="svi:mvn", criterion="bic")
    with pytest.raises(ValueError, match="criterion must be one of"):
        zoo.select(zoo.models.GaussianMixture, data, data, [1, 2], criterion="waic")
    quakes = zoo.datasets.load("earthquakes")
    with pytest.raises(ValueError, match="one sequence; a LOO over one datum is meaningless"):
        zoo.select(lambda k: zoo.models.HiddenMarkovModel(k), quakes, quakes, [1, 2], method="svi:normal")


@pytest.mark.slow
def test_select_by_held_out_data_on_one_sequence_says_per_sequence_and_per_step() -> None:
    quakes = zoo.datasets.load("earthquakes")
    train, test = quakes.split_time(test_fraction=0.25)
    table = zoo.select(
        lambda k: zoo.models.HiddenMarkovModel(k), train, test, [1, 2], method="svi:delta:num_steps=30", criterion="test"
    )
    assert set(table["datum"]) == {"sequence"}
    torch.testing.assert_close(
        torch.tensor(table["test_log_lik_per_step"].to_numpy()),
        torch.tensor(table["test_log_lik"].to_numpy()) / test.num_observations,
        check_dtype=False,
    )


# ---------------------------------------------------------------------- zoo.compare's noise floors
def test_compare_shows_noise_floors_and_flags_errors_beyond_them() -> None:
    """Exact posterior draws against an exact reference differ only by Monte Carlo noise: both
    errors stay under five noise floors, sqrt(1/S + 1/R) and sqrt(1/(2S) + 1/(2R)) with S = 500
    and R = 4000 independent draws. The same draws shifted by one reference sd (a posterior
    known to be off: its loc scalars by one reference sd each) are flagged."""
    data = simulate.naive_bayes(num_data=60, num_classes=2, num_features=2, seed=0)
    train, test = data.split(test_fraction=0.3, seed=0)
    model = zoo.models.NaiveBayes(2)
    reference = zoo.fit(model, train, zoo.Exact(num_posterior_samples=4000, seed=1, progress=False))
    exact = zoo.fit(model, train, zoo.Exact(num_posterior_samples=500, seed=7, progress=False))
    shifted = exact.replace(draws={"loc": exact.draws["loc"] + reference.draws["loc"].std((0, 1)), **{
        name: value for name, value in exact.draws.items() if name != "loc"}})
    table = comparison.compare_fits({"exact": exact, "shifted": shifted}, test, reference)
    assert tuple(table.columns) == comparison.COLUMNS
    row = table.loc["exact"]
    assert row["mean_error_noise"] == pytest.approx(math.sqrt(1 / 500 + 1 / 4000))
    assert row["sd_error_noise"] == pytest.approx(math.sqrt(0.5 / 500 + 0.5 / 4000))
    assert row["mean_error"] < 5 * row["mean_error_noise"] and "not noise" not in row["flags"]
    row = table.loc["shifted"]
    assert row["mean_error"] > 5 * row["mean_error_noise"]
    assert "mean_error" in row["flags"] and "not noise" in row["flags"]
