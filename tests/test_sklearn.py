"""zoo.sklearn: scikit-learn's own estimator checks, parity with scikit-learn and hmmlearn, and
the habits (pipelines, clone, grid search, NotFittedError, refusals).

The estimator checks fit many times on tiny data, so they run with tiny fit budgets (five
L-BFGS steps): they test the interface, not the quality of the fit. The parity tests fit for
real (or set the parameters of both libraries equal) and compare with the tolerances of
tests/test_mixture.py, tests/test_hmm.py and tests/test_naive_bayes.py. The docstring examples of
zoo.sklearn run in tests/test_docstring_examples.py.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import scipy.sparse
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import zoo
import zoo.sklearn
from zoo.datasets import simulate
from zoo.sklearn import VAE, FactorAnalysis, GaussianMixture, HiddenMarkovModel, NaiveBayes

hmmlearn = pytest.importorskip("hmmlearn.hmm")

#: Five L-BFGS steps from the data-driven start, one posterior draw (the point): enough to
#: exercise the interface in scikit-learn's checks.
QUICK = "svi:delta:num_steps=5,num_posterior_samples=1"


class HiddenMarkovModelWithTarget(HiddenMarkovModel):
    """The HMM behind the signatures scikit-learn's checks assume (``fit(X, y)``, y ignored).

    Checked beside the real estimator to show that the HMM fails those checks only because its
    second argument is hmmlearn's ``lengths``: behind ``fit(X, y=None, lengths=None)`` it passes
    all of them but the two about rows being independent.
    """

    def fit(self, X: Any, y: Any = None, lengths: Any = None) -> "HiddenMarkovModelWithTarget":
        return super().fit(X, lengths)

    def score(self, X: Any, y: Any = None, lengths: Any = None) -> float:
        return super().score(X, lengths)


ROWS_ARE_TIME_STEPS = (
    "the rows of X are the time steps of one sequence, not independent samples: the posterior "
    "of a step depends on its neighbours, so answers on a subset or a reordering of the rows "
    "differ by design"
)
SECOND_ARGUMENT_IS_LENGTHS = (
    "hmmlearn's signature fit(X, lengths) / score(X, lengths) is kept: the checks pass a target y "
    "as the second argument, which the HMM reads as sequence lengths and refuses (they do not "
    "sum to the number of rows); HiddenMarkovModelWithTarget passes these checks"
)
MONTE_CARLO_SCORE = (
    "score_samples is an importance-sampled (IWAE) estimate of log p(x) whose random codes are "
    "drawn for the batch given, so a subset or a reordering of the rows draws other codes"
)

#: Checks that the real HMM fails because its second argument is ``lengths``.
LENGTHS_CHECKS = (
    "check_fit_score_takes_y",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
    "check_estimators_dtypes",
    "check_dtype_object",
    "check_pipeline_consistency",
    "check_estimators_nan_inf",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1feature",
    "check_dict_unchanged",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_fit2d_predict1d",
)


def expected_failed_checks(estimator: Any) -> dict[str, str]:
    if isinstance(estimator, HiddenMarkovModelWithTarget):
        return {
            "check_methods_subset_invariance": ROWS_ARE_TIME_STEPS,
            "check_methods_sample_order_invariance": ROWS_ARE_TIME_STEPS,
        }
    if isinstance(estimator, HiddenMarkovModel):
        failures = {name: SECOND_ARGUMENT_IS_LENGTHS for name in LENGTHS_CHECKS}
        failures["check_methods_subset_invariance"] = ROWS_ARE_TIME_STEPS
        failures["check_methods_sample_order_invariance"] = ROWS_ARE_TIME_STEPS
        return failures
    if isinstance(estimator, VAE):
        return {
            "check_methods_subset_invariance": MONTE_CARLO_SCORE,
            "check_methods_sample_order_invariance": MONTE_CARLO_SCORE,
        }
    return {}


ESTIMATORS = [
    GaussianMixture(method=QUICK),
    GaussianMixture(covariance_type="diag", method=QUICK),
    HiddenMarkovModel(method=QUICK),
    HiddenMarkovModelWithTarget(method=QUICK),
    NaiveBayes(),
    FactorAnalysis(method=QUICK),
    FactorAnalysis(noise="isotropic", method=QUICK),
    VAE(hidden_sizes=(4,), method="svi:num_steps=5,jit=False,num_threads=1"),
]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks, xfail_strict=True)
def test_scikit_learn_estimator_checks(estimator: Any, check: Any) -> None:
    check(estimator)


# --------------------------------------------------------------------------- parity
def test_gaussian_mixture_matches_scikit_learn_on_held_out_data() -> None:
    """As tests/test_mixture.py: the MAP fit within 0.002 nats per point of scikit-learn's EM,
    and with the same parameters, score_samples and predict equal scikit-learn's."""
    data = simulate.gaussian_mixture(num_data=3000, num_components=3, num_features=2, seed=0)
    X = data.x.double().numpy()
    train, test = X[:2500], X[2500:]
    reference = SklearnGaussianMixture(3, covariance_type="full", random_state=0, tol=1e-6, max_iter=500).fit(train)
    ours = GaussianMixture(n_components=3).fit(train)
    assert abs(ours.score(test) - reference.score(test)) < 0.002
    # the same parameters in scikit-learn give the same densities and labels
    same = SklearnGaussianMixture(3, covariance_type="full")
    same.weights_, same.means_, same.covariances_ = ours.weights_, ours.means_, ours.covariances_
    same.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(ours.covariances_))
    np.testing.assert_allclose(ours.score_samples(test), same.score_samples(test), rtol=1e-5)
    np.testing.assert_array_equal(ours.predict(test), same.predict(test))
    np.testing.assert_allclose(ours.predict_proba(test), same.predict_proba(test), atol=1e-6)
    assert ours.bic(test) == pytest.approx(same.bic(test), rel=1e-6)
    assert ours.aic(test) == pytest.approx(same.aic(test), rel=1e-6)


