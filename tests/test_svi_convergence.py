"""SVI's convergence diagnostic: a trend test on batch means of the late loss window."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import zoo
from zoo.datasets import simulate
from zoo.ops.stationarity import T_CRITICAL_1_PERCENT, late_window_trend


def test_the_trend_statistic_equals_least_squares_on_batch_means_by_numpy() -> None:
    generator = torch.Generator().manual_seed(0)
    losses = 3.0 - 0.0005 * torch.arange(1000, dtype=torch.float64) + 0.05 * torch.randn(1000, generator=generator, dtype=torch.float64)
    trend = late_window_trend(losses, window_fraction=0.4, num_batches=10)
    window = losses[-400:].numpy().reshape(10, 40).mean(1)
    (slope, intercept), covariance = np.polyfit(np.arange(10.0), window, 1, cov="unscaled")
    residual = window - (slope * np.arange(10.0) + intercept)
    standard_error = math.sqrt(covariance[0, 0] * (residual**2).sum() / 8)
    assert trend["window"] == 400
    assert trend["change"] == pytest.approx(slope * 10, rel=1e-9)
    assert trend["t"] == pytest.approx(slope / standard_error, rel=1e-9)
    # a fall of 0.0005 per step: 0.2 nats per datum over the window, far beyond its noise
    assert trend["change"] == pytest.approx(-0.2, abs=0.02) and not trend["stationary"]


def test_pure_noise_is_stationary_at_the_stated_rate() -> None:
    """White noise has no trend: the 1% test flags about 1% of 400 independent series
    (binomial: 4 expected, more than 12 has probability below 1e-3)."""
    generator = torch.Generator().manual_seed(1)
    flagged = sum(
        not late_window_trend(2.0 + 0.1 * torch.randn(400, generator=generator), tolerance=0.0)["stationary"]
        for _ in range(400)
    )
    assert flagged <= 12
    assert T_CRITICAL_1_PERCENT[8] == 3.355


def test_a_trend_below_the_tolerance_is_not_one_worth_running_for() -> None:
    """Noise-free and falling by 1e-5 nats per datum over the window: significant, immaterial."""
    losses = 1.0 - 1e-7 * torch.arange(400, dtype=torch.float64)
    assert late_window_trend(losses)["stationary"]
    assert not late_window_trend(losses, tolerance=0.0)["stationary"]
    assert not late_window_trend(losses[:50])["stationary"]  # too short to tell
    with pytest.raises(ValueError, match="num_batches"):
        late_window_trend(losses, num_batches=20)


@pytest.mark.slow
def test_an_adam_fit_records_its_convergence_and_says_so() -> None:
    """Adam stopped after 150 steps at a learning rate of 0.005, its ELBO averaged over 16
    particles (noise low enough to see the trend): its loss still falls (about -0.018 nats per
    datum over the last 100 steps, t about -13). An L-BFGS MAP fit that stops on its
    tolerance has converged, and its summary warns of nothing."""
    data = simulate.gaussian_mixture(num_data=100, num_components=2, seed=0)
    model = zoo.models.GaussianMixture(2)
    slow = zoo.fit(model, data, zoo.SVI(guide="normal", num_steps=150, learning_rate=0.005, num_particles=16, num_posterior_samples=10, progress=False))
    assert slow.diagnostics["optimizer"] == "adam" and slow.diagnostics["converged"] is False
    assert slow.diagnostics["loss_change"] < -0.005 and slow.diagnostics["loss_trend_t"] < -T_CRITICAL_1_PERCENT[8]
    assert "NOT CONVERGED" in repr(slow)
    with pytest.warns(UserWarning, match="SVI not converged"):
        table = slow.summary(kind="stats")
    assert "NOT CONVERGED" in table.attrs["convergence"]
    fast = zoo.fit(model, data, zoo.SVI(guide="delta", num_steps=200, progress=False))
    assert fast.diagnostics["optimizer"] == "lbfgs" and fast.diagnostics["converged"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast.summary(kind="stats")
