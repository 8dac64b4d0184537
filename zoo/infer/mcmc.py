"""NUTS on the model's collapsed density: the runner of ``zoo.NUTS``.

For a model stating the density contract the sampler runs on :class:`~zoo.infer.potential.Potential`,
plain torch derived once from the model's global story and collapsed likelihood (discrete
latents summed out exactly): Pyro's kernel, adaptation and diagnostics, but no Pyro trace per
leapfrog step. A model without a collapsed likelihood (and ``jit_compile=True``) gets Pyro's own
potential of what it trains. Where the model declares its density free of Python branches on
tensor values (``static_likelihood``), the potential and its gradient are recorded once as one
graph of tensor operations and replayed (:func:`~zoo.infer.potential.compiled`): the same
numbers without Python per operation and without autograd's bookkeeping per step; each leapfrog
step takes the value and the gradient from one call of that graph, not through autograd's
engine (:func:`_gradients_without_autograd`).

Where chains start (``initialization="map"``, the default): at the best of a few optimisations
of the potential, each from the model's data-driven start with its own seed. A mixture or an HMM
has local modes besides the K! relabellings of its main one (two components sharing a cluster,
one covering two); a chain started in one rarely leaves it, and chains in different modes
give an R-hat far above 1 for a posterior that is, in its main mode, easy to sample. Relabelling
after sampling (``model.relabel``) handles the permutations.

The mass matrix warm-up starts (``initialization="map"``) from the curvature of the potential
at that mode: 1 / diag(H), H its Hessian, each coordinate's variance under the Laplace
approximation with the others held fixed (see :func:`laplace_inverse_mass`; a diagonal matrix
also with ``dense_mass=True``). Pyro's adaptation starts from the identity, and its first window
(75 draws of the default 500 warm-up steps) adapts the step size alone: where the posterior's
scales differ by orders of magnitude across coordinates (an HMM's transition logits against its
rates), the identity forces a tiny step size and trees of hundreds of leapfrog steps for those
draws. The curvature at the mode gives the scales from the start; the slow windows then
re-estimate them from the draws as usual. Where the Hessian is not positive definite (the
optimisation stopped short of a mode) or the model has more than ``LAPLACE_MAX_DIMENSION``
unconstrained coordinates, the identity is kept.

Each draw's statistics are kept as data (BlackJAX's (state, info)): ``diverging``,
``acceptance_rate``, ``step_size``, ``lp`` (the log density at the draw, unconstrained space),
``energy`` (the Hamiltonian of the draw's trajectory), ``n_steps`` (leapfrog steps) and
``tree_depth``: what ArviZ's ``plot_energy`` and ``bfmi`` read. R-hat and effective sample sizes
are computed before the ``Fit`` is built, and a fit whose chains did not mix says so.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from pyro.ops import integrator
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from pyro.infer.mcmc import NUTS as PyroNUTS

from zoo.datasets.dataset import Dataset
from zoo.diagnostics import convergence
from zoo.infer.collapse import collapsible, training_model
from zoo.infer.evaluate import relabel_point
from zoo.infer.methods import NUTS
from zoo.infer.optimizers import LBFGS
from zoo.infer.potential import VECTOR_SITE, Potential, Replay, compiled
from zoo.infer.runtime import isolated, progress_bar, threads
from zoo.models.base import Model
from zoo.checks import derived_seed
from zoo.results import Fit, FitError

__all__ = ["NUTS", "run_nuts", "mixing_problems", "laplace_inverse_mass"]

#: The per-draw statistics a chain records, in ``fit.sample_stats`` (ArviZ's names).
STATISTICS = ("diverging", "acceptance_rate", "step_size", "lp", "energy", "n_steps", "tree_depth")
#: Thresholds below which a fit says its chains did not mix (Vehtari et al. 2021).
MAX_RHAT = 1.01
MIN_ESS_PER_CHAIN = 100
#: The largest number of unconstrained coordinates whose Hessian is computed for the initial
#: mass matrix: one backward pass of the gradient per coordinate, so a few seconds at this size
#: for a small data set (digits' multinomial Naive Bayes, 639 coordinates), against the
#: thousands of leapfrog steps a badly scaled identity start costs (``benchmarks/nuts.py``).
LAPLACE_MAX_DIMENSION = 1000


class _RecordingNUTS(PyroNUTS):
    """Pyro's NUTS, keeping the kinetic energy of each transition's fresh momentum.

    Pyro reports no per-draw energy, which ArviZ's energy plot and BFMI need: the Hamiltonian of
    a transition is the kinetic energy of the momentum drawn at its start plus the potential at
    its start (leapfrog conserves it up to the integrator's error). The momentum is drawn in the
    private ``_sample_r``, the only place it is seen: this subclass records it there.
    """

    kinetic_energy: float = math.nan
    #: The inverse mass matrix to start the warm-up from, keyed as Pyro keys its blocks
    #: (a tuple of site names); None: Pyro's identity.
    initial_inverse_mass: dict[tuple[str, ...], torch.Tensor] | None = None

    def _initialize_adapter(self) -> None:
        # Pyro's set-up (private; it offers no initial mass matrix argument): blocks, identity
        # mass, a step size found for it. Then our start replaces the identity, and the step
        # size is found again for it.
        super()._initialize_adapter()
        if self.initial_inverse_mass is not None:
            self.mass_matrix_adapter.inverse_mass_matrix = dict(self.initial_inverse_mass)
            self._adapter.reset_step_size_adaptation(self._initial_params)

    def _sample_r(self, name: str) -> Any:
        momentum, unscaled = super()._sample_r(name)
        self.kinetic_energy = float(self._kinetic_energy(unscaled))
        return momentum, unscaled


class _Counted:
    """A potential that counts its evaluations: one per leapfrog step. It has
    ``value_and_gradient`` where the potential has (a :class:`~zoo.infer.potential.Replay`)."""

    def __init__(self, function: Any) -> None:
        self.function, self.calls = function, 0
        if isinstance(function, Replay):
            self.value_and_gradient = self._value_and_gradient

    def __call__(self, point: dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        return self.function(point)

    def _value_and_gradient(self, point: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.calls += 1
        return self.function.value_and_gradient(point)


#: Pyro's own ``potential_grad``, and how many chains (in any thread) run with it swapped.
_PYROS_POTENTIAL_GRAD = integrator.potential_grad
_swapped = {"chains": 0}
_swap_lock = threading.Lock()


def _potential_grad(potential_fn: Any, z: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pyro's ``potential_grad`` for a potential with ``value_and_gradient``, asked directly;
    any other potential, or an error, goes to Pyro's own."""
    direct = getattr(potential_fn, "value_and_gradient", None)
    if direct is None:
        return _PYROS_POTENTIAL_GRAD(potential_fn, z)
    try:
        energy, gradient = direct(z)
    except Exception:
        return _PYROS_POTENTIAL_GRAD(potential_fn, z)
    return gradient, energy


@contextmanager
def _gradients_without_autograd() -> Iterator[None]:
    """While a chain runs, Pyro's leapfrog steps take a recorded potential's value and gradient
    from one call of its graph, not through autograd.

    Pyro's ``velocity_verlet`` gets them from ``pyro.ops.integrator.potential_grad``, which runs
    the potential under autograd and then ``torch.autograd.grad``: for a recorded potential that
    is one graph call plus autograd's engine for a single node, which, interleaved with the graph,
    costs a large part of a step (``benchmarks/nuts.py``). Pyro offers no hook for a potential
    that knows its own gradient, so this swaps that module function (a private reach, undone
    when the last chain running with it ends, in whatever thread) for :func:`_potential_grad`,
    which asks a potential with ``value_and_gradient`` (:class:`_Counted` over a
    :class:`~zoo.infer.potential.Replay`) directly and hands any other potential, or an error, to
    Pyro's own (which turns a numerical error into a divergence). The numbers are the same: the
    autograd path multiplies the same gradient by 1.
    """
    with _swap_lock:
        if _swapped["chains"] == 0:
            integrator.potential_grad = _potential_grad
        _swapped["chains"] += 1
    try:
        yield
    finally:
        with _swap_lock:
            _swapped["chains"] -= 1
            if _swapped["chains"] == 0:
                integrator.potential_grad = _PYROS_POTENTIAL_GRAD


@dataclass
class _Start:
    """Where every chain starts (unconstrained, site shapes) and the inverse mass matrix its
    warm-up starts from (None: Pyro's identity)."""

    point: dict[str, torch.Tensor]
    inverse_mass: dict[tuple[str, ...], torch.Tensor] | None = None


@dataclass
class _Chain:
    """One chain's kept draws (constrained, one tensor per draw and site) and statistics."""

    draws: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    stats: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in STATISTICS})

    def __len__(self) -> int:
        return len(self.stats["lp"])


