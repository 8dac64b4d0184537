"""zoo.NUTS: its plain-torch potential, its chains, and what it reports about them.

The potential's equality with Pyro's own is a contract check over every model
(tests/test_contract.py::test_nuts_potential_equals_pyros_own); here, what the runner does with it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pytest
import torch

import zoo
from zoo.datasets import simulate
from zoo.infer import mcmc


def small_mixture() -> tuple[zoo.models.GaussianMixture, zoo.Dataset]:
    return zoo.models.GaussianMixture(2), simulate.gaussian_mixture(num_data=60, num_components=2, seed=0)


def quiet_fit(model: zoo.models.Model, data: zoo.Dataset, method: zoo.NUTS) -> zoo.Fit:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*the chains did not mix")  # short test budgets
        return zoo.fit(model, data, method)


def test_nuts_never_runs_the_model_while_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampler evaluates the plain-torch potential only: the model's ``forward`` is not run
    once in the whole fit, and its global story only where the potential is set up (a mixture's
    priors do not depend on each other, so their distribution objects are kept)."""
    model, data = small_mixture()
    calls = {"forward": 0, "sample_globals": 0}
    original_forward, original_globals = zoo.models.GaussianMixture.forward, zoo.models.GaussianMixture.sample_globals

    def counted_forward(self: object, *args: object, **kwargs: object) -> object:
        calls["forward"] += 1
        return original_forward(self, *args, **kwargs)

    def counted_globals(self: object) -> object:
        calls["sample_globals"] += 1
        return original_globals(self)

    monkeypatch.setattr(zoo.models.GaussianMixture, "forward", counted_forward)
    monkeypatch.setattr(zoo.models.GaussianMixture, "sample_globals", counted_globals)
    fit = quiet_fit(model, data, zoo.NUTS(num_warmup=30, num_samples=30, num_chains=2, progress=False))
    leapfrog_steps = int(fit.sample_stats["n_steps"].sum())
    assert leapfrog_steps > 60
    assert calls["forward"] == 0
    # set-up only: two per Potential (the start's search, each chain), one for the size of the
    # kept draws; none per leapfrog step
    assert calls["sample_globals"] <= 2 * (1 + 2) + 1


def test_a_recording_keeps_an_outside_tensor_as_it_was_when_recorded() -> None:
    """A tensor from outside the potential that it writes to in place (here an accumulator) is
    kept as it was before the recording wrote to it, and copied at each replay: a recording is
    a function of its point alone, so three replays at one point give one value."""
    from zoo.infer.potential import compiled

    accumulator = torch.tensor([1.0, 2.0])

    def energy(point: dict[str, torch.Tensor]) -> torch.Tensor:
        accumulator.add_(point["x"])
        return (accumulator**2).sum()

    replay = compiled(energy, {"x": torch.tensor([0.25, 0.25])})  # recording adds to it too
    at = torch.tensor([0.5, -1.0])
    for _ in range(3):
        value, gradient = replay.value_and_gradient({"x": at})
        torch.testing.assert_close(value, torch.tensor(1.5**2 + 1.0**2))
        torch.testing.assert_close(gradient["x"], 2 * torch.tensor([1.5, 1.0]))


