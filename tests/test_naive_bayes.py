"""Naive Bayes: parity with scikit-learn, the exact posterior against NUTS and SVI, semi-supervised
learning, class-conditional generation and refusals.

Parity settings (the mapping between the two parameterisations):

* The point estimate zoo predicts with (``fit.point``) is Exact's **posterior mean**.
* MultinomialNB / BernoulliNB with Laplace smoothing ``alpha = 1`` equal the posterior mean under
  ``concentration = 1``: Dirichlet(1 + N_cj) has mean (N_cj + 1) / (N_c + D), and Beta(1 + s,
  1 + n - s) has mean (s + 1) / (n + 2), scikit-learn's smoothed estimates exactly.
* Class priors: scikit-learn's empirical n_c / N is the Dirichlet posterior mean only in the limit
  class_concentration -> 0, so scikit-learn is given zoo's posterior-mean weights as ``class_prior``
  (``priors`` for GaussianNB).
* GaussianNB uses the sample means and ML variances SS / n (plus var_smoothing * max variance).
  The Normal-Gamma posterior mean gives loc = (k0 m0 + n xbar) / (k0 + n) and 1 / E[precision] =
  (b0 + SS / 2 + ...) / (a0 + n / 2), which tend to xbar and SS / n as k0, a0 (and b0 = a0 s^2)
  -> 0: zoo runs with loc_count = precision_shape = 1e-8 and scikit-learn with var_smoothing =
  1e-12, so both use the same means and variances to about 1e-8 relative.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
import zoo.infer.runtime
from zoo.cli import main
from zoo.datasets import UNLABELED, simulate
from zoo.models.naive_bayes import NaiveBayes, predict, predict_proba

sklearn_nb = pytest.importorskip("sklearn.naive_bayes")


def _numpy64(tensor: torch.Tensor) -> np.ndarray:
    return tensor.double().numpy()


# ---------------------------------------------------------------------------- scikit-learn parity
@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer"])
def test_gaussian_predictions_equal_gaussian_nb(name: str) -> None:
    data = zoo.datasets.load(name)
    train, test = data.split(test_fraction=0.3, seed=0)
    num_classes = int(data.y.max()) + 1
    model = NaiveBayes(num_classes, "gaussian", loc_count=1e-8, precision_shape=1e-8)
    fit = zoo.fit(model, train, zoo.Exact(num_posterior_samples=10))
    reference = sklearn_nb.GaussianNB(priors=_numpy64(fit.point["weights"]), var_smoothing=1e-12)
    reference.fit(_numpy64(train.x), train.y.numpy())
    np.testing.assert_array_equal(predict(fit, test).numpy(), reference.predict(_numpy64(test.x)))
    np.testing.assert_allclose(fit.point["loc"].numpy(), reference.theta_, rtol=1e-5)
    np.testing.assert_allclose(1 / fit.point["precision"].numpy(), reference.var_, rtol=1e-4, atol=1e-6)


def test_multinomial_predictions_equal_multinomial_nb() -> None:
    data = zoo.datasets.load("digits")
    train, test = data.split(test_fraction=0.3, seed=0)
    fit = zoo.fit(NaiveBayes(10, "multinomial"), train, zoo.Exact(num_posterior_samples=10))
    reference = sklearn_nb.MultinomialNB(alpha=1.0, class_prior=_numpy64(fit.point["weights"]))
    reference.fit(train.x.numpy(), train.y.numpy())
    np.testing.assert_array_equal(predict(fit, test).numpy(), reference.predict(test.x.numpy()))
    np.testing.assert_allclose(
        fit.point["multinomial_probs"].log().numpy(), reference.feature_log_prob_, rtol=1e-5
    )


def test_bernoulli_predictions_equal_bernoulli_nb() -> None:
    data = zoo.datasets.load("digits", binarize=True)
    train, test = data.split(test_fraction=0.3, seed=0)
    fit = zoo.fit(NaiveBayes(10, "bernoulli"), train, zoo.Exact(num_posterior_samples=10))
    reference = sklearn_nb.BernoulliNB(alpha=1.0, binarize=None, class_prior=_numpy64(fit.point["weights"]))
    reference.fit(train.x.numpy(), train.y.numpy())
    np.testing.assert_array_equal(predict(fit, test).numpy(), reference.predict(test.x.numpy()))
    np.testing.assert_allclose(
        fit.point["bernoulli_probs"].log().numpy(), reference.feature_log_prob_, rtol=1e-5
    )


# ---------------------------------------------------------------------------- what a fit answers
def test_predict_is_fit_discrete_and_proba_is_fit_marginals() -> None:
    data = zoo.datasets.load("iris")
    fit = zoo.fit(NaiveBayes(3), data, zoo.Exact(num_posterior_samples=50))
    features = zoo.Dataset(data.x)
    assert torch.equal(predict(fit, data), fit.discrete(features))
    probs = predict_proba(fit, data)
    assert probs.shape == (150, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(150))
    torch.testing.assert_close(probs, fit.marginals(features))
    assert float((probs.argmax(-1) == data.y).float().mean()) > 0.9
    # with labels given, the discrete posterior is the label itself
    assert torch.equal(fit.discrete(data), data.y)


def test_log_prob_is_joint_for_labeled_rows_and_marginal_for_unlabeled() -> None:
    data = zoo.datasets.load("iris")
    fit = zoo.fit(NaiveBayes(3), data, zoo.Exact(num_posterior_samples=20))
    per_draw_joint = fit.log_likelihood(data).reshape(20, -1)
    unlabeled = zoo.Dataset(data.x, y=torch.full((150,), UNLABELED))
    per_draw_marginal = fit.log_likelihood(unlabeled).reshape(20, -1)
    assert torch.equal(per_draw_marginal, fit.log_likelihood(zoo.Dataset(data.x)).reshape(20, -1))
    flat = {name: value.reshape((-1,) + value.shape[2:]) for name, value in fit.draws.items()}
    joint = fit.model.class_log_joint(flat, data.x)
    torch.testing.assert_close(per_draw_marginal, joint.logsumexp(-1))
    torch.testing.assert_close(per_draw_joint, joint.gather(-1, data.y.expand(20, -1)[..., None])[..., 0])
    assert (per_draw_joint <= per_draw_marginal + 1e-5).all()


def test_class_conditional_samples_have_the_class_means() -> None:
    data = simulate.naive_bayes(num_data=600, num_classes=3, num_features=3, features="gaussian", seed=1)
    fit = zoo.fit(NaiveBayes(3), data, zoo.Exact())
    num_samples = 4000
    for c in range(3):
        samples = fit.sample(num_samples, y=c, seed=c)
        assert samples.shape == (num_samples, 3)
        # predictive mean = E[loc_c]; sd of the sample mean ~ predictive sd / sqrt(n)
        expected = fit.posterior_mean()["loc"][c]
        sd = (1 / fit.posterior_mean()["precision"][c]).sqrt()
        assert ((samples.mean(0) - expected).abs() < 4 * sd / math.sqrt(num_samples) + 1e-3).all()
        # and they match the data of that class
        rows = data.x[data.y == c]
        assert ((samples.mean(0) - rows.mean(0)).abs() < 4 * rows.std(0) / math.sqrt(len(rows))).all()
    unconditional = fit.sample(num_samples, seed=0)
    torch.testing.assert_close(unconditional.mean(0), data.x.mean(0), atol=0.15, rtol=0)


def test_class_conditional_bernoulli_and_multinomial_samples() -> None:
    data = zoo.datasets.load("digits", binarize=True)
    fit = zoo.fit(NaiveBayes(10, "bernoulli"), data, zoo.Exact())
    samples = fit.sample(3000, y=3, seed=0)
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    expected = fit.posterior_mean()["bernoulli_probs"][3]
    assert ((samples.mean(0) - expected).abs() < 4 * (0.25 / 3000) ** 0.5 + 1e-3).all()
    counts = zoo.datasets.load("digits")
    fit = zoo.fit(NaiveBayes(10, "multinomial"), counts, zoo.Exact())
    samples = fit.sample(500, y=7, seed=0)
    assert (samples.sum(-1) == fit.model.total_count).all()
    expected = fit.posterior_mean()["multinomial_probs"][7] * fit.model.total_count
    sd = (expected * (1 - expected / fit.model.total_count)).sqrt()
    assert ((samples.mean(0) - expected).abs() < 4 * sd / math.sqrt(500) + 1e-3).all()


# ---------------------------------------------------------------------------- exact vs the rest
def _small() -> zoo.Dataset:
    return simulate.naive_bayes(num_data=120, num_classes=2, num_features=2, features="gaussian", seed=3)


@pytest.mark.slow
def test_exact_moments_match_a_long_nuts_run() -> None:
    data = _small()
    model = NaiveBayes(2)
    exact = zoo.fit(model, data, zoo.Exact(num_posterior_samples=20000))
    nuts = zoo.fit(model, data, zoo.NUTS(num_warmup=300, num_samples=1000, num_chains=1, progress=False))
    summary = nuts.summary()
    for site in ("weights", "loc", "precision"):
        mean, sd = exact.posterior_mean()[site], exact.draws[site].std((0, 1))
        nuts_mean, nuts_sd = nuts.posterior_mean()[site], nuts.draws[site].std((0, 1))
        ess = float(summary.filter(like=site, axis=0)["ess_bulk"].min())
        # Monte Carlo standard error of the NUTS mean is sd / sqrt(ESS): allow 4 of them.
        assert ((nuts_mean - mean).abs() < 4 * sd / math.sqrt(ess)).all(), site
        assert ((nuts_sd / sd - 1).abs() < 0.25).all(), site


def test_mvn_guide_converges_to_the_exact_posterior_means() -> None:
    data = _small()
    model = NaiveBayes(2)
    exact = zoo.fit(model, data, zoo.Exact(num_posterior_samples=20000))
    svi = zoo.fit(
        model,
        data,
        zoo.SVI(
            guide="mvn", num_steps=1500, learning_rate=0.005, num_particles=32, tolerance=0,
            num_posterior_samples=4000, progress=False,
        ),
    )
    for site in ("weights", "loc", "precision"):
        mean, sd = exact.posterior_mean()[site], exact.draws[site].std((0, 1))
        assert ((svi.posterior_mean()[site] - mean).abs() < 0.2 * sd).all(), site


def test_semi_supervised_beats_labeled_only() -> None:
    data = simulate.naive_bayes(num_data=700, num_classes=3, num_features=4, features="gaussian", seed=2)
    train, test = data.split(test_fraction=0.3, seed=0)
    labels = torch.full_like(train.y, UNLABELED)
    for c in range(3):  # two labeled rows per class
        labels[(train.y == c).nonzero()[:2, 0]] = c
    labeled_rows = train.subset((labels >= 0).nonzero()[:, 0])
    semi = zoo.Dataset(train.x, y=labels)
    model = NaiveBayes(3)
    labeled_only = zoo.fit(model, labeled_rows, zoo.Exact())
    both = zoo.fit(model, semi, zoo.SVI(guide="delta", num_steps=300, progress=False))
    accuracy_labeled = float((predict(labeled_only, test) == test.y).float().mean())
    accuracy_semi = float((predict(both, test) == test.y).float().mean())
    assert accuracy_semi > accuracy_labeled + 0.02, (accuracy_semi, accuracy_labeled)
    # the labeled rows keep their labels
    kept = fit_labels = both.discrete(semi)
    assert torch.equal(fit_labels[labels >= 0], labels[labels >= 0]) and kept.shape == labels.shape


# ---------------------------------------------------------------------------- methods, files, CLI
def test_exact_is_a_method_like_the_others(tmp_path: object) -> None:
    data = zoo.datasets.load("wine")
    fit = zoo.fit(NaiveBayes(3), data, zoo.Exact(num_posterior_samples=30, seed=1))
    assert fit.method_name == "exact" and fit.num_chains == 1 and fit.num_draws == 30
    again = zoo.fit(NaiveBayes(3), data, zoo.Exact(num_posterior_samples=30, seed=1))
    assert all(torch.equal(fit.draws[site], again.draws[site]) for site in fit.draws)
    loaded = zoo.load(fit.save(tmp_path / "nb.zoo"))  # type: ignore[operator]
    assert isinstance(loaded.method, zoo.Exact)
    assert torch.equal(loaded.log_prob(data), fit.log_prob(data))
    assert fit.wall_time < 1.0
    with pytest.raises(ValueError, match="does not support Exact"):
        zoo.fit(zoo.models.GaussianMixture(2), data, zoo.Exact())
    with pytest.raises(ValueError, match="num_posterior_samples"):
        zoo.Exact(num_posterior_samples=0)


def test_cli_fits_naive_bayes_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "naive_bayes", "--dataset", "iris", "--num-classes", "3", "--method", "exact"]) == 0
    assert "exact" in capsys.readouterr().out


def test_mixed_columns_by_name_mapping() -> None:
    data = zoo.datasets.load("iris")
    names = data.feature_names
    model = NaiveBayes(3, features={name: "gaussian" for name in names})
    fit = zoo.fit(model, data, zoo.Exact(num_posterior_samples=5))
    assert fit.model.features == ["gaussian"] * 4


# ---------------------------------------------------------------------------- lazy exact draws
def _labeled_mixed() -> tuple[NaiveBayes, zoo.Dataset]:
    """The mixed-family example (every code path of the model) with every row labeled."""
    model, data = NaiveBayes.example()
    return model, zoo.Dataset(data.x, y=data.y.clamp(min=0))


def test_exact_draws_are_drawn_on_first_use_and_kept() -> None:
    model, data = _labeled_mixed()
    fit = zoo.fit(model, data, zoo.Exact(num_posterior_samples=40, seed=7))
    assert not fit.draws_ready and "first use" in repr(fit)
    # answers from the point estimate do not draw them
    predict(fit, data)
    fit.discrete(data)
    assert not fit.draws_ready
    before = torch.get_rng_state()
    draws = fit.draws
    assert torch.equal(torch.get_rng_state(), before)  # drawn with a private generator
    assert fit.draws_ready and fit.draws is draws  # drawn once, then kept
    assert fit.num_chains == 1 and fit.num_draws == 40
    assert set(draws) == set(fit.point)
    for name, value in draws.items():
        assert value.shape == (1, 40) + fit.point[name].shape, name
    # the same draws an eager sampler seeded the same way gives
    with zoo.infer.runtime.isolated(seed=7):
        eager = fit.model.exact_posterior(data).sample(40)
    assert all(torch.equal(draws[name][0], eager[name]) for name in eager)


def test_same_seed_gives_the_same_draws_whatever_the_order_of_reading() -> None:
    model, data = _labeled_mixed()
    first = zoo.fit(model, data, zoo.Exact(num_posterior_samples=30, seed=3))
    second = zoo.fit(model, data, zoo.Exact(num_posterior_samples=30, seed=3))
    other = zoo.fit(model, data, zoo.Exact(num_posterior_samples=30, seed=4))
    torch.manual_seed(123)  # the global generator's state must not matter
    log_prob = second.log_prob(data)  # reads second's draws first, then uses the RNG
    torch.rand(1000)
    assert all(torch.equal(first.draws[name], second.draws[name]) for name in first.draws)
    assert not all(torch.equal(first.draws[name], other.draws[name]) for name in first.draws)
    assert torch.equal(first.log_prob(data), log_prob)
    # copies of a pending fit stay pending and draw the same
    pending = zoo.fit(model, data, zoo.Exact(num_posterior_samples=30, seed=3))
    copied, replaced = copy.deepcopy(pending), pending.replace(wall_time=0.0)
    assert not copied.draws_ready and not replaced.draws_ready and not pending.draws_ready
    for value in (copied, replaced, pending):
        assert all(torch.equal(value.draws[name], first.draws[name]) for name in first.draws)


def test_a_lazy_fit_round_trips_through_a_file(tmp_path: Path) -> None:
    model, data = _labeled_mixed()
    fit = zoo.fit(model, data, zoo.Exact(num_posterior_samples=25, seed=2))
    loaded = zoo.load(fit.save(tmp_path / "lazy.zoo"))  # saving draws them
    assert loaded.draws_ready and fit.draws_ready
    assert set(loaded.draws) == set(fit.draws)
    assert all(torch.equal(loaded.draws[name], fit.draws[name]) for name in fit.draws)
    assert all(torch.equal(loaded.point[name], fit.point[name]) for name in fit.point)
    assert torch.equal(loaded.log_prob(data), fit.log_prob(data))
    again = zoo.fit(model, data, zoo.Exact(num_posterior_samples=25, seed=2))
    assert all(torch.equal(loaded.draws[name], again.draws[name]) for name in fit.draws)


def test_the_conjugate_update_equals_a_per_class_loop_in_float64() -> None:
    model, data = _labeled_mixed()
    fit = zoo.fit(model, data, zoo.Exact(num_posterior_samples=1))
    prepared = fit.model
    params = prepared.exact_posterior(data).params
    x, y = data.x.double(), data.y
    m0, s0 = torch.tensor(prepared.prior_loc).double(), torch.tensor(prepared.prior_scale).double()
    k0, a0 = prepared.loc_count, prepared.precision_shape
    for c in range(3):
        rows = x[y == c]
        n = len(rows)
        gaussian = rows[:, :2]
        xbar = gaussian.mean(0)
        rate = a0 * s0**2 + ((gaussian - xbar) ** 2).sum(0) / 2 + k0 * n * (xbar - m0) ** 2 / (2 * (k0 + n))
        expected = {
            "loc": (k0 * m0 + gaussian.sum(0)) / (k0 + n),
            "rate": rate,
            "shape": torch.full((2,), a0 + n / 2, dtype=torch.float64),
            "bernoulli_alpha": 1 + rows[:, 2:3].sum(0),
            "bernoulli_beta": 1 + n - rows[:, 2:3].sum(0),
            "categorical_probs_3": 1 + torch.bincount(rows[:, 3].long(), minlength=3).double(),
            "multinomial_probs": 1 + rows[:, 4:].sum(0),
        }
        assert float(params["class_concentration"][c]) == 1 + n
        for name, value in expected.items():
            torch.testing.assert_close(params[name][c].double(), value, rtol=1e-5, atol=1e-5, msg=name)


def test_binary_and_count_checks_are_exact() -> None:
    binary = zoo.datasets.load("digits", binarize=True)
    model = NaiveBayes(10, "bernoulli")
    signed = binary.x.clone()
    signed[signed == 0] = -0.0  # -0.0 == 0: accepted, as before
    model.validate(zoo.Dataset(signed, y=binary.y))
    for bad in (1 - 2**-24, 2**-24, 1e-40, 1 + 2**-23, -1.0, 2.0):
        x = binary.x.clone()
        x[5, 7] = bad
        with pytest.raises(ValueError, match="other than 0 and 1.*bernoulli"):
            model.validate(zoo.Dataset(x, y=binary.y))
    counts = zoo.datasets.load("digits")
    for bad in (1e-30, 3 - 2**-22, -1.0):
        x = counts.x.clone()
        x[5, 7] = bad
        with pytest.raises(ValueError, match="negative or non-integer counts.*multinomial"):
            NaiveBayes(10, "multinomial").validate(zoo.Dataset(x, y=counts.y))


# ---------------------------------------------------------------------------- refusals
def test_bad_inputs_are_refused_naming_the_argument() -> None:
    iris = zoo.datasets.load("iris")
    with pytest.raises(ValueError, match="y holds label 3"):
        zoo.fit(NaiveBayes(3), zoo.Dataset(iris.x, y=iris.y.clone().fill_(3)), zoo.Exact())
    with pytest.raises(ValueError, match="y holds"):
        zoo.Dataset(iris.x, y=torch.full((150,), -2))
    counts = zoo.datasets.load("digits").x
    with pytest.raises(ValueError, match="negative or non-integer counts.*multinomial"):
        zoo.fit(NaiveBayes(10, "multinomial"), counts - 1, zoo.Exact())
    with pytest.raises(ValueError, match="negative or non-integer counts.*multinomial"):
        zoo.fit(NaiveBayes(10, "multinomial"), counts + 0.5, zoo.Exact())
    with pytest.raises(ValueError, match="other than 0 and 1.*bernoulli"):
        zoo.fit(NaiveBayes(10, "bernoulli"), counts, zoo.SVI(num_steps=1, progress=False))
    with pytest.raises(ValueError, match="features lists 3 families but the data has 4 columns"):
        zoo.fit(NaiveBayes(3, ["gaussian"] * 3), iris, zoo.Exact())
    with pytest.raises(ValueError, match="features does not give a family for columns"):
        zoo.fit(NaiveBayes(3, {0: "gaussian"}), iris, zoo.Exact())
    with pytest.raises(ValueError, match="features names column 'petal'"):
        zoo.fit(NaiveBayes(3, {"petal": "gaussian"}), iris, zoo.Exact())
    with pytest.raises(ValueError, match="features must be one of"):
        NaiveBayes(3, "poisson")
    with pytest.raises(ValueError, match="class.*no labeled row|none of class"):
        zoo.fit(NaiveBayes(4), iris, zoo.Exact())
    semi = zoo.Dataset(iris.x, y=torch.where(torch.arange(150) % 2 == 0, iris.y, UNLABELED))
    with pytest.raises(ValueError, match="unlabeled"):
        zoo.fit(NaiveBayes(3), semi, zoo.Exact())
    with pytest.raises(ValueError, match="needs labels"):
        zoo.fit(NaiveBayes(3), iris.x, zoo.Exact())
    with pytest.raises(ValueError, match="x holds NaN"):
        bad = iris.x.clone()
        bad[3, 1] = float("nan")
        zoo.fit(NaiveBayes(3), zoo.Dataset(bad, y=iris.y), zoo.Exact())
    with pytest.raises(ValueError, match="y must be a class in 0..2"):
        zoo.fit(NaiveBayes(3), iris, zoo.Exact(num_posterior_samples=5)).sample(3, y=5)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        NaiveBayes(1)


def test_mixed_type_rows_equal_sklearn_per_family_classifiers_combined_by_hand() -> None:
    """Gaussian, Bernoulli, categorical and count columns in one model through the shared
    families: p(y | x) equals scikit-learn's GaussianNB, BernoulliNB, CategoricalNB and
    MultinomialNB, each fitted on its own columns and combined by hand (Bayes' rule with the
    features independent given the class: log p(y) + sum over blocks of [jll_block - log p(y)]),
    in the parity settings of this module's docstring."""
    wine = zoo.datasets.load("wine")
    x = wine.x.double()
    median = x.median(0).values
    binary = (x[:, 4:6] > median[4:6]).double()
    quartiles = torch.quantile(x[:, 6], torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    category = torch.bucketize(x[:, 6].contiguous(), quartiles).double().unsqueeze(-1)  # 0..3
    counts = (x[:, 7:10] * torch.tensor([10.0, 1.0, 1.0], dtype=torch.float64)).round()
    table = torch.cat([x[:, :4], binary, category, counts], -1).float()
    features = ["gaussian"] * 4 + ["bernoulli"] * 2 + ["categorical"] + ["multinomial"] * 3
    train, test = zoo.Dataset(table, y=wine.y).split(test_fraction=0.3, seed=0)
    model = NaiveBayes(3, features, loc_count=1e-8, precision_shape=1e-8)
    fit = zoo.fit(model, train, zoo.Exact(num_posterior_samples=10))
    prior = _numpy64(fit.point["weights"])
    blocks = [
        (sklearn_nb.GaussianNB(priors=prior, var_smoothing=1e-12), slice(0, 4)),
        (sklearn_nb.BernoulliNB(alpha=1.0, binarize=None, class_prior=prior), slice(4, 6)),
        (sklearn_nb.CategoricalNB(alpha=1.0, class_prior=prior, min_categories=4), slice(6, 7)),
        (sklearn_nb.MultinomialNB(alpha=1.0, class_prior=prior), slice(7, 10)),
    ]
    joint = np.log(prior) + sum(
        estimator.fit(_numpy64(train.x[:, columns]), train.y.numpy()).predict_joint_log_proba(_numpy64(test.x[:, columns]))
        - np.log(prior)
        for estimator, columns in blocks
    )
    expected = np.exp(joint - joint.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    point = {name: value.unsqueeze(0) for name, value in fit.point.items()}  # p(y | x, point estimate)
    ours = fit.model.marginals(point, zoo.Dataset(test.x))["y"][0]
    np.testing.assert_allclose(ours.double().numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(predict(fit, test.x).numpy(), expected.argmax(1))
