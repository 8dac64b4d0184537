"""scikit-learn and hmmlearn style estimators over zoo's models.

The habits of scikit-learn (``fit / predict / predict_proba / score / score_samples / sample /
bic``, pipelines, ``clone``, ``GridSearchCV``) and of hmmlearn (``fit(X, lengths)``,
``decode``), on zoo's Bayesian models:

>>> import numpy as np
>>> from zoo.sklearn import GaussianMixture
>>> X = np.concatenate([np.random.RandomState(0).normal(-2, 1, (100, 2)),
...                     np.random.RandomState(1).normal(3, 1, (100, 2))])
>>> mixture = GaussianMixture(n_components=2).fit(X)   # MAP, as scikit-learn's EM finds
>>> mixture.predict(X[:3]).tolist(), round(float(mixture.score(X)), 2)
([0, 0, 0], -3.44)
>>> round(float(mixture.bic(X)), 1)
1434.0
>>> posterior = GaussianMixture(n_components=2, method="svi:mvn:num_steps=100,num_posterior_samples=100").fit(X)
>>> posterior.fit_.to_arviz().posterior["locs"].shape   # the posterior, one attribute away
(1, 100, 2, 2)

Conventions, the same in every estimator here:

* ``__init__`` only stores its keyword arguments; ``fit`` checks them (a ``ValueError`` or
  ``TypeError`` naming the argument) and the data (as ``sklearn.utils.check_array`` does: NaN,
  infinite values, wrong dimensions and sparse matrices are refused, with scikit-learn's own
  messages) before any work, then learns. Fitted attributes end in ``_``; ``fit_`` is the
  underlying :class:`zoo.Fit`, so ``estimator.fit_.to_arviz()`` gives the ArviZ InferenceData.
* ``method`` is how the model is fitted: ``"map"`` (the default for the mixture and the HMM: a
  point estimate, the maximum a posteriori under zoo's weak priors, by ``zoo.SVI(guide="delta")``),
  any string ``zoo.fit`` takes (``"svi:mvn"``, ``"svi:normal"``, ``"nuts"``,
  ``"nuts:num_samples=500,num_chains=2"``, ``"exact"``), or a method object
  (``zoo.SVI(guide="mvn", num_steps=3000)``, ``zoo.NUTS(...)``).
* ``random_state`` (an int, or None) seeds the fit; None keeps the method's own seed (0 for a
  string), so zoo's fits are reproducible by default.
* Answers that depend on the posterior average over it: ``score_samples`` is the log predictive
  density log mean_s p(x | theta_s), ``predict_proba`` averages p(z | x, theta_s) over
  ``posterior_draws`` draws (one draw, the point, after a MAP fit: then they equal
  scikit-learn's and hmmlearn's plug-in answers).
* Everything returned is a NumPy array (float64, or int64 labels), as scikit-learn returns.

zoo's models compute in float32: results agree with scikit-learn's float64 ones to about 1e-6
relative.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, DensityMixin, TransformerMixin
    from sklearn.utils import check_array, check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as error:  # pragma: no cover - scikit-learn is an optional dependency
    raise ImportError(
        f"zoo.sklearn needs scikit-learn >= 1.6 ({error}): pip install 'zoo[sklearn]'"
    ) from error

from zoo.datasets.dataset import Dataset
from zoo.infer import fit as zoo_fit
from zoo.infer.methods import SVI, parse_method
from zoo.models.factor_analysis import FactorAnalysis as ZooFactorAnalysis
from zoo.models.hmm import HiddenMarkovModel as ZooHiddenMarkovModel
from zoo.models.mixture import GaussianMixture as ZooGaussianMixture
from zoo.models.naive_bayes import NaiveBayes as ZooNaiveBayes
from zoo.models.naive_bayes import predict_proba as naive_bayes_predict_proba
from zoo.models.vae import VAE as ZooVAE
from zoo.models.vae import decode, encode
from zoo.results import Fit

__all__ = ["FactorAnalysis", "GaussianMixture", "HiddenMarkovModel", "NaiveBayes", "VAE"]

FLOAT_TYPES = (np.float64, np.float32)


# --------------------------------------------------------------------------- shared checks
def _check_count(value: Any, argument: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_choice(value: Any, argument: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{argument} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _check_options(options: Any, argument: str = "model_options") -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"{argument} must be a dict of further model arguments (or None), got {type(options).__name__}")
    return dict(options)


def _seed(random_state: Any) -> int | None:
    """The seed of ``random_state``: None stays None (the method keeps its own seed)."""
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, a RandomState or None, got {random_state!r}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(check_random_state(random_state).randint(2**31 - 1))
    raise TypeError(f"random_state must be an int, a numpy RandomState or None, got {type(random_state).__name__}")


def _method(method: Any, random_state: Any) -> Any:
    """The zoo method configuration of ``method`` ("map", a string, or an object), seeded."""
    if isinstance(method, str) and method.strip().lower() == "map":
        config: Any = SVI(guide="delta", num_posterior_samples=1, progress=False)
    else:
        try:
            config = parse_method(method)
        except (TypeError, ValueError) as error:
            raise type(error)(
                f"method must be 'map', a string such as 'svi:mvn' or 'nuts', or a zoo method object "
                f"(zoo.SVI(...)); {error}"
            ) from None
    seed = _seed(random_state)
    if seed is not None and "seed" in {field.name for field in dataclasses.fields(config)}:
        config = dataclasses.replace(config, seed=seed)
    return config


def _is_point_estimate(fit: Fit) -> bool:
    """Whether ``fit`` is a MAP fit: SVI with the point-mass (delta) guide."""
    return getattr(fit.method, "kind", None) == "svi" and getattr(fit.method, "guide", None) == "delta"


def _in_float64(fit: Fit, draws: dict[str, torch.Tensor] | None = None) -> Fit:
    """``fit`` with its draws (or ``draws``) and point in float64: what the estimators evaluate.

    zoo fits in float32; evaluating in float64 makes every answer independent of the batch it
    is computed in (float32 sums of different lengths round differently, by ~1e-7), as
    scikit-learn's estimators are, and brings parity with scikit-learn's float64 results.
    """
    draws = fit.draws if draws is None else draws
    return fit.replace(
        draws={name: value.double() for name, value in draws.items()},
        point={name: value.double() for name, value in fit.point.items()},
    )


def _as_numpy(tensor: torch.Tensor, dtype: Any = np.float64) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(dtype)


def _check_posterior_draws(value: Any) -> int | None:
    return None if value is None else _check_count(value, "posterior_draws")


class _ZooEstimator(BaseEstimator):
    """What every estimator here shares: the fit, the data conversion, the information criteria."""

    def _validate(self, X: Any, reset: bool, **options: Any) -> np.ndarray:
        """Check ``X`` as scikit-learn does (and record or check n_features_in_)."""
        return validate_data(self, X, reset=reset, dtype=FLOAT_TYPES, **options)

    def _dataset(self, X: np.ndarray, **fields: Any) -> Dataset:
        names = getattr(self, "feature_names_in_", None)
        # A float32 copy: zoo's dtype, and never a view of a read-only input.
        return Dataset(np.array(X, dtype=np.float32), feature_names=None if names is None else tuple(map(str, names)), **fields)

    def _options_and_method(self) -> tuple[dict[str, Any], Any]:
        """``model_options`` and the resolved ``method`` (seeded by ``random_state``), both checked
        before any work."""
        return _check_options(self.model_options), _method(self.method, self.random_state)

    def _fit(self, model: Any, data: Dataset, method: Any) -> Fit:
        """Fit ``model`` to ``data`` by ``method`` (this estimator's, resolved); sets ``fit_``."""
        self.fit_ = zoo_fit(model, data, method)
        self.converged_ = bool(self.fit_.diagnostics.get("converged", True))
        return self.fit_

    def _check_point_estimate(self, name: str) -> None:
        """Refuse ``name`` ("bic", "aic") unless fitted by MAP; raised before any work."""
        check_is_fitted(self)
        if not _is_point_estimate(self.fit_):
            raise ValueError(
                f"{name} needs a point estimate (method='map'): it penalises the maximised "
                f"log-likelihood, and this estimator was fitted by {self.fit_.method_name}, which "
                "holds a posterior. Compare posteriors by held-out log-likelihood or by LOO instead "
                "(zoo.select, or arviz.loo(estimator.fit_.to_arviz()))"
            )

    def _num_parameters(self) -> int:  # pragma: no cover - every density estimator overrides
        raise NotImplementedError


class _DensityEstimator(DensityMixin, _ZooEstimator):
    """A density estimator over independent samples whose latent variables the fit sums or
    integrates out: log predictive densities, and the information criteria from the number of
    free parameters each estimator counts (``_num_parameters``)."""

    def score_samples(self, X: Any) -> np.ndarray:
        """Log predictive density of each sample, latent variables summed or integrated out.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples,)
            log mean_s p(x_i | theta_s) over the posterior draws (log p(x_i | theta) after a
            MAP fit, scikit-learn's ``score_samples``).
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return _as_numpy(_in_float64(self.fit_).log_prob(self._dataset(X)))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log predictive density per sample (higher is better): ``score_samples(X).mean()``."""
        return float(self.score_samples(X).mean())

    def bic(self, X: Any) -> float:
        """Bayesian information criterion at the MAP estimate (lower is better); MAP fits only.

        ``-2 * total log-likelihood + num_parameters * log(n_samples)``, as scikit-learn's.

        Raises
        ------
        ValueError
            If the estimator was fitted by a method that gives a posterior (see ``method``).
        """
        self._check_point_estimate("bic")
        log_likelihood = self.score_samples(X).sum()
        return float(-2.0 * log_likelihood + self._num_parameters() * math.log(len(self._validate(X, reset=False))))

    def aic(self, X: Any) -> float:
        """Akaike information criterion at the MAP estimate (lower is better); MAP fits only.

        ``-2 * total log-likelihood + 2 * num_parameters``, as scikit-learn's.
        """
        self._check_point_estimate("aic")
        return float(-2.0 * self.score_samples(X).sum() + 2.0 * self._num_parameters())


# --------------------------------------------------------------------------- Gaussian mixture
class GaussianMixture(_DensityEstimator):
    """A Bayesian Gaussian mixture with scikit-learn's ``GaussianMixture`` interface.

    Wraps :class:`zoo.models.GaussianMixture` (component assignments summed out exactly).

    Parameters
    ----------
    n_components : int
        K, the number of components (at most the number of samples).
    covariance_type : {"full", "diag"}
        Full covariance matrices or diagonal ones.
    method : str or zoo method object
        "map" (the default: the posterior mode, what scikit-learn's EM finds up to zoo's weak
        priors), "svi:mvn", "svi:normal", "nuts", ... or ``zoo.SVI(...)`` / ``zoo.NUTS(...)``.
    posterior_draws : int or None
        Posterior draws ``predict_proba`` (and so ``predict``) averages over; None: all.
    random_state : int, numpy RandomState or None
        Seed of the fit; None keeps the method's seed (0 for "map" and other strings).
    model_options : dict, optional
        Further arguments of :class:`zoo.models.GaussianMixture` (its priors).

    Attributes
    ----------
    fit_ : zoo.Fit
        The fit: ``fit_.to_arviz()``, ``fit_.summary()``, ``fit_.draws``.
    weights_ : ndarray, shape (n_components,)
    means_ : ndarray, shape (n_components, n_features)
    covariances_ : ndarray
        Shape (n_components, n_features, n_features) for "full", (n_components, n_features)
        (the variances) for "diag", as scikit-learn's. ``weights_``, ``means_`` and
        ``covariances_`` are those of the point estimate ``fit_.point`` (the MAP, the guide's
        median, or NUTS's draw of highest density).
    converged_ : bool
    n_features_in_ : int
    feature_names_in_ : ndarray of str, shape (n_features,)
        Only when fitted on a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from zoo.sklearn import GaussianMixture
    >>> X = np.random.RandomState(0).normal(size=(50, 2))
    >>> pipeline = make_pipeline(StandardScaler(), GaussianMixture(n_components=1)).fit(X)
    >>> pipeline.score_samples(X).shape
    (50,)
    """

    def __init__(
        self,
        *,
        n_components: int = 1,
        covariance_type: str = "full",
        method: Any = "map",
        posterior_draws: int | None = 100,
        random_state: Any = None,
        model_options: dict[str, Any] | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.method = method
        self.posterior_draws = posterior_draws
        self.random_state = random_state
        self.model_options = model_options

    def fit(self, X: Any, y: Any = None) -> "GaussianMixture":
        """Fit the mixture to ``X``.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : ignored
            Present for scikit-learn's pipelines.

        Returns
        -------
        self
        """
        num_components = _check_count(self.n_components, "n_components")
        covariance = _check_choice(self.covariance_type, "covariance_type", ("full", "diag"))
        _check_posterior_draws(self.posterior_draws)
        options, method = self._options_and_method()
        X = self._validate(X, reset=True)
        if num_components > X.shape[0]:
            raise ValueError(
                f"n_components={num_components} must be at most the number of samples ({X.shape[0]})"
            )
        model = ZooGaussianMixture(num_components, covariance=covariance, **options)
        point = self._fit(model, self._dataset(X), method).point
        scales = _as_numpy(point["scales"])
        self.weights_ = _as_numpy(point["weights"])
        self.means_ = _as_numpy(point["locs"])
        if covariance == "diag":
            self.covariances_ = scales**2
        else:
            if "corr_cholesky" in point:
                cholesky = scales[:, :, None] * _as_numpy(point["corr_cholesky"])
            else:  # one feature
                cholesky = scales[:, :, None]
            self.covariances_ = cholesky @ np.swapaxes(cholesky, -1, -2)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples, n_components)
            p(z_i = k | x_i, theta) averaged over ``posterior_draws`` posterior draws.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return _as_numpy(_in_float64(self.fit_).marginals(self._dataset(X), num_draws=self.posterior_draws))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable component of each sample: ``predict_proba(X).argmax(1)``, shape (n_samples,)."""
        return self.predict_proba(X).argmax(1)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X).predict(X)``: the component of each training sample, shape (n_samples,)."""
        return self.fit(X).predict(X)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """New samples from the fitted model (the posterior predictive), with their components.

        Parameters
        ----------
        n_samples : int

        Returns
        -------
        X : ndarray, shape (n_samples, n_features)
        labels : ndarray of int64, shape (n_samples,)
            A draw of each sample's component given the sample, p(z | x): with the sample, a
            draw from the joint p(x, z) after a MAP fit.
        """
        check_is_fitted(self)
        num_samples = _check_count(n_samples, "n_samples")
        seed = _seed(self.random_state) or 0
        samples = self.fit_.sample(num_samples, seed=seed)
        labels = self.fit_.discrete(Dataset(samples), temperature=1, seed=seed)
        return _as_numpy(samples), _as_numpy(labels, np.int64)

    def _num_parameters(self) -> int:
        num_components, num_features = self.means_.shape
        covariance = num_components * num_features * ((num_features + 1) / 2 if self.covariance_type == "full" else 1)
        return int(covariance + num_components * num_features + num_components - 1)


# --------------------------------------------------------------------------- factor analysis
class FactorAnalysis(TransformerMixin, _DensityEstimator):
    """Factor analysis or probabilistic PCA with scikit-learn's ``FactorAnalysis`` / ``PCA``
    interface: ``transform`` gives the codes, ``score_samples`` the log-likelihood per sample.

    Wraps :class:`zoo.models.FactorAnalysis` (the codes integrated out exactly).

    Parameters
    ----------
    n_components : int
        L, the number of factors (at most the number of features).
    noise : {"diagonal", "isotropic"}
        One noise variance per feature (factor analysis, scikit-learn's ``FactorAnalysis``; the
        default here) or one shared by all features (probabilistic PCA, whose MAP is
        scikit-learn's ``PCA(n_components)`` density up to zoo's weak priors).
    method : str or zoo method object
        "map" (the default), "svi:mvn", "nuts", ... or ``zoo.SVI(...)`` / ``zoo.NUTS(...)``.
    posterior_draws : int or None
        Posterior draws ``transform`` averages over; None: all.
    random_state : int, numpy RandomState or None
        Seed of the fit; None keeps the method's seed.
    model_options : dict, optional
        Further arguments of :class:`zoo.models.FactorAnalysis` (its priors).

    Attributes
    ----------
    fit_ : zoo.Fit
    components_ : ndarray, shape (n_components, n_features)
        The loadings ``W.T`` of the point estimate, in zoo's canonical rotation (orthogonal
        columns of ``W`` by decreasing norm), as scikit-learn's ``components_``.
    mean_ : ndarray, shape (n_features,)
    noise_variance_ : ndarray, shape (n_features,)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from zoo.sklearn import FactorAnalysis
    >>> X = np.random.RandomState(0).normal(size=(60, 4))
    >>> fa = FactorAnalysis(n_components=2).fit(X)
    >>> fa.transform(X).shape, fa.get_covariance().shape
    ((60, 2), (4, 4))
    """

    def __init__(
        self,
        *,
        n_components: int = 1,
        noise: str = "diagonal",
        method: Any = "map",
        posterior_draws: int | None = 100,
        random_state: Any = None,
        model_options: dict[str, Any] | None = None,
    ) -> None:
        self.n_components = n_components
        self.noise = noise
        self.method = method
        self.posterior_draws = posterior_draws
        self.random_state = random_state
        self.model_options = model_options

    def fit(self, X: Any, y: Any = None) -> "FactorAnalysis":
        """Fit the model to ``X``, shape (n_samples, n_features); ``y`` is ignored."""
        latent_dim = _check_count(self.n_components, "n_components")
        noise = _check_choice(self.noise, "noise", ("diagonal", "isotropic"))
        _check_posterior_draws(self.posterior_draws)
        options, method = self._options_and_method()
        X = self._validate(X, reset=True, ensure_min_samples=2)
        if latent_dim > X.shape[1]:
            raise ValueError(f"n_components={latent_dim} must be at most the number of features ({X.shape[1]})")
        point = self._fit(ZooFactorAnalysis(latent_dim, noise=noise, **options), self._dataset(X), method).point
        self.components_ = _as_numpy(point["weights"]).T
        self.mean_ = _as_numpy(point["loc"])
        self.noise_variance_ = np.broadcast_to(_as_numpy(point["noise_scale"]) ** 2, self.mean_.shape).copy()
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Posterior mean of each sample's code, E[z | x], shape (n_samples, n_components)."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        mean, _ = self.fit_.transform(self._dataset(X), num_draws=self.posterior_draws)
        return _as_numpy(mean)

    def get_covariance(self) -> np.ndarray:
        """The model's covariance of x at the point estimate, ``W W^T + Psi``: (n_features, n_features)."""
        check_is_fitted(self)
        return self.components_.T @ self.components_ + np.diag(self.noise_variance_)

    def sample(self, n_samples: int = 1) -> np.ndarray:
        """New samples from the fitted model (the posterior predictive): shape (n_samples, n_features)."""
        check_is_fitted(self)
        return _as_numpy(self.fit_.sample(_check_count(n_samples, "n_samples"), seed=_seed(self.random_state) or 0))

    def _num_parameters(self) -> int:
        latent_dim, num_features = self.components_.shape
        noise = num_features if self.noise == "diagonal" else 1
        # W up to rotation: D L - L (L - 1) / 2 free numbers
        return int(num_features * latent_dim - latent_dim * (latent_dim - 1) // 2 + num_features + noise)


# --------------------------------------------------------------------------- hidden Markov model
def _sequences(X: np.ndarray, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated rows and their sequence lengths -> padded (N, T, D) and lengths (N,)."""
    num_rows = X.shape[0]
    if lengths is None:
        lengths = np.array([num_rows])
    else:
        lengths = np.asarray(lengths)
        if lengths.ndim != 1 or lengths.size == 0 or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"lengths must be a 1-D array of sequence lengths (integers), got {lengths!r}")
        if (lengths < 1).any() or int(lengths.sum()) != num_rows:
            raise ValueError(
                f"lengths must be positive and sum to the number of rows of X ({num_rows}), "
                f"got lengths summing to {int(lengths.sum())}"
            )
    padded = np.zeros((len(lengths), int(lengths.max()), X.shape[1]), dtype=np.float32)
    start = 0
    for row, length in enumerate(lengths.tolist()):
        padded[row, :length] = X[start : start + length]
        start += length
    return padded, lengths.astype(np.int64)


def _concatenate(padded: torch.Tensor, lengths: np.ndarray) -> torch.Tensor:
    """Per-step values (N, T, ...) of padded sequences -> the real steps, concatenated."""
    mask = torch.arange(padded.shape[1]) < torch.as_tensor(lengths).unsqueeze(-1)
    return padded[mask]


class HiddenMarkovModel(_ZooEstimator):
    """A Bayesian hidden Markov model with hmmlearn's interface (``GaussianHMM`` and friends).

    Wraps :class:`zoo.models.HiddenMarkovModel` (hidden states summed out by the forward
    algorithm). As in hmmlearn, ``X`` holds the time steps of one or more sequences, one after
    another, and ``lengths`` the length of each (None: one sequence).

    Parameters
    ----------
    n_components : int
        K, the number of hidden states.
    emission : {"gaussian", "categorical", "poisson", "bernoulli", "auto"}
        Gaussian (``GaussianHMM``), categorical (``CategoricalHMM``: one integer column),
        Poisson (``PoissonHMM``) or Bernoulli emissions; "auto" picks from the data.
    covariance_type : {"diag", "full"}
        Gaussian emissions only.
    algorithm : {"viterbi", "map"}
        The decoder of ``predict`` and ``decode``: the jointly most probable path (Viterbi),
        or the most probable state of each step (hmmlearn's "map").
    method : str or zoo method object
        "map" (default), "svi:normal", "nuts", ... (see the module docs).
    posterior_draws : int or None
        Posterior draws ``predict_proba`` averages over; None: all.
    random_state : int, numpy RandomState or None
    model_options : dict, optional
        Further arguments of :class:`zoo.models.HiddenMarkovModel`.

    Attributes
    ----------
    fit_ : zoo.Fit
    startprob_ : ndarray, shape (n_components,)
    transmat_ : ndarray, shape (n_components, n_components)
    means_ : ndarray, shape (n_components, n_features)
        Gaussian emissions.
    covars_ : ndarray, shape (n_components, n_features, n_features)
        Gaussian emissions: full matrices whatever ``covariance_type`` (as hmmlearn's
        ``covars_``).
    lambdas_ : ndarray, shape (n_components, n_features)
        Poisson emissions.
    emissionprob_ : ndarray, shape (n_components, n_categories) or (n_components, n_features)
        Categorical or Bernoulli emissions.
    converged_ : bool
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from zoo.sklearn import HiddenMarkovModel
    >>> rng = np.random.RandomState(0)
    >>> X = np.concatenate([rng.normal(0, 1, (30, 1)), rng.normal(6, 1, (30, 1))] * 2)
    >>> hmm = HiddenMarkovModel(n_components=2).fit(X, lengths=[60, 60])
    >>> hmm.predict(X[:60]).tolist() == [0] * 30 + [1] * 30
    True
    """

    def __init__(
        self,
        *,
        n_components: int = 1,
        emission: str = "gaussian",
        covariance_type: str = "diag",
        algorithm: str = "viterbi",
        method: Any = "map",
        posterior_draws: int | None = 100,
        random_state: Any = None,
        model_options: dict[str, Any] | None = None,
    ) -> None:
        self.n_components = n_components
        self.emission = emission
        self.covariance_type = covariance_type
        self.algorithm = algorithm
        self.method = method
        self.posterior_draws = posterior_draws
        self.random_state = random_state
        self.model_options = model_options

    def fit(self, X: Any, lengths: Any = None) -> "HiddenMarkovModel":
        """Fit to the sequences in ``X``.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            The time steps of every sequence, concatenated.
        lengths : array-like of int, shape (n_sequences,), optional
            The length of each sequence, summing to n_samples; default: one sequence.

        Returns
        -------
        self
        """
        num_states = _check_count(self.n_components, "n_components")
        emission = _check_choice(self.emission, "emission", ("gaussian", "categorical", "poisson", "bernoulli", "auto"))
        covariance = _check_choice(self.covariance_type, "covariance_type", ("diag", "full"))
        _check_choice(self.algorithm, "algorithm", ("viterbi", "map"))
        _check_posterior_draws(self.posterior_draws)
        options, method = self._options_and_method()
        X = self._validate(X, reset=True)
        padded, lengths = _sequences(X, lengths)
        if num_states > X.shape[0]:
            raise ValueError(f"n_components={num_states} must be at most the number of samples ({X.shape[0]})")
        model = ZooHiddenMarkovModel(num_states, emission=emission, covariance=covariance, **options)
        fit = self._fit(model, Dataset(padded, lengths=lengths), method)
        self._set_parameters(fit)
        return self

    def _set_parameters(self, fit: Fit) -> None:
        point, model = fit.point, fit.model
        num_states = model.num_states
        self.startprob_ = _as_numpy(point["initial"]) if "initial" in point else np.ones(1)
        self.transmat_ = _as_numpy(point["transition"]) if "transition" in point else np.ones((1, 1))
        if model.emission == "gaussian":
            scales = _as_numpy(point["scales"])
            cholesky = scales[:, :, None] * (_as_numpy(point["corr_cholesky"]) if "corr_cholesky" in point else np.eye(scales.shape[1]))
            self.means_ = _as_numpy(point["locs"])
            self.covars_ = cholesky @ np.swapaxes(cholesky, -1, -2)
        elif model.emission == "poisson":
            self.lambdas_ = _as_numpy(point["rates"]).reshape(num_states, -1)
        else:
            self.emissionprob_ = _as_numpy(point["probs"])

    def _data(self, X: Any, lengths: Any) -> tuple[Dataset, np.ndarray]:
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        padded, lengths = _sequences(X, lengths)
        return Dataset(padded, lengths=lengths), lengths

    def score(self, X: Any, lengths: Any = None) -> float:
        """Log-likelihood of the sequences, summed (hmmlearn's ``score``).

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        lengths : array-like of int, shape (n_sequences,), optional

        Returns
        -------
        float
            sum over sequences of log mean_s p(x_n | theta_s) (log p(X | theta) after a MAP fit).
        """
        data, _ = self._data(X, lengths)
        return float(_in_float64(self.fit_).log_prob(data).sum())

    def predict_proba(self, X: Any, lengths: Any = None) -> np.ndarray:
        """Posterior probability of each state at each step (forward-backward).

        Returns
        -------
        ndarray, shape (n_samples, n_components)
            p(z_t = k | x, theta) averaged over ``posterior_draws`` posterior draws.
        """
        data, lengths = self._data(X, lengths)
        marginals = _in_float64(self.fit_).marginals(data, num_draws=self.posterior_draws)  # (N, T, K)
        return _as_numpy(_concatenate(marginals, lengths))

    def score_samples(self, X: Any, lengths: Any = None) -> tuple[float, np.ndarray]:
        """hmmlearn's ``score_samples``: the log-likelihood and the state posteriors.

        Returns
        -------
        log_prob : float
            As :meth:`score`.
        posteriors : ndarray, shape (n_samples, n_components)
            As :meth:`predict_proba`.
        """
        return self.score(X, lengths), self.predict_proba(X, lengths)

    def decode(self, X: Any, lengths: Any = None, algorithm: str | None = None) -> tuple[float, np.ndarray]:
        """The most probable state sequence, as hmmlearn's ``decode``.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        lengths : array-like of int, shape (n_sequences,), optional
        algorithm : {"viterbi", "map"}, optional
            Default: the estimator's ``algorithm``.

        Returns
        -------
        log_prob : float
            "viterbi": log p(X, path | theta) of the jointly most probable path under the point
            estimate, summed over sequences (as hmmlearn's); "map": the sum over steps of the log
            of each step's largest state posterior (what hmmlearn's documentation says; hmmlearn
            0.3 returns the sum of the posteriors themselves).
        state_sequence : ndarray of int64, shape (n_samples,)
        """
        algorithm = _check_choice(self.algorithm if algorithm is None else algorithm, "algorithm", ("viterbi", "map"))
        if algorithm == "map":
            posteriors = self.predict_proba(X, lengths)
            return float(np.log(posteriors.max(1)).sum()), posteriors.argmax(1)
        data, lengths = self._data(X, lengths)
        paths = _in_float64(self.fit_).discrete(data)  # (N, T) Viterbi under fit_.point
        path = _as_numpy(_concatenate(paths, lengths), np.int64)
        return self._path_log_probability(_as_numpy(_concatenate(data.x, lengths)), lengths, path), path

    def _path_log_probability(self, X: np.ndarray, lengths: np.ndarray, path: np.ndarray) -> float:
        """log p(X, path | point estimate), summed over sequences, from the fitted attributes."""
        emission = self.fit_.model.emission
        if emission == "gaussian":
            log_emission = np.stack([
                torch.distributions.MultivariateNormal(
                    torch.as_tensor(self.means_[k], dtype=torch.float64),
                    covariance_matrix=torch.as_tensor(self.covars_[k], dtype=torch.float64),
                ).log_prob(torch.as_tensor(X, dtype=torch.float64)).numpy()
                for k in range(len(self.means_))
            ], 1)
        elif emission == "poisson":
            rates = self.lambdas_[None]  # (1, K, D)
            counts = X[:, None]
            log_emission = (counts * np.log(rates) - rates - np.vectorize(math.lgamma)(counts + 1)).sum(-1)
        elif emission == "categorical":
            log_emission = np.log(self.emissionprob_.T[X[:, 0].astype(np.int64)])
        else:
            probs = self.emissionprob_[None]
            log_emission = (X[:, None] * np.log(probs) + (1 - X[:, None]) * np.log1p(-probs)).sum(-1)
        total = float(log_emission[np.arange(len(path)), path].sum())
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        total += float(np.log(self.startprob_[path[starts]]).sum())
        following = np.ones(len(path), dtype=bool)
        following[starts] = False
        steps = np.nonzero(following)[0]
        return total + float(np.log(self.transmat_[path[steps - 1], path[steps]]).sum())

    def predict(self, X: Any, lengths: Any = None) -> np.ndarray:
        """The decoded state of each step (``algorithm``): ndarray of int64, shape (n_samples,)."""
        return self.decode(X, lengths)[1]

    def sample(self, n_samples: int = 1, random_state: Any = None, currstate: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """One new sequence of ``n_samples`` steps, and its states.

        Parameters
        ----------
        n_samples : int
        random_state : int, numpy RandomState or None
            Default: the estimator's (0 when that is None).
        currstate : None
            hmmlearn's option to start from a given state: not supported (zoo draws the first
            state from ``startprob_``).

        Returns
        -------
        X : ndarray, shape (n_samples, n_features)
        state_sequence : ndarray of int64, shape (n_samples,)
            A draw of the states given the sequence, p(z | x): with the sequence, a draw from
            the joint p(x, z) after a MAP fit.
        """
        check_is_fitted(self)
        if currstate is not None:
            raise ValueError("currstate is not supported: every sequence starts from startprob_")
        length = _check_count(n_samples, "n_samples")
        seed = _seed(self.random_state if random_state is None else random_state) or 0
        sequence = self.fit_.sample(1, seed=seed, length=length)  # (1, length, D)
        states = self.fit_.discrete(Dataset(sequence, lengths=torch.tensor([length])), temperature=1, seed=seed)
        return _as_numpy(sequence[0]), _as_numpy(states[0], np.int64)

    def _num_parameters(self) -> int:
        model = self.fit_.model
        num_states, num_features = model.num_states, self.n_features_in_
        chain = num_states - 1 + num_states * (num_states - 1)
        if model.emission == "gaussian":
            covariance = num_states * num_features * ((num_features + 1) / 2 if model.covariance == "full" else 1)
            return int(chain + num_states * num_features + covariance)
        if model.emission == "categorical":
            return chain + num_states * (model.num_categories - 1)
        return chain + num_states * num_features

    def bic(self, X: Any, lengths: Any = None) -> float:
        """Bayesian information criterion at the MAP estimate (lower is better); MAP fits only.

        ``-2 * score(X, lengths) + num_parameters * log(n_samples)``, as hmmlearn's.
        """
        self._check_point_estimate("bic")
        log_likelihood = self.score(X, lengths)
        return float(-2.0 * log_likelihood + self._num_parameters() * math.log(len(self._validate(X, reset=False))))

    def aic(self, X: Any, lengths: Any = None) -> float:
        """Akaike information criterion at the MAP estimate (lower is better); MAP fits only.

        ``-2 * score(X, lengths) + 2 * num_parameters``, as hmmlearn's.
        """
        self._check_point_estimate("aic")
        return float(-2.0 * self.score(X, lengths) + 2.0 * self._num_parameters())


# --------------------------------------------------------------------------- Naive Bayes
class NaiveBayes(ClassifierMixin, _ZooEstimator):
    """Naive Bayes with conjugate priors, a scikit-learn classifier (``GaussianNB`` and friends).

    Wraps :class:`zoo.models.NaiveBayes`. Labels may be any values (``classes_`` keeps them, in
    sorted order); ``score`` is the accuracy, as for every scikit-learn classifier.

    Parameters
    ----------
    features : str or list of str
        The family of every column ("gaussian", as ``GaussianNB``; "bernoulli", as
        ``BernoulliNB``; "multinomial", as ``MultinomialNB``; "categorical", as
        ``CategoricalNB``), or one family per column.
    method : str or zoo method object
        "exact" (the default: the closed-form posterior), "map", "svi:normal", "nuts", ...
    posterior_draws : int or None
        Posterior draws ``predict_proba`` (and so ``predict``) averages over: the posterior
        predictive p(y | x, training data). None: the point estimate alone (the posterior mean
        for "exact"), a plug-in answer as scikit-learn's.
    random_state : int, numpy RandomState or None
    model_options : dict, optional
        Further arguments of :class:`zoo.models.NaiveBayes` (its priors).

    Attributes
    ----------
    fit_ : zoo.Fit
    classes_ : ndarray, shape (n_classes,)
    class_prior_ : ndarray, shape (n_classes,)
        The point estimate of the class weights.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import cross_val_score
    >>> from zoo.sklearn import NaiveBayes
    >>> X, y = load_iris(return_X_y=True)
    >>> cross_val_score(NaiveBayes(), X, y, cv=5).mean().round(2)
    np.float64(0.94)
    """

    def __init__(
        self,
        *,
        features: str | list[str] = "gaussian",
        method: Any = "exact",
        posterior_draws: int | None = 100,
        random_state: Any = None,
        model_options: dict[str, Any] | None = None,
    ) -> None:
        self.features = features
        self.method = method
        self.posterior_draws = posterior_draws
        self.random_state = random_state
        self.model_options = model_options

    def fit(self, X: Any, y: Any) -> "NaiveBayes":
        """Fit to rows ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : array-like, shape (n_samples,)
            Class labels, at least two distinct ones.

        Returns
        -------
        self
        """
        _check_posterior_draws(self.posterior_draws)
        options, method = self._options_and_method()
        X, y = validate_data(self, X, y, reset=True, dtype=FLOAT_TYPES)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y holds 1 class ({self.classes_[0]!r}): a classifier needs at least 2 classes"
            )
        model = ZooNaiveBayes(len(self.classes_), features=self.features, **options)
        fit = self._fit(model, self._dataset(X, y=codes.astype(np.int64)), method)
        self.class_prior_ = _as_numpy(fit.point["weights"])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of each row, p(y | x) (see ``posterior_draws``).

        Returns
        -------
        ndarray, shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        if self.posterior_draws is None:  # the point estimate as the one draw
            fit = _in_float64(self.fit_, {name: value[None, None] for name, value in self.fit_.point.items()})
        else:
            fit = _in_float64(self.fit_)
        return _as_numpy(naive_bayes_predict_proba(fit, self._dataset(X), num_draws=self.posterior_draws))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """log of :meth:`predict_proba`: ndarray, shape (n_samples, n_classes)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row: ndarray, shape (n_samples,), values from ``classes_``."""
        check_is_fitted(self)
        return self.classes_[self.predict_proba(X).argmax(1)]


# --------------------------------------------------------------------------- VAE
class VAE(TransformerMixin, _ZooEstimator):
    """A variational autoencoder as a scikit-learn transformer (as ``PCA``, but non-linear).

    Wraps :class:`zoo.models.VAE`. ``transform`` gives each row's code (the encoder's posterior
    mean), ``inverse_transform`` decodes codes into mean rows, ``sample`` draws new rows and
    ``score_samples`` estimates log p(x) by importance sampling (IWAE).

    Parameters
    ----------
    n_components : int
        The dimension of the code (``latent_dim``).
    likelihood : {"gaussian", "bernoulli", "continuous_bernoulli"}
        Per-feature likelihood: "gaussian" for any real data (the default here), "bernoulli"
        for values in [0, 1] (binary images).
    hidden_sizes : tuple of int
        Hidden layer sizes of the encoder (the decoder uses them reversed).
    method : str or zoo method object
        "svi" (the default: the amortized encoder as guide, full-batch Adam), or e.g.
        ``zoo.SVI(batch_size=100, num_epochs=20)``.
    random_state : int, numpy RandomState or None
        Seeds the fit and the networks' initial weights.
    model_options : dict, optional
        Further arguments of :class:`zoo.models.VAE` (``architecture``).

    Attributes
    ----------
    fit_ : zoo.Fit
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from zoo.sklearn import VAE
    >>> X = np.random.RandomState(0).normal(size=(40, 4))
    >>> vae = VAE(n_components=2, hidden_sizes=(8,), method="svi:num_steps=50,jit=False").fit(X)
    >>> vae.transform(X).shape, vae.inverse_transform(vae.transform(X)).shape
    ((40, 2), (40, 4))
    """

    def __init__(
        self,
        *,
        n_components: int = 2,
        likelihood: str = "gaussian",
        hidden_sizes: tuple[int, ...] = (64,),
        method: Any = "svi",
        random_state: Any = None,
        model_options: dict[str, Any] | None = None,
    ) -> None:
        self.n_components = n_components
        self.likelihood = likelihood
        self.hidden_sizes = hidden_sizes
        self.method = method
        self.random_state = random_state
        self.model_options = model_options

    def fit(self, X: Any, y: Any = None) -> "VAE":
        """Fit the encoder and decoder to ``X``, shape (n_samples, n_features); ``y`` is ignored."""
        latent_dim = _check_count(self.n_components, "n_components")
        likelihood = _check_choice(self.likelihood, "likelihood", ("gaussian", "bernoulli", "continuous_bernoulli"))
        if isinstance(self.hidden_sizes, (str, bytes)) or not isinstance(self.hidden_sizes, Sequence):
            raise TypeError(f"hidden_sizes must be a tuple of layer sizes, got {self.hidden_sizes!r}")
        hidden = [_check_count(size, "hidden_sizes") for size in self.hidden_sizes]
        options, method = self._options_and_method()
        X = self._validate(X, reset=True)
        # the networks' initial weights from the method's seed (random_state's, when given)
        model = ZooVAE(latent_dim, likelihood=likelihood, hidden_sizes=hidden, init_seed=getattr(method, "seed", 0), **options)
        self._fit(model, self._dataset(X), method)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The code of each row: the encoder's posterior mean, ndarray, shape (n_samples, n_components)."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return _as_numpy(encode(self.fit_, torch.as_tensor(np.array(X, dtype=np.float32)))[0])

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Mean rows E[x | z] of codes ``X``, shape (n_samples, n_components): (n_samples, n_features)."""
        check_is_fitted(self)
        codes = check_array(X, dtype=FLOAT_TYPES)
        if codes.shape[1] != self.n_components:
            raise ValueError(f"X must have n_components={self.n_components} columns (codes), got {codes.shape[1]}")
        return _as_numpy(decode(self.fit_, torch.as_tensor(np.array(codes, dtype=np.float32))))

    def score_samples(self, X: Any, num_particles: int = 100) -> np.ndarray:
        """Importance-weighted (IWAE) estimate of log p(x) per row, ndarray, shape (n_samples,).

        A lower bound in expectation that tightens as ``num_particles`` grows; seeded.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return _as_numpy(self.fit_.log_prob(self._dataset(X), num_particles=_check_count(num_particles, "num_particles")))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean of :meth:`score_samples`: nats per row (higher is better)."""
        return float(self.score_samples(X).mean())

    def sample(self, n_samples: int = 1) -> np.ndarray:
        """New rows: codes from the prior, rows from the decoder's likelihood: shape (n_samples, n_features)."""
        check_is_fitted(self)
        return _as_numpy(self.fit_.sample(_check_count(n_samples, "n_samples"), seed=_seed(self.random_state) or 0))
