"""zoo.models.families: each family's table against torch.distributions, its gather under
enumeration and under a plate of draws, its estimates against numpy, its support checks, and the
Gaussian family's priors against the mixture's.

Everything in float64 with fixed seeds. Table-vs-torch tolerances: both sides add up D terms of
magnitude <= ~50 in different orders, so they agree to ~D * 50 * eps ~ 1e-13; 1e-10 is stated.
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import TraceEnum_ELBO

import zoo
from zoo.infer.runtime import isolated
from zoo.models.families import Family, Gaussian, Poisson
from zoo.models.families_discrete import Bernoulli, Categorical, Multinomial

CLOSE = dict(rtol=1e-10, atol=1e-10)
NUM_COMPONENTS, NUM_FEATURES = 3, 3


def make_family(name: str) -> Family:
    center, spread = (0.5, -1.0, 2.0), (1.0, 2.0, 0.5)
    return {
        "gaussian": Gaussian(num_features=NUM_FEATURES, center=center, spread=spread),
        "gaussian-full": Gaussian(num_features=NUM_FEATURES, covariance="full", center=center, spread=spread),
        "poisson": Poisson(center=(2.0, 5.0, 0.5)),
        "categorical": Categorical(num_categories=4, concentration=1.5),
        "bernoulli": Bernoulli(num_features=NUM_FEATURES, concentration=1.5),
        "multinomial": Multinomial(num_features=NUM_FEATURES, concentration=1.5, total_count=6),
    }[name]


NAMES = ["gaussian", "gaussian-full", "poisson", "categorical", "bernoulli", "multinomial"]


def prior_draws(family: Family, num_draws: int, seed: int) -> dict[str, torch.Tensor]:
    """num_draws draws of the sites from the family's own prior: each (S, K, ...), float64."""
    with isolated(seed=seed), pyro.plate("draws", num_draws, dim=-2), pyro.plate("components", NUM_COMPONENTS, dim=-1):
        values = family.prior(torch.float64)
    return {name: value.detach() for name, value in values.items()}


