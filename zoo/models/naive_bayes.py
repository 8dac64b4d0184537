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

Every prior is conjugate: Dirichlet class weights, Normal-Gamma for each Gaussian (class, column),
Beta for each Bernoulli one, Dirichlet for categorical and multinomial probabilities. With every
row labeled the posterior is therefore known in closed form (:meth:`NaiveBayes.exact_posterior`,
used by ``zoo.Exact()``):

====================== ====================================================================
weights                Dirichlet(class_concentration + n_c)
precision[c, j]        Gamma(a0 + n_c / 2, b0 + SS_cj / 2 + k0 n_c (xbar_cj - m_j)^2 / (2 (k0 + n_c)))
loc[c, j] | precision  Normal((k0 m_j + n_c xbar_cj) / (k0 + n_c), 1 / sqrt((k0 + n_c) precision))
bernoulli_probs[c, j]  Beta(concentration + s_cj, concentration + n_c - s_cj)
categorical_probs_j[c] Dirichlet(concentration + counts of each category in class c)
multinomial_probs[c]   Dirichlet(concentration + column totals of class c)
====================== ====================================================================

with m_j = ``prior_loc``, k0 = ``loc_count``, a0 = ``precision_shape``, b0 = a0 * ``prior_scale``\ ^2.
``prior_loc`` and ``prior_scale`` default to the training data's mean and standard deviation of
each Gaussian column (an empirical prior, as for the Gaussian mixture), so the prior is weakly
informative in the data's own units.

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

What a fit answers
------------------
* ``fit.log_prob(data)``: per row, **log p(x_i, y_i)** where ``data`` carries the row's label and
  **log p(x_i)** (y summed out) where it does not (no ``y``, or ``y_i = -1``), averaged over the
  posterior; the fast :meth:`NaiveBayes.log_likelihood` equals the enumerated definition.
* ``fit.marginals(data)`` / :func:`predict_proba`: p(y_i | x_i) by Bayes' rule (a one-hot row for
  a row whose label is given, so pass features alone, or use :func:`predict_proba`, to classify).
* ``fit.discrete(data)`` / :func:`predict`: the most probable class under ``fit.point``.
* ``fit.sample(n)``: rows of x from p(x) (y drawn from the weights); ``fit.sample(n, y=c)``:
  class-conditional rows from p(x | y = c).

Label switching
---------------
With labels observed there is none: the labels name the classes. With no labeled row at all the
model is a latent-class mixture whose likelihood is invariant under permutations of the classes,
so class indices are arbitrary and chains may settle in different permutations (inflating R-hat);
zoo does not relabel Naive Bayes draws. A few labeled rows per class (semi-supervised) anchor
the classes in practice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.ops.indexing import Vindex

from zoo.checks import check_positive_float, check_positive_int
from zoo.datasets.dataset import UNLABELED, Dataset, as_dataset
from zoo.models.base import Model, class_labels
from zoo.models.registry import register
from zoo.ops import conjugate
from zoo.ops.clustering import kmeans_plus_plus

__all__ = ["NaiveBayes", "NaiveBayesPosterior", "FAMILIES", "predict", "predict_proba"]

FAMILIES = ("gaussian", "bernoulli", "categorical", "multinomial")

#: log-weight that excludes a class for a labeled row (exp underflows to exactly 0 in float32).
_EXCLUDED = -1e30
#: Elements per chunk of the broadcast Gaussian term in the fast paths.
_CHUNK_ELEMENTS = 2**23


def _columns(x: torch.Tensor, columns: tuple[int, ...]) -> torch.Tensor:
    """x[..., columns], as a view (no copy) when the columns are a contiguous run."""
    first = columns[0]
    if columns == tuple(range(first, first + len(columns))):
        return x[..., first : first + len(columns)]
    return x[..., list(columns)]


def _all_binary(values: torch.Tensor) -> bool:
    """True if every entry of ``values`` is 0 or 1 (exactly), at the cost of one pass or two.

    Measured on MNIST (5.5M float32 values, one thread): this 5 ms, ``((v != 0) & (v != 1)).any()``
    10 ms (torch's comparisons into bool tensors are slow), ``(v == 0) | (v == 1)`` and
    ``v * (1 - v) == 0`` 10-11 ms; a min/max reduction alone is 0.6 ms but only decides integer
    dtypes.
    """
    if values.dtype == torch.bool:
        return True
    if not values.dtype.is_floating_point:
        low, high = torch.aminmax(values)
        return bool(low >= 0) and bool(high <= 1)
    # For a finite float v, the rounded product v * v equals v only for v = 0 (or -0.0, equal to
    # 0 as in v == 0) and v = 1: for 0 < v < 1 the gap v - v^2 = v (1 - v) exceeds half an ulp of
    # v, a subnormal v squares to 0, and v > 1 or v < 0 gives v * v > v. A Dataset's x is finite.
    return torch.equal(values * values, values)