def _options(method: NUTS) -> dict[str, Any]:
    return {
        "target_accept_prob": method.target_accept_prob,
        "max_tree_depth": method.max_tree_depth,
        "full_mass": method.dense_mass,
    }


def _uses_potential(model: Model, method: NUTS) -> bool:
    """Whether the sampler runs on zoo's plain-torch potential (else on Pyro's of the model)."""
    return collapsible(model)


def _records_potential(model: Model, method: NUTS) -> bool:
    """Whether zoo's potential is recorded with its gradient (:func:`~zoo.infer.potential.compiled`; see ``NUTS.jit_compile``)."""
    return model.static_likelihood if method.jit_compile is None else method.jit_compile


def _start(model: Model, data: Dataset, method: NUTS) -> _Start | None:
    """Every chain's start for ``initialization="map"``: the lowest potential reached by
    ``num_starts`` optimisations from the model's starts, with the inverse mass matrix from
    the curvature there; None otherwise."""
    if method.initialization != "map" or not _uses_potential(model, method):
        return None
    potential = Potential(model, data)
    best, best_energy = None, math.inf
    for start in range(method.num_starts):
        point = potential.initial_point(model.initial_values(data, seed=derived_seed(method.seed, start)))
        point, energy = _descend(potential, point)
        if energy < best_energy or best is None:
            best, best_energy = point, energy
    flat = {VECTOR_SITE: potential.flatten(best)}
    return _Start(best, laplace_inverse_mass(potential.of_vector, flat, method.dense_mass))