def test_diagonal_mixture_covariances_are_scikit_learns_variances() -> None:
    X = simulate.gaussian_mixture(num_data=400, num_components=2, num_features=3, seed=1).x.double().numpy()
    ours = GaussianMixture(n_components=2, covariance_type="diag").fit(X)
    same = SklearnGaussianMixture(2, covariance_type="diag")
    same.weights_, same.means_, same.covariances_ = ours.weights_, ours.means_, ours.covariances_
    same.precisions_cholesky_ = 1 / np.sqrt(ours.covariances_)
    assert ours.covariances_.shape == (2, 3)
    np.testing.assert_allclose(ours.score_samples(X), same.score_samples(X), rtol=1e-5)
    assert ours.bic(X) == pytest.approx(same.bic(X), rel=1e-6)


def hmmlearn_twin(ours: HiddenMarkovModel) -> Any:
    """hmmlearn's GaussianHMM holding our fitted parameters."""
    twin = hmmlearn.GaussianHMM(ours.n_components, covariance_type=ours.covariance_type, init_params="", params="")
    twin.startprob_, twin.transmat_, twin.means_ = ours.startprob_, ours.transmat_, ours.means_
    diagonal = ours.covariance_type == "diag"
    twin.covars_ = np.diagonal(ours.covars_, axis1=1, axis2=2) if diagonal else ours.covars_
    return twin


def hmm_sequences() -> tuple[np.ndarray, np.ndarray]:
    data = simulate.hidden_markov(num_sequences=8, length=60, num_states=3, num_features=2, seed=3)
    X = data.x.reshape(-1, 2).double().numpy()
    return X, np.full(8, 60)