def _all_counts(values: torch.Tensor) -> bool:
    """True if every entry of ``values`` is a non-negative integer (counts, category indices)."""
    if values.dtype == torch.bool:
        return True
    if bool(values.min() < 0):  # a reduction: no temporary tensor
        return False
    # frac() then any(): one temporary; measured faster than (v < 0).any() or trunc() == v
    return not values.dtype.is_floating_point or not bool(values.frac().any())


def _clamp_probs(probs: torch.Tensor) -> torch.Tensor:
    finfo = torch.finfo(probs.dtype)
    return probs.clamp(min=finfo.tiny, max=1.0 - finfo.eps)


@dataclass(frozen=True)
class _Layout:
    """Which columns belong to which family (column indices into x)."""

    gaussian: tuple[int, ...]
    bernoulli: tuple[int, ...]
    categorical: tuple[int, ...]
    multinomial: tuple[int, ...]
    num_categories: tuple[int, ...]
    num_features: int


class _Features(TorchDistribution):
    """p(x_i | class parameters) for a row of mixed families: event shape (D,).

    ``params`` holds the class parameters already gathered for each row (last dim: the family's
    columns, or the categories of a categorical column); the batch shape broadcasts them.
    """

    arg_constraints: dict[str, Any] = {}
    support = constraints.real_vector

    def __init__(
        self, layout: _Layout, params: dict[str, torch.Tensor], total_count: int, validate_args: Any = None
    ) -> None:
        self.layout = layout
        self.params = params
        self.total_count = total_count
        batch_shape = torch.broadcast_shapes(*(value.shape[:-1] for value in params.values()))
        super().__init__(batch_shape, torch.Size([layout.num_features]), validate_args=False)

    def expand(self, batch_shape: Any, _instance: Any = None) -> "_Features":
        batch_shape = torch.Size(batch_shape)
        params = {name: value.expand(batch_shape + value.shape[-1:]) for name, value in self.params.items()}
        return _Features(self.layout, params, self.total_count)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        layout, params = self.layout, self.params
        total = torch.zeros(())
        if layout.gaussian:
            columns = _columns(value, layout.gaussian)
            normal = dist.Normal(params["loc"], params["precision"].rsqrt(), validate_args=False)
            total = total + normal.log_prob(columns).sum(-1)
        if layout.bernoulli:
            columns = _columns(value, layout.bernoulli)
            probs = _clamp_probs(params["bernoulli_probs"])
            total = total + (columns * probs.log() + (1 - columns) * (-probs).log1p()).sum(-1)
        for column in layout.categorical:
            probs = _clamp_probs(params[f"categorical_probs_{column}"])
            categorical = dist.Categorical(logits=probs.log(), validate_args=False)
            total = total + categorical.log_prob(value[..., column].long())
        if layout.multinomial:
            counts = _columns(value, layout.multinomial)
            log_probs = _clamp_probs(params["multinomial_probs"]).log()
            coefficient = torch.lgamma(counts.sum(-1) + 1) - torch.lgamma(counts + 1).sum(-1)
            total = total + coefficient + (counts * log_probs).sum(-1)
        return total.expand(torch.broadcast_shapes(total.shape, value.shape[:-1], self.batch_shape))

    def sample(self, sample_shape: Any = torch.Size()) -> torch.Tensor:
        layout, params = self.layout, self.params
        shape = torch.Size(sample_shape) + self.batch_shape
        out = torch.empty(shape + (layout.num_features,))
        with torch.no_grad():
            if layout.gaussian:
                loc = params["loc"].expand(shape + params["loc"].shape[-1:])
                scale = params["precision"].rsqrt().expand_as(loc)
                out[..., list(layout.gaussian)] = torch.normal(loc, scale)
            if layout.bernoulli:
                probs = params["bernoulli_probs"]
                out[..., list(layout.bernoulli)] = torch.bernoulli(probs.expand(shape + probs.shape[-1:]))
            for column in layout.categorical:
                probs = params[f"categorical_probs_{column}"]
                flat = probs.expand(shape + probs.shape[-1:]).reshape(-1, probs.shape[-1])
                out[..., column] = torch.multinomial(flat, 1).reshape(shape).to(out.dtype)
            if layout.multinomial:
                probs = params["multinomial_probs"]
                multinomial = dist.Multinomial(self.total_count, probs=probs.expand(shape + probs.shape[-1:]))
                out[..., list(layout.multinomial)] = multinomial.sample()
        return out