def laplace_inverse_mass(
    potential: Any, point: dict[str, torch.Tensor], dense: bool
) -> dict[tuple[str, ...], torch.Tensor] | None:
    """The inverse curvature of the potential at ``point`` (a mode), coordinate by coordinate:
    1 / diag(H), H the potential's Hessian there, as Pyro's NUTS keys its mass matrix (one
    block, the sites in sorted order, each flattened): the (P,) vector, or the (P, P) diagonal
    matrix if ``dense``.

    1 / H_ii is each coordinate's posterior variance with the others held at the mode (the
    conditional variance of the Laplace approximation), not the marginal variance
    ``(H^-1)_ii``: where the posterior has a ridge (factor analysis's rotations of its
    loadings, a near-flat direction of H), the marginal variance is huge and a mass matrix
    from it forces tiny steps in every other direction, while the conditional one stays the
    scale of each coordinate alone.

    None where H is not positive definite or not finite (``point`` is not a mode), or P
    exceeds ``LAPLACE_MAX_DIMENSION``.
    """
    names = tuple(sorted(point))
    shapes = [point[name].shape for name in names]
    flat = torch.cat([point[name].detach().reshape(-1) for name in names])
    if flat.numel() > LAPLACE_MAX_DIMENSION:
        return None

    def energy(vector: torch.Tensor) -> torch.Tensor:
        pieces = vector.split([math.prod(shape) for shape in shapes])
        return potential({name: piece.reshape(shape) for name, piece, shape in zip(names, pieces, shapes)})

    with torch.enable_grad():
        hessian = torch.autograd.functional.hessian(energy, flat).detach().double()
    hessian = 0.5 * (hessian + hessian.T)
    _, info = torch.linalg.cholesky_ex(hessian)
    if int(info) != 0 or not torch.isfinite(hessian).all():
        return None
    variances = (1.0 / hessian.diagonal()).to(flat.dtype)
    return {names: torch.diag(variances) if dense else variances}