def test_hidden_markov_model_equals_hmmlearn_with_the_same_parameters() -> None:
    """hmmlearn's score, decode (both algorithms), predict and predict_proba and ours agree,
    on several sequences, to the 1e-6 of tests/test_hmm.py."""
    X, lengths = hmm_sequences()
    ours = HiddenMarkovModel(n_components=3).fit(X, lengths)
    twin = hmmlearn_twin(ours)
    assert ours.score(X, lengths) == pytest.approx(twin.score(X, lengths), rel=1e-6)
    viterbi_log_prob, path = ours.decode(X, lengths)
    expected_log_prob, expected_path = twin.decode(X, lengths, algorithm="viterbi")
    np.testing.assert_array_equal(path, expected_path)
    assert viterbi_log_prob == pytest.approx(expected_log_prob, rel=1e-6)
    np.testing.assert_array_equal(ours.predict(X, lengths), twin.predict(X, lengths))
    np.testing.assert_allclose(ours.predict_proba(X, lengths), twin.predict_proba(X, lengths), atol=1e-6)
    log_prob, posteriors = ours.score_samples(X, lengths)
    assert log_prob == pytest.approx(twin.score_samples(X, lengths)[0], rel=1e-6)
    map_log_prob, map_path = ours.decode(X, lengths, algorithm="map")
    expected_map = twin.decode(X, lengths, algorithm="map")
    np.testing.assert_array_equal(map_path, expected_map[1])
    # hmmlearn documents this number as a log probability but returns the sum of the largest
    # posteriors themselves (0.3.x); ours is what its documentation says: the sum of their logs
    assert map_log_prob == pytest.approx(np.log(twin.predict_proba(X, lengths).max(1)).sum(), rel=1e-6, abs=1e-6)
    assert ours.bic(X, lengths) == pytest.approx(twin.bic(X, lengths), rel=1e-6)
    assert ours.aic(X, lengths) == pytest.approx(twin.aic(X, lengths), rel=1e-6)


def test_hidden_markov_model_fit_explains_data_as_well_as_hmmlearn_em() -> None:
    X, lengths = hmm_sequences()
    em = hmmlearn.GaussianHMM(3, covariance_type="diag", n_iter=200, tol=1e-8, random_state=0).fit(X, lengths)
    ours = HiddenMarkovModel(n_components=3).fit(X, lengths)
    # per time step, within 0.002 nats of EM's optimum (the MAP's weak priors move it a little)
    assert ours.score(X, lengths) / len(X) > em.score(X, lengths) / len(X) - 0.002


def test_hidden_markov_model_other_emissions_match_hmmlearn() -> None:
    data = simulate.hidden_markov(num_sequences=6, length=40, num_states=2, emission="poisson", num_features=1, seed=0)
    X = data.x.reshape(-1, 1).double().numpy()
    lengths = np.full(6, 40)
    ours = HiddenMarkovModel(n_components=2, emission="poisson").fit(X, lengths)
    twin = hmmlearn.PoissonHMM(2, init_params="", params="")
    twin.startprob_, twin.transmat_, twin.lambdas_ = ours.startprob_, ours.transmat_, ours.lambdas_
    assert ours.score(X, lengths) == pytest.approx(twin.score(X.astype(np.int64), lengths), rel=1e-6)
    log_prob, path = ours.decode(X, lengths)
    expected = twin.decode(X.astype(np.int64), lengths)
    np.testing.assert_array_equal(path, expected[1])
    assert log_prob == pytest.approx(expected[0], rel=1e-6)

    data = simulate.hidden_markov(num_sequences=6, length=40, num_states=2, emission="categorical", num_features=3, seed=0)
    X = data.x.reshape(-1, 1).double().numpy()
    ours = HiddenMarkovModel(n_components=2, emission="categorical").fit(X, lengths)
    twin = hmmlearn.CategoricalHMM(2, n_features=ours.emissionprob_.shape[1], init_params="", params="")
    twin.startprob_, twin.transmat_, twin.emissionprob_ = ours.startprob_, ours.transmat_, ours.emissionprob_
    assert ours.score(X, lengths) == pytest.approx(twin.score(X.astype(np.int64), lengths), rel=1e-6)
    log_prob, path = ours.decode(X, lengths)
    expected = twin.decode(X.astype(np.int64), lengths)
    # Discrete observations make exact ties between paths (runs of one symbol under an
    # alternating chain): both libraries find a path of the same, largest, joint probability.
    assert log_prob == pytest.approx(expected[0], rel=1e-6)
    assert np.mean(path == expected[1]) > 0.85


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer"])
def test_naive_bayes_predictions_equal_gaussian_nb(name: str) -> None:
    """The settings of tests/test_naive_bayes.py (near-flat Normal-Gamma prior, scikit-learn
    given zoo's class weights): the point estimate's predictions and probabilities are
    GaussianNB's."""
    X, y = (value.numpy() for value in (zoo.datasets.load(name).x, zoo.datasets.load(name).y))
    X = X.astype(np.float64)
    ours = NaiveBayes(posterior_draws=None, model_options={"loc_count": 1e-8, "precision_shape": 1e-8}).fit(X, y)
    reference = GaussianNB(priors=ours.class_prior_, var_smoothing=1e-12).fit(X, y)
    np.testing.assert_array_equal(ours.predict(X), reference.predict(X))
    assert ours.score(X, y) == pytest.approx(reference.score(X, y))
    if name != "breast_cancer":
        # breast_cancer's 30 columns reach 4000 (areas): zoo's float32 sufficient statistics
        # move the variances by ~1e-4 relative (tests/test_naive_bayes.py's tolerance), which
        # moves the probabilities of the rows nearest the boundary by up to a few percent
        np.testing.assert_allclose(ours.predict_proba(X), reference.predict_proba(X), atol=1e-4)


