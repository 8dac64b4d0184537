"""Hidden Markov models: parity with hmmlearn, enumeration vs the fast paths, padding, recovery.

Comparisons with hmmlearn run in float64 (our parameters float64; the observations are the
float32 values a zoo Dataset holds, given to hmmlearn as float64, so both see the same numbers).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch

import zoo
from zoo.datasets import simulate
from zoo.infer import evaluate
from zoo.infer.runtime import isolated
from zoo.models.hmm import HiddenMarkovModel
from zoo.ops.markov import forward_log_likelihood

hmmlearn = pytest.importorskip("hmmlearn.hmm")


# --------------------------------------------------------------------------- helpers
def ragged(data: zoo.Dataset, seed: int = 0, minimum: int = 2) -> zoo.Dataset:
    """The same sequences with random lengths in [minimum, T], padding filled with junk."""
    generator = torch.Generator().manual_seed(seed)
    length = data.x.shape[1]
    lengths = torch.randint(minimum, length + 1, (len(data),), generator=generator)
    lengths[0] = length
    return dataclasses.replace(data, lengths=lengths)


def truth_draws(data: zoo.Dataset, emission: str) -> dict[str, torch.Tensor]:
    """The simulator's parameters as one float64 draw, named like the model's sites."""
    truth = data.truth
    draws = {"initial": truth["initial"], "transition": truth["transition"]}
    if emission == "gaussian":
        draws.update(locs=truth["locs"], scales=truth["scales"])
    elif emission == "poisson":
        draws["rates"] = truth["rates"].unsqueeze(-1)
    else:
        draws["probs"] = truth["probs"]
    return {name: value.double().unsqueeze(0) for name, value in draws.items()}


def concatenated(data: zoo.Dataset) -> tuple[np.ndarray, list[int]]:
    mask = torch.arange(data.x.shape[1]) < data.lengths.unsqueeze(-1)
    return data.x[mask].double().numpy(), data.lengths.tolist()


def hmmlearn_model(data: zoo.Dataset, emission: str) -> object:
    truth = data.truth
    num_states = truth["initial"].shape[0]
    if emission == "gaussian":
        model = hmmlearn.GaussianHMM(num_states, covariance_type="diag", init_params="", params="")
        model.means_ = truth["locs"].double().numpy()
        model.covars_ = truth["scales"].double().numpy() ** 2
    elif emission == "poisson":
        model = hmmlearn.PoissonHMM(num_states, init_params="", params="")
        model.lambdas_ = truth["rates"].double().numpy()[:, None]
    else:
        model = hmmlearn.CategoricalHMM(num_states, n_features=truth["probs"].shape[1], init_params="", params="")
        model.emissionprob_ = truth["probs"].double().numpy()
    model.startprob_ = truth["initial"].double().numpy()
    model.transmat_ = truth["transition"].double().numpy()
    return model


def prepared(data: zoo.Dataset, emission: str, **options: object) -> HiddenMarkovModel:
    num_states = data.truth["initial"].shape[0]
    return HiddenMarkovModel(num_states, emission=emission, **options).prepare(data)


def prior_parameters(model: HiddenMarkovModel, seed: int, requires_grad: bool = False) -> dict[str, torch.Tensor]:
    """One draw of the continuous latent sites from the prior, float64."""
    with isolated(seed=seed):
        trace = poutine.trace(model).get_trace(**model.model_kwargs(None, num_samples=1))
    return {
        name: site["value"].double().requires_grad_(requires_grad)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and name in ("initial", "transition") + model.emission_sites
    }


EMISSION_DATA = {
    "gaussian": dict(emission="gaussian", num_features=2),
    "categorical": dict(emission="categorical", num_features=4),
    "poisson": dict(emission="poisson", num_features=1),
    "bernoulli": dict(emission="bernoulli", num_features=5),
}


def simulated(emission: str, num_sequences: int = 12, length: int = 30, seed: int = 0) -> zoo.Dataset:
    data = simulate.hidden_markov(num_sequences=num_sequences, length=length, num_states=3, seed=seed, **EMISSION_DATA[emission])
    return ragged(data, seed=seed)


# --------------------------------------------------------------------------- parity with hmmlearn
@pytest.mark.parametrize("emission", ["gaussian", "categorical", "poisson"])
def test_log_likelihood_equals_hmmlearn_score(emission: str) -> None:
    data = simulated(emission, num_sequences=20, length=40)
    model = prepared(data, emission)
    ours = model.log_likelihood(truth_draws(data, emission), data)[0]
    reference = hmmlearn_model(data, emission)
    X, lengths = concatenated(data)
    if emission != "gaussian":
        X = X.astype(np.int64)
    expected = reference.score(X, lengths)
    assert float(ours.sum()) == pytest.approx(expected, rel=1e-6)
    # and sequence by sequence
    starts = np.cumsum([0] + lengths)
    for n in range(3):
        single = reference.score(X[starts[n] : starts[n + 1]])
        assert float(ours[n]) == pytest.approx(single, rel=1e-6)


def test_viterbi_paths_equal_hmmlearn_decode_on_200_sequences() -> None:
    data = ragged(simulate.hidden_markov(num_sequences=200, length=50, num_states=3, num_features=2, seed=3), seed=3)
    model = prepared(data, "gaussian")
    params = {name: value[0] for name, value in truth_draws(data, "gaussian").items()}
    paths = model.collect_discrete(model.discrete(params, data, temperature=0))
    reference = hmmlearn_model(data, "gaussian")
    X, lengths = concatenated(data)
    _, expected = reference.decode(X, lengths, algorithm="viterbi")
    mask = torch.arange(data.x.shape[1]) < data.lengths.unsqueeze(-1)
    assert paths.shape == (200, 50)
    assert np.array_equal(paths[mask].numpy(), expected)


# --------------------------------------------------------------------------- enumeration vs fast paths
@pytest.mark.parametrize("emission", ["gaussian", "categorical", "poisson", "bernoulli", "gaussian-full"])
def test_enumeration_and_forward_algorithm_agree(emission: str) -> None:
    full = emission == "gaussian-full"
    emission = "gaussian" if full else emission
    data = simulated(emission, num_sequences=5, length=12)
    model = prepared(data, emission, covariance="full" if full else "diag")
    params = prior_parameters(model, seed=1)
    fast = model.log_likelihood({name: value[None] for name, value in params.items()}, data)[0]
    with isolated():
        enumerated = evaluate.marginal_log_likelihood(model, params, data)
    torch.testing.assert_close(fast, enumerated, rtol=1e-6, atol=0)
    # both forms of the forward algorithm
    messages = model._messages({name: value[None] for name, value in params.items()}, data)
    scan = forward_log_likelihood(*messages, method="scan")[0]
    sequential = forward_log_likelihood(*messages, method="sequential")[0]
    torch.testing.assert_close(scan, sequential, rtol=1e-10, atol=0)
    # marginals (forward-backward) and the Viterbi path against Pyro's own computations
    marginals = model.collect_discrete({k: v[0] for k, v in model.marginals({n: v[None] for n, v in params.items()}, data).items()})
    with isolated():
        exact = model.collect_discrete(evaluate.posterior_marginals(model, params, data))
        map_path = model.collect_discrete(evaluate.discrete_values(model, params, data, temperature=0))
    torch.testing.assert_close(marginals, exact.double(), rtol=1e-6, atol=1e-9)
    assert torch.equal(model.collect_discrete(model.discrete(params, data, 0)), map_path)


# --------------------------------------------------------------------------- padding
def test_padded_steps_change_nothing() -> None:
    """Likelihood, gradient, Viterbi path, marginals, posterior samples and a whole fit are the
    same whether sequences are padded (with junk) or each stands alone."""
    data = simulated("poisson", num_sequences=4, length=15, seed=2)
    model = prepared(data, "poisson")
    junk = data.x.clone()
    mask = torch.arange(junk.shape[1]) < data.lengths.unsqueeze(-1)
    junk[~mask] = 7.0
    padded = dataclasses.replace(data, x=junk)
    params = {name: value.requires_grad_() for name, value in truth_draws(data, "poisson").items()}
    together = model.log_likelihood(params, padded)
    gradient = torch.autograd.grad(together.sum(), list(params.values()))
    alone, gradient_alone = [], [torch.zeros_like(value) for value in params.values()]
    for n in range(len(data)):
        length = int(data.lengths[n])
        single = zoo.Dataset(data.x[n : n + 1, :length], lengths=torch.tensor([length]))
        value = model.log_likelihood(params, single)[0, 0]
        alone.append(value)
        for total, part in zip(gradient_alone, torch.autograd.grad(value, list(params.values()))):
            total += part
        point = {name: value[0].detach() for name, value in params.items()}
        path = model.collect_discrete(model.discrete(point, padded, 0))[n]
        path_alone = model.collect_discrete(model.discrete(point, single, 0))[0]
        assert torch.equal(path[:length], path_alone)
        assert (path[length:] == path[length - 1]).all()  # padding repeats the last real state
        probs = torch.stack(list(model.marginals(params, padded).values()), 2)[0, n]
        probs_alone = torch.stack(list(model.marginals(params, single).values()), 2)[0, 0]
        torch.testing.assert_close(probs[:length], probs_alone, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(together[0], torch.stack(alone), rtol=1e-12, atol=0)
    for a, b in zip(gradient, gradient_alone):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the junk in the padding changes no fit, no posterior sample, no prediction
    method = zoo.SVI(guide="delta", num_steps=30, num_posterior_samples=5, progress=False)
    first, second = zoo.fit(HiddenMarkovModel(3), data, method), zoo.fit(HiddenMarkovModel(3), padded, method)
    assert torch.equal(first.losses, second.losses)
    for site in first.draws:
        assert torch.equal(first.draws[site], second.draws[site])
    assert torch.equal(first.discrete(data, temperature=1, seed=4), second.discrete(padded, temperature=1, seed=4))
    assert torch.equal(first.log_prob(data), second.log_prob(padded))


# --------------------------------------------------------------------------- the start, and the optimum
def test_baum_welch_steps_refine_the_k_means_start() -> None:
    data = simulated("gaussian", num_sequences=20, length=40, seed=3)
    scores = []
    for steps in (0, 1, 3):
        model = prepared(data, "gaussian", initial_em_steps=steps)
        values = model.initial_values(data, seed=0)
        assert (values["locs"][1:, 0] > values["locs"][:-1, 0]).all()  # ordered as relabel orders
        torch.testing.assert_close(values["transition"].sum(-1), torch.ones(3))
        assert (values["transition"] > 0).all() and (values["scales"] > 0).all()
        draws = {name: value[None] for name, value in values.items()}
        scores.append(float(model.log_likelihood(draws, data).sum()))
    assert scores[0] < scores[1] < scores[2], scores


def test_map_fit_reaches_hmmlearn_em_optimum_from_the_same_start() -> None:
    """What benchmarks/hmm.py times: from the same k-means start, zoo's MAP (3 Baum-Welch
    steps, then L-BFGS) explains the data as well as 100 hmmlearn EM iterations, to 1e-4 nats
    per observation (its weak priors cost less than that)."""
    data = simulate.hidden_markov(num_sequences=40, length=60, num_states=4, num_features=1, seed=7)
    kmeans = HiddenMarkovModel(4, emission="gaussian", initial_em_steps=0).prepare(data)
    start = kmeans.initial_values(data, seed=0)
    X = data.x.reshape(-1, 1).double().numpy()
    lengths = [60] * 40
    em = hmmlearn.GaussianHMM(4, covariance_type="diag", n_iter=100, tol=-np.inf, init_params="")
    em.startprob_, em.transmat_ = start["initial"].double().numpy(), start["transition"].double().numpy()
    em.means_, em.covars_ = start["locs"].double().numpy(), start["scales"].double().numpy() ** 2
    em.fit(X, lengths)
    method = zoo.SVI(guide="delta", num_posterior_samples=1, progress=False)
    fit = zoo.fit(HiddenMarkovModel(4, emission="gaussian"), data, method)
    ours = fit.model.log_likelihood({name: value.double()[None] for name, value in fit.point.items()}, data).sum()
    assert float(ours) / data.num_observations > em.score(X, lengths) / data.num_observations - 1e-4


def test_automatic_emission_says_when_it_reads_integers_as_counts() -> None:
    counts = zoo.datasets.load("earthquakes")
    with pytest.warns(UserWarning, match="emission='auto' chose 'poisson' because every value of x is a non-negative integer"):
        assert HiddenMarkovModel(2).prepare(counts).emission == "poisson"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # named, or real-valued data: nothing to say
        HiddenMarkovModel(2, emission="poisson").prepare(counts)
        HiddenMarkovModel(2).prepare(simulated("gaussian", num_sequences=2, length=10))


# --------------------------------------------------------------------------- the fit's answers
def test_fit_answers_have_sequence_shapes() -> None:
    data = simulated("gaussian", num_sequences=8, length=20)
    fit = zoo.fit(HiddenMarkovModel(3), data, zoo.SVI(guide="normal", num_steps=50, num_posterior_samples=20, progress=False))
    assert fit.model.emission == "gaussian"  # "auto" resolved from real-valued data
    assert fit.log_prob(data).shape == (8,)
    assert fit.discrete(data).shape == (8, 20)
    samples = fit.discrete(data, temperature=1, seed=0)
    assert samples.shape == (8, 20) and samples.dtype == torch.long
    marginals = fit.marginals(data)
    assert marginals.shape == (8, 20, 3)
    torch.testing.assert_close(marginals.sum(-1), torch.ones(8, 20))
    assert fit.sample(5, length=7).shape == (5, 7, 2)
    assert fit.sample(5).shape == (5, 20, 2)
    idata = fit.to_arviz()
    assert idata.log_likelihood["x"].shape == (1, 20, 8)
    assert idata.posterior_predictive["x"].shape == (1, 20, 8, 20, 2)


def test_relabel_orders_states_and_permutes_transitions_consistently() -> None:
    data = simulated("gaussian", num_sequences=6, length=20)
    model = prepared(data, "gaussian")
    draws = truth_draws(data, "gaussian")
    permutation = torch.tensor([2, 0, 1])
    shuffled = {
        "initial": draws["initial"][:, permutation],
        "transition": draws["transition"][:, permutation][:, :, permutation],
        "locs": draws["locs"][:, permutation],
        "scales": draws["scales"][:, permutation],
    }
    torch.testing.assert_close(model.log_likelihood(shuffled, data), model.log_likelihood(draws, data))
    relabelled = model.relabel({name: value[None] for name, value in shuffled.items()})
    relabelled = {name: value[0] for name, value in relabelled.items()}
    order = draws["locs"][0, :, 0].argsort()
    expected = {
        "initial": draws["initial"][:, order],
        "transition": draws["transition"][:, order][:, :, order],
        "locs": draws["locs"][:, order],
    }
    for name, value in expected.items():
        torch.testing.assert_close(relabelled[name], value)
    assert (relabelled["locs"][0, 1:, 0] > relabelled["locs"][0, :-1, 0]).all()
    torch.testing.assert_close(model.log_likelihood(relabelled, data), model.log_likelihood(draws, data))


@pytest.mark.parametrize("emission", ["categorical", "bernoulli", "poisson"])
def test_other_emissions_fit_as_well_as_the_truth(emission: str) -> None:
    """The MAP explains the data at least as well as the true parameters (up to 0.01 nats per
    step): the fit found a mode no worse than the truth's, not a poor local one."""
    data = simulated(emission, num_sequences=30, length=40, seed=1)
    options = {"num_categories": 4} if emission == "categorical" else {}
    fit = zoo.fit(HiddenMarkovModel(3, emission=emission, **options), data, zoo.SVI(guide="delta", num_steps=300, progress=False))
    fitted = fit.model.log_likelihood({name: value[None] for name, value in fit.point.items()}, data).sum()
    truth = fit.model.log_likelihood(truth_draws(data, emission), data).sum()
    assert float(fitted) > float(truth) - 0.01 * data.num_observations, (float(fitted), float(truth))
    assert fit.discrete(data).shape == data.x.shape[:2]