def _descend(potential: Potential, point: dict[str, torch.Tensor], max_steps: int = 200) -> tuple[dict[str, torch.Tensor], float]:
    """A local minimum of the potential from ``point`` (zoo's L-BFGS, strong Wolfe), and its
    value; ``point`` itself where the optimisation leaves the finite region."""
    leaves = {name: value.detach().clone().requires_grad_() for name, value in point.items()}
    optimizer = LBFGS(list(leaves.values()), tolerance_grad=1e-6, reuse_evaluation=True)

    def closure() -> torch.Tensor:
        for leaf in leaves.values():
            leaf.grad = None
        energy = potential(leaves)
        if torch.isfinite(energy):
            energy.backward()
        return energy

    with torch.no_grad():
        start_energy = float(potential(leaves))
    previous = math.inf
    with torch.enable_grad():
        for _ in range(max_steps):
            energy = float(optimizer.step(closure).detach())
            if not math.isfinite(energy) or optimizer.stalled or abs(previous - energy) <= 1e-9 * (1 + abs(energy)):
                break
            previous = energy
    with torch.no_grad():
        energy = float(potential(leaves))
    if not math.isfinite(energy) or not all(torch.isfinite(value).all() for value in leaves.values()):
        return point, start_energy
    return {name: value.detach() for name, value in leaves.items()}, energy


def _kernel(model: Model, data: Dataset, method: NUTS, chain: int, start: _Start | None) -> tuple[_RecordingNUTS, Any]:
    """Pyro's NUTS kernel for chain ``chain``, set up, and the map from its (unconstrained)
    states to constrained draws."""
    if _uses_potential(model, method):
        potential = Potential(model, data)
        if start is None:
            start = _Start(potential.initial_point(model.initial_values(data, seed=derived_seed(method.seed, chain))))
        # the sampler sees one site holding every coordinate (Potential.of_vector)
        flat = {VECTOR_SITE: potential.flatten(start.point).clone()}
        energy = compiled(potential.of_vector, flat) if _records_potential(model, method) else potential.of_vector
        kernel = _RecordingNUTS(potential_fn=energy, **_options(method))
        kernel.initial_params = flat
        kernel.initial_inverse_mass = start.inverse_mass
        kernel.setup(method.num_warmup)
        return kernel, lambda z: potential.constrain(potential.unflatten(z[VECTOR_SITE]))
    trained, kwargs = training_model(model, data)
    initial = model.initial_values(data, seed=derived_seed(method.seed, chain))
    kernel = _RecordingNUTS(
        trained,
        max_plate_nesting=model.max_plate_nesting,
        jit_compile=bool(method.jit_compile),
        ignore_jit_warnings=True,
        init_strategy=init_to_value(values=initial, fallback=init_to_median),
        **_options(method),
    )
    kernel.setup(method.num_warmup, **kwargs)
    return kernel, lambda z: {name: kernel.transforms[name].inv(value) for name, value in z.items()}