def test_leapfrog_steps_take_the_recorded_gradient_without_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a recorded potential, each leapfrog step gets the value and gradient from one call
    of the graph (``Replay.value_and_gradient``), not through autograd (``Replay.__call__``);
    the swap of Pyro's ``potential_grad`` is undone after the fit (after the last of chains
    whose runs overlap), and while it is on, a potential without ``value_and_gradient`` still
    takes Pyro's path."""
    from pyro.ops import integrator

    from zoo.infer.potential import Replay

    calls = {"autograd": 0, "direct": 0}
    through_autograd, direct = Replay.__call__, Replay.value_and_gradient

    def counted_autograd(self: Replay, point: dict[str, torch.Tensor]) -> torch.Tensor:
        calls["autograd"] += 1
        return through_autograd(self, point)

    def counted_direct(self: Replay, point: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        calls["direct"] += 1
        return direct(self, point)

    monkeypatch.setattr(Replay, "__call__", counted_autograd)
    monkeypatch.setattr(Replay, "value_and_gradient", counted_direct)
    pyros_own = integrator.potential_grad
    model, data = small_mixture()
    fit = quiet_fit(model, data, zoo.NUTS(num_warmup=20, num_samples=20, num_chains=1, progress=False))
    assert integrator.potential_grad is pyros_own
    assert calls["direct"] >= int(fit.sample_stats["n_steps"].sum()) > 20
    # what is left through autograd is set-up: a potential and gradient at the start, and the
    # potential alone (no gradient) in each search for a reasonable step size
    assert calls["autograd"] < calls["direct"] / 10

    quadratic = {"x": torch.tensor([0.5, -1.0])}
    with mcmc._gradients_without_autograd():
        gradient, energy = integrator.potential_grad(lambda z: 0.5 * (z["x"] ** 2).sum(), dict(quadratic))
    torch.testing.assert_close(gradient["x"], quadratic["x"])
    torch.testing.assert_close(energy, torch.tensor(0.625))

    # chains in two threads whose runs overlap, the first ending first: Pyro's own comes back
    # when the last one ends, not before
    first, second = mcmc._gradients_without_autograd(), mcmc._gradients_without_autograd()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert integrator.potential_grad is not pyros_own
    second.__exit__(None, None, None)
    assert integrator.potential_grad is pyros_own


def test_parallel_chains_give_the_sequential_draws() -> None:
    model, data = small_mixture()
    settings = {"num_warmup": 15, "num_samples": 10, "num_chains": 2, "progress": False, "seed": 3}
    sequential = quiet_fit(model, data, zoo.NUTS(**settings))
    parallel = quiet_fit(model, data, zoo.NUTS(chain_method="parallel", **settings))
    for site in sequential.draws:
        assert torch.equal(sequential.draws[site], parallel.draws[site]), site
    assert torch.equal(sequential.sample_stats["lp"], parallel.sample_stats["lp"])


def test_energy_and_tree_statistics_serve_arviz() -> None:
    """``energy`` is the Hamiltonian of each transition: the kinetic energy of its fresh
    momentum plus the potential where it starts (the previous draw's, -lp). The kinetic energy
    of a momentum r ~ N(0, M) is r' M^-1 r / 2 ~ chi-square(P) / 2, mean P / 2 and sd
    sqrt(P / 2), independently per draw: the mean of 199 of them lies within 5 of its standard
    errors of P / 2. ArviZ's BFMI reads the energies; for this well-posed posterior it is above
    0.3, the threshold ArviZ and Stan use."""
    arviz = pytest.importorskip("arviz")
    model, data = small_mixture()
    fit = quiet_fit(model, data, zoo.NUTS(num_warmup=200, num_samples=200, num_chains=1, progress=False))
    num_coordinates = 1 + 2 * 2 + 2 * 2 + 2  # stick-breaking weights, locs, log scales, a correlation each
    kinetic = fit.sample_stats["energy"][:, 1:] + fit.sample_stats["lp"][:, :-1]
    standard_error = math.sqrt(num_coordinates / 2) / math.sqrt(kinetic.numel())
    assert abs(float(kinetic.mean()) - num_coordinates / 2) < 5 * standard_error
    bfmi = arviz.bfmi(fit.to_arviz(posterior_predictive=False))
    assert bfmi.shape == (1,) and (bfmi > 0.3).all()


def test_an_interrupt_in_a_later_chain_keeps_the_finished_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the warm-up of chain 2 returns chain 1 whole, flagged as interrupted."""
    model, data = small_mixture()
    original = mcmc._RecordingNUTS.sample
    state = {"calls": 0}
    method = zoo.NUTS(num_warmup=10, num_samples=10, num_chains=2, progress=False)

    def interrupting(self: object, params: object) -> object:
        state["calls"] += 1
        if state["calls"] == method.num_warmup + method.num_samples + 5:  # chain 2, in warm-up
            raise KeyboardInterrupt
        return original(self, params)

    monkeypatch.setattr(mcmc._RecordingNUTS, "sample", interrupting)
    fit = quiet_fit(model, data, method)
    assert fit.interrupted
    assert fit.num_chains == 1 and fit.num_draws == 10


def test_dense_mass_runs_and_the_options_are_checked() -> None:
    model, data = small_mixture()
    fit = quiet_fit(model, data, zoo.NUTS(num_warmup=20, num_samples=10, num_chains=1, dense_mass=True, progress=False))
    assert fit.num_draws == 10
    with pytest.raises(ValueError, match="initialization must be one of"):
        zoo.NUTS(initialization="prior")
    with pytest.raises(ValueError, match="chain_method must be one of"):
        zoo.NUTS(chain_method="threads")
    with pytest.raises(TypeError, match="dense_mass must be True or False"):
        zoo.NUTS(dense_mass=1)


def test_chains_start_in_the_main_mode() -> None:
    """Four well-separated clusters and K = 4 (plenty of local modes: two components on one
    cluster, one covering two): every chain starts at the best of several optimisations, so the
    chains agree (R-hat near 1) where chains started from independent k-means seeds need not.
    Chains in different modes put R-hat far above 1.1 (the clusters are 6 sd apart); with 150
    draws a chain, the largest R-hat of some 40 scalars of mixed chains varies from 1.02 to
    1.06 by seed alone."""
    data = simulate.gaussian_mixture(num_data=200, num_components=4, num_features=2, seed=4, separation=6.0)
    model = zoo.models.GaussianMixture(4)
    fit = quiet_fit(model, data, zoo.NUTS(num_warmup=150, num_samples=150, num_chains=2, progress=False))
    assert fit.diagnostics["max_rhat"] < 1.1
    order = data.truth["locs"][:, 0].argsort()
    locs = fit.posterior_mean()["locs"]
    assert torch.allclose(locs, data.truth["locs"][order], atol=0.5)


def test_a_fit_whose_chains_did_not_mix_says_so_where_it_is_read() -> None:
    """Ten draws per chain: the warning, the repr and the comparison table all say it."""
    model, data = small_mixture()
    with pytest.warns(UserWarning, match="the chains did not mix"):
        fit = zoo.fit(model, data, zoo.NUTS(num_warmup=10, num_samples=10, num_chains=2, progress=False))
    assert "NOT MIXED" in repr(fit) and "R-hat" in repr(fit)
    table = zoo.report.comparison_table({"nuts": fit}, data)
    assert "ESS" in table.loc["nuts", "flags"]


def test_the_laplace_mass_matrix_is_the_conditional_variance_of_a_gaussian_potential() -> None:
    """For U(u) = (u - m)' P (u - m) / 2 the Hessian is P everywhere, so the warm-up's first
    inverse mass matrix is 1 / P_ii: each coordinate's variance with the others held fixed.
    On a ridge (P nearly singular, as factor analysis's rotations of its loadings make it) the
    marginal variances (P^-1)_ii are huge, here above 1,000, and a mass matrix from them forced
    steps of 1e-4 on factor analysis; the conditional ones stay the scale of each coordinate."""
    precision = torch.tensor([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]], dtype=torch.float64)
    ridge = torch.tensor([[1.0, 0.9999, 0.0], [0.9999, 1.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    mode = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)

    def quadratic(matrix: torch.Tensor) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        def potential(point: dict[str, torch.Tensor]) -> torch.Tensor:
            # two sites, flattened in sorted order ("a" (1,), "b" (2,)) as Pyro's mass matrix is
            difference = torch.cat([point["a"], point["b"]]) - mode
            return 0.5 * difference @ matrix @ difference

        return potential

    point = {"b": mode[1:].clone(), "a": mode[:1].clone()}
    for matrix in (precision, ridge):
        expected = torch.tensor([1 / matrix[0, 0], 1 / matrix[1, 1], 1 / matrix[2, 2]], dtype=torch.float64)
        diagonal = mcmc.laplace_inverse_mass(quadratic(matrix), point, dense=False)
        dense = mcmc.laplace_inverse_mass(quadratic(matrix), point, dense=True)
        assert diagonal is not None and dense is not None
        assert list(diagonal) == [("a", "b")] and list(dense) == [("a", "b")]
        torch.testing.assert_close(diagonal[("a", "b")], expected, rtol=1e-12, atol=0)
        torch.testing.assert_close(dense[("a", "b")], torch.diag(expected), rtol=1e-12, atol=0)
    assert float(torch.linalg.inv(ridge)[0, 0]) > 1000
    # at a saddle (not a mode) there is no Laplace approximation: Pyro's identity is kept
    saddle = lambda point: quadratic(precision)(point) - 3.0 * (point["a"] - mode[0]).pow(2).sum()  # noqa: E731
    assert mcmc.laplace_inverse_mass(saddle, point, dense=False) is None


def test_factor_analysis_warms_up_with_reasonable_steps() -> None:
    """Factor analysis's posterior has a ridge (rotations of its loadings): its warm-up from
    the curvature at the mode must keep a step size of the order of the identity's, where the
    marginal-variance version fell to 4e-4 and every tree hit the maximum depth."""
    model, data = zoo.models.registry.get("fa").examples()[0]
    fit = quiet_fit(model, data, zoo.NUTS(num_warmup=10, num_samples=10, num_chains=1, progress=False))
    assert float(fit.sample_stats["step_size"].min()) > 0.01
    assert int(fit.sample_stats["tree_depth"].max()) < 10


@pytest.mark.parametrize("initialization", ["map", "model"])
def test_the_warm_up_starts_from_the_laplace_mass_matrix_at_the_map_start(
    initialization: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``initialization="map"`` each chain's first inverse mass matrix is 1 / diag of the
    potential's Hessian at its start, the scales of the posterior's coordinates (here P = 11 for
    the earthquakes' 3-state HMM, whose transition logits and log rates differ in posterior
    scale by orders of magnitude); with "model" (no mode to expand about) Pyro's identity."""
    data = zoo.datasets.load("earthquakes")
    model = zoo.models.HiddenMarkovModel(num_states=3, emission="poisson")
    seen: list[dict[tuple[str, ...], torch.Tensor]] = []
    original = mcmc._RecordingNUTS._initialize_adapter

    def recording(self: mcmc._RecordingNUTS) -> None:
        original(self)
        seen.append({key: value.clone() for key, value in self.mass_matrix_adapter.inverse_mass_matrix.items()})

    monkeypatch.setattr(mcmc._RecordingNUTS, "_initialize_adapter", recording)
    method = zoo.NUTS(num_warmup=5, num_samples=5, num_chains=1, initialization=initialization, progress=False)
    fit = quiet_fit(model, data, method)
    assert len(seen) == 1
    (key, inverse_mass), = seen[0].items()
    # one block: the sampler sees every coordinate as one site (initial, rates, transition in turn)
    assert key == (mcmc.VECTOR_SITE,) and inverse_mass.shape == (11,)
    if initialization == "model":
        assert torch.equal(inverse_mass, torch.ones(11))
        return
    start = mcmc._start(fit.model, data, method)
    assert start is not None
    potential = mcmc.Potential(fit.model, data)
    by_site = mcmc.laplace_inverse_mass(potential, start.point, dense=False)
    expected = mcmc.laplace_inverse_mass(potential.of_vector, {mcmc.VECTOR_SITE: potential.flatten(start.point)}, dense=False)
    assert by_site is not None and expected is not None
    torch.testing.assert_close(by_site[("initial", "rates", "transition")], expected[key])
    assert expected is not None
    torch.testing.assert_close(inverse_mass, expected[key])
    assert float(inverse_mass.max() / inverse_mass.min()) > 100


def test_a_recorded_potential_starts_every_replay_afresh() -> None:
    """Operations that depend on no coordinate are computed once and kept when a potential is
    recorded (``potential.compiled``), and an operation repeated on the same operands is done
    once, but not a tensor that an in-place operation writes to (here a zeros matrix whose
    diagonal is added to, through a view), nor a repeat that reads it after the write:
    replayed three times at the same point, the value and gradient stay the eager ones."""
    from zoo.infer.potential import compiled

    weights = torch.tensor([[2.0, -1.0], [0.5, 3.0]])

    def energy(point: dict[str, torch.Tensor]) -> torch.Tensor:
        x = point["x"]
        matrix = torch.zeros(2, 2)
        before = (matrix + 1.0).sum()  # 4
        matrix.diagonal().add_(x.exp())
        after = (matrix + 1.0).sum()  # the same operation on the matrix as written
        return (matrix * weights).sum() + 0.5 * (x**2).sum() + before * after / 4.0

    at = torch.tensor([0.3, -0.4])
    replay = compiled(energy, {"x": torch.zeros(2)})
    for _ in range(3):
        leaf = at.clone().requires_grad_()
        value = replay({"x": leaf})
        (gradient,) = torch.autograd.grad(value, leaf)
        torch.testing.assert_close(value, 3.0 * at[0].exp() + 4.0 * at[1].exp() + 4.0 + 0.5 * (at**2).sum())
        torch.testing.assert_close(gradient, torch.stack([3.0 * at[0].exp(), 4.0 * at[1].exp()]) + at)