def test_earthquakes_three_states_match_the_published_fit() -> None:
    """Zucchini & MacDonald (2009, section 3.5): 3-state Poisson HMM MLE rates 13.1, 19.7, 29.7,
    log-likelihood -329.46 with the chain started in its stationary distribution. The MAP under
    weak priors lands within a few percent of the rates; its free initial distribution (all mass
    on the first state) scores slightly higher than a stationary start."""
    data = zoo.datasets.load("earthquakes")
    fit = zoo.fit(HiddenMarkovModel(3), data, zoo.SVI(guide="delta", num_steps=500, progress=False))
    rates = fit.point["rates"][:, 0]
    torch.testing.assert_close(rates, torch.tensor([13.1, 19.7, 29.7]), rtol=0.06, atol=0)
    assert -329.46 - 0.5 < float(fit.log_prob(data)) < -327.5


def test_cli_fits_an_hmm_on_earthquakes(capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.cli import main

    code = main(["fit", "hmm", "--dataset", "earthquakes", "--num-states", "3", "--method", "svi", "--guide", "delta", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "1 training sequences (86 steps), 1 held out (21 steps)" in printed
    assert "test_log_lik_per_step" in printed and "rates[2, count]" in printed


# --------------------------------------------------------------------------- bad input
def sequences(x: torch.Tensor, lengths: list[int] | None = None) -> zoo.Dataset:
    return zoo.Dataset(x, lengths=None if lengths is None else torch.tensor(lengths))


QUICK = zoo.SVI(guide="delta", num_steps=2, progress=False)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sequences(torch.ones(3, 5, 1), [5, 5]), "lengths must have shape"),
        (lambda: sequences(torch.ones(3, 5, 1), [5, 0, 5]), "lengths must be at least 1"),
        (lambda: sequences(torch.ones(3, 5, 1), [5, -2, 5]), "lengths must be at least 1"),
        (lambda: sequences(torch.ones(3, 5, 1), [5, 6, 5]), "lengths must not exceed"),
        (lambda: sequences(torch.full((2, 4, 1), float("nan")), [4, 4]), "x holds NaN"),
    ],
)
def test_bad_sequences_are_refused(make: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        zoo.fit(HiddenMarkovModel(2), make(), QUICK)  # type: ignore[operator]


@pytest.mark.parametrize(
    "emission, options, values, match",
    [
        ("poisson", {}, [1.0, -1.0, 2.0], "non-negative integer counts"),
        ("poisson", {}, [1.0, 2.5, 2.0], "non-negative integer counts"),
        ("bernoulli", {}, [1.0, 0.0, 0.5], "only 0 and 1"),
        ("categorical", {"num_categories": 3}, [0.0, 3.0, 1.0], "outside the alphabet 0..2 \\(num_categories=3\\)"),
        ("categorical", {}, [0.0, -1.0, 1.0], "category indices"),
    ],
)
def test_values_outside_the_emission_support_are_refused(
    emission: str, options: dict, values: list[float], match: str
) -> None:
    x = torch.tensor(values).repeat(2).reshape(2, 3, 1)
    with pytest.raises(ValueError, match=match):
        zoo.fit(HiddenMarkovModel(2, emission=emission, **options), sequences(x, [3, 3]), QUICK)


def test_only_real_steps_are_checked_and_padding_may_hold_anything() -> None:
    x = torch.tensor([[[1.0], [2.0], [-5.0]], [[0.0], [3.0], [4.0]]])
    fit = zoo.fit(HiddenMarkovModel(2, emission="poisson"), sequences(x, [2, 3]), QUICK)
    assert torch.isfinite(fit.log_prob()).all()


@pytest.mark.parametrize(
    "options, match",
    [
        ({"num_states": 0}, "num_states must be at least 1"),
        ({"num_states": 2, "emission": "gamma"}, "emission must be one of"),
        ({"num_states": 2, "covariance": "tied"}, "covariance must be one of"),
        ({"num_states": 2, "emission": "categorical", "num_categories": 1}, "num_categories must be at least 2"),
        ({"num_states": 2, "transition_concentration": -1.0}, "transition_concentration must be positive"),
        ({"num_states": 2, "initial_em_steps": -1}, "initial_em_steps must be at least 0"),
    ],
)
def test_bad_constructor_arguments_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HiddenMarkovModel(**options)


def test_data_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="data.x must be 3-D"):
        zoo.fit(HiddenMarkovModel(2), torch.randn(10, 3), QUICK)
    with pytest.raises(ValueError, match="one feature \\(the category index\\)"):
        zoo.fit(HiddenMarkovModel(2, emission="categorical"), torch.zeros(2, 3, 2), QUICK)


