"""The Fit's files and ArviZ answers across the layers: zoo.io writes a record, zoo.results rebuilds
the Fit, zoo.diagnostics takes plain values."""

from __future__ import annotations

import json

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