@dataclass
class NaiveBayesPosterior:
    """The closed-form (conjugate) posterior of a :class:`NaiveBayes` given fully labeled data.

    Attributes
    ----------
    params : dict of str to Tensor
        Posterior hyperparameters: ``class_concentration`` (C,); for Gaussian columns ``loc``,
        ``loc_count``, ``shape``, ``rate`` (C, D_g); ``bernoulli_alpha``, ``bernoulli_beta``
        (C, D_b); ``categorical_probs_j`` (C, K_j) and ``multinomial_probs`` (C, D_m) Dirichlet
        concentrations.
    """

    params: dict[str, torch.Tensor]

    def marginals(self) -> dict[str, dist.Distribution]:
        """Marginal posterior of each site (``loc``'s is a Student-t: precision integrated out)."""
        p = self.params
        out: dict[str, dist.Distribution] = {"weights": dist.Dirichlet(p["class_concentration"])}
        if "shape" in p:
            out["precision"] = dist.Gamma(p["shape"], p["rate"])
            scale = (p["rate"] / (p["shape"] * p["loc_count"])).sqrt()
            out["loc"] = dist.StudentT(2 * p["shape"], p["loc"], scale)
        if "bernoulli_alpha" in p:
            out["bernoulli_probs"] = dist.Beta(p["bernoulli_alpha"], p["bernoulli_beta"])
        for name, value in p.items():
            if name.startswith("categorical_probs_") or name == "multinomial_probs":
                out[name] = dist.Dirichlet(value)
        return out

    def sample(self, num_samples: int) -> dict[str, torch.Tensor]:
        """Exact joint draws, each site shaped (num_samples, *site_shape); uses torch's global RNG."""
        p = self.params
        shape = torch.Size([num_samples])
        draws = {"weights": dist.Dirichlet(p["class_concentration"]).sample(shape)}
        if "shape" in p:
            precision = dist.Gamma(p["shape"], p["rate"]).sample(shape)
            draws["precision"] = precision
            draws["loc"] = p["loc"] + torch.randn_like(precision) * (p["loc_count"] * precision).rsqrt()
        if "bernoulli_alpha" in p:
            draws["bernoulli_probs"] = dist.Beta(p["bernoulli_alpha"], p["bernoulli_beta"]).sample(shape)
        for name, value in p.items():
            if name.startswith("categorical_probs_") or name == "multinomial_probs":
                draws[name] = dist.Dirichlet(value).sample(shape)
        return draws

    def mean(self) -> dict[str, torch.Tensor]:
        """Posterior mean of each site (E[loc] = m_n, E[precision] = a_n / b_n)."""
        p = self.params
        weights = p["class_concentration"]
        out = {"weights": weights / weights.sum(-1, keepdim=True)}
        if "shape" in p:
            out["loc"] = p["loc"].clone()
            out["precision"] = p["shape"] / p["rate"]
        if "bernoulli_alpha" in p:
            out["bernoulli_probs"] = p["bernoulli_alpha"] / (p["bernoulli_alpha"] + p["bernoulli_beta"])
        for name, value in p.items():
            if name.startswith("categorical_probs_") or name == "multinomial_probs":
                out[name] = value / value.sum(-1, keepdim=True)
        return out


