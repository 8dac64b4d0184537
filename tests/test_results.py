"""The Fit's files and ArviZ answers across the layers: zoo.io writes a record, zoo.results rebuilds
the Fit, zoo.diagnostics takes plain values."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from zoo import diagnostics
from zoo.datasets import simulate


def test_a_file_in_the_version_1_layout_loads(tmp_path: object) -> None:
    """Files written before the format moved to zoo.io: the same keys, written by hand here,
    with a constructor argument models no longer take (training_path)."""
    data = simulate.gaussian_mixture(num_data=20, num_components=2, seed=0)
    fit = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="delta", num_steps=5, num_posterior_samples=3, progress=False))
    metadata = {
        "model": {"name": "gmm", "config": {**fit.model.config(), "training_path": "marginal"}},
        "method": {"kind": "svi", "config": fit.method.to_dict()},
        "diagnostics": fit.diagnostics,
        "wall_time": 1.5,
        "interrupted": False,
        "draws_shape": None,
        "train": {"name": data.name, "description": data.description, "source": data.source, "feature_names": None},
    }
    payload = {
        "format": "zoo.fit",
        "version": 1,
        "metadata": json.dumps(metadata),
        "model_state": {},
        "draws": fit.draws,
        "point": fit.point,
        "losses": fit.losses,
        "sample_stats": {},
        "history": {},
        "train": {"x": data.x},
    }
    path = tmp_path / "old.zoo"  # type: ignore[operator]
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="format version 1, written before files carried a checksum"):
        loaded = zoo.load(path)
    assert loaded.method == fit.method and loaded.model.config() == fit.model.config()
    assert loaded.wall_time == 1.5 and loaded.guide is None
    assert torch.equal(loaded.log_prob(data), fit.log_prob(data))


def test_the_arviz_adapter_takes_plain_values_and_fits() -> None:
    draws = {"mu": torch.randn(2, 50, 3, generator=torch.Generator().manual_seed(0))}
    idata = diagnostics.inference_data(draws, coords={"axis": [0, 1, 2]}, dims={"mu": ["axis"]})
    assert idata.posterior["mu"].shape == (2, 50, 3)
    assert set(diagnostics.convergence(draws)) == {"max_rhat", "min_ess_bulk", "min_ess_tail"}
    assert list(diagnostics.summary(draws, kind="stats").index) == ["mu[0]", "mu[1]", "mu[2]"]
    data = simulate.gaussian_mixture(num_data=20, num_components=2, seed=0)
    fit = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="normal", num_steps=5, num_posterior_samples=20, progress=False))
    by_fit, by_idata = diagnostics.loo(fit), diagnostics.loo(fit.to_arviz(posterior_predictive=False))
    assert float(by_fit["elpd_loo"]) == float(by_idata["elpd_loo"])


def test_a_point_mass_fit_holds_one_draw_and_answers_from_it(tmp_path: object) -> None:
    """guide="delta" is one point: the Fit holds it once (num_posterior_samples is ignored), and
    every answer is the answer at that point, computed here from the model at fit.point."""
    data = simulate.gaussian_mixture(num_data=30, num_components=2, seed=0)
    method = zoo.SVI(guide="delta", num_steps=20, num_posterior_samples=500, progress=False)
    fit = zoo.fit(zoo.models.GaussianMixture(2), data, method)
    assert method.num_draws(fit.model) == 1
    assert fit.num_chains == 1 and fit.num_draws == 1 and fit.draws_shape is None
    for name, value in fit.draws.items():
        assert value.shape == (1, 1) + fit.point[name].shape
        assert torch.equal(value[0, 0], fit.point[name])
    at_point = {name: value[None] for name, value in fit.point.items()}
    expected = fit.model.log_likelihood(at_point, data)  # (1, N)
    assert fit.log_likelihood(data).shape == (1, 1, len(data))
    torch.testing.assert_close(fit.log_prob(data), expected[0])
    torch.testing.assert_close(fit.marginals(data), fit.model.marginals(at_point, data)["assignment"][0])
    assert fit.discrete(data, temperature=1, seed=3).shape == (len(data),)
    samples = fit.sample(7, seed=1)  # n data, all from the one point
    assert samples.shape == (7, 2) and torch.isfinite(samples).all()
    assert fit.posterior_predictive(data).shape == (1, 1, len(data), 2)

    idata = fit.to_arviz()
    assert idata.posterior["locs"].shape == (1, 1, 2, 2)
    assert idata.log_likelihood["x"].shape == (1, 1, len(data))
    assert idata.posterior_predictive["x"].shape == (1, 1, len(data), 2)
    table = fit.summary(kind="stats")
    torch.testing.assert_close(
        torch.tensor(table.loc["weights[0]", "mean"]), fit.point["weights"][0].double(), atol=1e-3, rtol=0
    )

    # PSIS-LOO of one point would be the in-sample log-likelihood: refused, with what to use
    assert fit.posterior_kind == "point"
    with pytest.raises(diagnostics.PointMassError, match="held-out log-likelihood"):
        diagnostics.loo(fit)
    with pytest.raises(diagnostics.PointMassError):
        diagnostics.compare({"a": fit, "b": fit.replace()})

    path = fit.save(tmp_path / "map.zoo")  # type: ignore[operator]
    loaded = zoo.load(path)
    assert loaded.num_draws == 1 and torch.equal(loaded.log_prob(data), fit.log_prob(data))


def test_a_fit_with_spread_keeps_its_draws_and_laplace_is_not_a_point_mass() -> None:
    data = simulate.gaussian_mixture(num_data=30, num_components=2, seed=0)
    normal = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="normal", num_steps=5, num_posterior_samples=6, progress=False))
    assert normal.num_draws == 6
    laplace = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="laplace", num_steps=20, num_posterior_samples=6, progress=False))
    assert laplace.num_draws == 6 and float(laplace.draws["locs"].std(1).min()) > 0
