"""The contract every registered model obeys, checked over the whole registry.

A model joins these checks by registering itself and defining ``example()``; nothing here names
a particular model. Checks a model cannot take (by its declared methods and capabilities) are
skipped, never weakened.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import pyro
import pyro.poutine as poutine
import pytest
import torch
import pyro.distributions as dist
from pyro.infer.mcmc.util import initialize_model
from pyro.poutine.util import site_is_subsample
from torch.distributions import constraints

import zoo
from zoo.infer import METHODS, collapse, evaluate, priors
from zoo.infer.guides import DETERMINISTIC_GUIDES, POINT_MASS_GUIDES, guide_names, make_guide
from zoo.infer.potential import VECTOR_SITE, Potential, compiled
from zoo.infer.runtime import isolated
from zoo.models import registry

MODEL_NAMES = registry.names()


def example(name: str) -> tuple[zoo.models.Model, zoo.Dataset]:
    return registry.get(name).example()


#: (registry name, variant index) for every example of every model: each option that changes a
#: model's density (a covariance form, an emission family) gets the density checks.
VARIANTS = [(name, index) for name in MODEL_NAMES for index in range(len(registry.get(name).examples()))]


def variant(name: str, index: int) -> tuple[zoo.models.Model, zoo.Dataset]:
    return registry.get(name).examples()[index]


def supported(model: zoo.models.Model, guide: str) -> str:
    """``guide`` if the model takes it, else its default guide: a model declares the generic
    guides it cannot take (``unsupported_guides``, e.g. a full-rank Normal over a VAE's codes)."""
    return guide if guide in guide_names(model) else model.default_guide


def quick_svi(guide: str = "normal", **options: object) -> zoo.SVI:
    settings = {"guide": guide, "num_steps": 3, "num_posterior_samples": 4, "progress": False}
    settings.update(options)
    return zoo.SVI(**settings)


def quick(model: zoo.models.Model, guide: str = "normal", **options: object) -> object:
    """The quickest fit of ``model``: SVI with ``guide`` (or the model's default guide, if it
    cannot take that one), or, for a model that takes no SVI (an implicit model such as a GAN,
    which has no ELBO), its first declared method with as few steps."""
    if "svi" in model.methods:
        return quick_svi(guide=supported(model, guide), **options)
    config = METHODS[model.methods[0]][0]
    settings: dict[str, object] = {"num_steps": 3, "num_posterior_samples": 4, "progress": False, "batch_size": 8}
    settings.update(options)
    return config(**{key: value for key, value in settings.items() if key in config.__dataclass_fields__})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_registry_entry_is_complete(name: str) -> None:
    model, data = example(name)
    assert type(model).registry_name == name
    assert model.methods, "a model must support at least one method"
    assert all(kind in METHODS for kind in model.methods), model.methods
    # a refusal explains a method the model does not take: never one it takes, never an unknown one
    assert all(kind in METHODS and kind not in model.methods for kind in model.refused_methods)
    if "svi" in model.methods:  # guides are SVI's
        assert model.default_guide in guide_names(model)
    rebuilt = type(model)(**model.config())
    assert rebuilt.config() == model.config()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_prior_predictive_shapes(name: str) -> None:
    model, data = example(name)
    prepared = model.prepare(data)
    with isolated(seed=0):
        trace = poutine.trace(prepared).get_trace(**prepared.model_kwargs(None, num_samples=7))
    value = trace.nodes[prepared.observed_site]["value"]
    assert value.shape[0] == 7
    assert tuple(value.shape[1:]) == tuple(data.x.shape[1:])
    for site in prepared.enumerated_sites:
        assert site in trace.nodes


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_does_not_mutate_and_prepare_copies(name: str) -> None:
    model, data = example(name)
    before = model.config()
    zoo.fit(model, data, quick(model, guide="delta"))
    assert model.config() == before


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_finite_svi_step_per_guide(name: str) -> None:
    model, data = example(name)
    if "svi" not in model.methods:
        pytest.skip("model does not take SVI")
    for guide in guide_names(model):
        fit = zoo.fit(model, data, quick_svi(guide=guide, num_steps=2))
        assert torch.isfinite(fit.losses).all(), guide
        # a point mass (guide "delta"), or a model with no global latent site, is one draw
        point_mass = guide in POINT_MASS_GUIDES or not fit.draws
        assert fit.num_chains == 1 and fit.num_draws == (1 if point_mass else 4), guide
        for value in fit.draws.values():
            assert torch.isfinite(value).all(), guide
        assert torch.isfinite(fit.log_prob(data)).all(), guide


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_guide_covers_exactly_the_non_enumerated_latents(name: str) -> None:
    model, data = example(name)
    if "svi" not in model.methods:
        pytest.skip("model does not take SVI: it has no guide")
    prepared = model.prepare(data)
    kwargs = prepared.model_kwargs(data)
    with isolated(seed=0):
        model_trace = poutine.trace(prepared).get_trace(**kwargs)
        latent = {
            site
            for site, node in model_trace.nodes.items()
            if node["type"] == "sample" and not node["is_observed"]
            and type(node["fn"]).__name__ != "_Subsample"
        }
        for guide_name in guide_names(prepared):
            guide = make_guide(prepared, guide_name)
            guide_trace = poutine.trace(guide).get_trace(**kwargs)
            sampled = {
                site
                for site, node in guide_trace.nodes.items()
                if node["type"] == "sample" and not node["infer"].get("is_auxiliary")
                and type(node["fn"]).__name__ != "_Subsample"
            }
            assert sampled == latent - set(prepared.enumerated_sites) - set(prepared.integrated_sites), guide_name


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_result_other_seed_other_result(name: str) -> None:
    model, data = example(name)
    first = zoo.fit(model, data, quick(model, seed=3))
    second = zoo.fit(model, data, quick(model, seed=3))
    third = zoo.fit(model, data, quick(model, seed=4))
    for site in first.draws:
        assert torch.equal(first.draws[site], second.draws[site])
    assert torch.equal(first.losses, second.losses)
    if first.draws:
        assert any(not torch.equal(first.draws[site], third.draws[site]) for site in first.draws)
    else:  # no global latents (a VAE): the seed shows in the training noise
        if "svi" in model.methods and supported(model, "normal") in DETERMINISTIC_GUIDES:
            # no noise in a point estimate's full-batch loss (a flow's weights): the seed
            # shows in which rows each minibatch takes
            first, third = (zoo.fit(model, data, quick(model, seed=seed, batch_size=len(data) // 2)) for seed in (3, 4))
        assert not torch.equal(first.losses, third.losses)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_compiled_steps_equal_eager_steps_where_declared(name: str) -> None:
    """A model declaring ``jit_safe`` gets SVI's compiled ELBO by default: its steps must be the
    eager steps, to float rounding (the first few, before Adam's per-weight normalisation lets
    rounding grow), for its default guide and for a generic one."""
    model, data = example(name)
    if not model.jit_safe:
        pytest.skip(f"{name} does not declare jit_safe: SVI runs it eagerly unless asked")
    for guide in {model.default_guide, supported(model, "normal")}:
        eager = zoo.fit(model, data, quick_svi(guide, num_steps=5, seed=2, jit=False))
        compiled = zoo.fit(model, data, quick_svi(guide, num_steps=5, seed=2))
        torch.testing.assert_close(compiled.losses, eager.losses, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "index"), VARIANTS)
def test_recorded_svi_steps_are_the_eager_steps(name: str, index: int) -> None:
    """A model declaring ``static_likelihood`` gets its full-batch SVI step recorded once and
    replayed: every guide zoo builds for it by name (but the point masses, fitted eagerly by
    L-BFGS) must take the eager run's steps to the bit (the same gradients from the same random
    draws), so the draws are the eager draws; the losses agree to float rounding. A step size of
    0.05 over 40 steps carries the parameters well away from where the step was recorded."""
    model, data = variant(name, index)
    if "svi" not in model.methods or not model.prepare(data).static_likelihood:
        pytest.skip("not a model whose SVI steps are recorded (static_likelihood)")
    guides = [guide for guide in guide_names(model) if guide not in DETERMINISTIC_GUIDES]
    assert guides, "a static model takes a random guide"
    for guide in guides:
        options = dict(guide=guide, num_steps=40, learning_rate=0.05, num_posterior_samples=20, seed=5)
        eager = zoo.fit(model, data, quick_svi(jit=False, **options))
        recorded = zoo.fit(model, data, quick_svi(**options))
        assert recorded.diagnostics["steps"] == "recorded" and eager.diagnostics["steps"] == "eager", guide
        torch.testing.assert_close(recorded.losses, eager.losses, rtol=1e-5, atol=1e-5, msg=guide)
        for site, value in eager.draws.items():
            assert torch.equal(recorded.draws[site], value), (guide, site)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_two_fits_in_one_process_are_independent(name: str) -> None:
    model, data = example(name)
    pyro.get_param_store().clear()
    user_value = torch.tensor([1.0, 2.0])
    pyro.param("users_own_parameter", user_value.clone())
    torch.manual_seed(123)
    expected_next_random = torch.rand(3)
    torch.manual_seed(123)

    alone = zoo.fit(model, data, quick(model, guide="normal", num_steps=5))
    zoo.fit(model, data, quick(model, guide="mvn", num_steps=5, seed=1))
    again = zoo.fit(model, data, quick(model, guide="normal", num_steps=5))
    for site in alone.draws:
        assert torch.equal(alone.draws[site], again.draws[site])
    assert torch.equal(alone.losses, again.losses)
    # the user's parameter store and random stream are untouched
    assert list(pyro.get_param_store().keys()) == ["users_own_parameter"]
    assert torch.equal(pyro.param("users_own_parameter").detach(), user_value)
    assert torch.equal(torch.rand(3), expected_next_random)
    pyro.get_param_store().clear()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_load_round_trip(name: str, tmp_path: object) -> None:
    model, data = example(name)
    fit = zoo.fit(model, data, quick(model, guide="mvn", num_steps=5))
    path = fit.save(tmp_path / "fit.zoo")  # type: ignore[operator]
    loaded = zoo.load(path)
    if fit.model.capability("log_prob"):
        assert torch.equal(loaded.log_prob(data), fit.log_prob(data))
    assert torch.equal(loaded.losses, fit.losses)
    if fit.model.capability("sample"):
        assert torch.equal(loaded.sample(6, seed=5), fit.sample(6, seed=5))
    original, restored = fit.to_arviz(), loaded.to_arviz()
    assert set(original.groups()) == set(restored.groups())
    for group in original.groups():
        assert original[group].equals(restored[group]), group


def test_load_refuses_foreign_and_tampered_files(tmp_path: object) -> None:
    foreign = tmp_path / "foreign.zoo"  # type: ignore[operator]
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not a zoo fit file"):
        zoo.load(foreign)
    garbage = tmp_path / "garbage.zoo"  # type: ignore[operator]
    garbage.write_bytes(b"this is not a torch file at all")
    with pytest.raises(ValueError, match="not a zoo fit file"):
        zoo.load(garbage)

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    evil = tmp_path / "evil.zoo"  # type: ignore[operator]
    torch.save({"format": "zoo.fit", "payload": Evil()}, evil)
    with pytest.raises(ValueError, match="not a zoo fit file"):
        zoo.load(evil)
    with pytest.raises(FileNotFoundError):
        zoo.load(tmp_path / "missing.zoo")  # type: ignore[operator]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fast_log_likelihood_equals_enumeration(name: str) -> None:
    model, data = example(name)
    if not model.capability("log_prob"):
        pytest.skip("model defines no density (test_a_model_without_density_says_so)")
    if model.local_sites:
        pytest.skip("continuous local latents: log p(x) is an importance-sampling estimate, not enumerable")
    if model.integrated_sites:
        pytest.skip("continuous codes integrated in closed form: test_integrated_sites_posterior_is_exact")
    fit = zoo.fit(model, data, quick_svi(guide=supported(model, "normal"), num_posterior_samples=3))
    flat = evaluate.flatten_draws(fit.draws)
    try:
        fast = fit.model.log_likelihood(flat, data)
    except NotImplementedError:
        pytest.skip("model has no fast path: the enumerated definition is used directly")
    with isolated():
        enumerated = torch.stack(
            [evaluate.marginal_log_likelihood(fit.model, evaluate.select_draw(flat, s), data) for s in range(3)]
        )
    if not flat:  # no global latent site (a flow): one point, one row
        enumerated = enumerated[:1]
    torch.testing.assert_close(fast, enumerated, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("name", "index"), VARIANTS)
def test_integrated_sites_posterior_is_exact(name: str, index: int) -> None:
    """For continuous local latents z integrated out in closed form, Bayes' rule holds at any z:
    ``log p(x_i | theta) = log p(x_i, z_i | theta) - log p(z_i | x_i, theta)``, the joint traced
    from ``forward`` and the posterior the model's ``local_posterior``; so the collapsed
    likelihood and the stated posterior are both exact (a wrong one of either breaks it)."""
    model, data = variant(name, index)
    prepared = model.prepare(data)
    if not prepared.integrated_sites:
        pytest.skip("no integrated sites")
    generator = torch.Generator().manual_seed(0)
    for seed in range(2):
        with isolated(seed=seed), torch.no_grad():
            params = poutine.trace(prepared.sample_globals).get_trace().nodes
        params = {site: node["value"].double() for site, node in params.items() if node["type"] == "sample"}
        draws = {site: value.unsqueeze(0) for site, value in params.items()}
        rows = data.rows(torch.arange(len(data)))
        object.__setattr__(rows, "x", rows.x.double())
        collapsed = prepared.log_likelihood(draws, rows)[0]  # (N,)
        posterior = prepared.local_posterior(draws, rows)
        locals_, log_posterior = {}, torch.zeros(len(data), dtype=torch.float64)
        for site, (mean, covariance) in posterior.items():
            tril = torch.linalg.cholesky(covariance[0])
            value = mean[0] + (tril @ torch.randn(mean[0].shape + (1,), generator=generator, dtype=torch.float64)).squeeze(-1)
            locals_[site] = value
            log_posterior += torch.distributions.MultivariateNormal(mean[0], scale_tril=tril).log_prob(value)
        with isolated(), _float64(prepared.model_kwargs(data)) as kwargs:
            trace = poutine.trace(poutine.condition(prepared, data=params | locals_)).get_trace(**kwargs)
        joint = sum(
            trace.nodes[site]["fn"].log_prob(trace.nodes[site]["value"])
            for site in (*prepared.integrated_sites, prepared.observed_site)
        )
        torch.testing.assert_close(joint - log_posterior, collapsed, rtol=1e-8, atol=1e-8)


def _replay_rows(plate: str, index: torch.Tensor) -> poutine.replay:
    """Make the data plate ``plate`` take the rows ``index`` (a minibatch), in any model."""
    trace = poutine.Trace()
    trace.add_node(plate, name=plate, type="sample", is_observed=False, value=index, infer={})
    return poutine.replay(trace=trace)


def _empty_guide(*args: object, **kwargs: object) -> None:
    """The guide of a model whose latents are all conditioned (or enumerated)."""


@pytest.mark.parametrize(("name", "index"), VARIANTS)
@pytest.mark.parametrize("rows", ["all", "minibatch"])
def test_collapsed_training_model_is_the_enumerated_definition(name: str, index: int, rows: str) -> None:
    """The one density contract: the training model derived from the global story and the
    collapsed likelihood gives the log joint of the enumerated definition, in value and in
    gradient with respect to every parameter, at random parameter values, on all rows and on
    a minibatch (the data plate's scaling included)."""
    model, data = variant(name, index)
    prepared = model.prepare(data)
    if not prepared.enumerated_sites:
        pytest.skip("no enumerated sites: nothing to collapse")
    assert collapse.collapsible(prepared), "a model with enumerated sites states its collapsed likelihood"
    collapsed = collapse.CollapsedModel(prepared)
    rows_index = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))[: max(1, len(data) // 3)]
    for seed in range(3):
        with isolated(seed=seed), torch.no_grad():
            trace = poutine.trace(prepared.sample_globals).get_trace()
        params = {
            site: node["value"].detach().double().requires_grad_()
            for site, node in trace.nodes.items()
            if node["type"] == "sample" and not node["is_observed"] and not site_is_subsample(node)
        }
        losses = []
        for trained, kwargs, elbo in [
            (prepared, prepared.model_kwargs(data), pyro.infer.TraceEnum_ELBO(max_plate_nesting=prepared.max_plate_nesting)),
            (collapsed, {"data": data}, pyro.infer.Trace_ELBO(max_plate_nesting=prepared.max_plate_nesting)),
        ]:
            conditioned = poutine.condition(trained, data=params)
            replay = _replay_rows(prepared.data_plate, rows_index) if rows == "minibatch" else contextlib.nullcontext()
            with isolated(), replay, torch.autograd.set_detect_anomaly(False):
                with _float64(kwargs) as double:
                    losses.append(elbo.differentiable_loss(conditioned, _empty_guide, **double))
        enumerated, fast = losses
        torch.testing.assert_close(fast, enumerated, rtol=1e-6, atol=1e-6)
        gradients = [torch.autograd.grad(loss, list(params.values())) for loss in losses]
        for site, slow_gradient, fast_gradient in zip(params, *gradients):
            torch.testing.assert_close(fast_gradient, slow_gradient, rtol=1e-5, atol=1e-6, msg=f"d loss / d {site}")


@contextlib.contextmanager
def _float64(kwargs: dict[str, object]) -> Iterator[dict[str, object]]:
    """The model's arguments with its data in float64 (so value checks can be tight), under
    float64 default tensors."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        converted = {}
        for key, value in kwargs.items():
            if isinstance(value, torch.Tensor) and value.dtype.is_floating_point:
                value = value.double()
            elif isinstance(value, zoo.Dataset):  # a Dataset stores float32: set x past its checks
                value = value.rows(torch.arange(len(value)))
                object.__setattr__(value, "x", value.x.double())
            converted[key] = value
        yield converted
    finally:
        torch.set_default_dtype(before)


@pytest.mark.parametrize(("name", "index"), VARIANTS)
def test_collapsed_training_model_under_vectorised_particles(name: str, index: int) -> None:
    """With several ELBO particles drawn at once (a particle plate left of the model's plates),
    the collapsed training model gives the enumerated definition's estimate: the same guide
    draws, the same loss and gradient."""
    model, data = variant(name, index)
    prepared = model.prepare(data)
    if not prepared.enumerated_sites:
        pytest.skip("no enumerated sites: nothing to collapse")
    collapsed = collapse.CollapsedModel(prepared)
    options = {"max_plate_nesting": prepared.max_plate_nesting, "num_particles": 3, "vectorize_particles": True}
    losses = []
    with isolated(seed=0):
        guide = make_guide(prepared, "normal", prepared.initial_values(data), collapsed)
        pyro.infer.Trace_ELBO(**options).differentiable_loss(collapsed, guide, data=data)
        for trained, kwargs, elbo in [
            (prepared, prepared.model_kwargs(data), pyro.infer.TraceEnum_ELBO(**options)),
            (collapsed, {"data": data}, pyro.infer.Trace_ELBO(**options)),
        ]:
            pyro.set_rng_seed(5)
            losses.append(elbo.differentiable_loss(trained, guide, **kwargs))
        parameters = list(guide.parameters())
        gradients = [torch.autograd.grad(loss, parameters) for loss in losses]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-3)
    for enumerated, fast in zip(*gradients):
        torch.testing.assert_close(fast, enumerated, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(("name", "index"), VARIANTS)
def test_nuts_potential_equals_pyros_own(name: str, index: int) -> None:
    """The plain-torch potential NUTS runs on equals the potential Pyro derives by tracing the
    training model (``initialize_model``), in value and gradient, at several random points of
    the unconstrained space."""
    model, data = variant(name, index)
    prepared = model.prepare(data)
    if "nuts" not in prepared.methods:
        pytest.skip("model does not take NUTS")
    if not collapse.collapsible(prepared):
        pytest.skip("no collapsed likelihood: NUTS runs Pyro's potential of forward")
    ours = Potential(prepared, data)
    with isolated(seed=0):
        initial, pyros, transforms, _ = initialize_model(
            collapse.CollapsedModel(prepared), model_kwargs={"data": data}, max_plate_nesting=prepared.max_plate_nesting
        )
    assert set(transforms) == set(ours.transforms)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        point = {
            site: (value + 0.5 * torch.randn(value.shape, generator=generator)).requires_grad_()
            for site, value in initial.items()
        }
        with isolated():
            expected = pyros(point)
        actual = ours(point)
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
        for site, mine, theirs in zip(
            point, torch.autograd.grad(actual, list(point.values())), torch.autograd.grad(expected, list(point.values()))
        ):
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-4 * (1 + float(theirs.abs().max())), msg=site)


def prior_on_support(site: dict[str, object]) -> dist.Distribution:
    """A prior other than the site's own, on the same support (the first per-coordinate
    constraint under any reinterpreted event dims); a scalar one where a number has its own,
    broadcast by ``priors=`` to the site's shape."""
    support, shape = site["fn"].support, site["value"].shape
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.simplex:
        return dist.Dirichlet(torch.linspace(0.5, 2.0, shape[-1]))
    if support is constraints.corr_cholesky:
        return dist.LKJCholesky(shape[-1], 1.5)
    if isinstance(support, (constraints.greater_than, constraints.greater_than_eq)):
        return dist.LogNormal(0.3, 0.7)
    if isinstance(support, constraints.interval):
        return dist.Beta(2.0, 3.0)
    return dist.Normal(0.3, 0.7)


@pytest.mark.parametrize(("name", "index"), VARIANTS)
def test_user_priors_change_the_log_joint_and_the_potential_by_their_log_densities(name: str, index: int) -> None:
    """With user priors on every other global site (``zoo.fit(..., priors=...)``), the training
    model's log joint at a point differs from the model's own by exactly sum(log user prior -
    log own prior) there; the plain-torch NUTS potential equals Pyro's (``initialize_model``)
    of the training model with the priors replaced, and Pyro's potential of the model's own
    training model minus the same difference, in value and gradient."""
    model, data = variant(name, index)
    own = model.prepare(data)
    if "nuts" not in own.methods or not collapse.collapsible(own):
        pytest.skip("no collapsed likelihood fitted by NUTS: priors= refuses it (the catalogue checks)")
    with isolated(seed=0):
        sites = collapse.global_site_nodes(own)
    mine = model.prepare(data)
    given = priors.check_priors(mine, "nuts", {site: prior_on_support(sites[site]) for site in list(sites)[1::2]})
    mine.set_priors(given)

    # the log joint at a draw of the model's own prior
    with isolated(seed=0):
        point = {site: node["value"] for site, node in sites.items()}
        joints = [
            poutine.trace(poutine.condition(collapse.CollapsedModel(prepared), data=point)).get_trace(data=data).log_prob_sum()
            for prepared in (own, mine)
        ]
    own_trace = poutine.trace(poutine.condition(own.sample_globals, data=point)).get_trace()
    difference = sum(given[site].log_prob(point[site]).sum() - own_trace.nodes[site]["fn"].log_prob(point[site]).sum() for site in given)
    rounding = 1e-6 * float(joints[0].abs() + joints[1].abs())  # float32 sums of many terms
    torch.testing.assert_close(joints[1] - joints[0], difference, rtol=1e-5, atol=1e-4 + rounding)

    ours = Potential(mine, data)
    with isolated(seed=0):
        initial, theirs_with, transforms, _ = initialize_model(
            collapse.CollapsedModel(mine), model_kwargs={"data": data}, max_plate_nesting=mine.max_plate_nesting
        )
        _, theirs_own, _, _ = initialize_model(
            collapse.CollapsedModel(own), model_kwargs={"data": data}, max_plate_nesting=own.max_plate_nesting
        )
    generator = torch.Generator().manual_seed(0)
    for _ in range(1):
        at = {site: (value + 0.5 * torch.randn(value.shape, generator=generator)).requires_grad_() for site, value in initial.items()}
        constrained = {site: transforms[site].inv(value) for site, value in at.items()}
        with isolated():
            pyros = theirs_with(at)
            own_potential = theirs_own(at)
        own_prior = poutine.trace(poutine.condition(own.sample_globals, data=constrained)).get_trace()
        shift = sum(given[site].log_prob(constrained[site]).sum() - own_prior.nodes[site]["fn"].log_prob(constrained[site]).sum() for site in given)
        actual = ours(at)
        for expected in (pyros, own_potential - shift):
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-4)
            for site, left, right in zip(
                at, torch.autograd.grad(actual, list(at.values()), retain_graph=True), torch.autograd.grad(expected, list(at.values()), retain_graph=True)
            ):
                torch.testing.assert_close(left, right, rtol=1e-4, atol=1e-4 * (1 + float(right.abs().max())), msg=site)


@pytest.mark.parametrize(("name", "index"), VARIANTS)
def test_a_recorded_potential_replays_the_eager_one(name: str, index: int) -> None:
    """A model declaring ``static_likelihood`` has its potential recorded once by
    ``torch.jit.trace``: the recording must give the eager potential's value and gradient at
    points far from the one it was recorded at (a branch on a tensor's value would not)."""
    model, data = variant(name, index)
    prepared = model.prepare(data)
    if not prepared.static_likelihood:
        pytest.skip("the model does not declare static_likelihood: NUTS runs its potential eagerly")
    eager = Potential(prepared, data)
    start = eager.initial_point(prepared.initial_values(data))
    replay = compiled(eager, start)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        point = {
            site: (value + torch.randn(value.shape, generator=generator)).requires_grad_()
            for site, value in start.items()
        }
        expected, actual = eager(point), replay(point)
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-4)
        for site, mine, theirs in zip(
            point, torch.autograd.grad(actual, list(point.values())), torch.autograd.grad(expected, list(point.values()))
        ):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4 * (1 + float(theirs.abs().max())), msg=site)


