"""Data as users have it (issue 14, items 1-4): sample weights, missing values, partially
labelled HMM sequences and known parameters (``fixed=``).

Every number is checked against an independent computation: repeated rows for integer
weights, scikit-learn's weighted GaussianNB, brute-force marginalisation of the missing entries
(the observed sub-block of each covariance, by hand), brute-force enumeration of every state
path of a tiny HMM, hmmlearn's forward algorithm and the published values of the Wikipedia
forward-backward and Viterbi examples that hmmlearn's own tests quote.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pyro
import pytest
import torch

import zoo
from zoo.infer.collapse import collapsible
from zoo.infer.potential import Potential
from zoo.models import registry
from zoo.models.hmm import HiddenMarkovModel
from zoo.models.mixture import GaussianMixture
from zoo.models.naive_bayes import NaiveBayes

NAN = float("nan")


def _prior_draw(model: zoo.models.Model, seed: int = 0) -> dict[str, torch.Tensor]:
    """One draw of the global sites from the prior, each with a leading draw dim of 1."""
    pyro.set_rng_seed(seed)
    with pyro.poutine.block():
        return {name: value[None] for name, value in model.sample_globals().items()}


def _masked(x: torch.Tensor, observed: torch.Tensor) -> zoo.Dataset:
    return zoo.Dataset(torch.where(observed, x, torch.tensor(NAN)), missing="mask")


# ---------------------------------------------------------------------- 1. sample weights
@pytest.mark.parametrize("name", [name for name in registry.names() if collapsible(registry.get(name).example()[0])])
def test_integer_weights_count_a_datum_that_many_times(name: str) -> None:
    """For every model with a collapsed likelihood, NUTS's potential (and so MAP's objective) with
    integer weights equals the potential of the data with each row repeated that many times."""
    model, data = registry.get(name).example()
    weights = torch.arange(len(data)) % 3  # 0, 1, 2, 0, ...
    weights[0] = 2
    prepared = model.prepare(data)
    repeated = data.subset(torch.repeat_interleave(torch.arange(len(data)), weights))
    weighted = data.subset(torch.arange(len(data)))
    weighted = zoo.Dataset(
        weighted.x, y=weighted.y, lengths=weighted.lengths, weights=weights.float()
    )
    on_weighted, on_repeated = Potential(prepared, weighted), Potential(prepared, repeated)
    point = on_weighted.initial_point(prepared.initial_values(data))
    assert float(on_weighted(point)) == pytest.approx(float(on_repeated(point)), rel=1e-5, abs=1e-3)


def test_weighted_map_equals_the_map_of_repeated_rows() -> None:
    data = zoo.datasets.simulate.gaussian_mixture(num_data=40, num_components=2, seed=0)
    weights = torch.tensor([2, 0, 1, 3] * 10)
    model = GaussianMixture(2, prior_center=[0.0, 0.0], prior_spread=[1.0, 1.0])
    method = zoo.SVI(guide="delta", progress=False)
    weighted = zoo.fit(model, zoo.Dataset(data.x, weights=weights.float()), method)
    repeated = zoo.fit(model, data.subset(torch.repeat_interleave(torch.arange(40), weights)), method)
    for name in weighted.point:
        # both optimisations stop at L-BFGS's tolerance, not at the exact optimum
        assert torch.allclose(weighted.point[name], repeated.point[name], atol=2e-3), name
    # log_prob stays per datum and unweighted
    assert weighted.log_prob(data).shape == (40,)


def test_weighted_naive_bayes_matches_scikit_learns_weighted_gaussian_nb() -> None:
    """GaussianNB(sample_weight) estimates weighted class means and variances; zoo's weighted
    MAP under weak priors must give the same up to the priors' pull, O(1/n) of the spread."""
    from sklearn.naive_bayes import GaussianNB

    generator = np.random.default_rng(0)
    labels = np.repeat([0, 1], 300)
    x = generator.normal(loc=np.where(labels[:, None] == 0, -1.0, 2.0), scale=np.where(labels[:, None] == 0, 1.0, 0.5), size=(600, 2))
    weights = generator.uniform(0.1, 3.0, size=600)
    reference = GaussianNB(var_smoothing=0.0).fit(x, labels, sample_weight=weights)
    fit = zoo.fit(
        NaiveBayes(num_classes=2, features="gaussian", loc_count=1e-3, precision_shape=1e-3),
        zoo.Dataset(x, y=labels, weights=weights),
        zoo.SVI(guide="delta", progress=False),
    )
    assert np.allclose(fit.point["loc"].numpy(), reference.theta_, atol=0.01)
    assert np.allclose(1 / fit.point["precision"].numpy(), reference.var_, rtol=0.02)
    class_weight = np.array([weights[labels == c].sum() for c in (0, 1)])
    assert np.allclose(fit.point["weights"].numpy(), class_weight / class_weight.sum(), atol=1e-3)


