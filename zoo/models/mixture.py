r"""Gaussian mixture: each point is drawn from one of K Gaussian components.

Generative story
----------------
For a data set of N points in D dimensions and K components::

    weights            ~ Dirichlet(weight_concentration * 1_K)
    for k in 1..K:
        locs[k]        ~ Normal(prior_center, location_scale * prior_spread)      (per feature)
        scales[k]      ~ LogNormal(log(prior_spread), scale_log_sd)               (per feature)
        corr_cholesky[k] ~ LKJCholesky(D, correlation_concentration)              (full only)
    for i in 1..N:
        assignment[i]  ~ Categorical(weights)                                     (enumerated)
        x[i]           ~ MultivariateNormal(locs[a], scale_tril = diag(scales[a]) @ corr_cholesky[a])
                         with a = assignment[i]

``prior_center`` and ``prior_spread`` default to the mean and standard deviation of the training
data (an empirical prior, as scikit-learn's ``BayesianGaussianMixture`` does), so the priors are
weakly informative in the data's own units. The LogNormal prior on scales vanishes at zero, so a
MAP fit cannot collapse a component onto a single point (the Bayesian regularisation of Fraley and
Raftery, 2007, in place of scikit-learn's ``reg_covar``).

Sample sites
------------
=================  ===============  ===========================================================
name               shape            support
=================  ===============  ===========================================================
``weights``        (K,)             simplex
``locs``           (K, D)           real
``scales``         (K, D)           positive
``corr_cholesky``  (K, D, D)        Cholesky factor of a correlation matrix (full, D >= 2)
``assignment``     (N,)             {0, ..., K-1}; enumerated, never seen by a guide
``x``              (N, D)           real; observed
=================  ===============  ===========================================================

Data as it comes
----------------
* **Missing values**: ``zoo.Dataset(x, missing="mask")`` takes NaN as a missing entry; each
  point's density is that of its observed coordinates (the observed sub-block ``Sigma_oo`` of a
  full covariance, the observed features' terms of a diagonal one), so the missing ones are
  integrated out exactly. ``fit.impute(data)`` draws them from p(x_missing | x_observed): a
  component from the responsibilities of the observed coordinates, then its conditional
  Gaussian.
* **Sample weights**: ``zoo.Dataset(x, weights=w)`` multiplies each point's log-likelihood by its
  weight (an integer weight counts the point that many times), for MAP, SVI and NUTS.
* **Known parameters**: ``zoo.fit(model, data, method, fixed={"locs": ...})`` holds sites at given
  values (constants in the results, not relabelled). The priors are the table above; their
  hyperparameters are the constructor's arguments, and
  ``priors={"locs": dist.Normal(0.0, 3.0)}`` puts a distribution of your own in a site's place
  (SVI, MAP and NUTS).

Label switching
---------------
The likelihood is the same under any permutation of the components, so the posterior has K!
symmetric modes and chains (or guides) can settle in different ones. zoo starts every fit from a
k-means++ initialisation whose components are ordered by their location on the first feature,
and relabels every posterior draw the same way (components sorted by ``locs[:, 0]``), so draws
from different chains describe the same component under the same index and R-hat is not inflated
by label switching. When two components share their first-feature location this ordering is
ambiguous; the relabelling then cannot help.
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from zoo.checks import check_positive_float, check_positive_int
from zoo.datasets import simulate
from zoo.datasets.dataset import Dataset
from zoo.models.base import Model
from zoo.models.registry import register
from zoo.models.families import Gaussian
from zoo.ops.clustering import kmeans_plus_plus, reorder_components
from zoo.ops.densities import masked_gaussian_log_density, normal_log_density

__all__ = ["GaussianMixture", "kmeans_plus_plus"]

COVARIANCES = ("full", "diag")


@register("gmm")
class GaussianMixture(Model):
    """Bayesian Gaussian mixture with the assignment of each point summed out.

    Parameters
    ----------
    num_components : int
        K, the number of mixture components (>= 1).
    covariance : {"full", "diag"}
        Full covariance matrices (scales and an LKJ correlation) or diagonal ones.
    weight_concentration : float
        Concentration of the symmetric Dirichlet prior on the weights (1 is uniform on the simplex).
    location_scale : float
        Prior sd of each location, in units of ``prior_spread``.
    scale_log_sd : float
        sd of log(scale) under its LogNormal prior.
    correlation_concentration : float
        LKJ concentration (1 is uniform over correlation matrices; 2 mildly favours small
        correlations).
    prior_center, prior_spread : list of float, optional
        Per-feature centre and spread of the priors; default: the training data's mean and sd.

    Examples
    --------
    >>> import zoo
    >>> model = zoo.models.GaussianMixture(num_components=2)
    >>> fit = zoo.fit(model, zoo.datasets.load("old_faithful"), zoo.SVI(guide="delta"))
    """

    enumerated_sites = ("assignment",)
    max_plate_nesting = 1
    data_plate = "data"
    observed_site = "x"
    methods = ("svi", "nuts")
    default_guide = "normal"
    static_likelihood = True  # no Python branch on a tensor's value in its density
    handles_missing = True

    def __init__(
        self,
        num_components: int,
        covariance: str = "full",
        weight_concentration: float = 1.0,
        location_scale: float = 2.0,
        scale_log_sd: float = 1.0,
        correlation_concentration: float = 2.0,
        prior_center: list[float] | None = None,
        prior_spread: list[float] | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(num_components, "num_components", minimum=1)
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        for name, value in [
            ("weight_concentration", weight_concentration),
            ("location_scale", location_scale),
            ("scale_log_sd", scale_log_sd),
            ("correlation_concentration", correlation_concentration),
        ]:
            check_positive_float(value, name)
        if (prior_center is None) != (prior_spread is None):
            raise ValueError("prior_center and prior_spread must be given together, or neither")
        if prior_spread is not None and any(s <= 0 for s in prior_spread):
            raise ValueError(f"prior_spread must be positive, got {prior_spread}")
        if prior_center is not None and len(prior_center) != len(prior_spread or []):
            raise ValueError("prior_center and prior_spread must have one entry per feature")
        self.num_components = num_components
        self.covariance = covariance
        self.weight_concentration = float(weight_concentration)
        self.location_scale = float(location_scale)
        self.scale_log_sd = float(scale_log_sd)
        self.correlation_concentration = float(correlation_concentration)
        self.prior_center = None if prior_center is None else [float(c) for c in prior_center]
        self.prior_spread = None if prior_spread is None else [float(s) for s in prior_spread]

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["GaussianMixture", Dataset]:
        return cls(num_components=2), simulate.gaussian_mixture(num_data=60, num_components=2, seed=0)

    @classmethod
    def examples(cls) -> list[tuple["GaussianMixture", Dataset]]:
        """Full and diagonal covariance."""
        model, data = cls.example()
        return [(model, data), (cls(num_components=2, covariance="diag"), data)]

    @property
    def num_features(self) -> int | None:
        """D, once known from the data (``prior_center``)."""
        return None if self.prior_center is None else len(self.prior_center)

    @property
    def has_correlations(self) -> bool:
        return self.covariance == "full" and (self.num_features or 0) >= 2

    def validate(self, data: Dataset) -> None:
        if data.x.dim() != 2:
            raise ValueError(
                f"data.x must be 2-D (num_data, num_features) for a Gaussian mixture, "
                f"got shape {tuple(data.x.shape)}"
            )
        if data.lengths is not None:
            raise ValueError("a Gaussian mixture takes independent points, not sequences (lengths given)")
        if self.num_features is not None and data.num_features != self.num_features:
            raise ValueError(
                f"data has {data.num_features} features but the model was set up for {self.num_features}"
            )

    def prepare(self, data: Dataset) -> "GaussianMixture":
        self.validate(data)
        if self.num_components > len(data):
            raise ValueError(
                f"num_components={self.num_components} is larger than the number of points "
                f"({len(data)}); use at most {len(data)} components"
            )
        config = self.config()
        if config["prior_center"] is None:
            spread = data.x.std(0) if len(data) > 1 else torch.ones(data.num_features)
            spread = torch.where(spread > 0, spread, torch.ones_like(spread))
            config["prior_center"] = data.x.mean(0).tolist()
            config["prior_spread"] = spread.tolist()
        return type(self)(**config)

    def _check_ready(self) -> None:
        if self.prior_center is None:
            raise ValueError(
                "this GaussianMixture has no prior_center / prior_spread yet: fit it with zoo.fit "
                "(which sets them from the data), or pass them to the constructor"
            )

    def dims(self) -> dict[str, list[str]]:
        dims = {
            "weights": ["component"],
            "locs": ["component", "feature"],
            "scales": ["component", "feature"],
            "x": ["datum", "feature"],
        }
        if self.has_correlations:
            dims["corr_cholesky"] = ["component", "feature", "feature_bis"]
        return dims

    def coords(self, data: Dataset | None = None) -> dict[str, list[Any]]:
        num_features = self.num_features or (data.num_features if data is not None else 1)
        names = list(data.feature_names) if data is not None and data.feature_names else list(range(num_features))
        return {
            "component": list(range(self.num_components)),
            "feature": names,
            "feature_bis": names,
        }

    # ------------------------------------------------------------------ the model
    def sample_globals(self) -> dict[str, torch.Tensor]:
        """weights (K,), and per component locs (K, D), scales (K, D), corr_cholesky (K, D, D)."""
        self._check_ready()
        center = torch.tensor(self.prior_center)
        spread = torch.tensor(self.prior_spread)
        params = {
            "weights": pyro.sample(
                "weights", dist.Dirichlet(torch.full((self.num_components,), self.weight_concentration))
            )
        }
        with pyro.plate("components", self.num_components):
            params["locs"] = pyro.sample("locs", dist.Normal(center, self.location_scale * spread).to_event(1))
            params["scales"] = pyro.sample("scales", dist.LogNormal(spread.log(), self.scale_log_sd).to_event(1))
            if self.has_correlations:
                params["corr_cholesky"] = pyro.sample(
                    "corr_cholesky", dist.LKJCholesky(len(self.prior_center), self.correlation_concentration)
                )
        return params

    def forward(
        self,
        x: torch.Tensor | None = None,
        num_data: int | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """p(x, assignment, theta): conditions on ``x`` (N, D) or generates ``num_data`` points."""
        num_data = self.plate_size(x, num_data)
        params = self.sample_globals()
        with pyro.plate(self.data_plate, num_data, subsample_size=batch_size) as index:
            # Under enumeration `assignment` has shape (K, 1): its own dim left of the data plate.
            # Under a plate of posterior draws (dim -2) `weights` is (S, 1, K) and the
            # component-indexed sites are (S, K, ...); a singleton data dim added to the latter
            # before gathering lets Vindex broadcast (S, 1) with the assignment's (..., N) shape.
            assignment = pyro.sample(
                "assignment", dist.Categorical(params["weights"]), infer={"enumerate": "parallel"}
            )
            loc = Vindex(params["locs"].unsqueeze(-3))[..., assignment, :]
            scale = Vindex(params["scales"].unsqueeze(-3))[..., assignment, :]
            observed = None if x is None else x.index_select(0, index)
            if self.has_correlations:
                tril = Vindex(params["corr_cholesky"].unsqueeze(-4))[..., assignment, :, :]
                distribution = dist.MultivariateNormal(loc, scale_tril=scale.unsqueeze(-1) * tril)
            else:
                distribution = dist.Normal(loc, scale).to_event(1)
            return pyro.sample(self.observed_site, distribution, obs=observed)

    # ------------------------------------------------------------------ fast exact paths
    def component_distribution(self, draws: dict[str, torch.Tensor]) -> dist.Distribution:
        """The K component densities for parameters with any batch shape B: batch (*B, K)."""
        locs, scales = draws["locs"], draws["scales"]
        if self.has_correlations:
            tril = scales.unsqueeze(-1) * draws["corr_cholesky"]
            return dist.MultivariateNormal(locs, scale_tril=tril)
        return dist.Normal(locs, scales).to_event(1)

    def log_joint(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log w_k + log N(x_i | mu_k, Sigma_k) for parameters (S, K, ...): (S, N, K).

        The weights are normalised as ``Categorical`` normalises them, so that values and
        gradients equal the enumerated definition's also off the simplex.
        """
        log_weights = draws["weights"].log().log_softmax(-1)  # (S, K)
        return self.component_log_density(draws, data.x, data.observed) + log_weights.unsqueeze(-2)

    def component_log_density(
        self, draws: dict[str, torch.Tensor], x: torch.Tensor, observed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log N(x_i | mu_k, Sigma_k) for parameters (S, K, ...) and points x (N, D): (S, N, K).

        With ``observed`` (N, D) (``Dataset(missing="mask")``), the density of each point's
        observed coordinates, the missing ones integrated out exactly: their terms dropped for a
        diagonal covariance, the observed sub-block ``Sigma_oo`` for a full one
        (:func:`zoo.ops.densities.masked_gaussian_log_density`).

        ``component_distribution(draws).log_prob``, written out: with ``L = diag(scales) @
        corr_cholesky`` (lower triangular), ``log N = -||L^-1 (x - mu)||^2 / 2 - sum_d log L_dd
        - D log(2 pi) / 2``. No distribution object is built: torch's ``MultivariateNormal``
        checks its shapes with ``torch.broadcast_shapes``, whose first call imports sympy
        (seconds, on a first fit in a fresh process).
        """
        locs, scales = draws["locs"], draws["scales"]  # (S, K, D)
        if observed is not None:
            if self.has_correlations:
                tril = scales.unsqueeze(-1) * draws["corr_cholesky"]  # (S, K, D, D)
                # points (N, 1, D) against components (S, 1, K, D): (S, N, K)
                return masked_gaussian_log_density(x.unsqueeze(-2), observed.unsqueeze(-2), locs.unsqueeze(-3), tril.unsqueeze(-4))
            terms = normal_log_density(x.unsqueeze(-2), locs.unsqueeze(-3), scales.unsqueeze(-3))  # (S, N, K, D)
            return (terms * observed.unsqueeze(-2).to(terms.dtype)).sum(-1)
        centred = x.T - locs.unsqueeze(-1)  # (S, K, D, N)
        if self.has_correlations:
            tril = scales.unsqueeze(-1) * draws["corr_cholesky"]  # (S, K, D, D)
            standardised = torch.linalg.solve_triangular(tril, centred, upper=False)
            half_log_det = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (S, K)
        else:
            standardised = centred / scales.unsqueeze(-1)
            half_log_det = scales.log().sum(-1)
        num_features = x.shape[-1]
        log_density = -0.5 * standardised.pow(2).sum(-2) - (half_log_det + 0.5 * num_features * math.log(2 * math.pi)).unsqueeze(-1)
        return log_density.transpose(-1, -2)  # (S, N, K)

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log p(x_i | theta_s) = logsumexp_k [log w_k + log N(x_i | mu_k, Sigma_k)]: (S, N)."""
        return self.log_joint(draws, data).logsumexp(-1)

    def marginals(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, torch.Tensor]:
        """Responsibilities p(assignment_i = k | x_i, theta_s): {"assignment": (S, N, K)}."""
        return {"assignment": self.log_joint(draws, data).softmax(-1)}

    def discrete(self, params: dict[str, torch.Tensor], data: Dataset, temperature: int = 0) -> dict[str, torch.Tensor]:
        """Each point's most probable (temperature 0) or a sampled (1) component given one
        parameter value: {"assignment": (N,)}. Points are independent given the parameters, so
        this is what ``infer_discrete`` on ``forward`` gives, from the responsibilities (which
        integrate out missing entries)."""
        responsibilities = self.marginals({name: value[None] for name, value in params.items()}, data)["assignment"][0]
        if temperature == 0:
            return {"assignment": responsibilities.argmax(-1)}
        return {"assignment": torch.multinomial(responsibilities, 1)[:, 0]}

    def impute(self, params: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """One draw of the missing entries of ``data`` from p(x_missing | x_observed, theta) given
        one parameter value (site shapes): an assignment drawn from the responsibilities of the
        observed coordinates, then the component's conditional Gaussian. Returns x's shape."""
        assignment = self.discrete(params, data, temperature=1)["assignment"]
        family = Gaussian(num_features=data.num_features, covariance=self.covariance)
        observed = data.observed if data.observed is not None else torch.ones_like(data.x, dtype=torch.bool)
        return family.fill(params, assignment, data.x, observed)

    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """k-means++ centres, and each cluster's weight, sd and correlation."""
        self._check_ready()
        x = data.x
        centres = kmeans_plus_plus(x, self.num_components, seed=seed)
        label = torch.cdist(x, centres).argmin(-1)
        spread = torch.tensor(self.prior_spread)
        weights, scales, cholesky = [], [], []
        for k in range(self.num_components):
            members = x[label == k]
            weights.append(max(len(members), 1))
            if len(members) > x.shape[1] + 1:
                centred = members - members.mean(0)
                covariance = centred.T @ centred / (len(members) - 1)
                sd = covariance.diagonal().sqrt().clamp(min=1e-3 * spread)
                correlation = covariance / (sd.unsqueeze(-1) * sd)
                eye = torch.eye(x.shape[1])
                correlation = 0.9 * correlation + 0.1 * eye  # keep it well inside the support
            else:
                sd, correlation = 0.5 * spread, torch.eye(x.shape[1])
            scales.append(sd)
            cholesky.append(torch.linalg.cholesky(correlation))
        values = {
            "weights": torch.tensor(weights, dtype=x.dtype) / sum(weights),
            "locs": centres,
            "scales": torch.stack(scales),
        }
        if self.has_correlations:
            values["corr_cholesky"] = torch.stack(cholesky)
        return values

    def relabel(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sort the components of every draw by their location on the first feature."""
        order = draws["locs"][..., 0].argsort(-1)  # (..., K)
        sites = [name for name in ("weights", "locs", "scales", "corr_cholesky") if name in draws]
        return draws | {name: reorder_components(draws[name], order) for name in sites}
