"""Factor analysis and probabilistic PCA: parity with scikit-learn, codes, rotation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.decomposition import FactorAnalysis as SklearnFactorAnalysis

import zoo
from zoo.models.factor_analysis import canonical_rotation


def _standardised_wine() -> tuple[zoo.Dataset, zoo.Dataset]:
    x = zoo.datasets.load("wine").x
    return zoo.Dataset((x - x.mean(0)) / x.std(0), name="wine").split(test_fraction=0.25, seed=0)


def _map_score(model: zoo.models.FactorAnalysis, train: zoo.Dataset, test: zoo.Dataset) -> float:
    fit = zoo.fit(model, train, zoo.SVI(guide="delta", progress=False))
    return float(fit.log_prob(test).mean())


@pytest.mark.parametrize(("noise", "latent_dim"), [("isotropic", 2), ("isotropic", 3), ("diagonal", 2), ("diagonal", 3)])
def test_map_held_out_log_likelihood_equals_sklearn_on_wine(noise: str, latent_dim: int) -> None:
    """PCA(n).score is probabilistic PCA's closed-form maximum-likelihood fit, FactorAnalysis.score
    the EM one: held-out log-likelihood per point. The MAP differs from the MLE by the priors'
    pull, O(1/N) per parameter with N = 133 training wines: within 0.002 nats per point."""
    train, test = _standardised_wine()
    estimator = PCA(latent_dim) if noise == "isotropic" else SklearnFactorAnalysis(latent_dim, tol=1e-6, max_iter=5000)
    expected = estimator.fit(train.x.double().numpy()).score(test.x.double().numpy())
    ours = _map_score(zoo.models.FactorAnalysis(latent_dim, noise=noise), train, test)
    assert abs(ours - expected) < 2e-3, (ours, expected)


def test_map_held_out_log_likelihood_equals_sklearn_pca_on_digits() -> None:
    """64 pixels, 1347 training digits, 10 factors: the closed-form PPCA score of scikit-learn."""
    train, test = zoo.datasets.load("digits").split(test_fraction=0.25, seed=0)
    expected = PCA(10).fit(train.x.double().numpy()).score(test.x.double().numpy())
    assert abs(_map_score(zoo.models.FactorAnalysis(10), train, test) - expected) < 2e-3


def test_transform_gives_the_posterior_of_the_codes() -> None:
    """For a point estimate, fit.transform is N(M^-1 W^T Psi^-1 (x - mu), M^-1) with
    M = I + W^T Psi^-1 W (written out here in float64), and W E[z | x] equals scikit-learn's
    FactorAnalysis reconstruction W_sk E_sk[z | x] (rotation-free) to the MAP's accuracy."""
    train, test = _standardised_wine()
    fit = zoo.fit(zoo.models.FactorAnalysis(2, noise="diagonal"), train, zoo.SVI(guide="delta", progress=False))
    mean, covariance = fit.transform(test)
    assert mean.shape == (len(test), 2) and covariance.shape == (len(test), 2, 2)
    weights, loc = fit.point["weights"].double(), fit.point["loc"].double()
    psi = fit.point["noise_scale"].double().pow(2)
    precision = torch.eye(2, dtype=torch.float64) + weights.T @ (weights / psi.unsqueeze(-1))
    expected_covariance = torch.linalg.inv(precision)
    expected_mean = (test.x.double() - loc) @ (weights / psi.unsqueeze(-1)) @ expected_covariance
    torch.testing.assert_close(covariance.double(), expected_covariance.expand(len(test), 2, 2), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mean.double(), expected_mean, rtol=1e-4, atol=1e-4)
    sklearn_fit = SklearnFactorAnalysis(2, tol=1e-5, max_iter=2000).fit(train.x.double().numpy())
    theirs = sklearn_fit.transform(test.x.double().numpy()) @ sklearn_fit.components_
    ours = (mean.double() @ weights.T).numpy()
    assert np.abs(ours - theirs).max() < 0.05 * np.abs(theirs).max()


def test_transform_averages_draws_by_the_law_of_total_covariance() -> None:
    """Over several draws the covariance is the mean covariance plus the spread of the means."""
    train, _ = _standardised_wine()
    fit = zoo.fit(zoo.models.FactorAnalysis(2), train, zoo.SVI(num_steps=50, num_posterior_samples=6, progress=False))
    mean, covariance = fit.transform(train.subset([0, 1]), num_draws=None)
    flat = {name: value.reshape((-1,) + value.shape[2:]) for name, value in fit.draws.items()}
    means, covariances = fit.model.local_posterior(flat, train.subset([0, 1]))["z"]
    centred = means - means.mean(0)
    expected = covariances.mean(0) + torch.einsum("snl,snm->nlm", centred, centred) / len(means)
    torch.testing.assert_close(mean, means.mean(0))
    torch.testing.assert_close(covariance, expected)


def test_canonical_rotation_removes_the_rotation() -> None:
    """W R, for any orthogonal R (reflections included), has the canonical form of W, whose
    columns are orthogonal with decreasing norms, and W W^T is unchanged."""
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(3, 6, 3, generator=generator, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, 3, generator=generator, dtype=torch.float64))
    canonical = canonical_rotation(weights)
    torch.testing.assert_close(canonical_rotation(weights @ rotation), canonical)
    torch.testing.assert_close(canonical @ canonical.transpose(-1, -2), weights @ weights.transpose(-1, -2))
    gram = canonical.transpose(-1, -2) @ canonical
    torch.testing.assert_close(gram, torch.diag_embed(gram.diagonal(dim1=-2, dim2=-1)))
    norms = gram.diagonal(dim1=-2, dim2=-1)
    assert (norms[..., :-1] >= norms[..., 1:]).all()


def test_bad_input_is_refused() -> None:
    data = zoo.datasets.load("wine")
    with pytest.raises(ValueError, match="latent_dim=14 is larger than the number of features \\(13\\)"):
        zoo.fit(zoo.models.FactorAnalysis(14), data, zoo.SVI(guide="delta"))
    with pytest.raises(ValueError, match="noise must be one of"):
        zoo.models.FactorAnalysis(2, noise="full")
    with pytest.raises(TypeError, match="latent_dim must be an integer"):
        zoo.models.FactorAnalysis(2.5)  # type: ignore[arg-type]


@pytest.mark.slow  # its first summary imports ArviZ (seconds)
def test_cli_fits_factor_analysis_and_refuses_too_many_factors(capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.cli import main

    arguments = ["fit", "fa", "--dataset", "wine", "--latent-dim", "2", "--noise", "diagonal", "--guide", "delta", "--num-steps", "20", "--quiet"]
    assert main(arguments) == 0
    assert "noise_scale" in capsys.readouterr().out
    assert main(["fit", "fa", "--dataset", "wine", "--latent-dim", "14", "--num-steps", "2", "--quiet"]) != 0
    assert "latent_dim=14 is larger than the number of features (13)" in capsys.readouterr().err