@pytest.mark.parametrize(
    "weights, message",
    [([1.0, 2.0], "shape"), ([1.0, -1.0, 1.0], "non-negative"), ([1.0, NAN, 1.0], "finite"), ([0.0, 0.0, 0.0], "all zero")],
)
def test_bad_weights_are_refused_naming_weights(weights: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=f"weights.*{message}|{message}.*weights|weights are {message}"):
        zoo.Dataset(torch.randn(3, 2), weights=weights)


def test_weights_where_no_collapsed_likelihood_takes_them_are_refused() -> None:
    x = torch.randn(20, 2)
    with pytest.raises(ValueError, match="weights"):
        zoo.fit(NaiveBayes(num_classes=2), zoo.Dataset(x, y=torch.arange(20) % 2, weights=torch.ones(20)), zoo.Exact())
    vae, vae_data = registry.get("vae").example()
    with pytest.raises(ValueError, match="weights"):
        zoo.fit(vae, zoo.Dataset(vae_data.x, weights=torch.ones(len(vae_data))), zoo.SVI(num_steps=1, progress=False))


# ---------------------------------------------------------------------- 2. missing values
def _by_hand_gaussian(x: torch.Tensor, observed: torch.Tensor, loc: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """log N(x_o | mu_o, Sigma_oo) of one datum, the sub-block cut out by hand."""
    covariance = (scale_tril @ scale_tril.T)[observed][:, observed].double()
    centred = (x[observed] - loc[observed]).double()
    quadratic = centred @ torch.linalg.solve(covariance, centred)
    log_det = torch.linalg.slogdet(covariance)[1]
    return (-0.5 * (quadratic + log_det + len(centred) * math.log(2 * math.pi))).float()


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_mixture_integrates_missing_entries_out_exactly(covariance: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 3)
    observed = torch.rand(8, 3) > 0.4
    observed[:, 1] |= ~observed.any(1)
    data = _masked(x, observed)
    model = GaussianMixture(2, covariance=covariance, prior_center=[0.0] * 3, prior_spread=[1.0] * 3)
    draw = _prior_draw(model)
    tril = draw["scales"][0].unsqueeze(-1) * (draw["corr_cholesky"][0] if covariance == "full" else torch.eye(3))
    joint = torch.stack(
        [
            torch.stack([draw["weights"][0, k].log() + _by_hand_gaussian(x[i], observed[i], draw["locs"][0, k], tril[k]) for k in range(2)])
            for i in range(8)
        ]
    )  # (N, K)
    assert torch.allclose(model.log_likelihood(draw, data)[0], joint.logsumexp(-1), atol=1e-4)
    assert torch.allclose(model.marginals(draw, data)["assignment"][0], joint.softmax(-1), atol=1e-5)


def test_naive_bayes_integrates_missing_entries_out_exactly() -> None:
    """Two real columns and a binary one; labels on some rows: each row's density is that of
    its observed columns alone, by hand with torch's Normal and Bernoulli."""
    generator = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(10, 2, generator=generator), (torch.rand(10, 1, generator=generator) > 0.5).float()], 1)
    observed = torch.rand(10, 3, generator=generator) > 0.35
    observed[:, 0] |= ~observed.any(1)
    y = torch.tensor([0, 1, -1, 0, -1, 1, 1, -1, 0, -1])
    data = zoo.Dataset(torch.where(observed, x, torch.tensor(NAN)), y=y, missing="mask")
    model = NaiveBayes(num_classes=2, features=["gaussian", "gaussian", "bernoulli"]).prepare(data)
    draw = _prior_draw(model, seed=2)
    joint = torch.zeros(10, 2)
    for i, c in itertools.product(range(10), range(2)):
        total = draw["weights"][0, c].log()
        for j in range(2):
            if observed[i, j]:
                normal = torch.distributions.Normal(draw["loc"][0, c, j], draw["precision"][0, c, j].rsqrt())
                total = total + normal.log_prob(x[i, j])
        if observed[i, 2]:
            total = total + torch.distributions.Bernoulli(draw["bernoulli_probs"][0, c, 0]).log_prob(x[i, 2])
        joint[i, c] = total
    expected = torch.where(y >= 0, joint.gather(-1, y.clamp(min=0)[:, None])[:, 0], joint.logsumexp(-1))
    assert torch.allclose(model.log_likelihood(draw, data)[0], expected, atol=1e-4)
    probs = model.marginals(draw, data)["y"][0]
    assert torch.allclose(probs[y < 0], joint.softmax(-1)[y < 0], atol=1e-5)