def test_naive_bayes_keeps_any_labels_and_averages_over_the_posterior() -> None:
    X, y = (value.numpy() for value in (zoo.datasets.load("iris").x, zoo.datasets.load("iris").y))
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    classifier = NaiveBayes().fit(X, names)
    assert list(classifier.classes_) == ["setosa", "versicolor", "virginica"]
    assert classifier.score(X, names) > 0.93
    probabilities = classifier.predict_proba(X)
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(classifier.predict(X), classifier.classes_[probabilities.argmax(1)])
    np.testing.assert_allclose(classifier.predict_log_proba(X), np.log(probabilities))
    # the posterior predictive is the average over draws, not the plug-in point estimate
    point = clone(classifier).set_params(posterior_draws=None).fit(X, names).predict_proba(X)
    assert 0 < np.abs(point - probabilities).max() < 0.2
    assert cross_val_score(NaiveBayes(), X, y, cv=3).mean() > 0.9


# --------------------------------------------------------------------------- the habits
def test_pipeline_with_a_scaler_and_grid_search_over_n_components() -> None:
    """GridSearchCV picks the number of components by held-out log-likelihood (score)."""
    data = simulate.gaussian_mixture(num_data=300, num_components=3, num_features=2, seed=4)
    X = data.x.double().numpy() * np.array([100.0, 0.01])  # scales the scaler must undo
    pipeline = Pipeline([("scale", StandardScaler()), ("mixture", GaussianMixture())])
    search = GridSearchCV(pipeline, {"mixture__n_components": [1, 2, 3, 4]}, cv=3).fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_["mixture__n_components"] in (3, 4)
    assert scores[2] > scores[1] > scores[0]  # held-out log-likelihood per point climbs to 3
    fitted = search.best_estimator_
    assert fitted.score_samples(X).shape == (300,)
    # the scaler ran first: the mixture saw standardised data
    np.testing.assert_allclose(fitted.named_steps["mixture"].fit_.train.x.double().numpy().std(0), 1, rtol=1e-3)


def test_clone_get_and_set_params_and_pickle() -> None:
    X = np.random.RandomState(0).normal(size=(60, 2))
    estimator = GaussianMixture(n_components=2, method="svi:mvn:num_steps=50,num_posterior_samples=100", random_state=3)
    assert estimator.get_params()["method"] == "svi:mvn:num_steps=50,num_posterior_samples=100"
    copy = clone(estimator).set_params(n_components=1)
    assert copy.n_components == 1 and estimator.n_components == 2
    fitted = estimator.fit(X)
    assert fitted.fit_.method.seed == 3 and fitted.fit_.method_name == "svi:mvn"
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.score_samples(X), fitted.score_samples(X))
    idata = fitted.fit_.to_arviz()
    assert idata.posterior["locs"].shape == (1, 100, 2, 2)