# --------------------------------------------------------------------------- NUTS recovery
@pytest.mark.slow
def test_nuts_recovers_simulated_parameters() -> None:
    """NUTS on 20 sequences x 50 steps of a 2-state, 1-D Gaussian HMM.

    Tolerances: each true value lies within 4 posterior sd of the posterior mean (plus 0.02 for
    Monte Carlo error of the mean over 2 x 1,000 draws): at 4 sd a correct posterior misses with
    probability ~6e-5 per scalar, so the 10 scalars pass together with probability > 0.999,
    while a wrong model (or label switching, which would put the two locations' posteriors
    on top of each other) fails by many sd. R-hat < 1.01 over every scalar: label switching is
    undone by relabelling, and the chains start from k-means with different seeds. The rank
    R-hat's own sampling noise is what needs the 1,000 draws per chain: with 600 it came out at
    1.011 on chains that agree (floating-point differences alone moved it across 1.01).
    """
    data = simulate.hidden_markov(num_sequences=20, length=50, num_states=2, num_features=1, seed=5)
    fit = zoo.fit(
        HiddenMarkovModel(2, emission="gaussian"),
        data,
        zoo.NUTS(num_warmup=300, num_samples=1000, num_chains=2, seed=0, progress=False),
    )
    assert fit.diagnostics["max_rhat"] < 1.01, fit.diagnostics
    assert fit.diagnostics["num_divergences"] == 0
    # the truth, with its states ordered as the fit orders them (by location)
    truth = fit.model.relabel({name: value.unsqueeze(0) for name, value in truth_draws(data, "gaussian").items()})
    truth = {name: value[0, 0].float() for name, value in truth.items()}
    for name in ("initial", "transition", "locs", "scales"):
        draws = fit.draws[name].reshape((-1,) + fit.draws[name].shape[2:])
        mean, sd = draws.mean(0), draws.std(0)
        assert ((mean - truth[name]).abs() <= 4 * sd + 0.02).all(), (name, mean, sd, truth[name])