def _sample_chain(
    model: Model, data: Dataset, method: NUTS, chain: int, start: _Start | None,
    record: _Chain, bar: Any = None,
) -> _Chain:
    """Run chain ``chain`` (warm-up, then ``num_samples`` kept draws), filling ``record`` one
    draw at a time, so that an interrupt leaves the draws so far in it."""
    torch.manual_seed(derived_seed(method.seed, chain))
    with _gradients_without_autograd():  # the kernel's step-size search in its set-up too
        kernel, constrain = _kernel(model, data, method, chain, start)
        kernel.potential_fn = counted = _Counted(kernel.potential_fn)
        z = kernel.initial_params
        record.draws = {name: [] for name in constrain(z)}
        for step in range(method.num_warmup + method.num_samples):
            # Pyro keeps a running mean of the acceptance statistic and the potential at its last
            # draw, exposing neither per draw (kernel.logging() rounds the mean to 3 digits): both
            # are read from the kernel's private attributes, for want of a public route that does
            # not evaluate the potential once more per draw.
            mean_before, potential_before, calls_before = kernel._mean_accept_prob, kernel._potential_energy_last, counted.calls
            z = kernel.sample(z)
            if bar is not None:
                bar.update(1)
            kept = step + 1 - method.num_warmup  # the number of kept draws, this one included
            if kept < 1:
                continue
            mean_after = kernel._mean_accept_prob
            steps = counted.calls - calls_before
            for name, value in constrain(z).items():
                record.draws[name].append(value.detach())
            divergences = kernel.diagnostics()["divergences"]  # public: the kept draws that diverged
            record.stats["diverging"].append(float(bool(divergences) and divergences[-1] == kept - 1))
            record.stats["acceptance_rate"].append(float(mean_after if kept == 1 else mean_before + kept * (mean_after - mean_before)))
            record.stats["step_size"].append(float(kernel.step_size))
            record.stats["lp"].append(-float(kernel._potential_energy_last))
            record.stats["energy"].append(kernel.kinetic_energy + float(potential_before))
            record.stats["n_steps"].append(float(steps))
            # NUTS doubles its trajectory: depth d holds between 2^(d-1) and 2^d - 1 steps
            record.stats["tree_depth"].append(float(math.floor(math.log2(max(steps, 1))) + 1))
    kernel.cleanup()
    return record


def _chain_in_process(model: Model, data: Dataset, method: NUTS, chain: int, start: _Start | None) -> _Chain:
    """One chain in a worker process: the sequential run's chain, draw for draw."""
    with isolated(seed=method.seed), threads(method.num_threads or model.num_threads):
        return _sample_chain(model, data, method, chain, start, _Chain())


def _run_chains(model: Model, data: Dataset, method: NUTS, start: _Start | None, bar: Any) -> tuple[list[_Chain], bool]:
    """Every chain, in sequence or in processes; on an interrupt, the chains so far and True."""
    chains: list[_Chain] = []
    if method.chain_method == "parallel" and method.num_chains > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(method.num_chains, mp_context=context) as pool:
            futures = [pool.submit(_chain_in_process, model, data, method, chain, start) for chain in range(method.num_chains)]
            try:
                for future in futures:
                    chains.append(future.result())
                    bar.update(method.num_warmup + method.num_samples)
            except KeyboardInterrupt:
                for future in futures:
                    future.cancel()
                return chains, True
        return chains, False
    try:
        for chain in range(method.num_chains):
            record = _Chain()
            chains.append(record)
            _sample_chain(model, data, method, chain, start, record, bar)
    except KeyboardInterrupt:
        return chains, True
    return chains, False


def _kept(chains: list[_Chain], num_samples: int) -> list[_Chain]:
    """The chains to keep after an interrupt: the finished ones; if none finished, every chain
    that kept a draw, cut to the shortest."""
    finished = [chain for chain in chains if len(chain) == num_samples]
    return finished or [chain for chain in chains if len(chain) > 0]