def test_methods_and_information_criteria() -> None:
    X = simulate.gaussian_mixture(num_data=200, num_components=2, num_features=2, seed=5).x.double().numpy()
    map_fit = GaussianMixture(n_components=2).fit(X)
    assert map_fit.fit_.method_name == "svi:delta"
    assert np.isfinite(map_fit.bic(X))
    nuts = GaussianMixture(n_components=2, method="nuts:num_warmup=15,num_samples=15,num_chains=1").fit(X[:100])
    assert nuts.fit_.method_name == "nuts" and nuts.fit_.num_draws == 15
    with pytest.raises(ValueError, match=r"bic needs a point estimate \(method='map'\).*nuts.*posterior"):
        nuts.bic(X)
    with pytest.raises(ValueError, match="aic needs a point estimate"):
        GaussianMixture(n_components=2, method=zoo.SVI(guide="normal", num_steps=20, progress=False)).fit(X).aic(X)
    # the log predictive density of a posterior fit averages densities over the draws
    per_draw = nuts.fit_.log_likelihood(X).double().reshape(15, -1)
    expected = (per_draw.logsumexp(0) - np.log(15)).numpy()
    np.testing.assert_allclose(nuts.score_samples(X), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "estimator",
    [GaussianMixture(), HiddenMarkovModel(), NaiveBayes(), VAE()],
    ids=["GaussianMixture", "HiddenMarkovModel", "NaiveBayes", "VAE"],
)
def test_not_fitted_error_before_fit(estimator: Any) -> None:
    X = np.zeros((3, 2))
    for name in ("predict", "predict_proba", "score_samples", "transform", "sample", "decode", "bic"):
        method = getattr(estimator, name, None)
        if method is None:
            continue
        with pytest.raises(NotFittedError):
            method(X) if name != "sample" else method(2)


