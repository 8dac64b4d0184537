r"""Mixtures of any family: K components of one shared emission family, the assignment summed out.

Generative story
----------------
For N points, K components and one family of :mod:`zoo.models.families` (Gaussian, Poisson,
Bernoulli, categorical, multinomial), or rows of mixed type (``family="mixed"``: each block of
columns its own family, :class:`~zoo.models.columns.MixedFamily`)::

    weights          ~ Dirichlet(weight_concentration * 1_K)
    for k in 1..K:                                                   (component plate)
        theta[k]     ~ the family's prior (see :mod:`zoo.models.families`)
    for i in 1..N:                                                   (data plate)
        assignment[i] ~ Categorical(weights)                         (enumerated)
        x[i]          ~ family(theta[assignment[i]])

Bernoulli components over binary images are Bishop's (PRML 9.3.3) mixture of Bernoullis;
categorical components over one column are latent class analysis; Poisson components are the
independent Poisson mixtures of Zucchini and MacDonald (2009, ch. 1). The Gaussian family with
``covariance="full"`` is the density of :class:`~zoo.models.GaussianMixture`, which stays the
Gaussian mixture's own class (its API, its relabelling by the first feature).

Sample sites
------------
==============  ===============  =================================================
name            shape            support
==============  ===============  =================================================
``weights``     (K,)             simplex
family sites    (K, ...)         ``locs``, ``scales``, ``corr_cholesky`` (Gaussian),
                                 ``rates`` (Poisson), ``probs`` (Bernoulli,
                                 categorical, multinomial): the family's table;
                                 prefixed by block for "mixed" (``gaussian0_locs``)
``assignment``  (N,)             {0, ..., K-1}; enumerated, never seen by a guide
``x``           (N, D)           observed; a category index in one column for the
                                 categorical family
==============  ===============  =================================================

The collapsed likelihood is ``logsumexp_k [log w_k + log p(x_i | theta_k)]``, the table
``log p(x_i | theta_k)`` being the family's :meth:`~zoo.models.family.Family.log_density`,
computed by the very distribution ``forward`` observes. Label switching is undone after
fitting by sorting the components of every draw by the family's ``order_key`` (the first
feature's location or rate, the mean probability, the expected category).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pyro
import pyro.distributions as dist
import torch

from zoo.checks import check_choice, check_positive_float, check_positive_int
from zoo.datasets import simulate
from zoo.datasets.dataset import Dataset
from zoo.models.base import Model
from zoo.models.columns import ColumnLayout, MixedFamily, check_features, select_columns
from zoo.models.families import Family, Gaussian, Poisson
from zoo.models.families_discrete import Bernoulli, Categorical, Multinomial
from zoo.models.registry import register
from zoo.ops.clustering import kmeans_plus_plus, reorder_components

__all__ = ["Mixture", "FAMILY_NAMES"]

FAMILY_NAMES = ("gaussian", "poisson", "bernoulli", "categorical", "multinomial", "mixed")


@register("mixture")
class Mixture(Model):
    """A finite mixture of K components of one family, the assignment of each point summed out.

    Parameters
    ----------
    num_components : int
        K (>= 1).
    family : {"gaussian", "poisson", "bernoulli", "categorical", "multinomial", "mixed"}
        The components' family (:mod:`zoo.models.families`); "mixed" for rows of mixed type,
        each column's family named by ``features``
        (:class:`~zoo.models.columns.MixedFamily`).
    features : list of str, optional
        With ``family="mixed"``: the family of every column, one of "gaussian", "bernoulli",
        "categorical", "multinomial" (the multinomial columns form one vector of counts).
    covariance : {"diag", "full"}
        Gaussian family only.
    weight_concentration : float
        Of the symmetric Dirichlet prior on the weights.
    component_concentration : float
        Of the Beta / Dirichlet prior on each component's probabilities (Bernoulli, categorical,
        multinomial).
    num_features : int, optional
        D; set from the data when fitted.
    num_categories : int or list of int, optional
        C of the categorical family (one per categorical column for "mixed"); default: the
        largest category in the training data + 1.
    prior_center, prior_spread : list of float, optional
        Per-feature prior centre and spread (Gaussian; the Gaussian columns for "mixed"), or
        median rate (Poisson, ``prior_center`` only); default: from the training data.

    Examples
    --------
    >>> import zoo
    >>> data = zoo.datasets.load("digits", binarize=True)
    >>> fit = zoo.fit(zoo.models.Mixture(10, family="bernoulli"), data, zoo.SVI(guide="delta", num_steps=20))
    >>> fit.point["probs"].shape  # component means, each an 8x8 image
    torch.Size([10, 64])
    """

    enumerated_sites = ("assignment",)
    static_likelihood = True  # no Python branch on a tensor's value in its density

    def __init__(
        self,
        num_components: int,
        family: str = "gaussian",
        features: list[str] | None = None,
        covariance: str = "diag",
        weight_concentration: float = 1.0,
        component_concentration: float = 1.0,
        num_features: int | None = None,
        num_categories: int | list[int] | None = None,
        prior_center: list[float] | None = None,
        prior_spread: list[float] | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(num_components, "num_components")
        check_choice(family, "family", FAMILY_NAMES)
        check_choice(covariance, "covariance", Gaussian.COVARIANCES)
        self.num_components = num_components
        self.family = family
        self.covariance = covariance
        self.weight_concentration = check_positive_float(weight_concentration, "weight_concentration")
        self.component_concentration = check_positive_float(component_concentration, "component_concentration")
        self.num_features = num_features
        self.num_categories = num_categories
        self.prior_center = None if prior_center is None else [float(c) for c in prior_center]
        self.prior_spread = None if prior_spread is None else [float(s) for s in prior_spread]
        self.features = None if features is None else check_features(list(features))
        if (family == "mixed") != (features is not None):
            raise ValueError("features (the family of every column) goes with family='mixed', and only with it")
        if family != "mixed" or self.num_categories is not None or "categorical" not in (self.features or []):
            self.components  # the family checks its own hyperparameters  # noqa: B018

    @functools.cached_property
    def components(self) -> Family:
        """The components' family with this model's hyperparameters."""
        center = None if self.prior_center is None else tuple(self.prior_center)
        concentration = self.component_concentration
        if self.family == "gaussian":
            spread = None if self.prior_spread is None else tuple(self.prior_spread)
            return Gaussian(num_features=self.num_features, covariance=self.covariance, center=center, spread=spread)
        if self.family == "poisson":
            return Poisson(center=center)
        if self.family == "bernoulli":
            return Bernoulli(num_features=self.num_features, concentration=concentration)
        if self.family == "categorical":
            return Categorical(num_categories=self.num_categories, concentration=concentration)  # type: ignore[arg-type]
        if self.family == "mixed":
            return self._mixed_family()
        return Multinomial(num_features=self.num_features, concentration=concentration)

    def _layout(self) -> ColumnLayout:
        return ColumnLayout.of(list(self.features or []), self.num_categories or ())  # type: ignore[arg-type]

    def _mixed_family(self) -> MixedFamily:
        """Each block's family with this model's hyperparameters (the Gaussian block's prior
        centre and spread, the others' concentration)."""
        blocks = []
        for block in self._layout().blocks():
            if isinstance(block.family, Gaussian):
                center = None if self.prior_center is None else tuple(self.prior_center)
                spread = None if self.prior_spread is None else tuple(self.prior_spread)
                family: Family = dataclasses.replace(block.family, covariance=self.covariance, center=center, spread=spread)
            else:
                family = dataclasses.replace(block.family, concentration=self.component_concentration)
            blocks.append(block._replace(family=family))
        return MixedFamily(tuple(blocks), len(self.features or []))

    # ------------------------------------------------------------------ the model
    def sample_weights(self) -> dict[str, torch.Tensor]:
        """The weights' sites: {"weights": (K,)} under a symmetric Dirichlet prior."""
        concentration = torch.full((self.num_components,), self.weight_concentration)
        return {"weights": pyro.sample("weights", dist.Dirichlet(concentration))}

    def weights(self, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mixture weights (*B, K) of sites with any batch shape B."""
        return draws["weights"]

    def sample_globals(self) -> dict[str, torch.Tensor]:
        """The weights' sites, and the family's sites (K, ...)."""
        params = self.sample_weights()
        with pyro.plate("components", self.num_components):
            params.update(self.components.prior(torch.get_default_dtype()))
        return params

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size: int | None = None) -> torch.Tensor:
        """p(x, assignment, theta): conditions on ``x`` (N, D) or generates ``num_data`` points."""
        num_data = self.plate_size(x, num_data)
        params = self.sample_globals()
        family = self.components
        with pyro.plate(self.data_plate, num_data, subsample_size=batch_size) as index:
            weights = self.weights(params)
            assignment = pyro.sample("assignment", dist.Categorical(weights), infer={"enumerate": "parallel"})
            gathered = family.gather(params, assignment)
            observed = None if x is None else family.observation(x.index_select(0, index), weights.dtype)
            if family.value_event_dims == 0:  # a category index: a column of its own, as x holds it
                gathered = {name: value.unsqueeze(-2) for name, value in gathered.items()}
                observed = None if observed is None else observed.unsqueeze(-1)
                return pyro.sample(self.observed_site, family.distribution(gathered).to_event(1), obs=observed)
            return pyro.sample(self.observed_site, family.distribution(gathered), obs=observed)

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["Mixture", Dataset]:
        data = simulate.naive_bayes(num_data=60, num_classes=2, num_features=3, features="bernoulli", seed=0)
        return cls(2, family="bernoulli"), Dataset(data.x, name="binary")

    @classmethod
    def examples(cls) -> list[tuple["Mixture", Dataset]]:
        """Every family (full-covariance Gaussian included)."""
        variants = [cls.example()]
        gaussian = simulate.gaussian_mixture(num_data=60, num_components=2, seed=0)
        variants += [(cls(2, family="gaussian"), gaussian), (cls(2, family="gaussian", covariance="full"), gaussian)]
        generator = torch.Generator().manual_seed(0)
        counts = torch.poisson(torch.tensor([2.0, 9.0]).repeat(30).unsqueeze(-1).expand(60, 2).contiguous(), generator=generator)
        variants += [(cls(2, family="poisson"), Dataset(counts, name="counts")), (cls(2, family="multinomial"), Dataset(counts, name="counts"))]
        categories = torch.randint(4, (60, 1), generator=generator).float()
        variants.append((cls(2, family="categorical"), Dataset(categories, name="categories")))
        rows = torch.cat([gaussian.x, (gaussian.x[:, :1] > 0).float(), categories, counts], -1)
        mixed = ["gaussian", "gaussian", "bernoulli", "categorical", "multinomial", "multinomial"]
        return variants + [(cls(2, family="mixed", features=mixed), Dataset(rows, name="mixed"))]

    def validate(self, data: Dataset) -> None:
        if data.x.dim() != 2:
            raise ValueError(f"data.x must be 2-D (num_data, num_features) for a mixture, got shape {tuple(data.x.shape)}")
        if data.lengths is not None:
            raise ValueError("a mixture takes independent points, not sequences (lengths given)")
        if self.family == "mixed" and len(self.features or []) != data.num_features:
            raise ValueError(f"features names {len(self.features or [])} columns but the data has {data.num_features}")
        if self.family == "mixed" and self.num_categories is None:
            self._layout().validate(data.x)  # no alphabet yet: category indices, 0/1, counts
        else:
            self.components.validate(data.x)
        if self.num_features is not None and data.num_features != self.num_features:
            raise ValueError(f"data has {data.num_features} features but the model was set up for {self.num_features}")

    def prepare(self, data: Dataset) -> "Mixture":
        self.validate(data)
        if self.num_components > len(data):
            raise ValueError(f"num_components={self.num_components} is larger than the number of points ({len(data)})")
        config = self.config() | {"num_features": data.num_features}
        if self.family == "categorical" and config["num_categories"] is None:
            config["num_categories"] = max(2, int(data.x.max()) + 1)
        if self.family == "gaussian" and config["prior_center"] is None:
            config["prior_center"], config["prior_spread"] = Gaussian.empirical_prior(data.x)
        if self.family == "poisson" and config["prior_center"] is None:
            config["prior_center"] = Poisson.empirical_prior(data.x)
        layout = self._layout()
        if self.family == "mixed" and config["num_categories"] is None:
            config["num_categories"] = [max(2, int(data.x[:, column].max()) + 1) for column in layout.categorical]
        if self.family == "mixed" and config["prior_center"] is None and layout.gaussian:
            config["prior_center"], config["prior_spread"] = Gaussian.empirical_prior(select_columns(data.x, layout.gaussian))
        return type(self)(**config)

    def dims(self) -> dict[str, list[str]]:
        return {"weights": ["component"], **self.components.dims(), "x": ["datum", "feature"]}

    def coords(self, data: Dataset | None = None) -> dict[str, list[Any]]:
        num_features = self.num_features or (data.num_features if data is not None else 1)
        names = list(data.feature_names) if data is not None and data.feature_names else list(range(num_features))
        coords = {"component": list(range(self.num_components)), "feature": names, "feature_bis": names}
        if self.family == "mixed":
            return coords | self.components.coords(names)  # type: ignore[attr-defined]
        return coords | {"category": list(range(self.num_categories or 0))}  # type: ignore[arg-type]

    # ------------------------------------------------------------------ fast exact paths
    def log_joint(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log w_k + log p(x_i | theta_k) for parameters (S, K, ...): (S, N, K); the weights
        normalised as ``Categorical`` normalises them (values and gradients off the simplex)."""
        log_weights = self.weights(draws).log().log_softmax(-1)  # (S, K)
        return self.components.log_density(draws, data.x) + log_weights.unsqueeze(-2)

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log p(x_i | theta_s) = logsumexp_k [log w_k + log p(x_i | theta_k)]: (S, N)."""
        return self.log_joint(draws, data).logsumexp(-1)

    def marginals(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, torch.Tensor]:
        """Responsibilities p(assignment_i = k | x_i, theta_s): {"assignment": (S, N, K)}."""
        return {"assignment": self.log_joint(draws, data).softmax(-1)}

    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """k-means++ on the family's features; each cluster's weight and weighted estimates."""
        features = self.components.features(data.x)
        centres = kmeans_plus_plus(features, self.num_components, seed=seed)
        labels = torch.nn.functional.one_hot(torch.cdist(features, centres).argmin(-1), self.num_components).to(features.dtype)
        counts = labels.sum(0) + 1.0  # a pseudo-count keeps every weight inside the simplex
        return {"weights": counts / counts.sum()} | self.components.estimates(data.x, labels)

    def relabel(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sort the components of every draw by the family's ``order_key``."""
        order = self.components.order_key(draws).argsort(-1)  # (..., K)
        sites = ("weights",) + self.components.sites
        return draws | {name: reorder_components(draws[name], order) for name in sites}
