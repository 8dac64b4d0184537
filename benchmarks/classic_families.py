"""The classic families against their scikit-learn counterparts: fit time at the same held-out
log-likelihood.

One line per new model (issue 15): probabilistic PCA against ``PCA(n).score`` (closed form),
factor analysis against ``FactorAnalysis`` (EM), a mixture of any family against scikit-learn's
``GaussianMixture`` (Gaussian family) or, where scikit-learn has none (Bernoulli, Poisson),
against EM written out in numpy, and the Dirichlet-process mixture against
``BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_process")``. zoo's fits are
MAP (``SVI(guide="delta")``, L-BFGS) except the Dirichlet-process mixture, fitted by mean-field
SVI as scikit-learn fits it by mean-field variational inference. Goal: ratio <= 3 for MAP.

Timings are medians of ``--repeats`` warm runs (a first run, paying for imports, is discarded);
on a shared machine they are noise: read the ratios as rough.
Run: ``.venv/bin/python benchmarks/classic_families.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as SklearnFactorAnalysis
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

import zoo


def timed(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    function()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def standardised(name: str) -> zoo.Dataset:
    x = zoo.datasets.load(name).x
    return zoo.Dataset((x - x.mean(0)) / x.std(0), name=name)


def bernoulli_em(x: np.ndarray, num_components: int, num_iterations: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """EM for a mixture of Bernoullis (Bishop, PRML 9.3.3), pseudo-counts of 1e-3."""
    generator = np.random.default_rng(seed)
    weights = np.full(num_components, 1.0 / num_components)
    probs = generator.uniform(0.25, 0.75, (num_components, x.shape[1]))
    for _ in range(num_iterations):
        log_joint = np.log(weights) + x @ np.log(probs).T + (1 - x) @ np.log1p(-probs).T
        responsibilities = np.exp(log_joint - logsumexp(log_joint, 1, keepdims=True))
        weights = responsibilities.mean(0)
        probs = (responsibilities.T @ x + 1e-3) / (responsibilities.sum(0)[:, None] + 2e-3)
    return weights, probs


def bernoulli_score(weights: np.ndarray, probs: np.ndarray, x: np.ndarray) -> float:
    log_joint = np.log(weights) + x @ np.log(probs).T + (1 - x) @ np.log1p(-probs).T
    return float(logsumexp(log_joint, 1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = []

    def row(label: str, theirs: tuple[float, float], ours: tuple[float, float]) -> None:
        rows.append((label, theirs[0], theirs[1], ours[0], ours[1], ours[0] / theirs[0]))

    delta = zoo.SVI(guide="delta", progress=False)
    train, test = zoo.datasets.load("digits").split(test_fraction=0.25, seed=0)
    x_train, x_test = train.x.double().numpy(), test.x.double().numpy()
    seconds, model = timed(lambda: PCA(10).fit(x_train), arguments.repeats)
    ours_seconds, fit = timed(lambda: zoo.fit(zoo.models.FactorAnalysis(10), train, delta), arguments.repeats)
    row("PPCA, digits, L=10 vs PCA(10).score", (seconds, model.score(x_test)), (ours_seconds, float(fit.log_prob(test).mean())))

    train, test = standardised("wine").split(test_fraction=0.25, seed=0)
    x_train, x_test = train.x.double().numpy(), test.x.double().numpy()
    seconds, model = timed(lambda: SklearnFactorAnalysis(3).fit(x_train), arguments.repeats)
    ours_seconds, fit = timed(lambda: zoo.fit(zoo.models.FactorAnalysis(3, noise="diagonal"), train, delta), arguments.repeats)
    row("FA, wine (standardised), L=3 vs FactorAnalysis", (seconds, model.score(x_test)), (ours_seconds, float(fit.log_prob(test).mean())))

    train, test = zoo.datasets.load("old_faithful").split(test_fraction=0.2, seed=0)
    x_train, x_test = train.x.double().numpy(), test.x.double().numpy()
    seconds, model = timed(lambda: GaussianMixture(2, covariance_type="diag", random_state=0).fit(x_train), arguments.repeats)
    ours_seconds, fit = timed(lambda: zoo.fit(zoo.models.Mixture(2, family="gaussian"), train, delta), arguments.repeats)
    row("Mixture gaussian diag, Old Faithful, K=2 vs GaussianMixture", (seconds, model.score(x_test)), (ours_seconds, float(fit.log_prob(test).mean())))

    train, test = zoo.datasets.load("digits", binarize=True).split(test_fraction=0.25, seed=0)
    x_train, x_test = train.x.double().numpy(), test.x.double().numpy()
    seconds, params = timed(lambda: bernoulli_em(x_train, 10), arguments.repeats)
    ours_seconds, fit = timed(lambda: zoo.fit(zoo.models.Mixture(10, family="bernoulli"), train, delta), arguments.repeats)
    row("Mixture bernoulli, binary digits, K=10 vs numpy EM (200 it.)", (seconds, bernoulli_score(*params, x_test)), (ours_seconds, float(fit.log_prob(test).mean())))

    train, test = standardised("galaxies").split(test_fraction=0.2, seed=0)
    x_train, x_test = train.x.double().numpy(), test.x.double().numpy()
    sklearn_dp = lambda: BayesianGaussianMixture(  # noqa: E731
        n_components=10, weight_concentration_prior_type="dirichlet_process", weight_concentration_prior=1.0,
        covariance_type="diag", max_iter=2000, random_state=0,
    ).fit(x_train)
    seconds, model = timed(sklearn_dp, arguments.repeats)
    svi = zoo.SVI(guide="normal", num_steps=400, learning_rate=0.05, num_posterior_samples=100, progress=False)
    ours_seconds, fit = timed(lambda: zoo.fit(zoo.models.DirichletProcessMixture(10), train, svi), arguments.repeats)
    row("DP mixture, galaxies, T=10 vs BayesianGaussianMixture (DP)", (seconds, model.score(x_test)), (ours_seconds, float(fit.log_prob(test).mean())))

    print(f"torch threads: {torch.get_num_threads()}; median of {arguments.repeats} warm runs (noisy on a shared machine)\n")
    print(f"{'model':64s} {'theirs s':>9s} {'theirs ll':>10s} {'zoo s':>8s} {'zoo ll':>10s} {'ratio':>6s}")
    for label, their_seconds, their_score, our_seconds, our_score, ratio in rows:
        print(f"{label:64s} {their_seconds:9.3f} {their_score:10.4f} {our_seconds:8.3f} {our_score:10.4f} {ratio:6.1f}")


if __name__ == "__main__":
    main()