def data_for(name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Observations (*shape, D) in the family's support, D = 1 (category index) for categorical."""
    generator = torch.Generator().manual_seed(seed)
    if name.startswith("gaussian"):
        return torch.randn(shape + (NUM_FEATURES,), generator=generator, dtype=torch.float64) * 2
    if name == "poisson":
        return torch.poisson(torch.full(shape + (NUM_FEATURES,), 3.0, dtype=torch.float64), generator=generator)
    if name == "categorical":
        return torch.randint(0, 4, shape + (1,), generator=generator).double()
    if name == "bernoulli":
        return (torch.rand(shape + (NUM_FEATURES,), generator=generator) < 0.3).double()
    return torch.randint(0, 5, shape + (NUM_FEATURES,), generator=generator).double()


def reference_log_prob(name: str, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """log p(x_i | component k, theta_s) by torch.distributions, one (s, k) at a time: (S, *data, K)."""
    num_draws = next(iter(params.values())).shape[0]
    rows = []
    for s in range(num_draws):
        columns = []
        for k in range(NUM_COMPONENTS):
            p = {site: value[s, k] for site, value in params.items()}
            if name == "gaussian":
                value = torch.distributions.Normal(p["locs"], p["scales"]).log_prob(x).sum(-1)
            elif name == "gaussian-full":
                tril = torch.diag(p["scales"]) @ p["corr_cholesky"]
                value = torch.distributions.MultivariateNormal(p["locs"], scale_tril=tril).log_prob(x)
            elif name == "poisson":
                value = torch.distributions.Poisson(p["rates"]).log_prob(x).sum(-1)
            elif name == "categorical":
                value = torch.distributions.Categorical(probs=p["probs"]).log_prob(x[..., 0].long())
            elif name == "bernoulli":
                value = torch.distributions.Bernoulli(probs=p["probs"]).log_prob(x).sum(-1)
            else:  # one distribution per row: torch's Multinomial takes one total count
                flat = x.reshape(-1, x.shape[-1])
                value = torch.stack(
                    [torch.distributions.Multinomial(int(row.sum()), probs=p["probs"]).log_prob(row) for row in flat]
                ).reshape(x.shape[:-1])
            columns.append(value)
        rows.append(torch.stack(columns, -1))
    return torch.stack(rows)


@pytest.mark.parametrize("data_shape", [(7,), (4, 5)], ids=["points", "sequences"])
@pytest.mark.parametrize("name", NAMES)
def test_log_density_table_equals_torch_distributions_in_value_and_gradient(name: str, data_shape: tuple[int, ...]) -> None:
    family = make_family(name)
    params = {site: value.requires_grad_() for site, value in prior_draws(family, 2, seed=1).items()}
    x = data_for(name, data_shape, seed=2)
    table = family.log_density(params, x)
    assert table.shape == (2,) + data_shape + (NUM_COMPONENTS,)
    expected = reference_log_prob(name, params, x)
    torch.testing.assert_close(table, expected, **CLOSE)
    direction = torch.randn(table.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ours = torch.autograd.grad((table * direction).sum(), list(params.values()))
    theirs = torch.autograd.grad((expected * direction).sum(), list(params.values()))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **CLOSE)


@pytest.mark.parametrize("name", NAMES)
def test_gathered_distribution_scores_as_the_table_indexes(name: str) -> None:
    """The distribution of each datum's component (what the enumerated definition observes)
    gives the table's entry: for a plain assignment (N,), for the enumerated values (K, 1), and
    for a plate of posterior draws at dim -2 (sites (S, K, ...), as under Predictive)."""
    family = make_family(name)
    params = prior_draws(family, 2, seed=4)
    x = data_for(name, (6,), seed=5)
    value = family.observation(x, torch.float64)
    table = family.log_density(params, x)  # (S, N, K)
    assignment = torch.tensor([2, 0, 1, 1, 0, 2])
    one = {site: tensor[0] for site, tensor in params.items()}
    torch.testing.assert_close(family.distribution(family.gather(one, assignment)).log_prob(value), table[0, torch.arange(6), assignment], **CLOSE)
    enumerated = torch.arange(NUM_COMPONENTS).reshape(NUM_COMPONENTS, 1)
    torch.testing.assert_close(family.distribution(family.gather(one, enumerated)).log_prob(value), table[0].T, **CLOSE)
    scored = family.distribution(family.gather(params, assignment)).log_prob(value)  # (S, N)
    torch.testing.assert_close(scored, table[:, torch.arange(6), assignment], **CLOSE)


@pytest.mark.parametrize("name", NAMES)
def test_an_enumerated_mixture_of_the_family_has_the_tables_marginal(name: str) -> None:
    """A mixture written with the family (prior sites conditioned, assignment enumerated by
    TraceEnum_ELBO) has log p(x) = sum_i logsumexp_k(log w_k + table[i, k]), value and gradient."""
    family = make_family(name)
    params = {site: value[0].requires_grad_() for site, value in prior_draws(family, 1, seed=6).items()}
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    x = data_for(name, (8,), seed=7)
    observed = family.observation(x, torch.float64)

    def mixture() -> None:
        with pyro.plate("data", len(x)):
            assignment = pyro.sample("assignment", dist.Categorical(weights), infer={"enumerate": "parallel"})
            pyro.sample("x", family.distribution(family.gather(params, assignment)), obs=observed)

    loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(mixture, lambda: None)
    table = family.log_density({site: value[None] for site, value in params.items()}, x)[0]
    expected = -(table + weights.log()).logsumexp(-1).sum()
    torch.testing.assert_close(loss, expected, **CLOSE)
    for a, b in zip(torch.autograd.grad(loss, list(params.values())), torch.autograd.grad(expected, list(params.values()))):
        torch.testing.assert_close(a, b, **CLOSE)


@pytest.mark.parametrize("name", ["gaussian", "bernoulli", "multinomial"])
def test_the_families_own_distribution_classes_sample_as_pyros(name: str) -> None:
    """Where a family scores with a class of its own, it draws exactly what Pyro's class would
    from the same seed (the other families use Pyro's classes themselves)."""
    family = make_family(name)
    params = {site: value[0] for site, value in prior_draws(family, 1, seed=8).items()}
    pyros = {
        "gaussian": lambda: dist.Normal(params["locs"], params["scales"]).to_event(1),
        "bernoulli": lambda: dist.Bernoulli(probs=params["probs"]).to_event(1),
        "multinomial": lambda: dist.Multinomial(6, probs=params["probs"]),
    }
    torch.manual_seed(0)
    ours = family.distribution(params).sample((5,))
    torch.manual_seed(0)
    theirs = pyros[name]().sample((5,))
    assert torch.equal(ours, theirs)


# --------------------------------------------------------------------------- estimates
def clustered(name: str, seed: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """30 observations and their cluster labels in 0..2 (10 each)."""
    x = data_for(name, (30,), seed=seed)
    labels = torch.arange(30) % 3
    if name.startswith("gaussian"):  # clusters apart, with correlated features
        x = x + 5.0 * labels.unsqueeze(-1).double()
        x[:, 1] += 0.8 * x[:, 0]
    return x, labels


@pytest.mark.parametrize("name", NAMES)
def test_estimates_from_one_hot_weights_equal_per_cluster_numpy_estimates(name: str) -> None:
    family = make_family(name)
    x, labels = clustered(name)
    weights = torch.nn.functional.one_hot(labels, NUM_COMPONENTS).double()
    values = family.estimates(x, weights)
    assert set(values) == set(family.sites)
    for k in range(NUM_COMPONENTS):
        members = x[labels == k].numpy()
        n = len(members)
        if name.startswith("gaussian"):
            np.testing.assert_allclose(values["locs"][k].numpy(), members.mean(0), rtol=1e-12)
            np.testing.assert_allclose(values["scales"][k].numpy(), members.std(0), rtol=1e-12)  # ML: ddof=0
            if name == "gaussian-full":
                factor = values["corr_cholesky"][k].numpy()
                expected = 0.99 * np.corrcoef(members.T) + 0.01 * np.eye(NUM_FEATURES)
                np.testing.assert_allclose(factor @ factor.T, expected, rtol=1e-12, atol=1e-12)
        elif name == "poisson":
            np.testing.assert_allclose(values["rates"][k].numpy(), members.mean(0), rtol=1e-12)
        elif name == "categorical":
            counts = np.bincount(members[:, 0].astype(int), minlength=4)
            np.testing.assert_allclose(values["probs"][k].numpy(), (counts + 0.5) / (n + 0.5 * 4), rtol=1e-12)
        elif name == "bernoulli":
            np.testing.assert_allclose(values["probs"][k].numpy(), (members.sum(0) + 0.5) / (n + 1.0), rtol=1e-12)
        else:
            totals = members.sum(0)
            np.testing.assert_allclose(values["probs"][k].numpy(), (totals + 0.5) / (totals.sum() + 0.5 * NUM_FEATURES), rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_estimates_of_an_empty_component_lie_inside_the_support(name: str) -> None:
    family = make_family(name)
    x, labels = clustered(name)
    weights = torch.nn.functional.one_hot(labels.clamp(max=1), NUM_COMPONENTS).double()  # component 2 empty
    values = family.estimates(x, weights)
    with isolated(seed=0), pyro.plate("components", NUM_COMPONENTS):
        trace = poutine.trace(lambda: family.prior(torch.float64)).get_trace()
    for site in family.sites:
        assert bool(trace.nodes[site]["fn"].support.check(values[site]).all()), site
        assert torch.isfinite(values[site]).all()
    if name.startswith("gaussian"):
        torch.testing.assert_close(values["scales"][2], 0.5 * torch.tensor(family.spread, dtype=torch.float64))


# --------------------------------------------------------------------------- labels, support, dims
@pytest.mark.parametrize("name", NAMES)
def test_order_key_per_component(name: str) -> None:
    family = make_family(name)
    params = prior_draws(family, 2, seed=10)
    key = family.order_key(params)
    assert key.shape == (2, NUM_COMPONENTS)
    if name.startswith("gaussian"):
        expected = params["locs"][..., 0]
    elif name == "poisson":
        expected = params["rates"][..., 0]
    elif name == "bernoulli":
        expected = params["probs"].mean(-1)
    else:
        expected = (params["probs"] * torch.arange(params["probs"].shape[-1])).sum(-1)
    torch.testing.assert_close(key, expected)


@pytest.mark.parametrize(
    "family, values, match",
    [
        (Poisson(), [[1.0], [-1.0]], "non-negative integer counts for the Poisson family, found -1.0"),
        (Poisson(), [[1.0], [2.5]], "non-negative integer counts for the Poisson family, found 2.5"),
        (Bernoulli(), [[1.0, 0.0], [0.5, 1.0]], "only 0 and 1 for the Bernoulli family, found 0.5"),
        (Categorical(num_categories=3), [[0.0], [3.0]], r"category 3, outside the alphabet 0..2 \(num_categories=3\)"),
        (Categorical(), [[0.0], [-1.0]], "category indices 0, 1, ... .integers. for the categorical family, found -1.0"),
        (Categorical(), [[0.0], [1.5]], "category indices .* found 1.5"),
        (Categorical(), [[0.0, 1.0]], r"one feature \(the category index\) for the categorical family, got 2"),
        (Multinomial(), [[1.0, 2.0], [0.0, -3.0]], "non-negative integer counts for the multinomial family, found -3.0"),
        (Gaussian(), [[0.0], [float("inf")]], "finite for the Gaussian family, found inf"),
    ],
)
def test_support_checks_refuse_bad_data(family: Family, values: list[list[float]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        family.validate(torch.tensor(values))


@pytest.mark.parametrize("name", NAMES)
def test_support_checks_accept_the_familys_own_data(name: str) -> None:
    make_family(name).validate(data_for(name, (20,), seed=11))


def test_dims_and_sites() -> None:
    assert make_family("gaussian-full").dims("state") == {
        "locs": ["state", "feature"],
        "scales": ["state", "feature"],
        "corr_cholesky": ["state", "feature", "feature_bis"],
    }
    assert Gaussian(num_features=1, covariance="full").sites == ("locs", "scales")  # no correlation in 1-D
    assert Categorical(num_categories=3).dims() == {"probs": ["component", "category"]}
    assert Poisson().dims("state") == {"rates": ["state", "feature"]}


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Gaussian(covariance="tied"), "covariance must be one of"),
        (lambda: Gaussian(center=(0.0,)), "center and spread must be given together"),
        (lambda: Gaussian(center=(0.0,), spread=(0.0,)), "spread must be positive"),
        (lambda: Gaussian(scale_log_sd=-1.0), "scale_log_sd must be positive"),
        (lambda: Poisson(center=(0.0,)), "center must be positive"),
        (lambda: Categorical(num_categories=1), "num_categories must be at least 2"),
        (lambda: Bernoulli(concentration=0.0), "concentration must be positive"),
    ],
)
def test_bad_hyperparameters_are_refused(make: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()  # type: ignore[operator]


def test_missing_data_settings_are_named() -> None:
    with pytest.raises(ValueError, match="needs center and spread"):
        Gaussian(num_features=2).prior(torch.float64)
    with pytest.raises(ValueError, match="needs num_categories"):
        Categorical().prior(torch.float64)


# --------------------------------------------------------------------------- the mixture's priors
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_gaussian_family_reproduces_the_mixtures_priors_and_component_density(covariance: str) -> None:
    """Switching GaussianMixture over to the family changes no prior draw (same sites, same
    order, same numbers from the same seed) and no component density (to rounding)."""
    data = zoo.datasets.simulate.gaussian_mixture(num_data=40, num_components=3, seed=0)
    mixture = zoo.models.GaussianMixture(3, covariance=covariance).prepare(data)
    with isolated(seed=4):
        trace = poutine.trace(mixture).get_trace(**mixture.model_kwargs(None, num_samples=5))
    center, spread = Gaussian.empirical_prior(data.x)
    assert center == mixture.prior_center and spread == mixture.prior_spread
    family = Gaussian(
        num_features=data.num_features,
        covariance=covariance,
        center=tuple(center),
        spread=tuple(spread),
        location_scale=mixture.location_scale,
        scale_log_sd=mixture.scale_log_sd,
        correlation_concentration=mixture.correlation_concentration,
    )

    def family_prior() -> dict[str, torch.Tensor]:
        pyro.sample("weights", dist.Dirichlet(torch.full((3,), mixture.weight_concentration)))
        with pyro.plate("components", 3):
            return family.prior(torch.get_default_dtype())

    with isolated(seed=4):
        values = family_prior()
    assert set(values) == {name for name in ("locs", "scales", "corr_cholesky") if name in trace.nodes}
    for name, value in values.items():
        assert torch.equal(value, trace.nodes[name]["value"]), name
    draws = {name: value.unsqueeze(0) for name, value in values.items()}
    x = data.x.unsqueeze(-2).unsqueeze(-2)  # (N, 1, 1, D) against batch (S, K)
    torch.testing.assert_close(
        family.distribution(draws).log_prob(x), mixture.component_distribution(draws).log_prob(x), rtol=1e-6, atol=1e-5
    )
    torch.testing.assert_close(family.log_density(draws, data.x), mixture.component_distribution(draws).log_prob(x).transpose(0, 1), rtol=1e-6, atol=1e-5)



def test_a_family_is_named_with_the_hyperparameters_it_takes() -> None:
    """``Family.named`` picks the class by name and passes only its own fields."""
    shared = {"num_features": 2, "covariance": "full", "center": (1.0, 2.0), "spread": (1.0, 1.0), "concentration": 3.0,
              "num_categories": 4, "rate_log_sd": 0.5}
    assert Family.named("gaussian", **shared) == Gaussian(num_features=2, covariance="full", center=(1.0, 2.0), spread=(1.0, 1.0))
    assert Family.named("poisson", **shared) == Poisson(center=(1.0, 2.0), rate_log_sd=0.5)
    assert Family.named("categorical", **shared) == Categorical(num_categories=4, concentration=3.0)
    assert Family.named("bernoulli", **shared) == Bernoulli(num_features=2, concentration=3.0)
    assert Family.named("multinomial", **shared) == Multinomial(num_features=2, concentration=3.0)
    with pytest.raises(ValueError, match="no family is called 'gamma'"):
        Family.named("gamma")


@pytest.mark.parametrize(
    "values, expected",
    [([[0.0], [1.0]], "bernoulli"), ([[0.0], [3.0]], "poisson"), ([[0.5], [3.0]], "gaussian"), ([[-1.0], [3.0]], "gaussian")],
)
def test_guess_picks_the_narrowest_family_whose_support_holds_the_data(values: list[list[float]], expected: str) -> None:
    x = torch.tensor(values)
    if expected == "gaussian":
        assert Family.guess(x, "Model", "emission") == "gaussian"
    else:
        with pytest.warns(UserWarning, match=f"Model: emission='auto' chose '{expected}'"):
            assert Family.guess(x, "Model", "emission") == expected