@register("naive_bayes")
class NaiveBayes(Model):
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
    loc_count : float
        k0 of the Normal-Gamma prior: how many observations the prior mean is worth.
    precision_shape : float
        a0 of the Normal-Gamma prior (Gamma shape of each precision).
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
    """

    registry_name = "naive_bayes"
    enumerated_sites = ("y",)
    max_plate_nesting = 2
    data_plate = "data"
    observed_site = "x"
    methods = ("svi", "nuts", "exact")
    default_guide = "normal"

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
        if isinstance(features, str):
            if features not in FAMILIES:
                raise ValueError(f"features must be one of {FAMILIES} (or a per-column mapping), got {features!r}")
        elif isinstance(features, Mapping):
            bad = {key: value for key, value in features.items() if value not in FAMILIES}
            if bad:
                raise ValueError(f"features maps columns to unknown families {bad}; valid: {FAMILIES}")
            features = dict(features)
        elif isinstance(features, Sequence):
            bad_list = [value for value in features if value not in FAMILIES]
            if bad_list or not features:
                raise ValueError(f"features lists unknown families {bad_list}; valid: {FAMILIES}")
            features = list(features)
        else:
            raise ValueError(f"features must be a family name, a list or a mapping, got {type(features).__name__}")
        self.num_classes = num_classes
        self.features = features
        self.class_concentration = check_positive_float(class_concentration, "class_concentration")
        self.concentration = check_positive_float(concentration, "concentration")
        self.loc_count = check_positive_float(loc_count, "loc_count")
        self.precision_shape = check_positive_float(precision_shape, "precision_shape")
        if num_features is not None and (isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1):
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        if isinstance(features, list) and num_features is not None and len(features) != num_features:
            raise ValueError(f"features lists {len(features)} families but num_features={num_features}")
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
        if total_count is not None and (isinstance(total_count, bool) or not isinstance(total_count, int) or total_count < 1):
            raise ValueError(f"total_count must be a positive integer, got {total_count!r}")
        self.total_count = total_count

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["NaiveBayes", Dataset]:
        """Mixed columns (2 Gaussian, 1 Bernoulli, 1 categorical, 3 counts), 60 rows, 3 classes,
        a third of them unlabeled: every code path of the model in one small data set."""
        from zoo.datasets import simulate

        base = simulate.naive_bayes(num_data=60, num_classes=3, num_features=2, features="gaussian", seed=0)
        generator = torch.Generator().manual_seed(0)
        y = base.y
        bernoulli = torch.bernoulli(torch.tensor([0.2, 0.5, 0.8])[y], generator=generator)
        category = (y + torch.randint(2, (len(y),), generator=generator)) % 3
        counts = torch.multinomial(
            torch.tensor([[6.0, 2, 2], [2, 6, 2], [2, 2, 6]])[y], 5, replacement=True, generator=generator
        )
        counts = torch.nn.functional.one_hot(counts, 3).sum(-2).float()
        x = torch.cat([base.x, bernoulli[:, None], category[:, None].float(), counts], -1)
        labels = y.clone()
        labels[::3] = UNLABELED
        data = Dataset(x, y=labels, name="naive_bayes_mixed", description="mixed-family naive Bayes rows")
        families = ["gaussian", "gaussian", "bernoulli", "categorical", "multinomial", "multinomial", "multinomial"]
        return cls(num_classes=3, features=families), data

    def config(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "features": self.features,
            "class_concentration": self.class_concentration,
            "concentration": self.concentration,
            "loc_count": self.loc_count,
            "precision_shape": self.precision_shape,
            "num_features": self.num_features,
            "num_categories": self.num_categories,
            "prior_loc": self.prior_loc,
            "prior_scale": self.prior_scale,
            "total_count": self.total_count,
        }

    def column_families(self, data: Dataset | None = None) -> list[str]:
        """The family of each column, resolved against ``data``'s columns (and feature names)."""
        num_features = self.num_features if data is None else data.num_features
        features = self.features
        if isinstance(features, str):
            if num_features is None:
                raise ValueError("the number of features is unknown: fit the model first (or pass num_features)")
            return [features] * num_features
        if isinstance(features, list):
            if num_features is not None and len(features) != num_features:
                raise ValueError(
                    f"features lists {len(features)} families but the data has {num_features} columns"
                )
            return list(features)
        if num_features is None:
            raise ValueError("features is a mapping, so the data is needed to resolve it")
        names = list(data.feature_names) if data is not None and data.feature_names else []
        families: list[str | None] = [None] * num_features
        for key, family in features.items():
            if isinstance(key, str) and key in names:
                index = names.index(key)
            elif isinstance(key, int) and not isinstance(key, bool) and 0 <= key < num_features:
                index = key
            elif isinstance(key, str) and key.isdigit() and int(key) < num_features:
                index = int(key)
            else:
                raise ValueError(f"features names column {key!r}, which the data ({num_features} columns) lacks")
            if families[index] is not None:
                raise ValueError(f"features names column {index} twice")
            families[index] = family
        missing = [index for index, family in enumerate(families) if family is None]
        if missing:
            raise ValueError(f"features does not give a family for columns {missing}")
        return [str(family) for family in families]

    def layout(self, data: Dataset | None = None) -> _Layout:
        families = self.column_families(data)
        columns: dict[str, tuple[int, ...]] = {family: () for family in FAMILIES}
        if isinstance(self.features, str):  # one family: no per-column loop (MNIST has 784)
            columns[self.features] = tuple(range(len(families)))
        else:
            indices: dict[str, list[int]] = {family: [] for family in FAMILIES}
            for index, family in enumerate(families):
                indices[family].append(index)
            columns.update((family, tuple(found)) for family, found in indices.items())
        num_categories = tuple(self.num_categories) if self.num_categories is not None else ()
        return _Layout(
            gaussian=columns["gaussian"],
            bernoulli=columns["bernoulli"],
            categorical=columns["categorical"],
            multinomial=columns["multinomial"],
            num_categories=num_categories,
            num_features=len(families),
        )

    # ------------------------------------------------------------------ data
    def validate(self, data: Dataset) -> None:
        """Refuse data this model cannot take, naming the argument (``x``, ``y`` or ``features``)."""
        x = data.x
        if x.dim() != 2:
            raise ValueError(
                f"x must be 2-D (num_data, num_features) for Naive Bayes, got shape {tuple(x.shape)} "
                "(load image data sets with images=False)"
            )
        if data.lengths is not None:
            raise ValueError("Naive Bayes takes independent rows, not sequences (lengths given)")
        if self.num_features is not None and data.num_features != self.num_features:
            raise ValueError(f"x has {data.num_features} columns but the model was set up for {self.num_features}")
        layout = self.layout(data)
        if data.y is not None:
            low, high = torch.aminmax(data.y)  # one reduction; the offending row only on failure
            if low < UNLABELED or high >= self.num_classes:
                bad = (data.y < UNLABELED) | (data.y >= self.num_classes)
                index = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"y holds label {int(data.y[index])} (row {index}): labels must be in 0..{self.num_classes - 1}, "
                    f"or {UNLABELED} for an unlabeled row"
                )
        if layout.bernoulli and not _all_binary(_columns(x, layout.bernoulli)):
            raise ValueError("x holds values other than 0 and 1 in columns with features='bernoulli'")
        if layout.multinomial and not _all_counts(_columns(x, layout.multinomial)):
            raise ValueError("x holds negative or non-integer counts in columns with features='multinomial'")
        if layout.categorical:
            values = _columns(x, layout.categorical)
            if not _all_counts(values):
                raise ValueError(
                    "x holds negative or non-integer category indices in columns with features='categorical'"
                )
            if self.num_categories is not None:
                if len(self.num_categories) != len(layout.categorical):
                    raise ValueError(
                        f"num_categories has {len(self.num_categories)} entries for "
                        f"{len(layout.categorical)} categorical columns"
                    )
                top = torch.tensor(self.num_categories, dtype=values.dtype)
                if (values >= top).any():
                    column = int(((values >= top).any(0)).nonzero()[0, 0])
                    raise ValueError(
                        f"x column {layout.categorical[column]} holds a category beyond the "
                        f"{self.num_categories[column]} the model was set up for"
                    )

    def prepare(self, data: Dataset) -> "NaiveBayes":
        """A copy with the columns' families, categories, empirical prior and total count resolved."""
        self.validate(data)
        config = self.config()
        families = self.column_families(data)
        config["features"] = self.features if isinstance(self.features, str) else families
        config["num_features"] = data.num_features
        layout = self.layout(data)
        x = data.x
        if layout.categorical and config["num_categories"] is None:
            top = _columns(x, layout.categorical).amax(0)
            config["num_categories"] = [max(int(value) + 1, 2) for value in top]
        if layout.gaussian and config["prior_loc"] is None:
            columns = _columns(x, layout.gaussian)
            mean = columns.mean(0)
            if len(data) > 1:
                # The two-pass sample sd, written out: Tensor.std(0) takes 0.45 ms on digits'
                # 1258 x 64 (a third of scikit-learn's whole GaussianNB fit), this 0.03 ms.
                spread = ((columns - mean).square_().sum(0) / (len(data) - 1)).sqrt_()
            else:
                spread = torch.ones(len(layout.gaussian))
            spread = torch.where(spread > 0, spread, torch.ones_like(spread))
            config["prior_loc"] = mean.tolist()
            config["prior_scale"] = spread.tolist()
        if layout.multinomial and config["total_count"] is None:
            config["total_count"] = max(1, int(round(float(_columns(x, layout.multinomial).sum(-1).mean()))))
        prepared = NaiveBayes(**config)
        prepared._validated = data  # exact_posterior need not check these rows again
        return prepared

    def _check_ready(self) -> _Layout:
        layout = self.layout()
        if layout.gaussian and self.prior_loc is None:
            raise ValueError("this NaiveBayes has no prior_loc / prior_scale yet: fit it with zoo.fit first")
        if layout.categorical and self.num_categories is None:
            raise ValueError("this NaiveBayes has no num_categories yet: fit it with zoo.fit first")
        return replace(layout, num_categories=tuple(self.num_categories or ()))

    def model_kwargs(
        self,
        data: Dataset | None = None,
        *,
        num_samples: int | None = None,
        batch_size: int | None = None,
        y: Any = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Arguments of ``forward``.

        Parameters
        ----------
        data : Dataset, optional
            Condition on its ``x`` and (where given) its labels ``y``.
        num_samples : int, optional
            Without data: generate this many rows.
        batch_size : int, optional
            Subsample size of the data plate.
        **options
            Runner options (``template=data``): ignored.
        y : int or Tensor, optional
            Overrides the labels: with data, a tensor (num_data,) of labels (-1: unlabeled);
            without data, a class (int) to generate class-conditional rows from p(x | y).
        """
        if data is not None:
            labels = data.y if y is None else torch.as_tensor(y, dtype=torch.long)
            return {"x": data.x, "y": labels, "batch_size": batch_size}
        return {"x": None, "y": class_labels(y, self.num_classes, num_samples), "num_data": num_samples}

    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """The conjugate posterior mean given the labeled rows (or k-means labels, when none)."""
        y = data.y if data.y is not None else torch.full((len(data),), UNLABELED)
        labeled = y >= 0
        if labeled.any():
            present = torch.bincount(y[labeled], minlength=self.num_classes) > 0
            rows = data.subset(labeled.nonzero().reshape(-1))
        else:
            x = data.x
            scaled = (x - x.mean(0)) / x.std(0).clamp(min=1e-6) if len(data) > 1 else x
            k = min(self.num_classes, len(data))
            centres = kmeans_plus_plus(scaled, k, seed=seed)
            rows = replace(data, y=torch.cdist(scaled, centres).argmin(-1))
            present = torch.bincount(rows.y, minlength=self.num_classes) > 0
        values = self._posterior(rows.x, rows.y).mean()
        prior = self._posterior(data.x[:0], data.y.new_zeros(0) if data.y is not None else torch.zeros(0, dtype=torch.long)).mean()
        for name, value in values.items():
            if name != "weights":
                values[name] = torch.where(present.reshape((-1,) + (1,) * (value.dim() - 1)), value, prior[name])
        return values

    # ------------------------------------------------------------------ results
    def dims(self) -> dict[str, list[str]]:
        layout = self.layout() if self.num_features is not None or isinstance(self.features, list) else None
        dims = {"weights": ["class"], "x": ["datum", "feature"]}
        if layout is None:
            return dims
        if layout.gaussian:
            dims["loc"] = ["class", "gaussian_feature"]
            dims["precision"] = ["class", "gaussian_feature"]
        if layout.bernoulli:
            dims["bernoulli_probs"] = ["class", "bernoulli_feature"]
        for column in layout.categorical:
            dims[f"categorical_probs_{column}"] = ["class", f"category_{column}"]
        if layout.multinomial:
            dims["multinomial_probs"] = ["class", "multinomial_feature"]
        return dims

    def coords(self, data: Dataset | None = None) -> dict[str, list[Any]]:
        num_features = self.num_features or (data.num_features if data is not None else None)
        coords: dict[str, list[Any]] = {"class": list(range(self.num_classes))}
        if num_features is None:
            return coords
        names = list(data.feature_names) if data is not None and data.feature_names else [str(i) for i in range(num_features)]
        coords["feature"] = names
        layout = self.layout(data) if data is not None else self.layout()
        for family in ("gaussian", "bernoulli", "multinomial"):
            columns = getattr(layout, family)
            if columns:
                coords[f"{family}_feature"] = [names[i] for i in columns]
        for index, column in enumerate(layout.categorical):
            if self.num_categories is not None:
                coords[f"category_{column}"] = list(range(self.num_categories[index]))
        return coords

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
                    precision = pyro.sample("precision", dist.Gamma(self.precision_shape, rate))
                    params["precision"] = precision
                    params["loc"] = pyro.sample(
                        "loc", dist.Normal(torch.tensor(self.prior_loc), (self.loc_count * precision).rsqrt())
                    )
            if layout.bernoulli:
                with pyro.plate("bernoulli_features", len(layout.bernoulli), dim=-1):
                    params["bernoulli_probs"] = pyro.sample(
                        "bernoulli_probs", dist.Beta(self.concentration, self.concentration)
                    )
        # Per-class probability vectors: one site each, the class dim inside the event.
        for column, size in zip(layout.categorical, layout.num_categories):
            name = f"categorical_probs_{column}"
            params[name] = pyro.sample(
                name, dist.Dirichlet(torch.full((num_classes, size), self.concentration)).to_event(1)
            )
        if layout.multinomial:
            params["multinomial_probs"] = pyro.sample(
                "multinomial_probs",
                dist.Dirichlet(torch.full((num_classes, len(layout.multinomial)), self.concentration)).to_event(1),
            )
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
        if x is not None:
            num_data = x.shape[0]
        elif num_data is None:
            raise ValueError("give x (to condition on) or num_data (to generate)")
        params = self.sample_globals()
        layout = self._check_ready()
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
            return pyro.sample(
                self.observed_site, _Features(layout, gathered, self.total_count or 1), obs=observed
            )

    @staticmethod
    def _gather(value: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """value[..., classes, :] for class parameters (*B, C, L); B is () or one posterior-draw
        dim, which sits at dim -(max_plate_nesting + 1) = -3 of ``classes``."""
        if value.dim() > 2:
            value = value.reshape((-1, 1, 1) + value.shape[-2:])
        return Vindex(value)[..., classes, :]

    # ------------------------------------------------------------------ exact posterior
    def _posterior(self, x: torch.Tensor, y: torch.Tensor) -> NaiveBayesPosterior:
        """The conjugate update from labeled rows: x (N, D), y (N,) in 0..C-1 (N may be 0).

        Each family's columns go to its update in :mod:`zoo.ops.conjugate`; this method knows
        which columns belong to which family and names the posterior's parameters.
        """
        layout = self._check_ready()
        num_classes, dtype = self.num_classes, x.dtype
        params = {"class_concentration": self.class_concentration + conjugate.class_counts(y, num_classes, dtype)}
        if layout.gaussian:
            prior_scale = torch.tensor(self.prior_scale, dtype=dtype)
            update = conjugate.normal_gamma(
                _columns(x, layout.gaussian),
                y,
                num_classes,
                prior_loc=torch.tensor(self.prior_loc, dtype=dtype),
                loc_count=self.loc_count,
                precision_shape=self.precision_shape,
                precision_rate=self.precision_shape * prior_scale.square(),
            )
            params.update(loc=update.loc, loc_count=update.loc_count, shape=update.shape, rate=update.rate)
        if layout.bernoulli:
            params["bernoulli_alpha"], params["bernoulli_beta"] = conjugate.beta_bernoulli(
                _columns(x, layout.bernoulli), y, num_classes, self.concentration
            )
        for column, size in zip(layout.categorical, layout.num_categories):
            categories = x[:, column].long()
            if len(categories) and int(categories.max()) >= size:  # would spill into the next class
                raise ValueError(f"x column {column} holds a category beyond the {size} the model was set up for")
            params[f"categorical_probs_{column}"] = conjugate.dirichlet_categorical(
                categories, y, num_classes, size, self.concentration, dtype
            )
        if layout.multinomial:
            params["multinomial_probs"] = conjugate.dirichlet_multinomial(
                _columns(x, layout.multinomial), y, num_classes, self.concentration
            )
        return NaiveBayesPosterior(params)

    def exact_posterior(self, data: Dataset) -> NaiveBayesPosterior:
        """The conjugate posterior given fully labeled ``data`` (the table in the module docs).

        Raises
        ------
        ValueError
            If ``data`` has no labels, unlabeled rows, or a class with no labeled row.
        """
        if getattr(self, "_validated", None) is not data:  # prepare() has checked these rows
            self.validate(data)
        if data.y is None:
            raise ValueError("zoo.Exact needs labels: data.y is missing (use SVI or NUTS for unlabeled data)")
        # validate() has bounded y to -1..C-1, so its minimum tells whether any row is unlabeled.
        if int(data.y.min()) == UNLABELED:
            unlabeled = int((data.y == UNLABELED).sum())
            raise ValueError(
                f"zoo.Exact needs every row labeled, but y marks {unlabeled} rows unlabeled (-1): the "
                "posterior is then a mixture with no closed form; use zoo.SVI or zoo.NUTS"
            )
        missing = (torch.bincount(data.y, minlength=self.num_classes) == 0).nonzero().reshape(-1).tolist()
        if missing:
            raise ValueError(
                f"zoo.Exact needs at least one labeled row of every class, but y has none of class(es) "
                f"{missing} (num_classes={self.num_classes})"
            )
        return self._posterior(data.x, data.y)

    # ------------------------------------------------------------------ fast exact paths
    def class_log_joint(self, draws: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """log p(x_i, y_i = c | theta_s) for flat draws: shape (S, N, C)."""
        layout = self._check_ready()
        weights = draws["weights"]
        num_draws = weights.shape[0]
        # normalised as Categorical normalises them: values and gradients equal the enumerated
        # definition's also off the simplex
        log_weights = weights.log().log_softmax(-1)
        total = log_weights[:, None, :].expand(num_draws, x.shape[0], self.num_classes).clone()
        if layout.gaussian:
            columns = _columns(x, layout.gaussian)
            loc, precision = draws["loc"], draws["precision"]
            per_chunk = max(1, _CHUNK_ELEMENTS // max(1, columns.numel() * self.num_classes))
            for start in range(0, num_draws, per_chunk):
                part = slice(start, start + per_chunk)
                normal = dist.Normal(loc[part, None], precision[part, None].rsqrt(), validate_args=False)
                total[part] += normal.log_prob(columns[None, :, None, :]).sum(-1)
        if layout.bernoulli:
            columns = _columns(x, layout.bernoulli)
            probs = _clamp_probs(draws["bernoulli_probs"])
            log_p, log_q = probs.log(), (-probs).log1p()
            total += columns @ (log_p - log_q).transpose(-1, -2) + log_q.sum(-1)[:, None, :]
        for column, size in zip(layout.categorical, layout.num_categories):
            indicator = torch.nn.functional.one_hot(x[:, column].long(), size).to(x.dtype)
            log_p = _clamp_probs(draws[f"categorical_probs_{column}"]).log().log_softmax(-1)  # as Categorical
            total += indicator @ log_p.transpose(-1, -2)
        if layout.multinomial:
            counts = _columns(x, layout.multinomial)
            coefficient = torch.lgamma(counts.sum(-1) + 1) - torch.lgamma(counts + 1).sum(-1)
            log_p = _clamp_probs(draws["multinomial_probs"]).log()
            total += counts @ log_p.transpose(-1, -2) + coefficient[:, None]
        return total

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log p(x_i, y_i | theta_s) for labeled rows, log p(x_i | theta_s) for the rest: (S, N)."""
        joint = self.class_log_joint(draws, data.x)
        summed = joint.logsumexp(-1)
        if data.y is None:
            return summed
        labeled = data.y >= 0
        picked = joint.gather(-1, data.y.clamp(min=0).expand(joint.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        return torch.where(labeled, picked, summed)

    def marginals(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, torch.Tensor]:
        """p(y_i = c | x_i, theta_s) (one-hot where y_i is given): {"y": (S, N, C)}."""
        probs = self.class_log_joint(draws, data.x).softmax(-1)
        if data.y is not None:
            labeled = data.y >= 0
            one_hot = torch.nn.functional.one_hot(data.y.clamp(min=0), self.num_classes).to(probs.dtype)
            probs = torch.where(labeled[:, None], one_hot, probs)
        return {"y": probs}

    def discrete(
        self, params: dict[str, torch.Tensor], data: Dataset, temperature: int = 0
    ) -> dict[str, torch.Tensor]:
        """MAP (temperature 0) or sampled (1) classes given one parameter value: {"y": (N,)}.

        Rows are independent given the parameters, so the jointly most probable classes are each
        row's most probable class (what ``infer_discrete`` on ``forward`` gives, faster); labeled
        rows keep their label.
        """
        draws = {name: value[None] for name, value in params.items()}
        probs = self.marginals(draws, data)["y"][0]
        if temperature == 0:
            return {"y": probs.argmax(-1)}
        return {"y": torch.multinomial(probs, 1)[:, 0]}


# ---------------------------------------------------------------------- scikit-learn style helpers
def _features_only(x: Any) -> Dataset:
    data = as_dataset(x, "x")
    return replace(data, y=None) if data.y is not None else data


def predict(fit: Any, x: Any) -> torch.Tensor:
    """The most probable class of each row under ``fit.point``, labels (if any) ignored.

    For Naive Bayes rows are independent given the parameters, so this is exactly
    ``fit.discrete(features)`` (the jointly most probable classes), computed by the fast path.

    Parameters
    ----------
    fit : zoo.Fit
        A fit of :class:`NaiveBayes`.
    x : Dataset, Tensor or array, shape (num_data, num_features)

    Returns
    -------
    Tensor of int64, shape (num_data,)
    """
    data = _features_only(x)
    fit.model.validate(data)
    point = {name: value[None] for name, value in fit.point.items()}
    with torch.no_grad():
        return fit.model.class_log_joint(point, data.x)[0].argmax(-1)


def predict_proba(fit: Any, x: Any, num_draws: int | None = 100, seed: int = 0) -> torch.Tensor:
    """Posterior predictive class probabilities p(y_i | x_i, training data), labels ignored.

    Averaged over ``num_draws`` posterior draws (``fit.marginals``), so parameter uncertainty is
    included; ``predict`` uses the point estimate instead.

    Returns
    -------
    Tensor, shape (num_data, num_classes)
    """
    return fit.marginals(_features_only(x), num_draws=num_draws, seed=seed)
