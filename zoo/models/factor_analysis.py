r"""Factor analysis and probabilistic PCA: a linear-Gaussian latent variable model.

Generative story
----------------
For N points of D features and L latent factors::

    loc          ~ Normal(center, location_scale * spread)                  (D,)
    weights      ~ Normal(0, weight_scale * spread)      per row d          (D, L)
    noise_scale  ~ LogNormal(log(spread), noise_log_sd)                     (D,) or (1,)
    for i in 1..N:                                                          (data plate)
        z[i]     ~ Normal(0, I_L)                                           (integrated out)
        x[i]     ~ Normal(weights @ z[i] + loc, diag(noise_scale ** 2))

``noise="diagonal"`` is factor analysis (one noise scale per feature); ``noise="isotropic"`` is
probabilistic PCA (Tipping and Bishop 1999: one noise scale shared by every feature, whose
maximum-likelihood weights span the principal subspace). ``center`` and ``spread`` default to
the training data's mean and standard deviation per feature (for the isotropic noise, the
root mean of the variances).

The codes are integrated out exactly: the collapsed likelihood is
``x_i ~ N(loc, weights @ weights.T + diag(noise_scale ** 2))``, and their posterior is Gaussian,
``z_i | x_i ~ N(M^-1 W^T Psi^-1 (x_i - loc), M^-1)`` with ``M = I + W^T Psi^-1 W``
(:meth:`FactorAnalysis.local_posterior`, :meth:`zoo.Fit.transform`).

Sample sites
------------
===============  ============  ===========================================================
name             shape         support
===============  ============  ===========================================================
``loc``          (D,)          real
``weights``      (D, L)        real; identified only up to a rotation (see below)
``noise_scale``  (D,) / (1,)   positive (diagonal / isotropic noise)
``z``            (N, L)        real; integrated out (``integrated_sites``)
``x``            (N, D)        observed
===============  ============  ===========================================================

Rotation
--------
The likelihood depends on the weights only through ``W W^T``, so ``W R`` fits as well as ``W``
for any orthogonal R, and the prior (independent Normals) is rotation invariant too: chains
wander over the rotations, and R-hat of raw weights means nothing. Every draw (and the point
estimate) is put in a canonical rotation after fitting (:meth:`FactorAnalysis.relabel`): with
``W = U S V^T``, the draw becomes ``W V = U S``, whose columns are orthogonal and ordered by
decreasing norm, each column's sign chosen so that its entry of largest magnitude is positive.
The codes of ``fit.transform`` are in that rotation. When two singular values are close their
order (and so the columns' R-hat) is ambiguous; ``W W^T`` and every density are not.
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch

from zoo.checks import check_choice, check_positive_float, check_positive_int
from zoo.datasets import simulate
from zoo.datasets.dataset import Dataset
from zoo.models.base import Model
from zoo.models.families import Gaussian
from zoo.models.registry import register

__all__ = ["FactorAnalysis", "canonical_rotation"]

NOISES = ("isotropic", "diagonal")


def canonical_rotation(weights: torch.Tensor) -> torch.Tensor:
    """``W V`` for ``W = U S V^T``: orthogonal columns by decreasing norm, the largest-magnitude
    entry of each positive. weights (*B, D, L) -> (*B, D, L)."""
    left, singular, _ = torch.linalg.svd(weights, full_matrices=False)  # (*B, D, L), (*B, L)
    rotated = left * singular.unsqueeze(-2)
    largest = rotated.abs().argmax(-2, keepdim=True)  # (*B, 1, L)
    sign = torch.sign(rotated.gather(-2, largest))
    return rotated * torch.where(sign == 0, torch.ones_like(sign), sign)


@register("fa")
class FactorAnalysis(Model):
    """Factor analysis (diagonal noise) or probabilistic PCA (isotropic noise).

    Parameters
    ----------
    latent_dim : int
        L, the number of factors (at most the number of features).
    noise : {"isotropic", "diagonal"}
        One noise scale for every feature (probabilistic PCA) or one per feature (factor analysis).
    weight_scale : float
        Prior sd of each weight, in units of the feature's ``prior_spread``.
    location_scale : float
        Prior sd of the location, in units of ``prior_spread``.
    noise_log_sd : float
        sd of log(noise_scale) under its LogNormal prior, centred on log(spread).
    prior_center, prior_spread : list of float, optional
        Per-feature centre and spread of the priors; default: the training data's mean and sd.

    Examples
    --------
    >>> import zoo
    >>> fit = zoo.fit(zoo.models.FactorAnalysis(2), zoo.datasets.load("wine"), zoo.SVI(guide="delta"))
    >>> codes, covariance = fit.transform()  # the posterior of each wine's factors
    >>> codes.shape, covariance.shape
    (torch.Size([178, 2]), torch.Size([178, 2, 2]))
    """

    integrated_sites = ("z",)
    max_plate_nesting = 1
    static_likelihood = True  # no Python branch on a tensor's value in its density

    def __init__(
        self,
        latent_dim: int,
        noise: str = "isotropic",
        weight_scale: float = 1.0,
        location_scale: float = 2.0,
        noise_log_sd: float = 1.0,
        prior_center: list[float] | None = None,
        prior_spread: list[float] | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(latent_dim, "latent_dim")
        check_choice(noise, "noise", NOISES)
        self.latent_dim = latent_dim
        self.noise = noise
        self.weight_scale = check_positive_float(weight_scale, "weight_scale")
        self.location_scale = check_positive_float(location_scale, "location_scale")
        self.noise_log_sd = check_positive_float(noise_log_sd, "noise_log_sd")
        # the Gaussian family checks centre and spread (given together, positive, one per feature)
        Gaussian(center=None if prior_center is None else tuple(prior_center), spread=None if prior_spread is None else tuple(prior_spread))
        self.prior_center = None if prior_center is None else [float(c) for c in prior_center]
        self.prior_spread = None if prior_spread is None else [float(s) for s in prior_spread]
        if self.prior_center is not None and latent_dim > len(self.prior_center):
            raise ValueError(f"latent_dim={latent_dim} is larger than the number of features ({len(self.prior_center)})")

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["FactorAnalysis", Dataset]:
        return cls(latent_dim=2), simulate.gaussian_mixture(num_data=60, num_components=1, num_features=4, seed=0)

    @classmethod
    def examples(cls) -> list[tuple["FactorAnalysis", Dataset]]:
        """Isotropic (probabilistic PCA) and diagonal noise (factor analysis)."""
        model, data = cls.example()
        return [(model, data), (cls(latent_dim=2, noise="diagonal"), data)]

    def validate(self, data: Dataset) -> None:
        if data.x.dim() != 2:
            raise ValueError(f"data.x must be 2-D (num_data, num_features) for factor analysis, got shape {tuple(data.x.shape)}")
        if data.lengths is not None:
            raise ValueError("factor analysis takes independent points, not sequences (lengths given)")
        if self.latent_dim > data.num_features:
            raise ValueError(
                f"latent_dim={self.latent_dim} is larger than the number of features ({data.num_features}); "
                f"use at most {data.num_features} factors"
            )
        if self.prior_center is not None and data.num_features != len(self.prior_center):
            raise ValueError(f"data has {data.num_features} features but the model was set up for {len(self.prior_center)}")

    def prepare(self, data: Dataset) -> "FactorAnalysis":
        self.validate(data)
        config = self.config()
        if config["prior_center"] is None:
            config["prior_center"], config["prior_spread"] = Gaussian.empirical_prior(data.x)
        return type(self)(**config)

    def _hyperparameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prior_center is None or self.prior_spread is None:
            raise ValueError("this FactorAnalysis has no prior_center / prior_spread yet: fit it with zoo.fit, or pass them")
        return torch.tensor(self.prior_center), torch.tensor(self.prior_spread)

    def dims(self) -> dict[str, list[str]]:
        noise = ["feature"] if self.noise == "diagonal" else ["shared"]
        return {"loc": ["feature"], "weights": ["feature", "factor"], "noise_scale": noise, "x": ["datum", "feature"]}

    def coords(self, data: Dataset | None = None) -> dict[str, list[Any]]:
        num_features = len(self.prior_center) if self.prior_center else (data.num_features if data is not None else 1)
        names = list(data.feature_names) if data is not None and data.feature_names else list(range(num_features))
        return {"feature": names, "factor": list(range(self.latent_dim)), "shared": ["all"]}

    # ------------------------------------------------------------------ the model
    def sample_globals(self) -> dict[str, torch.Tensor]:
        """loc (D,), weights (D, L), noise_scale (D,) or (1,)."""
        center, spread = self._hyperparameters()
        noise_spread = spread if self.noise == "diagonal" else spread.pow(2).mean().sqrt().reshape(1)
        weight_sd = (self.weight_scale * spread).unsqueeze(-1).expand(-1, self.latent_dim)
        return {
            "loc": pyro.sample("loc", dist.Normal(center, self.location_scale * spread).to_event(1)),
            "weights": pyro.sample("weights", dist.Normal(torch.zeros_like(weight_sd), weight_sd).to_event(2)),
            "noise_scale": pyro.sample("noise_scale", dist.LogNormal(noise_spread.log(), self.noise_log_sd).to_event(1)),
        }

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size: int | None = None) -> torch.Tensor:
        """p(x, z, theta): conditions on ``x`` (N, D) or generates ``num_data`` points."""
        num_data = self.plate_size(x, num_data)
        params = self.sample_globals()
        with pyro.plate(self.data_plate, num_data, subsample_size=batch_size) as index:
            # Under a plate of posterior draws (dim -2) weights are (S, 1, D, L) and z (S, N, L).
            z = pyro.sample("z", dist.Normal(torch.zeros(self.latent_dim), 1.0).to_event(1))
            mean = params["loc"] + (params["weights"] @ z.unsqueeze(-1)).squeeze(-1)
            observed = None if x is None else x.index_select(0, index)
            return pyro.sample(self.observed_site, dist.Normal(mean, params["noise_scale"]).to_event(1), obs=observed)

    # ------------------------------------------------------------------ the collapsed likelihood
    def _code_terms(self, draws: dict[str, torch.Tensor], data: Dataset) -> tuple[torch.Tensor, ...]:
        """The L x L quantities both densities use, never a D x D matrix: the residuals
        ``r = x - loc`` (S, N, D), ``W^T Psi^-1 r`` (S, N, L), the Cholesky factor of
        ``M = I + W^T Psi^-1 W`` (S, L, L), which is at least I, so it never fails, and the noise
        variances (S, D)."""
        weights = draws["weights"]  # (S, D, L)
        variances = draws["noise_scale"].pow(2).expand(-1, weights.shape[-2])  # (S, D)
        scaled = weights / variances.unsqueeze(-1)  # Psi^-1 W: (S, D, L)
        precision = torch.eye(self.latent_dim, dtype=weights.dtype) + weights.transpose(-1, -2) @ scaled
        residuals = data.x.to(weights.dtype) - draws["loc"].unsqueeze(-2)  # (S, N, D)
        return residuals, residuals @ scaled, torch.linalg.cholesky(precision), variances

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log N(x_i | loc, W W^T + Psi) per draw and point, by the Woodbury identity and the
        matrix determinant lemma: ``r^T C^-1 r = r^T Psi^-1 r - p^T M^-1 p`` with
        ``p = W^T Psi^-1 r``, and ``log det C = log det M + sum_d log psi_d``: (S, N)."""
        residuals, projected, tril, variances = self._code_terms(draws, data)
        whitened = torch.linalg.solve_triangular(tril, projected.transpose(-1, -2), upper=False)  # (S, L, N)
        quadratic = (residuals.pow(2) / variances.unsqueeze(-2)).sum(-1) - whitened.pow(2).sum(-2)
        log_det = 2 * tril.diagonal(dim1=-2, dim2=-1).log().sum(-1) + variances.log().sum(-1)  # (S,)
        return -0.5 * (quadratic + (log_det + variances.shape[-1] * math.log(2 * math.pi)).unsqueeze(-1))

    def local_posterior(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """p(z_i | x_i, theta_s) = N(M^-1 W^T Psi^-1 (x_i - loc), M^-1), M = I + W^T Psi^-1 W:
        {"z": (mean (S, N, L), covariance (S, N, L, L))}."""
        _, projected, tril, _ = self._code_terms(draws, data)
        covariance = torch.cholesky_inverse(tril)  # (S, L, L)
        mean = projected @ covariance  # covariance is symmetric: (S, N, L)
        return {"z": (mean, covariance.unsqueeze(-3).expand(-1, len(data), -1, -1))}

    # ------------------------------------------------------------------ starts and rotation
    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """The closed-form probabilistic PCA fit (Tipping and Bishop 1999, eq. 7-8): the top L
        principal axes, scaled by the sd in excess of the noise; for diagonal noise, each
        feature's variance left unexplained."""
        x = data.x
        centred = x - x.mean(0)
        covariance = centred.T @ centred / max(len(x) - 1, 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0).clamp(min=0), eigenvectors.flip(1)
        rest = eigenvalues[self.latent_dim :]
        _, spread = self._hyperparameters()
        noise_variance = rest.mean() if len(rest) else torch.tensor(0.0)
        noise_variance = noise_variance.clamp(min=1e-4 * float(spread.pow(2).mean()))
        weights = eigenvectors[:, : self.latent_dim] * (eigenvalues[: self.latent_dim] - noise_variance).clamp(min=1e-6).sqrt()
        if self.noise == "diagonal":
            unexplained = (covariance.diagonal() - weights.pow(2).sum(-1)).clamp(min=1e-4 * spread.pow(2))
            noise_scale = unexplained.sqrt()
        else:
            noise_scale = noise_variance.sqrt().reshape(1)
        return {"loc": x.mean(0), "weights": weights, "noise_scale": noise_scale}

    def relabel(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Put each draw's weights in the canonical rotation (see the module docs)."""
        return draws | {"weights": canonical_rotation(draws["weights"])}
