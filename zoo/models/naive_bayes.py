r"""Naive Bayes: a generative classifier, p(x, y), with features independent given the class.

Generative story
----------------
For N rows, C classes and D feature columns, each column of one *family* (Gaussian, Bernoulli,
categorical, or the multinomial block of count columns)::

    weights                      ~ Dirichlet(class_concentration * 1_C)
    for c in 1..C:                                                   (class plate)
        for each Gaussian column j:                                  (feature plate)
            precision[c, j]      ~ Gamma(precision_shape, precision_shape * prior_scale[j]**2)
            loc[c, j]            ~ Normal(prior_loc[j], 1 / sqrt(loc_count * precision[c, j]))
        for each Bernoulli column j:                                 (feature plate)
            bernoulli_probs[c, j] ~ Beta(concentration, concentration)
        for each categorical column j (K_j categories):
            categorical_probs_j[c] ~ Dirichlet(concentration * 1_{K_j})
        multinomial_probs[c]     ~ Dirichlet(concentration * 1_{D_m})  (over the D_m count columns)
    for i in 1..N:                                                   (data plate)
        y[i]                     ~ Categorical(weights)               (observed, or enumerated)
        x[i, j]                  ~ Normal(loc[y_i, j], 1 / sqrt(precision[y_i, j]))   Gaussian j
        x[i, j]                  ~ Bernoulli(bernoulli_probs[y_i, j])                 Bernoulli j
        x[i, j]                  ~ Categorical(categorical_probs_j[y_i])              categorical j
        x[i, m]                  ~ Multinomial(sum_m x[i, m], multinomial_probs[y_i]) count block

Every prior is conjugate, so with every row labeled the posterior is known in closed form
(:meth:`NaiveBayes.exact_posterior`, used by ``zoo.Exact()``). ``prior_loc`` and ``prior_scale``
default to the training data's mean and standard deviation of each Gaussian column (an empirical
prior, as for the Gaussian mixture): weakly informative in the data's own units.

Labels and semi-supervised learning
-----------------------------------
``Dataset.y`` holds the labels; ``-1`` (``zoo.datasets.UNLABELED``) marks a row without one.

* every row labeled: ``y`` is an observed site;
* no labels (or no ``y``): ``y`` is enumerated (summed out exactly), as a mixture's assignment;
* some labeled, some not (semi-supervised, Nigam et al. 2000): ``y`` is enumerated for every
  row and a factor ``y_observed`` pins the labeled rows to their label (log 1 for the label,
  log 0 for any other class), so the same model learns from both kinds of rows.

Sample sites
------------
=======================  ==============  ====================================================
name                     shape           support
=======================  ==============  ====================================================
``weights``              (C,)            simplex
``precision``            (C, D_g)        positive (Gaussian columns)
``loc``                  (C, D_g)        real (Gaussian columns)
``bernoulli_probs``      (C, D_b)        (0, 1) (Bernoulli columns)
``categorical_probs_j``  (C, K_j)        simplex per class (categorical column j)
``multinomial_probs``    (C, D_m)        simplex per class (multinomial count columns)
``y``                    (N,)            {0, ..., C-1}; observed or enumerated
``y_observed``           (N,)            factor pinning labeled rows (semi-supervised only)
``x``                    (N, D)          observed; each column in its family's support
=======================  ==============  ====================================================

The docs page says what a fit answers, how the model takes data as it comes (missing values,
weights, known parameters) and why labeled rows leave no label switching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pyro
import pyro.distributions as dist
import torch

from zoo.checks import check_count, check_positive_float, check_positive_int
from zoo.datasets import simulate
from zoo.datasets.dataset import UNLABELED, Dataset, as_dataset
from zoo.models.base import Model, check_labels, class_labels
from zoo.models.classes import ClassConditionalPaths
from zoo.models.columns import FAMILIES, Block, ColumnLayout, check_features, column_families, select_columns
from zoo.models.registry import register
from zoo.ops import conjugate
from zoo.ops.clustering import kmeans_labels
from zoo.ops.moments import mean_and_spread

__all__ = ["NaiveBayes", "NaiveBayesPosterior", "FAMILIES", "predict", "predict_proba"]

#: The closed-form posterior :meth:`NaiveBayes.exact_posterior` returns (draws, means, marginals).
NaiveBayesPosterior = conjugate.ClassConditionalPosterior

#: log-weight that excludes a class for a labeled row (exp underflows to exactly 0 in float32).
_EXCLUDED = -1e30


@register("naive_bayes")
class NaiveBayes(ClassConditionalPaths, Model):
    """Naive Bayes with conjugate priors: a class plate times a feature plate.

    Parameters
    ----------
    num_classes : int
        C, the number of classes (>= 2).
    features : str, sequence of str, or mapping
        The family of every column: one of "gaussian", "bernoulli", "categorical",
        "multinomial" for all columns, a sequence with one family per column, or a mapping
        from column index (or feature name) to family that names every column exactly once.
        The "multinomial" columns together form one vector of counts per row.
    class_concentration : float
        Concentration of the symmetric Dirichlet prior on the class weights.
    concentration : float
        Pseudo-count of the Beta / Dirichlet priors of Bernoulli, categorical and multinomial
        probabilities (1: uniform; its posterior mean is Laplace smoothing with alpha = 1).
    loc_count, precision_shape : float
        k0 and a0 of the Normal-Gamma prior: how many observations the prior mean is worth, and
        the Gamma shape of each precision.
    num_features : int, optional
        D; set from the data when fitted.
    num_categories : list of int, optional
        K_j of each categorical column, in column order; default: max value + 1 in the data.
    prior_loc, prior_scale : list of float, optional
        m_j and the prior's typical sd of each Gaussian column (rate b0 = a0 * prior_scale**2);
        default: the training data's mean and sd.
    total_count : int, optional
        Counts per generated row of the multinomial block; default: the training rows' mean total.

    Examples
    --------
    >>> import zoo
    >>> data = zoo.datasets.load("iris")
    >>> fit = zoo.fit(zoo.models.NaiveBayes(3), data, zoo.Exact())
    >>> zoo.models.naive_bayes.predict(fit, data)[:5]
    tensor([0, 0, 0, 0, 0])
    """

    enumerated_sites = ("y",)
    max_plate_nesting = 2
    methods = ("svi", "nuts", "exact")
    static_likelihood = True  # no Python branch on a tensor's value in its density
    handles_missing = True

    def __init__(
        self,
        num_classes: int,
        features: str | Sequence[str] | Mapping[Any, str] = "gaussian",
        class_concentration: float = 1.0,
        concentration: float = 1.0,
        loc_count: float = 0.01,
        precision_shape: float = 1.0,
        num_features: int | None = None,
        num_categories: list[int] | None = None,
        prior_loc: list[float] | None = None,
        prior_scale: list[float] | None = None,
        total_count: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(num_classes, "num_classes", minimum=2)
        self.num_classes = num_classes
        self.features = check_features(features)
        for name, value in (("class_concentration", class_concentration), ("concentration", concentration),
                            ("loc_count", loc_count), ("precision_shape", precision_shape)):
            setattr(self, name, check_positive_float(value, name))
        for name, value in (("num_features", num_features), ("total_count", total_count)):
            if value is not None:
                check_count(value, name)
        if isinstance(self.features, list) and num_features is not None and len(self.features) != num_features:
            raise ValueError(f"features lists {len(self.features)} families but num_features={num_features}")
        self.num_features = num_features
        self.num_categories = None if num_categories is None else [int(k) for k in num_categories]
        if self.num_categories is not None and any(k < 1 for k in self.num_categories):
            raise ValueError(f"num_categories must be positive, got {num_categories}")
        if (prior_loc is None) != (prior_scale is None):
            raise ValueError("prior_loc and prior_scale must be given together, or neither")
        if prior_scale is not None and (len(prior_scale) != len(prior_loc or []) or any(s <= 0 for s in prior_scale)):
            raise ValueError("prior_scale must be positive, with one entry per Gaussian column, as prior_loc")
        self.prior_loc = None if prior_loc is None else [float(v) for v in prior_loc]
        self.prior_scale = None if prior_scale is None else [float(v) for v in prior_scale]
        self.total_count = total_count

    # ------------------------------------------------------------------ the model
    def sample_globals(self) -> dict[str, torch.Tensor]:
        """weights (C,); per class and feature of each block: loc and precision (C, D_g),
        bernoulli_probs (C, D_b), categorical_probs_j (C, K_j), multinomial_probs (C, D_m)."""
        layout = self._check_ready()
        num_classes = self.num_classes
        params = {"weights": pyro.sample("weights", dist.Dirichlet(torch.full((num_classes,), self.class_concentration)))}
        with pyro.plate("classes", num_classes, dim=-2):
            if layout.gaussian:
                with pyro.plate("gaussian_features", len(layout.gaussian), dim=-1):
                    rate = self.precision_shape * torch.tensor(self.prior_scale) ** 2
                    params["precision"] = precision = pyro.sample("precision", dist.Gamma(self.precision_shape, rate))
                    loc_scale = (self.loc_count * precision).rsqrt()
                    params["loc"] = pyro.sample("loc", dist.Normal(torch.tensor(self.prior_loc), loc_scale))
            if layout.bernoulli:
                with pyro.plate("bernoulli_features", len(layout.bernoulli), dim=-1):
                    params["bernoulli_probs"] = pyro.sample("bernoulli_probs", dist.Beta(self.concentration, self.concentration))
        # Per-class probability vectors: one site each, the class dim inside the event.
        vectors = [(f"categorical_probs_{column}", size) for column, size in zip(layout.categorical, layout.num_categories)]
        for name, size in vectors + ([("multinomial_probs", len(layout.multinomial))] if layout.multinomial else []):
            params[name] = pyro.sample(name, dist.Dirichlet(torch.full((num_classes, size), self.concentration)).to_event(1))
        return params

    def forward(
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        num_data: int | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """p(x, y, theta): conditions on ``x`` (N, D) and labels ``y`` (-1 where unknown), or
        generates ``num_data`` rows (of the classes ``y``, if given)."""
        num_data = self.plate_size(x, num_data)
        params = self.sample_globals()
        weights = params.pop("weights")

        with pyro.plate(self.data_plate, num_data, dim=-1, subsample_size=batch_size) as index:
            labels = None if y is None else y.index_select(0, index) if y.shape[0] == num_data else y
            labeled = None if labels is None else labels >= 0
            if labels is not None and bool(labeled.all()):
                classes = pyro.sample("y", dist.Categorical(weights), obs=labels)
            else:
                # Under enumeration `classes` is (C, 1, 1), left of every plate.
                classes = pyro.sample("y", dist.Categorical(weights), infer={"enumerate": "parallel"})
                if labeled is not None and bool(labeled.any()):
                    pinned = torch.where(classes == labels.clamp(min=0), 0.0, _EXCLUDED)
                    pyro.factor("y_observed", torch.where(labeled, pinned, torch.zeros(())))
            gathered = {name: self._gather(value, classes) for name, value in params.items()}
            observed = None if x is None else x.index_select(0, index)
            return pyro.sample(self.observed_site, self.row_distribution(gathered), obs=observed)

    @staticmethod
    def _family_params(block: Block, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The sites of one block of columns as its family's parameters (the Gaussian family's
        scale is 1 / sqrt(precision)); each site keeps its shape (*B, L)."""
        name = block.family.name
        if name == "gaussian":
            return {"locs": params["loc"], "scales": params["precision"].rsqrt()}
        if name == "categorical":
            return {"probs": params[f"categorical_probs_{block.columns[0]}"]}
        return {"probs": params[f"{name}_probs"]}

    # ------------------------------------------------------------------ exact posterior
    def _posterior(self, x: torch.Tensor, y: torch.Tensor) -> NaiveBayesPosterior:
        """The conjugate update (:func:`zoo.ops.conjugate.class_conditional`) from labeled rows:
        x (N, D), y (N,) in 0..C-1 (N may be 0)."""
        layout = self._check_ready()
        gaussian = bool(layout.gaussian)

        def block(columns: tuple[int, ...]) -> torch.Tensor | None:
            return select_columns(x, columns) if columns else None

        return conjugate.class_conditional(
            y, self.num_classes, x.dtype, class_concentration=self.class_concentration,
            gaussian=block(layout.gaussian), bernoulli=block(layout.bernoulli), multinomial=block(layout.multinomial),
            categorical=[(column, x[:, column], size) for column, size in zip(layout.categorical, layout.num_categories)],
            concentration=self.concentration, loc_count=self.loc_count, precision_shape=self.precision_shape,
            prior_loc=torch.tensor(self.prior_loc, dtype=x.dtype) if gaussian else None,
            precision_rate=self.precision_shape * torch.tensor(self.prior_scale, dtype=x.dtype).square() if gaussian else None,
        )

    def check_exact(self, data: Dataset) -> None:
        """Raise ValueError unless ``data`` can be fitted by ``zoo.Exact``: every row labeled and
        every class present (``zoo.Exact`` asks this before any work)."""
        if getattr(self, "_validated", None) is not data:  # prepare() has checked these rows
            self.validate(data)
        if data.y is None:
            raise ValueError("zoo.Exact needs labels: data.y is missing (use SVI or NUTS for unlabeled data)")
        if int(data.y.min()) == UNLABELED:  # validate() has bounded y to -1..C-1
            raise ValueError(
                f"zoo.Exact needs every row labeled, but y marks {int((data.y == UNLABELED).sum())} rows unlabeled "
                "(-1): the posterior is then a mixture with no closed form; use zoo.SVI or zoo.NUTS"
            )
        if missing := (torch.bincount(data.y, minlength=self.num_classes) == 0).nonzero().reshape(-1).tolist():
            raise ValueError(
                f"zoo.Exact needs at least one labeled row of every class, but y has none of class(es) "
                f"{missing} (num_classes={self.num_classes})"
            )

    def exact_posterior(self, data: Dataset) -> NaiveBayesPosterior:
        """The conjugate posterior given fully labeled ``data`` (its table: the model's docs page).

        Raises
        ------
        ValueError
            If ``data`` has no labels, unlabeled rows, or a class with no labeled row.
        """
        self.check_exact(data)
        return self._posterior(data.x, data.y)

    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """The conjugate posterior mean given the labeled rows (with none, rows labelled by
        k-means on the standardised columns); a class without rows starts at the prior mean."""
        y = data.y if data.y is not None else torch.full((len(data),), UNLABELED)
        labeled = y >= 0
        if labeled.any():
            rows = data.subset(labeled.nonzero().reshape(-1))
        else:
            x = data.x
            scaled = (x - x.mean(0)) / x.std(0).clamp(min=1e-6) if len(data) > 1 else x
            rows = replace(data, y=kmeans_labels(scaled, min(self.num_classes, len(data)), seed=seed))
        present = torch.bincount(rows.y, minlength=self.num_classes) > 0
        values = self._posterior(rows.x, rows.y).mean()
        prior = self._posterior(data.x[:0], torch.zeros(0, dtype=torch.long)).mean()
        for name, value in values.items():
            if name != "weights":
                values[name] = torch.where(present.reshape((-1,) + (1,) * (value.dim() - 1)), value, prior[name])
        return values

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["NaiveBayes", Dataset]:
        """Mixed columns (2 Gaussian, 1 Bernoulli, 1 categorical, 3 counts), 60 rows, 3 classes,
        a third of them unlabeled: every code path of the model in one small data set."""
        base = simulate.naive_bayes(num_data=60, num_classes=3, num_features=2, features="gaussian", seed=0)
        generator, y = torch.Generator().manual_seed(0), base.y
        bernoulli = torch.bernoulli(torch.tensor([0.2, 0.5, 0.8])[y], generator=generator)
        category = (y + torch.randint(2, (len(y),), generator=generator)) % 3
        trial_probs = torch.tensor([[6.0, 2, 2], [2, 6, 2], [2, 2, 6]])[y]
        trials = torch.multinomial(trial_probs, 5, replacement=True, generator=generator)
        counts = torch.nn.functional.one_hot(trials, 3).sum(-2).float()
        x = torch.cat([base.x, bernoulli[:, None], category[:, None].float(), counts], -1)
        labels = torch.where(torch.arange(len(y)) % 3 == 0, UNLABELED, y)
        data = Dataset(x, y=labels, name="naive_bayes_mixed", description="mixed-family naive Bayes rows")
        families = ["gaussian", "gaussian", "bernoulli", "categorical", "multinomial", "multinomial", "multinomial"]
        return cls(num_classes=3, features=families), data

    def column_families(self, data: Dataset | None = None) -> list[str]:
        """The family of each column, resolved against ``data``'s columns (and feature names)."""
        num_features = self.num_features if data is None else data.num_features
        names = data.feature_names if data is not None and data.feature_names else ()
        return column_families(self.features, num_features, names)

    def layout(self, data: Dataset | None = None) -> ColumnLayout:
        """Which columns belong to which family (see :mod:`zoo.models.columns`)."""
        return ColumnLayout.of(self.column_families(data), self.num_categories or ())

    # ------------------------------------------------------------------ data
    def validate(self, data: Dataset) -> None:
        """Refuse data this model cannot take, naming the argument (``x``, ``y`` or ``features``)."""
        if data.x.dim() != 2:
            raise ValueError(
                f"x must be 2-D (num_data, num_features) for Naive Bayes, got shape {tuple(data.x.shape)} "
                "(load image data sets with images=False)"
            )
        if data.lengths is not None:
            raise ValueError("Naive Bayes takes independent rows, not sequences (lengths given)")
        if self.num_features is not None and data.num_features != self.num_features:
            raise ValueError(f"x has {data.num_features} columns but the model was set up for {self.num_features}")
        if data.y is not None:
            check_labels(data.y, self.num_classes)
        self.layout(data).validate(data.x, self.num_categories)

    def prepare(self, data: Dataset) -> "NaiveBayes":
        """A copy with the columns' families, categories, empirical prior and total count resolved."""
        self.validate(data)
        config, layout, x = self.config(), self.layout(data), data.x
        config["features"] = self.features if isinstance(self.features, str) else self.column_families(data)
        config["num_features"] = data.num_features
        if layout.categorical and config["num_categories"] is None:
            config["num_categories"] = [max(int(value) + 1, 2) for value in select_columns(x, layout.categorical).amax(0)]
        if layout.gaussian and config["prior_loc"] is None:
            mean, spread = mean_and_spread(select_columns(x, layout.gaussian))
            config["prior_loc"], config["prior_scale"] = mean.tolist(), spread.tolist()
        if layout.multinomial and config["total_count"] is None:
            config["total_count"] = max(1, int(round(float(select_columns(x, layout.multinomial).sum(-1).mean()))))
        prepared = NaiveBayes(**config)
        prepared._validated = data  # exact_posterior need not check these rows again
        return prepared

    def _check_ready(self) -> ColumnLayout:
        layout = self.layout()
        if layout.gaussian and self.prior_loc is None:
            raise ValueError("this NaiveBayes has no prior_loc / prior_scale yet: fit it with zoo.fit first")
        if layout.categorical and self.num_categories is None:
            raise ValueError("this NaiveBayes has no num_categories yet: fit it with zoo.fit first")
        return layout

    def model_kwargs(
        self,
        data: Dataset | None = None,
        *,
        num_samples: int | None = None,
        batch_size: int | None = None,
        y: Any = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Arguments of ``forward``: to condition on ``data``'s x and labels (``y``, a tensor
        (num_data,), -1 for unlabeled, overrides them), or to generate ``num_samples`` rows
        (``y``, a class, asks for rows from p(x | y)); other runner options are ignored."""
        if data is not None:
            labels = data.y if y is None else torch.as_tensor(y, dtype=torch.long)
            return {"x": data.x, "y": labels, "batch_size": batch_size}
        return {"x": None, "y": class_labels(y, self.num_classes, num_samples), "num_data": num_samples}

    # ------------------------------------------------------------------ results
    def dims(self) -> dict[str, list[str]]:
        layout = self.layout() if self.num_features is not None or isinstance(self.features, list) else None
        dims = {"weights": ["class"], "x": ["datum", "feature"]}
        if layout is None:
            return dims
        if layout.gaussian:
            dims |= {"loc": ["class", "gaussian_feature"], "precision": ["class", "gaussian_feature"]}
        if layout.bernoulli:
            dims["bernoulli_probs"] = ["class", "bernoulli_feature"]
        dims |= {f"categorical_probs_{column}": ["class", f"category_{column}"] for column in layout.categorical}
        if layout.multinomial:
            dims["multinomial_probs"] = ["class", "multinomial_feature"]
        return dims

    def coords(self, data: Dataset | None = None) -> dict[str, list[Any]]:
        num_features = self.num_features or (data.num_features if data is not None else None)
        coords: dict[str, list[Any]] = {"class": list(range(self.num_classes))}
        if num_features is None:
            return coords
        names = list(data.feature_names) if data is not None and data.feature_names else [str(i) for i in range(num_features)]
        layout = self.layout(data)
        coords["feature"] = names
        for family in ("gaussian", "bernoulli", "multinomial"):
            if getattr(layout, family):
                coords[f"{family}_feature"] = [names[i] for i in getattr(layout, family)]
        for column, size in zip(layout.categorical, self.num_categories or ()):
            coords[f"category_{column}"] = list(range(size))
        return coords


# ---------------------------------------------------------------------- scikit-learn style helpers
def _features_only(x: Any) -> Dataset:
    data = as_dataset(x, "x")
    return replace(data, y=None) if data.y is not None else data


def predict(fit: Any, x: Any) -> torch.Tensor:
    """The most probable class of each row of ``x`` (a Dataset, tensor or array, (N, D)) under
    ``fit.point`` of a :class:`NaiveBayes` fit, labels ignored: int64 (N,). Rows are independent
    given the parameters, so this is ``fit.discrete(features)``, by the fast path."""
    data = _features_only(x)
    fit.model.validate(data)
    point = {name: value[None] for name, value in fit.point.items()}
    with torch.no_grad():
        return fit.model.class_log_joint(point, data.x, data.observed)[0].argmax(-1)


def predict_proba(fit: Any, x: Any, num_draws: int | None = 100, seed: int = 0) -> torch.Tensor:
    """Posterior predictive class probabilities p(y_i | x_i, training data), labels ignored:
    (N, num_classes), averaged over ``num_draws`` posterior draws (``fit.marginals``), so
    parameter uncertainty is included (``predict`` uses the point estimate)."""
    return fit.marginals(_features_only(x), num_draws=num_draws, seed=seed)