def _brute_force_hmm(draw, x, observed, lengths, states, covariance):
    """log p(x_observed, known states) and the state marginals, summing over every path."""
    K = draw["initial"].shape[-1]
    totals, marginals, best = [], [], []
    for n in range(x.shape[0]):
        length = int(lengths[n])
        log_probs, paths = [], []
        for path in itertools.product(range(K), repeat=length):
            if any(int(states[n, t]) >= 0 and int(states[n, t]) != path[t] for t in range(length)):
                continue
            log_prob = draw["initial"][0, path[0]].log()
            for t in range(length):
                if t:
                    log_prob = log_prob + draw["transition"][0, path[t - 1], path[t]].log()
                if observed[n, t].any():
                    k = path[t]
                    corr = draw["corr_cholesky"][0, k] if covariance == "full" else torch.eye(x.shape[-1])
                    log_prob = log_prob + _by_hand_gaussian(x[n, t], observed[n, t], draw["locs"][0, k], draw["scales"][0, k].unsqueeze(-1) * corr)
            log_probs.append(log_prob)
            paths.append(path)
        log_probs = torch.stack(log_probs)
        totals.append(log_probs.logsumexp(0))
        posterior = log_probs.softmax(0)
        marginal = torch.zeros(length, K)
        for weight, path in zip(posterior, paths):
            marginal[torch.arange(length), torch.tensor(path)] += weight
        marginals.append(marginal)
        best.append(paths[int(log_probs.argmax())])
    return torch.stack(totals), marginals, best


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_hmm_with_missing_entries_and_known_states_against_every_path(covariance: str) -> None:
    torch.manual_seed(0)
    T = 5
    x = torch.randn(3, T, 2)
    observed = torch.rand(3, T, 2) > 0.4
    observed[:, 0] = True
    observed[2, 2] = False  # a step with nothing observed: its emission is unobserved
    lengths = torch.tensor([5, 4, 5])
    states = torch.full((3, T), -1)
    states[0, 1], states[1, 3], states[2, 4] = 1, 0, 1
    data = zoo.Dataset(torch.where(observed, x, torch.tensor(NAN)), lengths=lengths, missing="mask", states=states)
    model = HiddenMarkovModel(num_states=2, emission="gaussian", covariance=covariance).prepare(data)
    draw = _prior_draw(model, seed=3)
    expected, marginals, best = _brute_force_hmm(draw, x, observed, lengths, states, covariance)
    assert torch.allclose(model.log_likelihood(draw, data)[0], expected, atol=1e-4)
    computed = model.collect_discrete({name: value[0] for name, value in model.marginals(draw, data).items()})
    paths = model.collect_discrete(model.discrete({k: v[0] for k, v in draw.items()}, data))
    for n in range(3):
        length = int(lengths[n])
        assert torch.allclose(computed[n, :length], marginals[n], atol=1e-5)
        assert paths[n, :length].tolist() == list(best[n])
        known = states[n, :length] >= 0
        assert (paths[n, :length][known] == states[n, :length][known]).all()


def test_missing_values_flow_through_every_answer_of_a_fit() -> None:
    """log_prob, to_arviz (NaN where missing in observed_data), discrete, marginals, sample and
    impute work with masks, and impute keeps the observed entries."""
    data = zoo.datasets.simulate.gaussian_mixture(num_data=60, num_components=2, seed=0)
    torch.manual_seed(0)
    observed = torch.rand(data.x.shape) > 0.2
    observed[:, 0] |= ~observed.any(1)
    masked = _masked(data.x, observed)
    fit = zoo.fit(GaussianMixture(2, covariance="diag"), masked, zoo.SVI(guide="delta", progress=False))
    assert torch.isfinite(fit.log_prob()).all()
    idata = fit.to_arviz(posterior_predictive=False)
    assert np.isnan(idata.observed_data["x"].values).sum() == int((~observed).sum())
    assert fit.discrete().shape == (60,) and fit.marginals().shape == (60, 2)
    assert fit.sample(5).shape == (5, 2)
    imputed = fit.impute(num_draws=20)
    assert imputed["draws"].shape == (20, 60, 2)
    assert torch.equal(imputed["draws"][:, observed], data.x[observed].expand(20, -1))