@pytest.mark.parametrize(
    ("estimator", "X", "message"),
    [
        (GaussianMixture(), np.array([[0.0, np.nan], [1.0, 2.0]]), "Input X contains NaN"),
        (GaussianMixture(), np.zeros(5), "Expected a 2-dimensional container|Expected 2D array"),
        (GaussianMixture(), scipy.sparse.csr_matrix(np.eye(3)), "Sparse data was passed"),
        (GaussianMixture(n_components=4), np.eye(3), r"n_components=4 must be at most the number of samples \(3\)"),
        (GaussianMixture(n_components=0), np.eye(3), "n_components must be an integer >= 1, got 0"),
        (GaussianMixture(covariance_type="tied"), np.eye(3), "covariance_type must be one of 'full', 'diag', got 'tied'"),
        (GaussianMixture(method="svi:num_stepz=3"), np.eye(3), "method must be 'map', a string such as 'svi:mvn'.*no field 'num_stepz'"),
        (GaussianMixture(method="svi:nonsense"), np.eye(3), "unknown guide 'nonsense' for GaussianMixture"),
        (GaussianMixture(model_options=[1]), np.eye(3), "model_options must be a dict"),
        (HiddenMarkovModel(n_components=2), np.eye(3), None),
        (VAE(hidden_sizes="64"), np.eye(3), "hidden_sizes must be a tuple of layer sizes"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_it(estimator: Any, X: Any, message: str | None) -> None:
    if message is None:  # the HMM's lengths
        with pytest.raises(ValueError, match=r"lengths must be positive and sum to the number of rows of X \(3\)"):
            estimator.fit(X, lengths=[1, 1])
        return
    with pytest.raises((ValueError, TypeError), match=message):
        estimator.fit(X) if not isinstance(estimator, NaiveBayes) else estimator.fit(X, [0, 1, 0])


def test_hidden_markov_model_sample_and_fitted_attributes() -> None:
    X, lengths = hmm_sequences()
    hmm = HiddenMarkovModel(n_components=3, covariance_type="full", random_state=1).fit(X, lengths)
    assert hmm.startprob_.shape == (3,) and hmm.transmat_.shape == (3, 3) and hmm.covars_.shape == (3, 2, 2)
    np.testing.assert_allclose(hmm.transmat_.sum(1), 1, rtol=1e-5)
    sequence, states = hmm.sample(50)
    assert sequence.shape == (50, 2) and states.shape == (50,) and states.dtype == np.int64
    again, _ = hmm.sample(50)
    np.testing.assert_array_equal(sequence, again)  # seeded by random_state
    # each sampled step lies nearest the mean of the state drawn for it, mostly
    nearest = np.linalg.norm(sequence[:, None] - hmm.means_[None], axis=-1).argmin(1)
    assert np.mean(nearest == states) > 0.8


def test_gaussian_mixture_sample_and_fit_predict() -> None:
    X = simulate.gaussian_mixture(num_data=300, num_components=2, num_features=2, seed=6).x.double().numpy()
    mixture = GaussianMixture(n_components=2)
    labels = mixture.fit_predict(X)
    np.testing.assert_array_equal(labels, mixture.predict(X))
    samples, components = mixture.sample(400)
    assert samples.shape == (400, 2) and components.shape == (400,)
    # the sampled components' frequencies follow the weights
    np.testing.assert_allclose(np.bincount(components, minlength=2) / 400, mixture.weights_, atol=0.08)


def test_vae_transform_inverse_transform_sample_and_score() -> None:
    X = zoo.datasets.load("digits").x.numpy()[:150] / 16.0
    vae = VAE(n_components=2, likelihood="bernoulli", hidden_sizes=(32,), method="svi:num_steps=150,num_threads=1", random_state=0).fit(X)
    codes = vae.transform(X)
    assert codes.shape == (150, 2) and codes.dtype == np.float64
    reconstruction = vae.inverse_transform(codes)
    assert reconstruction.shape == (150, 64) and ((0 <= reconstruction) & (reconstruction <= 1)).all()
    # reconstructions are closer to their own rows than to the mean row
    assert np.mean((reconstruction - X) ** 2) < np.mean((X.mean(0) - X) ** 2)
    assert vae.sample(5).shape == (5, 64)
    untrained = VAE(n_components=2, likelihood="bernoulli", hidden_sizes=(32,), method="svi:num_steps=1,jit=False,num_threads=1")
    assert vae.score(X) > untrained.fit(X).score(X) + 5  # nats per row
    with pytest.raises(ValueError, match="n_components=2 columns"):
        vae.inverse_transform(np.zeros((3, 5)))


def test_factor_analysis_matches_scikit_learn_pca_and_grid_searches_its_dimension() -> None:
    """Probabilistic PCA by MAP through the estimator: held-out score within 0.002 nats per point
    of scikit-learn's closed-form PPCA (``PCA(n).score``; the bound of tests/test_factor_analysis.py,
    the priors' O(1/N) pull), and GridSearchCV chooses n_components by that score."""
    from sklearn.decomposition import PCA
    from sklearn.model_selection import GridSearchCV

    x = zoo.datasets.load("wine").x
    split = zoo.Dataset((x - x.mean(0)) / x.std(0)).split(test_fraction=0.25, seed=0)
    train, test = (part.x.double().numpy() for part in split)
    ours = FactorAnalysis(n_components=3, noise="isotropic").fit(train)
    assert abs(ours.score(test) - PCA(3).fit(train).score(test)) < 2e-3
    assert ours.transform(test).shape == (len(test), 3)
    search = GridSearchCV(FactorAnalysis(noise="isotropic"), {"n_components": [1, 2]}, cv=2).fit(train)
    assert search.best_params_["n_components"] in (1, 2) and np.isfinite(search.best_score_)