def _stack(chains: list[_Chain]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Draws {site: (chain, draw, ...)} and statistics {name: (chain, draw)}."""
    kept = min(len(chain) for chain in chains)
    draws = {name: torch.stack([torch.stack(chain.draws[name][:kept]) for chain in chains]) for name in chains[0].draws}
    stats = {name: torch.tensor([chain.stats[name][:kept] for chain in chains]) for name in STATISTICS}
    stats["diverging"] = stats["diverging"].bool()
    stats["n_steps"] = stats["n_steps"].long()
    stats["tree_depth"] = stats["tree_depth"].long()
    return draws, stats


def mixing_problems(diagnostics: dict[str, Any], num_chains: int) -> list[str]:
    """What a NUTS fit's diagnostics say is wrong with its chains (empty when nothing is).

    Thresholds: R-hat above 1.01, bulk or tail ESS below 100 per chain, any divergence
    (Vehtari, Gelman, Simpson, Carpenter and Buerkner, 2021, "Rank-normalization, folding, and
    localization: an improved R-hat").
    """
    problems = []
    rhat, bulk, tail = (diagnostics.get(name, math.nan) for name in ("max_rhat", "min_ess_bulk", "min_ess_tail"))
    if rhat > MAX_RHAT:
        problems.append(f"R-hat {rhat:.3f} > {MAX_RHAT}")
    minimum = MIN_ESS_PER_CHAIN * num_chains
    if any(value < minimum for value in (bulk, tail) if math.isfinite(value)):
        problems.append(f"ESS bulk {bulk:.0f} / tail {tail:.0f} < {minimum} ({MIN_ESS_PER_CHAIN} per chain)")
    if diagnostics.get("num_divergences", 0):
        problems.append(f"{diagnostics['num_divergences']} divergent transitions")
    return problems


def run_nuts(model: Model, data: Dataset, method: NUTS) -> Fit:
    """Sample ``model`` (already prepared for ``data``) by NUTS. See :class:`~zoo.infer.methods.NUTS`.

    Warns (one line: the numbers and what to try) when the chains did not mix.

    Raises
    ------
    zoo.FitError
        If interrupted (Ctrl-C) before any chain kept a draw.
    """
    started = time.perf_counter()
    bar = progress_bar((method.num_warmup + method.num_samples) * method.num_chains, "NUTS", method.progress)
    with isolated(seed=method.seed) as param_state, threads(method.num_threads or model.num_threads):
        try:
            start = _start(model, data, method)
            chains, interrupted = _run_chains(model, data, method, start, bar)
        except KeyboardInterrupt:
            chains, interrupted = [], True
        finally:
            bar.close()
    chains = _kept(chains, method.num_samples)
    if not chains:
        raise FitError("NUTS was interrupted before it kept any draw; nothing to return")
    draws, sample_stats = _stack(chains)
    best = int(sample_stats["lp"].reshape(-1).argmax())  # the draw of highest posterior density
    point = {name: value.reshape((-1,) + value.shape[2:])[best] for name, value in draws.items()}
    draws = model.relabel(draws)
    diagnostics = {
        "num_divergences": int(sample_stats["diverging"].sum()),
        "acceptance_rate": float(sample_stats["acceptance_rate"].mean()),
        "step_size": [float(chain.stats["step_size"][-1]) for chain in chains],
        **convergence(draws),
    }
    problems = mixing_problems(diagnostics, len(chains))
    diagnostics["mixing_problems"] = problems
    if problems and not interrupted:
        warnings.warn(
            f"NUTS on {type(model).__name__}: the chains did not mix ({'; '.join(problems)}): do not trust "
            "this posterior yet. Try more num_warmup/num_samples, target_accept_prob=0.95 (divergences), "
            "dense_mass=True (correlated posterior), or, for a mixture or an HMM, fewer components or states.",
            stacklevel=3,
        )
    return Fit(
        model=model,
        method=method,
        draws=draws,
        point=relabel_point(model, point),
        train=data,
        sample_stats=sample_stats,
        diagnostics=diagnostics,
        wall_time=time.perf_counter() - started,
        param_state=param_state,
        interrupted=interrupted,
    )