@pytest.mark.parametrize(("name", "index"), VARIANTS)
def test_the_sampler_sees_every_coordinate_as_one_vector(name: str, index: int) -> None:
    """NUTS samples one site holding every unconstrained coordinate, the sites in sorted order,
    each flattened (Pyro's layout of its mass matrix): the vector must hold each site's
    coordinates unchanged and give the same potential."""
    model, data = variant(name, index)
    prepared = model.prepare(data)
    if not collapse.collapsible(prepared):
        pytest.skip("no collapsed likelihood: NUTS runs on Pyro's potential of the model")
    potential = Potential(prepared, data)
    point = potential.initial_point(prepared.initial_values(data))
    vector = potential.flatten(point)
    assert vector.shape == (sum(value.numel() for value in point.values()),)
    assert list(potential.unconstrained_shapes) == sorted(point)
    expected = torch.cat([point[site].reshape(-1) for site in sorted(point)])
    assert torch.equal(vector, expected)
    for site, value in potential.unflatten(vector).items():
        assert torch.equal(value, point[site]), site
    assert torch.equal(potential.of_vector({VECTOR_SITE: vector}), potential(point))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_arviz_log_likelihood_is_the_exact_marginal(name: str) -> None:
    model, data = example(name)
    if not model.capability("log_prob"):
        pytest.skip("model defines no density (test_a_model_without_density_says_so)")
    fit = zoo.fit(model, data, quick_svi(guide=supported(model, "normal")))
    idata = fit.to_arviz()
    stored = torch.as_tensor(idata.log_likelihood[model.observed_site].values)
    draws = 4 if fit.draws else 1  # a model with no global latent site (a VAE) is one point
    assert stored.shape == (1, draws, len(data))
    torch.testing.assert_close(stored, fit.log_likelihood(data))
    expected = fit.log_likelihood(data).reshape(draws, -1).logsumexp(0) - math.log(draws)
    torch.testing.assert_close(fit.log_prob(data), expected)
    expected = {"log_likelihood", "posterior_predictive", "observed_data"}
    if fit.draws:  # a model with no global latent site (a VAE) has nothing to put in a posterior group
        expected.add("posterior")
    assert expected <= set(idata.groups())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_model_without_density_says_so(name: str) -> None:
    model, data = example(name)
    if model.capability("log_prob"):
        pytest.skip("model has a density (test_arviz_log_likelihood_is_the_exact_marginal)")
    fit = zoo.fit(model, data, quick(model))
    for ask in (fit.log_prob, fit.log_likelihood):
        with pytest.raises(ValueError, match="defines no density.*zoo.metrics.mmd"):
            ask(data)
    idata = fit.to_arviz()
    assert "log_likelihood" not in idata.groups()
    assert {"posterior_predictive", "observed_data"} <= set(idata.groups())
    if model.capability("sample"):
        samples = fit.sample(5, seed=1)
        assert samples.shape == (5,) + tuple(data.x.shape[1:])
        assert torch.isfinite(samples).all()
        assert torch.equal(samples, fit.sample(5, seed=1))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_short_nuts_run(name: str) -> None:
    model, data = example(name)
    if "nuts" not in model.methods:
        pytest.skip("model does not take NUTS")
    method = zoo.NUTS(num_warmup=10, num_samples=10, num_chains=2, progress=False)
    # ten draws per chain cannot reach 100 effective draws per chain: the fit must say so
    with pytest.warns(UserWarning, match="the chains did not mix"):
        fit = zoo.fit(model, data, method)
    assert fit.num_chains == 2 and fit.num_draws == 10
    assert any("ESS" in problem for problem in fit.diagnostics["mixing_problems"])
    with pytest.warns(UserWarning, match="the chains did not mix"):
        again = zoo.fit(model, data, method)
    for site in fit.draws:  # the same seed gives the same chains
        assert torch.equal(fit.draws[site], again.draws[site])
    statistics = {"diverging", "acceptance_rate", "step_size", "lp", "energy", "n_steps", "tree_depth"}
    assert set(fit.sample_stats) >= statistics
    assert all(fit.sample_stats[name].shape == (2, 10) for name in statistics)
    # NUTS doubles its trajectory: depth d means between 2^(d-1) and 2^d - 1 leapfrog steps
    steps, depth = fit.sample_stats["n_steps"], fit.sample_stats["tree_depth"]
    assert ((2 ** (depth - 1) <= steps) & (steps <= 2**depth - 1)).all()
    assert "max_rhat" in fit.diagnostics
    assert torch.isfinite(fit.log_prob(data)).all()
    assert fit.log_prob(data.subset([0])).shape == (1,)  # one new datum is fine to score
    if fit.model.capability("discrete"):
        labels = fit.discrete(data)
        assert labels.shape[0] == len(data)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bad_inputs_are_refused_before_any_work(name: str) -> None:
    model, data = example(name)
    with pytest.raises(ValueError, match="NaN"):
        bad = data.x.clone()
        bad.view(-1)[0] = float("nan")
        zoo.fit(model, bad, quick(model))
    with pytest.raises(ValueError, match="empty"):
        zoo.fit(model, data.x[:0], quick(model))
    if "svi" in model.methods:
        with pytest.raises(ValueError, match=f"unknown guide 'nonsense'.*valid guides: {guide_names(model)[0]}"):
            zoo.fit(model, data, quick_svi(guide="nonsense"))
    with pytest.raises(ValueError, match="num_steps must be at least 1"):
        zoo.SVI(num_steps=0)
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        zoo.SVI(learning_rate=-0.1)
    with pytest.raises(TypeError, match="method must be one of"):
        zoo.fit(model, data, object())  # method strings ("svi:delta") are fine, other objects are not
    with pytest.raises(TypeError, match="model must be a zoo model"):
        zoo.fit(object(), data, quick(model))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        zoo.fit(model, data.x.reshape(-1), quick(model))  # wrong number of dimensions
    with pytest.raises(ValueError, match="batch_size"):
        zoo.fit(model, data, quick(model, batch_size=len(data) + 1))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fast_marginals_equal_enumeration(name: str) -> None:
    model, data = example(name)
    if not model.enumerated_sites:
        pytest.skip("no enumerated sites")
    fit = zoo.fit(model, data, quick_svi(guide="normal", num_posterior_samples=3))
    flat = evaluate.flatten_draws(fit.draws)
    try:
        fast = fit.model.marginals(flat, data)
    except NotImplementedError:
        pytest.skip("model has no fast path")
    with isolated():
        for s in range(3):
            enumerated = evaluate.posterior_marginals(fit.model, evaluate.select_draw(flat, s), data)
            for site, probs in enumerated.items():
                torch.testing.assert_close(fast[site][s], probs, rtol=1e-4, atol=1e-5)
    averaged = fit.marginals(data)
    averaged = averaged if isinstance(averaged, dict) else {model.enumerated_sites[0]: averaged}
    for site, probs in averaged.items():
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