def test_imputation_is_the_conditional_gaussian_mean() -> None:
    """At known parameters (every site fixed) a one-component full Gaussian's imputation mean is
    mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o), within Monte Carlo error."""
    locs = torch.tensor([[1.0, -1.0, 0.5]])
    scales = torch.tensor([[1.0, 2.0, 0.5]])
    correlation = torch.tensor([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    cholesky = torch.linalg.cholesky(correlation)[None]
    x = torch.tensor([[2.0, NAN, 0.0], [NAN, NAN, 1.0], [0.0, 1.0, NAN]])
    data = zoo.Dataset(x, missing="mask")
    fit = zoo.fit(
        GaussianMixture(1), data, "svi:delta",
        fixed={"weights": torch.ones(1), "locs": locs, "scales": scales, "corr_cholesky": cholesky},
    )
    num_draws = 4000
    imputed = fit.impute(num_draws=num_draws, seed=1)
    covariance = (scales[0, :, None] * correlation * scales[0]).double()
    for i in range(3):
        seen = data.observed[i]
        gap = ~seen
        solve = torch.linalg.solve(covariance[seen][:, seen], (x[i, seen] - locs[0, seen]).double())
        mean = locs[0, gap].double() + covariance[gap][:, seen] @ solve
        conditional = covariance[gap][:, gap] - covariance[gap][:, seen] @ torch.linalg.solve(covariance[seen][:, seen], covariance[seen][:, gap])
        error = (conditional.diagonal() / num_draws).sqrt()
        assert ((imputed["mean"][i, gap].double() - mean).abs() < 4 * error).all()
        sd = imputed["draws"][:, i, gap].double().std(0)
        assert torch.allclose(sd, conditional.diagonal().sqrt(), rtol=0.06)


@pytest.mark.slow
def test_mcar_missing_entries_agree_with_the_complete_rows_fit() -> None:
    """Entries missing completely at random: the masked fit of all rows and the fit of the
    complete rows alone estimate the same parameters, within their posterior sd (Laplace)."""
    data = zoo.datasets.simulate.gaussian_mixture(num_data=400, num_components=2, seed=2)
    generator = torch.Generator().manual_seed(0)
    observed = torch.rand(data.x.shape, generator=generator) > 0.25
    observed[:, 0] |= ~observed.any(1)
    complete = observed.all(1)
    method = zoo.SVI(guide="laplace", num_posterior_samples=400, progress=False, seed=0)
    model = GaussianMixture(2, covariance="diag")
    masked_fit = zoo.fit(model, _masked(data.x, observed), method)
    complete_fit = zoo.fit(model, data.subset(complete.nonzero()[:, 0]), method)
    for name in ("locs", "scales", "weights"):
        masked, whole = masked_fit.draws[name][0], complete_fit.draws[name][0]
        sd = torch.maximum(masked.std(0), whole.std(0))
        assert ((masked.mean(0) - whole.mean(0)).abs() < 3 * sd).all(), name


def test_missing_value_inputs_that_cannot_work_are_refused() -> None:
    x = torch.randn(4, 2)
    x[1, 0] = NAN
    with pytest.raises(ValueError, match="missing='mask'"):
        zoo.Dataset(x)
    with pytest.raises(ValueError, match="missing must be"):
        zoo.Dataset(x, missing="drop")
    x[1, 1] = NAN
    with pytest.raises(ValueError, match="no observed entry in row 1"):
        zoo.Dataset(x, missing="mask")
    sequences = torch.randn(2, 3, 1)
    sequences[1, :2] = NAN  # the third step is padding: no observed real step
    with pytest.raises(ValueError, match="no observed entry in row 1"):
        zoo.Dataset(sequences, lengths=[3, 2], missing="mask")
    masked = zoo.Dataset(torch.tensor([[0.0, NAN], [1.0, 1.0], [2.0, 0.5]]), y=[0, 1, 0], missing="mask")
    with pytest.raises(ValueError, match="missing"):
        zoo.fit(NaiveBayes(num_classes=2), masked, zoo.Exact())
    vae, _ = registry.get("vae").example()
    with pytest.raises(ValueError, match="missing"):
        zoo.fit(vae, masked, zoo.SVI(num_steps=1, progress=False))


# ---------------------------------------------------------------------- 3. partially labelled HMM
def test_labels_out_of_range_or_on_padding_are_refused() -> None:
    x = torch.randn(2, 4, 1)
    with pytest.raises(ValueError, match="padded step 3 of sequence 1"):
        zoo.Dataset(x, lengths=[4, 3], states=[[0, -1, -1, -1], [-1, -1, -1, 1]])
    with pytest.raises(ValueError, match="states must have shape"):
        zoo.Dataset(x, lengths=[4, 3], states=[[0, -1, -1, -1]])
    with pytest.raises(ValueError, match="states holds -2"):
        zoo.Dataset(x, states=[[0, -2, -1, -1], [-1, -1, -1, 1]])
    data = zoo.Dataset(x, lengths=[4, 3], states=[[0, -1, 2, -1], [-1, -1, -1, -1]])
    with pytest.raises(ValueError, match=r"states holds state 2 \(sequence 0, step 2\)"):
        zoo.fit(HiddenMarkovModel(num_states=2), data, "svi:delta")
    with pytest.raises(ValueError, match="has no hidden states"):
        zoo.fit(NaiveBayes(num_classes=2), zoo.Dataset(torch.randn(2, 4, 1), states=[[0, 1, 0, 1], [1, 1, 0, 0]]), "svi:delta")


def test_known_states_keep_their_names_through_a_fit() -> None:
    """States given as labels are not relabelled: the state labelled 1 stays state 1, even where
    sorting by emission means would call it 0."""
    data = zoo.datasets.simulate.hidden_markov(num_sequences=4, length=30, seed=0)
    fit_free = zoo.fit(HiddenMarkovModel(num_states=2), data, "svi:delta")
    paths = fit_free.discrete()
    swapped = 1 - paths  # name the states the other way round
    states = torch.full(paths.shape, -1)
    states[:, ::6] = swapped[:, ::6]
    labelled = zoo.Dataset(data.x, lengths=data.lengths, states=states)
    fit = zoo.fit(HiddenMarkovModel(num_states=2), labelled, "svi:delta")
    agreement = (fit.discrete() == swapped)[torch.arange(paths.shape[1]) < data.lengths[:, None]].float().mean()
    assert agreement > 0.9, agreement


# ---------------------------------------------------------------------- 4. known parameters
def _umbrella() -> tuple[zoo.Dataset, dict[str, torch.Tensor]]:
    """Wikipedia's forward-backward example (quoted by hmmlearn's tests): rain (state 0) or not,
    an umbrella seen with probability 0.9 / 0.2, on days umbrella, umbrella, none, umbrella,
    umbrella."""
    data = zoo.Dataset(torch.tensor([[[1.0], [1.0], [0.0], [1.0], [1.0]]]))
    fixed = {
        "initial": torch.tensor([0.5, 0.5]),
        "transition": torch.tensor([[0.7, 0.3], [0.3, 0.7]]),
        "probs": torch.tensor([[0.9], [0.2]]),
    }
    return data, fixed


def test_log_likelihood_at_given_parameters_equals_the_published_value() -> None:
    data, fixed = _umbrella()
    fit = zoo.fit(HiddenMarkovModel(num_states=2, emission="bernoulli"), data, "svi:delta", fixed=fixed)
    # hmmlearn tests/test_base.py: forward log-probability -3.3725, Viterbi path [0, 0, 1, 0, 0]
    assert round(float(fit.log_likelihood().sum()), 4) == -3.3725
    assert fit.discrete()[0].tolist() == [0, 0, 1, 0, 0]
    assert torch.equal(fit.draws["transition"][0, 0], fixed["transition"])


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_log_likelihood_at_given_parameters_equals_hmmlearns_score(covariance: str) -> None:
    from hmmlearn.hmm import GaussianHMM

    data = zoo.datasets.simulate.hidden_markov(num_sequences=3, length=20, seed=1)
    num_features = data.x.shape[-1]
    generator = torch.Generator().manual_seed(0)
    fixed = {
        "initial": torch.tensor([0.3, 0.7]),
        "transition": torch.tensor([[0.8, 0.2], [0.4, 0.6]]),
        "locs": torch.randn(2, num_features, generator=generator),
        "scales": torch.rand(2, num_features, generator=generator) + 0.5,
    }
    correlation = torch.eye(num_features).expand(2, -1, -1)
    if covariance == "full" and num_features >= 2:
        raw = torch.tensor([[1.0, 0.5], [0.5, 1.0]]) if num_features == 2 else torch.eye(num_features)
        correlation = torch.stack([raw, raw.T.clone()])
        fixed["corr_cholesky"] = torch.linalg.cholesky(correlation)
    fit = zoo.fit(HiddenMarkovModel(num_states=2, emission="gaussian", covariance=covariance), data, "svi:delta", fixed=fixed)
    reference = GaussianHMM(n_components=2, covariance_type="full", init_params="", params="")
    reference.startprob_ = fixed["initial"].double().numpy()
    reference.transmat_ = fixed["transition"].double().numpy()
    reference.means_ = fixed["locs"].double().numpy()
    scales = fixed["scales"].double()
    reference.covars_ = (scales[:, :, None] * correlation.double() * scales[:, None, :]).numpy()
    steps = torch.arange(data.x.shape[1]) < data.lengths[:, None]
    expected = reference.score(data.x[steps].double().numpy(), lengths=data.lengths.numpy())
    assert float(fit.log_likelihood().sum()) == pytest.approx(expected, rel=1e-5)


def test_fixed_sites_are_constants_and_the_rest_is_fitted() -> None:
    data = zoo.datasets.simulate.gaussian_mixture(num_data=60, num_components=2, seed=0)
    locs = data.truth["locs"]
    fit = zoo.fit(GaussianMixture(2), data, "svi:normal:num_steps=50,num_posterior_samples=10", fixed={"locs": locs})
    assert (fit.draws["locs"] == locs).all() and torch.equal(fit.point["locs"], locs)
    assert fit.draws["scales"].std((0, 1)).gt(0).all()


def test_nuts_potential_with_fixed_sites_is_the_full_potential_at_those_values() -> None:
    """The potential NUTS samples with ``locs`` fixed differs from the full model's potential,
    evaluated with ``locs`` at the fixed value, by a constant (the fixed site's prior and
    Jacobian terms), at any point of the other sites; so do their gradients: not at all."""
    data = zoo.datasets.simulate.gaussian_mixture(num_data=30, num_components=2, seed=0)
    full = GaussianMixture(2).prepare(data)
    conditioned = GaussianMixture(2).prepare(data)
    locs = data.truth["locs"]
    conditioned.fix({"locs": locs})
    on_full, on_conditioned = Potential(full, data), Potential(conditioned, data)
    assert "locs" not in on_conditioned.transforms
    locs_point = on_full.transforms["locs"](locs)
    differences = []
    for seed in (0, 1):
        point = {name: value.requires_grad_() for name, value in on_conditioned.initial_point(conditioned.initial_values(data, seed=seed)).items()}
        conditioned_energy = on_conditioned(point)
        full_energy = on_full(point | {"locs": locs_point})
        gradients = torch.autograd.grad(conditioned_energy - full_energy, list(point.values()))
        assert all(torch.allclose(gradient, torch.zeros_like(gradient), atol=1e-3) for gradient in gradients)
        differences.append(float((conditioned_energy - full_energy).detach()))
    assert differences[0] == pytest.approx(differences[1], abs=1e-3)


@pytest.mark.slow
def test_nuts_with_fixed_sites_samples_the_others() -> None:
    data = zoo.datasets.simulate.gaussian_mixture(num_data=60, num_components=2, seed=0)
    locs = data.truth["locs"]
    fit = zoo.fit(GaussianMixture(2), data, "nuts:num_warmup=30,num_samples=10,num_chains=1", fixed={"locs": locs})
    assert (fit.draws["locs"] == locs).all()
    assert fit.draws["scales"].std((0, 1)).gt(0).all()


@pytest.mark.parametrize(
    "fixed, message",
    [
        ({"locs": torch.zeros(3, 2)}, r"fixed\['locs'\] must have the site's shape \(2, 2\)"),
        ({"scales": -torch.ones(2, 2)}, r"fixed\['scales'\] lies outside the site's support"),
        ({"weights": torch.tensor([0.5, 0.6])}, r"fixed\['weights'\] lies outside"),
        ({"means": torch.zeros(2, 2)}, "fixed names 'means'"),
    ],
)
def test_bad_fixed_values_are_refused_naming_fixed(fixed: dict[str, torch.Tensor], message: str) -> None:
    data = zoo.Dataset(torch.randn(20, 2))
    with pytest.raises(ValueError, match=message):
        zoo.fit(GaussianMixture(2), data, "svi:delta", fixed=fixed)


def test_fixed_with_a_method_that_cannot_condition_is_refused() -> None:
    data = zoo.Dataset(torch.randn(20, 2), y=torch.arange(20) % 2)
    with pytest.raises(ValueError, match="fixed"):
        zoo.fit(NaiveBayes(num_classes=2), data, zoo.Exact(), fixed={"weights": torch.tensor([0.5, 0.5])})


def test_a_saved_fit_keeps_its_weights_mask_and_states(tmp_path) -> None:
    x = torch.randn(3, 4, 1)
    x[0, 1, 0] = NAN
    data = zoo.Dataset(x, lengths=[4, 3, 4], missing="mask", states=[[0, -1, -1, -1], [-1, 1, -1, -1], [-1] * 4], weights=[1.0, 2.0, 0.5])
    fit = zoo.fit(HiddenMarkovModel(num_states=2), data, "svi:delta")
    loaded = zoo.load(fit.save(tmp_path / "fit.zoo"))
    for name in ("weights", "observed", "states"):
        assert torch.equal(getattr(loaded.train, name), getattr(data, name)), name
    assert torch.allclose(loaded.log_prob(), fit.log_prob())


@pytest.mark.parametrize("name", registry.names())
def test_every_model_integrates_out_missing_entries_or_refuses_them(name: str) -> None:
    """A model declaring ``handles_missing`` gives the same likelihood with an all-observed mask
    as without one; any other model refuses masked data before any work."""
    model, data = registry.get(name).example()
    masked = dataclasses.replace(data, observed=torch.ones_like(data.x, dtype=torch.bool))
    if not model.handles_missing:
        with pytest.raises(ValueError, match="missing"):
            zoo.fit(model, masked, zoo.SVI(num_steps=1, progress=False))
        return
    prepared = model.prepare(data)
    draw = _prior_draw(prepared)
    assert torch.allclose(prepared.log_likelihood(draw, masked), prepared.log_likelihood(draw, data), atol=1e-4)


def test_a_few_labels_name_overlapping_states() -> None:
    """Three overlapping Gaussian states, the middle one named 0: with labels on 3% of the steps
    the fit's state k is the true state k (raw accuracy as good as the best renaming), where an
    unsupervised fit names its states by their means."""
    chain = zoo.datasets.simulate.hidden_markov(num_sequences=8, length=80, num_states=3, seed=3)
    truth = chain.truth["states"]
    means = torch.tensor([0.0, -1.0, 1.2])
    x = (means[truth] + 0.6 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))).unsqueeze(-1)
    known = torch.rand(truth.shape, generator=torch.Generator().manual_seed(3)) < 0.03
    labelled = zoo.Dataset(x, lengths=chain.lengths, states=torch.where(known, truth, torch.tensor(-1)))
    fit = zoo.fit(HiddenMarkovModel(3), labelled, "svi:delta")
    paths = fit.discrete(zoo.Dataset(x, lengths=chain.lengths))
    accuracy = float((paths == truth).float().mean())
    best = max(float((torch.tensor(order)[paths] == truth).float().mean()) for order in itertools.permutations(range(3)))
    assert accuracy == best and accuracy > 0.75


def test_a_data_frame_with_empty_cells_becomes_masked_data() -> None:
    import pandas as pd

    frame = pd.DataFrame({"a": [1.0, np.nan, 2.0], "b": [0.5, 1.0, np.nan], "kind": ["x", "y", "x"]})
    with pytest.raises(ValueError, match="missing='mask'"):
        zoo.Dataset.from_frame(frame, label="kind")
    data = zoo.Dataset.from_frame(frame, label="kind", missing="mask")
    assert data.observed.tolist() == [[True, True], [False, True], [True, False]]
    assert data.feature_names == ("a", "b")
