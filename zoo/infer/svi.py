"""Stochastic variational inference with a guide chosen by name: the runner of ``zoo.SVI``.

The ELBO is ``TraceEnum_ELBO`` when the model declares enumerated sites (they are summed out
exactly; the guide never sees them) or sites its own guides enumerate (``guide_enumerated_sites``:
summed under the guide's probabilities, e.g. the semi-supervised VAE's q(y | x)), and
``Trace_ELBO`` otherwise. The loss is reported per observation (data point, or time step for
sequences) so curves compare across data sets and batch sizes.

The runner reads in three pieces: :func:`_set_up` builds what is trained (the training model,
the guide, the ELBO, the parameters, the compiled steps), :func:`_optimise` steps an
:class:`Optimizer` over the batches, and :func:`run_svi` draws from the trained guide and
returns the ``Fit``. Each step's loss is :func:`_step_loss`; the two optimisers differ only in
how they take a step and what they do when it goes wrong:

* Adam, for guides with Monte Carlo noise (:class:`_Adam`);
* L-BFGS with a strong-Wolfe line search, for point-mass guides on full batches
  (``guide="delta"`` or ``"laplace"``), whose loss is deterministic: from the model's
  data-driven initialisation it reaches the mode in tens of steps where Adam needs thousands
  (:class:`_LBFGS`).

Compiled steps (``SVI(jit=True)``): the step's ELBO goes through Pyro's ``JitTrace_ELBO`` /
``JitTraceEnum_ELBO``, which trace model and guide once with ``torch.jit.trace`` and replay the
recorded tensor program on every later step, skipping Pyro's per-step Python (effect handlers,
site bookkeeping, distribution objects). See :class:`_CompiledLoss` for how the runner feeds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import (
    JitTrace_ELBO,
    JitTraceEnum_ELBO,
    JitTraceMeanField_ELBO,
    Predictive,
    Trace_ELBO,
    TraceEnum_ELBO,
)
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from zoo.checks import derived_seed
from zoo.datasets.dataset import Dataset
from zoo.infer.collapse import CollapsedModel, fitted_globals, on_training_arguments, training_model
from zoo.infer.distributed import average_gradients, join, shard
from zoo.infer.elbo import MeanFieldELBO
from zoo.infer.evaluate import flatten_draws, latent_shapes, pointwise_log_likelihood, relabel_point, select_draw
from zoo.infer.guides import DETERMINISTIC_GUIDES, laplace_approximation, make_guide
from zoo.infer.methods import SVI
from zoo.infer.optimizers import LBFGS, Adam
from zoo.infer.runtime import isolated, progress_bar, threads
from zoo.io import read_record, write_record
from zoo.ops.recording import replay, replayable
from zoo.ops.stationarity import late_window_trend
from zoo.models.base import Model
from zoo.results import Fit, FitError

__all__ = ["SVI", "run_svi", "Optimizer"]


def _make_elbo(model: Model, method: SVI, enumerated: bool, jit: bool = False) -> Any:
    """TraceEnum_ELBO (discrete sites summed out) when ``enumerated``, TraceMeanField_ELBO (each
    latent site's KL term in closed form; zoo's :class:`~zoo.infer.elbo.MeanFieldELBO`, which
    skips the log-densities it does not read) for a model declaring ``analytic_kl``, else Trace_ELBO; their
    compiled versions (JitTraceEnum_ELBO, JitTrace_ELBO) when ``jit``."""
    options: dict[str, Any] = {
        # stated, not guessed: with several particles Pyro would otherwise trace the model to
        # guess it (and log that it did, once per fit)
        "max_plate_nesting": model.max_plate_nesting,
        "num_particles": method.num_particles,
        "vectorize_particles": method.num_particles > 1,
    }
    if jit:
        # The tracer warns whenever Python reads a number or a truth value off a tensor. Every
        # model's shape checks and plate sizes do so harmlessly (each minibatch size gets a
        # recording of its own), so the warnings would say nothing about a particular model.
        options["ignore_jit_warnings"] = True
    if enumerated:
        enumerating = JitTraceEnum_ELBO if jit else TraceEnum_ELBO
        return enumerating(**options)
    if model.analytic_kl:
        return (JitTraceMeanField_ELBO if jit else MeanFieldELBO)(**options)
    return (JitTrace_ELBO if jit else Trace_ELBO)(**options)


def _enumerates(model: Model, trained: Callable[..., Any], kwargs: dict[str, Any]) -> bool:
    """Whether what is trained (``trained``, run with ``kwargs``) has a site marked for
    enumeration: never the collapsed training model, whose discrete sites are summed out."""
    if not model.enumerated_sites:
        return False
    with torch.no_grad(), pyro.poutine.block():
        trace = pyro.poutine.trace(trained).get_trace(**kwargs)
    return any(site["type"] == "sample" and site["infer"].get("enumerate") for site in trace.nodes.values())


def _use_jit(method: SVI, model: Model, guide_name: Any) -> bool:
    """Compile the ELBO: as asked, or (``jit=None``) where the model declares itself safe and the
    guide is one zoo builds by name; never with a KL weight (a recording would freeze it)."""
    if _weighted_sites(model, method):
        return False
    if method.jit is not None:
        return method.jit
    return model.jit_safe and isinstance(guide_name, str)


def _parameters(model: Model, guide: Any) -> list[torch.Tensor]:
    """Everything to optimise: the model's and guide's module parameters, and what a
    hand-written guide registered with ``pyro.param`` (in the fit's private store)."""
    parameters = list(model.parameters())
    if isinstance(guide, torch.nn.Module):
        parameters += list(guide.parameters())
    # The store's unconstrained tensors: what autograd reaches (a constrained value is a function of them).
    parameters += [parameter for _, parameter in pyro.get_param_store().named_parameters()]
    seen, unique = set(), []
    for parameter in parameters:
        if id(parameter) not in seen and parameter.requires_grad:
            seen.add(id(parameter))
            unique.append(parameter)
    return unique


# ---------------------------------------------------------------------- KL weight
def _weighted_sites(model: Model, method: SVI) -> tuple[str, ...]:
    """The local latent sites whose KL term ``SVI(kl_weight=, kl_warmup_steps=)`` weights:
    the continuous ones (not a class the guide enumerates); none with the plain ELBO."""
    if method.kl_weight == 1.0 and method.kl_warmup_steps == 0:
        return ()
    return tuple(name for name in model.local_sites if name not in model.guide_enumerated_sites)


class _SiteWeight(Messenger):
    """Scales the log densities of the named sites by ``weight``, in the model and the guide
    alike: their ELBO terms E_q[log p(z)] - E_q[log q(z)] = -KL become -weight KL, the
    likelihood term untouched (Pyro's ``poutine.scale``, restricted to some sites)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names, self.weight = set(names), 1.0

    def _process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and msg["name"] in self.names:
            msg["scale"] = self.weight * msg["scale"]


def _kl_weight(method: SVI, step: int) -> float:
    """The KL weight at ``step`` (from 0): ``kl_weight``, reached linearly over the warm-up."""
    if method.kl_warmup_steps == 0:
        return method.kl_weight
    return method.kl_weight * min(1.0, step / method.kl_warmup_steps)


# ---------------------------------------------------------------------- set-up
@dataclass
class _Training:
    """Everything one SVI fit trains with, built once by :func:`_set_up`.

    ``trained`` is what the ELBO sees (the model's collapsed training model, or the model),
    ``kwargs`` its keyword arguments on the fit's device, ``guide`` the guide as ``trained``
    calls it, ``parameters`` what the optimiser moves, ``compiled`` the jit-compiled ELBO (or
    None), ``batches`` which rows each step sees and ``recorded`` the step's loss and gradients
    recorded once and replayed (or None: :class:`_RecordedStep`).
    """

    model: Model
    data: Dataset
    guide_name: str | Callable[..., Any]
    trained: Callable[..., Any]
    kwargs: dict[str, Any]
    guide: Any
    elbo: Any
    parameters: list[torch.Tensor]
    compiled: "_CompiledLoss | None"
    batches: "_Batches"
    auxiliary: bool
    world: int
    site_weight: "_SiteWeight | None" = None
    plain: tuple[Any, Any] = (None, None)  # (trained, guide) without the KL weight
    recorded: "_RecordedStep | None" = None


def _set_up(model: Model, data: Dataset, method: SVI, rank: int, world: int, device: torch.device) -> _Training:
    """Build what the fit trains with: training model, guide, ELBO, parameters, compiled steps.

    Runs inside the fit's private parameter store and random state: the ELBO's first call draws
    random numbers and creates the guide's parameters.
    """
    guide_name = method.guide_name(model)
    # A model's auxiliary loss (an objective besides its density) sees each step's rows too.
    auxiliary = type(model).auxiliary_loss is not Model.auxiliary_loss
    batches = _Batches(method, len(data), rank, world, explicit=auxiliary)
    # Where the runner picks each step's rows (explicit indices), the data plate does not.
    batch_size = None if method.num_epochs is not None or batches.explicit else method.batch_size
    device_data = _to_device(data, device)
    trained, kwargs = training_model(model, device_data, batch_size)
    kwargs = _to_device(kwargs, device)
    guide = make_guide(model, guide_name, model.initial_values(data, seed=method.seed), trained)
    parameters_of = guide  # the user's own guide callable keeps its parameters, whatever it is handed
    if isinstance(trained, CollapsedModel) and not isinstance(guide_name, str):
        guide = on_training_arguments(guide, model)
    site_weight = None
    plain = (trained, guide)
    weighted = _weighted_sites(model, method)
    if weighted:
        site_weight = _SiteWeight(weighted)
        site_weight.weight = _kl_weight(method, 0)
        trained, guide = site_weight(trained), site_weight(guide)
    # TraceEnum_ELBO where something is enumerated in what is fitted; the collapsed training
    # model sums its discrete sites out (one factor) and needs only Trace_ELBO, whose steps
    # cost less.
    enumerated = bool(model.guide_enumerated_sites) or _enumerates(model, trained, kwargs)
    elbo = _make_elbo(model, method, enumerated)
    elbo.differentiable_loss(trained, guide, **kwargs)  # creates the guide's parameters
    compiled = None
    if _use_jit(method, model, guide_name):
        compiled_elbo = _make_elbo(model, method, enumerated, jit=True)
        compiled = _CompiledLoss(compiled_elbo, trained, model.data_plate, guide, kwargs, device)
    training = _Training(
        model=model,
        data=device_data,
        guide_name=guide_name,
        trained=trained,
        kwargs=kwargs,
        guide=guide,
        elbo=elbo,
        parameters=_parameters(model, parameters_of),
        compiled=compiled,
        batches=batches,
        auxiliary=auxiliary,
        world=world,
        site_weight=site_weight,
        plain=plain,
    )
    if _records_step(model, method, guide_name, enumerated, auxiliary, world, len(data)):
        training.recorded = _RecordedStep.of(training, device)
    return training


def _records_step(
    model: Model, method: SVI, guide_name: Any, enumerated: bool, auxiliary: bool, world: int, num_data: int
) -> bool:
    """Record the step (:class:`_RecordedStep`): left to zoo (``jit=None``), for a model whose
    global story and collapsed likelihood do not branch on a tensor's value
    (``static_likelihood``) and a guide zoo builds by name, on all the data at every step (no
    minibatch, whose rows and scale change), in one process, with nothing but the ELBO
    (no auxiliary loss, no KL weight that changes by step) and nothing enumerated. Not for a
    point-mass guide (``delta``, ``laplace``): L-BFGS reaches its optimum in tens of
    evaluations, fewer than a recording costs (``benchmarks/svi_steps.py``)."""
    full_batch = method.num_epochs is None and (method.batch_size is None or method.batch_size >= num_data)
    return (
        method.jit is None
        and model.static_likelihood
        and isinstance(guide_name, str)
        and guide_name not in DETERMINISTIC_GUIDES
        and full_batch
        and world == 1
        and not auxiliary
        and not enumerated
        and not _weighted_sites(model, method)
    )


class _RecordedStep:
    """One step's loss per observation and its gradients, recorded once as a graph of tensor
    operations (:func:`zoo.ops.recording.replayable`) and replayed at every step.

    An eager step runs model and guide under Pyro's effect handlers (traces, site bookkeeping,
    distribution objects) and then autograd's backward pass: on a small model that Python is
    nearly all of a step. The recording keeps the ATen operations of both passes, the guide's
    random draws among them, which a replay makes afresh from the same generator in the same
    order: the run is that of ``jit=False``, gradient for gradient, to the bit. The loss agrees
    to float rounding (Pyro adds up its terms as Python numbers, which a recording keeps as the
    numbers of the point it was recorded at; the replay's value is that sum plus the change of
    the same terms in float32).

    Before a fit relies on it, one replay is checked against an eager step at the same random
    state; where they differ (a program that branches on a value after all) the fit steps
    eagerly (:meth:`of` returns None).
    """

    def __init__(self, graph: Any, parameters: list[torch.Tensor], used: list[bool]) -> None:
        self.graph, self.parameters, self.used = graph, parameters, used

    @classmethod
    def of(cls, training: _Training, device: torch.device) -> "_RecordedStep | None":
        """The step of ``training`` recorded (on a forked random generator, so the fit draws
        the noise it would draw eagerly) and checked; None where the check fails."""
        parameters = training.parameters
        used: list[bool] = []

        def loss_and_gradients(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            # the tensors are the parameters themselves, which model and guide read
            loss = _eager_loss(training)
            gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
            used[:] = [gradient is not None for gradient in gradients]
            return (loss.detach(), *(gradient for gradient in gradients if gradient is not None))

        with _forked_rng(device), pyro.validation_enabled(False), torch.enable_grad():
            graph = replayable(loss_and_gradients, *parameters)
            step = cls(graph, parameters, used)
            with _forked_rng(device):
                replayed = step()
            eager = loss_and_gradients(*parameters)
        same = all(
            torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6, equal_nan=True)
            for ours, theirs in zip((replayed[0], *(g for g in replayed[1] if g is not None)), eager)
        )
        return step if same else None

    def __call__(self) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The loss per observation (0-dim) and each parameter's gradient (None where the loss
        does not depend on it)."""
        loss, *gradients = replay(self.graph, *self.parameters)
        found = iter(gradients)
        return loss, [next(found) if used else None for used in self.used]


def _eager_loss(training: _Training, index: torch.Tensor | None = None) -> torch.Tensor:
    """The ELBO's loss per observation on the rows ``index`` (None: the data plate's own
    subsample, or all rows), by Pyro's ELBO under autograd."""
    with _subsample(training.model.data_plate, index):
        loss = training.elbo.differentiable_loss(training.trained, training.guide, **training.kwargs)
    return loss * (1.0 / training.data.num_observations)


class _HeldOut:
    """The negative ELBO per observation of data not fitted (``zoo.fit(..., held_out=...)``)."""

    def __init__(self, training: _Training, data: Dataset, device: torch.device) -> None:
        self.training, self.data = training, data
        self.trained, kwargs = training_model(training.model, _to_device(data, device))
        self.kwargs = _to_device(kwargs, device)
        try:
            self()
        except (RuntimeError, ValueError, IndexError) as error:
            raise ValueError(
                f"held_out: the ELBO of held-out data cannot be computed with guide {training.guide_name!r} "
                f"(a guide with parameters per training datum cannot take new data): {error}"
            ) from None

    def __call__(self) -> float:
        """The loss now (no gradients).

        ``loss``, not ``differentiable_loss``: the same number, but TraceEnum_ELBO refuses to
        give a differentiable loss that does not require grad (any enumerated model under
        no_grad)."""
        with torch.no_grad(), pyro.validation_enabled(False):
            loss = self.training.elbo.loss(self.trained, self.training.guide, **self.kwargs)
        return float(loss) / self.data.num_observations


# ---------------------------------------------------------------------- one step's loss
def _step_loss(training: _Training, index: torch.Tensor | None) -> torch.Tensor:
    """The loss per observation on the rows ``index`` (None: the data plate's own subsample,
    or all rows), gradients computed (and averaged over processes): what an optimiser's
    closure returns.

    The ELBO (recorded, compiled or eager), plus the model's auxiliary loss on the same rows.
    A non-finite loss is returned without its gradients: the optimiser refuses the step.
    """
    for parameter in training.parameters:  # the optimiser's zero_grad (set_to_none)
        parameter.grad = None
    if training.recorded is not None:  # the loss per observation and its gradients, in one replay
        loss, gradients = training.recorded()
        if torch.isfinite(loss):
            for parameter, gradient in zip(training.parameters, gradients):
                parameter.grad = gradient
        return loss
    scale = 1.0 / training.data.num_observations
    # Arguments were validated on the ELBO's first call; checking every distribution's
    # parameters again on each step costs more than the step itself on small models.
    with pyro.validation_enabled(False):
        loss = training.compiled(index) * scale if training.compiled is not None else _eager_loss(training, index)
        if training.auxiliary:
            loss = loss + _auxiliary_loss(training.model, training.data, index) * scale
    if torch.isfinite(loss):
        loss.backward()
    if training.world > 1:
        loss = average_gradients(training.parameters, loss.detach(), training.world)
    return loss


# ---------------------------------------------------------------------- the optimisers
class Optimizer(Protocol):
    """What the SVI loop asks of an optimiser: Adam and L-BFGS behind one step interface.

    Both are zoo's own (:mod:`zoo.infer.optimizers`): ``torch.optim`` imports torch's compiler
    the first time a process builds an optimiser, seconds on a first fit.

    Attributes
    ----------
    name : str
        "adam" or "lbfgs", as ``fit.diagnostics["optimizer"]`` reports it.
    learning_rate : float
        The step size of the next step; a learning-rate schedule sets it between steps.
    window, patience : int
        Convergence: the loss is averaged over windows of ``window`` steps, and the fit stops
        after ``patience`` windows in a row whose mean moved less than the tolerance.
    error : BaseException or None
        The numerical error that ended the last step, if it raised one (see :func:`_evaluate`).
    """

    name: str
    learning_rate: float
    window: int
    patience: int
    error: BaseException | None

    def step(self, closure: Callable[[], torch.Tensor]) -> float | None:
        """Take one step; return the loss, or None if the loss, a gradient or the parameters
        became NaN or infinite, in which case the parameters are left at their last finite
        values and the fit must stop."""
        ...

    def restore(self) -> None:
        """Put back the last parameters whose loss was finite (after an interrupt)."""
        ...


class _Adam:
    """Adam, stepped only when the loss and every gradient are finite, with a snapshot.

    Its parameters move after the loss is known: the gradients it is about to apply are
    checked, so a finite loss with a NaN or infinite gradient stops the fit before the update
    that would make the parameters NaN. An update can still carry the parameters somewhere
    finite but useless (a scale of 1e10 whose exponential is infinite: found at the next step,
    as a loss that is not finite or a distribution that refuses its parameters). So the
    parameters before each update are copied (into buffers kept for the fit, no allocation per
    step), and a failed step puts them back: the last good parameters are those whose own
    loss and gradients were finite, the ones the failing update started from. Adam's loss is
    noisy: two window means can agree by chance while the loss still trends, so three quiet
    windows of 50 steps in a row are asked for.
    """

    name = "adam"
    window = 50
    patience = 3

    def __init__(self, parameters: list[torch.Tensor], learning_rate: float | None) -> None:
        self.parameters = parameters
        self.adam = Adam(parameters, learning_rate=learning_rate or 0.01)
        self.snapshot = [parameter.detach().clone() for parameter in parameters]
        self.updated = False  # whether an update was made since the snapshot
        self.error: BaseException | None = None

    @property
    def learning_rate(self) -> float:
        return self.adam.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.adam.learning_rate = value

    def step(self, closure: Callable[[], torch.Tensor]) -> float | None:
        value, self.error = _evaluate(closure)
        gradients = [parameter.grad for parameter in self.parameters if parameter.grad is not None]
        if value is None or not _all_finite(gradients):
            self.restore()
            return None
        with torch.no_grad():
            for parameter, saved in zip(self.parameters, self.snapshot):
                saved.copy_(parameter)
        self.adam.step()
        self.updated = True
        return value

    def restore(self) -> None:
        """Put back the parameters from before the last update (after a failed step or an
        interrupt, which may land inside the update)."""
        if not self.updated:
            return
        with torch.no_grad():
            for parameter, saved in zip(self.parameters, self.snapshot):
                parameter.copy_(saved)
        self.updated = False


def _evaluate(closure: Callable[[], Any]) -> tuple[float | None, BaseException | None]:
    """Run a step's ``closure``; its loss as a float, or (None, the error) when the loss is not
    finite or the step raised a numerical error on the way.

    Parameters that have drifted to extreme values make a distribution refuse them (Pyro's
    ``ValueError`` "Expected parameter scale ...") or a line search run out of points
    (``IndexError``, ``RuntimeError``): the same divergence as a NaN loss, and treated as one.
    The model and guide ran once before the first step (the set-up), so an error of the
    program itself is raised there, not taken for a divergence here.
    """
    try:
        value = float(closure().detach())
    except ProgramError:
        raise
    except (ValueError, RuntimeError, IndexError, ArithmeticError) as error:
        return None, error
    return (value, None) if math.isfinite(value) else (None, None)


class _LBFGS:
    """L-BFGS with a strong-Wolfe line search, one iteration per step, with a snapshot.

    It moves the parameters inside its step (the line search calls the closure several times),
    so they are checked after it and, if not finite, put back from the snapshot taken after the
    last good step. Its loss is deterministic: single steps are compared, and two quiet steps in
    a row are asked for, since it can also creep slowly before the last few steps to the mode.

    ``reuse_evaluation``: the loss is one deterministic function of the parameters (a point-mass
    guide on the full data), so the loss and gradient where a step's line search ended are the
    next step's start (:class:`~zoo.infer.optimizers.LBFGS`), not computed again.
    """

    name = "lbfgs"
    window = 1
    patience = 2

    def __init__(self, parameters: list[torch.Tensor], learning_rate: float | None, reuse_evaluation: bool = False) -> None:
        self.parameters = parameters
        self.lbfgs = LBFGS(
            parameters,
            learning_rate=learning_rate or 1.0,
            history_size=20,
            # one iteration per step, with room for its line search
            max_evaluations=25,
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
            reuse_evaluation=reuse_evaluation,
        )
        self.snapshot = self._copy()
        self.error: BaseException | None = None

    @property
    def learning_rate(self) -> float:
        return self.lbfgs.learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.lbfgs.learning_rate = value

    def step(self, closure: Callable[[], torch.Tensor]) -> float | None:
        value, self.error = _evaluate(lambda: self.lbfgs.step(closure))
        if value is None or not _all_finite(self.parameters):
            self.restore()
            return None
        self.snapshot = self._copy()
        return value

    def restore(self) -> None:
        with torch.no_grad():
            for parameter, saved in zip(self.parameters, self.snapshot):
                parameter.copy_(saved)
        self.lbfgs.forget_evaluation()

    def _copy(self) -> list[torch.Tensor]:
        return [parameter.detach().clone() for parameter in self.parameters]


def _make_optimizer(method: SVI, guide_name: Any, parameters: list[torch.Tensor]) -> Optimizer:
    """L-BFGS if asked, or (``optimizer="auto"``) for a point-mass guide on full batches, whose
    loss is deterministic; Adam otherwise."""
    deterministic = guide_name in DETERMINISTIC_GUIDES and method.batch_size is None
    if method.optimizer != "auto":
        lbfgs = method.optimizer == "lbfgs"
    else:
        lbfgs = deterministic
    if lbfgs:
        return _LBFGS(parameters, method.learning_rate, reuse_evaluation=deterministic)
    return _Adam(parameters, method.learning_rate)


# ---------------------------------------------------------------------- the loop
def _converged(losses: list[float], window: int, tolerance: float) -> bool:
    """Relative change between the means of the last two windows of the loss."""
    if tolerance <= 0 or len(losses) < 2 * window or len(losses) % window:
        return False
    recent = sum(losses[-window:]) / window
    before = sum(losses[-2 * window : -window]) / window
    return abs(recent - before) <= tolerance * max(abs(recent), 1e-12)


@dataclass
class _Run:
    """What the optimisation loop leaves: the loss per step, the per-epoch records, and how it
    ended (``failure``: the step whose loss or gradient was not finite)."""

    losses: list[float] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    interrupted: bool = False
    failure: int | None = None
    epoch_losses: list[float] = field(default_factory=list)
    epoch_start: float = field(default_factory=time.perf_counter)
    quiet: int = 0

    def end_epoch(self, learning_rate: float, held_out: _HeldOut | None) -> None:
        """Record the epoch's mean loss, learning rate, held-out loss and time."""
        self.history["epoch_loss"].append(sum(self.epoch_losses) / len(self.epoch_losses))
        self.history["learning_rate"].append(learning_rate)
        if held_out is not None:
            self.history["held_out_loss"].append(held_out())
        self.history["epoch_time"].append(time.perf_counter() - self.epoch_start)
        self.epoch_start, self.epoch_losses = time.perf_counter(), []

    def record_terms(self, training: _Training, kl_weight: float) -> None:
        """Record the ELBO's two terms per observation, for a model with local latents:
        "reconstruction" (E_q[log p(x | z)]) and "kl" (KL(q(z | x) || p(z)), summed over the
        local sites), one-particle estimates on up to :data:`TERM_ROWS` random rows, and the
        "kl_weight" the objective used. Drawn on a forked generator: the fit's own random
        stream is what it would be without them."""
        for name, value in zip(("reconstruction", "kl"), _elbo_terms(training)):
            self.history.setdefault(name, []).append(value)
        self.history.setdefault("kl_weight", []).append(kl_weight)

    def converged(self, optimizer: Optimizer, tolerance: float) -> bool:
        """Whether the last ``patience`` windows of the loss were quiet (see :func:`_converged`)."""
        if _converged(self.losses, optimizer.window, tolerance):
            self.quiet += 1
            return self.quiet >= optimizer.patience
        if len(self.losses) % optimizer.window == 0:
            self.quiet = 0
        return False


#: Rows on which each epoch's reconstruction and KL terms are estimated.
TERM_ROWS = 256


def _elbo_terms(training: _Training) -> tuple[float, float]:
    """(reconstruction, kl) per observation: one draw from the guide on a random subset of
    rows, scaled to the whole data set (the data plate's N / rows), divided by its
    observations. The plain model and guide (no KL weight) are traced."""
    trained, guide = training.plain
    data = training.data
    model = training.model
    # the rows are given by replaying the data plate; a subsample size would contradict them
    kwargs = {**training.kwargs, "batch_size": None} if "batch_size" in training.kwargs else training.kwargs
    with _forked_rng(data.x.device), torch.no_grad(), pyro.validation_enabled(False):
        index = torch.randperm(len(data), device=data.x.device)[: min(TERM_ROWS, len(data))]
        with _subsample(model.data_plate, index):
            guide_trace = poutine.trace(guide).get_trace(**kwargs)
            model_trace = poutine.trace(poutine.replay(trained, trace=guide_trace)).get_trace(**kwargs)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    scale = 1.0 / data.num_observations
    reconstruction = float(model_trace.nodes[model.observed_site]["log_prob_sum"]) * scale
    kl = sum(
        float(guide_trace.nodes[name]["log_prob_sum"]) - float(model_trace.nodes[name]["log_prob_sum"])
        for name in model.local_sites
        if name in guide_trace.nodes and name in model_trace.nodes
    )
    return reconstruction, kl * scale


def _optimise(
    training: _Training,
    optimizer: Optimizer,
    method: SVI,
    held_out: _HeldOut | None,
    bar: Any,
    checkpoint: "_Checkpoint | None" = None,
    resumed: "tuple[dict[str, Any], Any] | None" = None,
) -> _Run:
    """Step ``optimizer`` over the batches until the budget, convergence, a non-finite loss or
    Ctrl-C; returns the record, the parameters left at their last good values. With
    ``checkpoint``, the state is written every ``method.checkpoint_every`` steps; with
    ``resumed`` (a checkpoint's metadata and tensors), the run continues from it."""
    run = _Run(history={"epoch_loss": [], "learning_rate": [], "epoch_time": []})
    if held_out is not None:
        run.history["held_out_loss"] = []
    batches = training.batches
    factor = _schedule(method, batches.total)
    base_rate = optimizer.learning_rate
    device = torch.device(method.device)
    first = 0
    if resumed is not None:
        first = _restore(resumed, training, optimizer, run)
        bar.update(first)
    if factor is not None:
        optimizer.learning_rate = base_rate * factor(first)
    try:
        for step in range(first, batches.total):
            if training.site_weight is not None:
                training.site_weight.weight = _kl_weight(method, step)
            index = batches.index(step, device)
            value = optimizer.step(functools.partial(_step_loss, training, index))
            if value is None:
                run.failure = step
                break
            if factor is not None:  # the next step's rate
                optimizer.learning_rate = base_rate * factor(step + 1)
            run.losses.append(value)
            run.epoch_losses.append(value)
            if batches.end_of_epoch(step):
                if training.model.local_sites:
                    run.record_terms(training, _kl_weight(method, step))
                run.end_epoch(optimizer.learning_rate, held_out)
            bar.update(1)
            if step % 25 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
            if checkpoint is not None and (step + 1) % method.checkpoint_every == 0:
                checkpoint.write(step + 1, training, optimizer, run)
            if run.converged(optimizer, method.tolerance):
                break
    except KeyboardInterrupt:
        run.interrupted = True
        optimizer.restore()
    finally:
        bar.close()
    return run


# ---------------------------------------------------------------------- checkpoints
#: The ``kind`` in a checkpoint's metadata, telling it from a saved Fit.
CHECKPOINT_KIND = "zoo.svi_checkpoint"

#: Method fields that may differ between the run that wrote a checkpoint and the one resuming.
_FREE_FIELDS = ("checkpoint", "checkpoint_every", "progress")


class _Checkpoint:
    """One SVI checkpoint file: who may write it (model, data size, method) and how.

    The record (:func:`zoo.io.write_record`) holds the parameters in the order the optimiser
    holds them, Adam's step counts and moments, torch's random state and the batch order's
    generator, and the loss record, so a resumed run takes exactly the steps an uninterrupted
    one would. It is written to ``PATH.tmp`` and moved over ``PATH`` (``os.replace``: atomic on
    one file system), so a crash while writing leaves the previous checkpoint whole.
    """

    def __init__(self, path: Any, model: Model, data: Dataset, method: SVI) -> None:
        self.path = Path(path)
        settings = {name: value for name, value in method.to_dict().items() if name not in _FREE_FIELDS}
        self.identity = {
            "kind": CHECKPOINT_KIND,
            "model": type(model).registry_name or type(model).__name__,
            "config": json.loads(json.dumps(model.config(), default=str)),
            "method": json.loads(json.dumps(settings, default=str)),
            "num_data": len(data),
        }

    def read(self) -> tuple[dict[str, Any], Any]:
        """The checkpoint's metadata and tensors, after checking that it was written by this
        model, data size and method.

        Raises
        ------
        FileNotFoundError
            If there is no such file.
        ValueError
            If the file is not a zoo SVI checkpoint, or one of another model or method.
        """
        metadata, tensors = read_record(self.path)
        if metadata.get("kind") != CHECKPOINT_KIND:
            raise ValueError(f"resume: {self.path} is not an SVI checkpoint (a saved Fit? zoo.load reads those)")
        different = [key for key in ("model", "config", "method", "num_data") if metadata.get(key) != self.identity[key]]
        if different:
            details = "; ".join(f"{key}: checkpoint {metadata.get(key)!r}, this fit {self.identity[key]!r}" for key in different)
            raise ValueError(f"resume: the checkpoint {self.path} was written by another fit ({details})")
        return metadata, tensors

    def write(self, step: int, training: _Training, optimizer: Optimizer, run: _Run) -> None:
        adam = optimizer.adam  # type: ignore[attr-defined]  # checkpoints are for Adam (run_svi checks)
        moments = {
            f"{kind}{index}": value
            for index, (first, second) in enumerate(zip(adam.first_moments, adam.second_moments))
            for kind, value in (("first", first), ("second", second))
            if value is not None
        }
        metadata = {**self.identity, "step": step, "quiet": run.quiet}
        tensors = {
            "parameters": {str(index): parameter for index, parameter in enumerate(training.parameters)},
            "adam_steps": torch.tensor(adam.steps, dtype=torch.long),
            "adam_moments": moments,
            "random": {
                "torch": torch.get_rng_state(),
                "batches": training.batches.generator.get_state(),
                "order": training.batches.order,
            },
            "losses": torch.tensor(run.losses, dtype=torch.float64),
            "epoch_losses": torch.tensor(run.epoch_losses, dtype=torch.float64),
            "history": {name: torch.tensor(values, dtype=torch.float64) for name, values in run.history.items()},
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        write_record(temporary, metadata, tensors)
        os.replace(temporary, self.path)


def _restore(resumed: tuple[dict[str, Any], Any], training: _Training, optimizer: Optimizer, run: _Run) -> int:
    """Put a checkpoint's state into the training, the optimiser and the run record; returns
    the step to continue from."""
    metadata, tensors = resumed
    saved = tensors["parameters"]
    if len(saved) != len(training.parameters) or any(
        saved[str(index)].shape != parameter.shape for index, parameter in enumerate(training.parameters)
    ):
        raise ValueError("resume: the checkpoint's parameters do not match this model and guide's")
    with torch.no_grad():
        for index, parameter in enumerate(training.parameters):
            parameter.copy_(saved[str(index)])
    adam = optimizer.adam  # type: ignore[attr-defined]
    adam.steps = [int(value) for value in tensors["adam_steps"]]
    moments = tensors["adam_moments"]
    adam.first_moments = [moments.get(f"first{index}") for index in range(len(training.parameters))]
    adam.second_moments = [moments.get(f"second{index}") for index in range(len(training.parameters))]
    torch.set_rng_state(tensors["random"]["torch"])
    training.batches.generator.set_state(tensors["random"]["batches"])
    training.batches.order = tensors["random"]["order"]
    run.losses = [float(value) for value in tensors["losses"]]
    run.epoch_losses = [float(value) for value in tensors["epoch_losses"]]
    for name, values in tensors["history"].items():
        run.history[name] = [float(value) for value in values]
    run.quiet = int(metadata["quiet"])
    return int(metadata["step"])


# ---------------------------------------------------------------------- the runner
def run_svi(model: Model, data: Dataset, method: SVI, held_out: Dataset | None = None, resume: Any = None) -> Fit:
    """Fit ``model`` (already prepared for ``data``) by SVI. See :class:`~zoo.infer.methods.SVI`.

    ``held_out``: data whose negative ELBO per observation is recorded after every epoch.
    ``resume``: a checkpoint file (``SVI(checkpoint=...)``) to continue from; it is read and
    checked against ``model``, ``data`` and ``method`` before any work.

    Raises
    ------
    zoo.FitError
        If the loss or a gradient became NaN or infinite; ``error.fit`` holds the partial fit.
    """
    start = time.perf_counter()
    checkpoint = None if method.checkpoint is None else _Checkpoint(method.checkpoint, model, data, method)
    resumed = None if resume is None else _Checkpoint(resume, model, data, method).read()
    rank, world = join(method.distributed, method.device)
    device = torch.device(method.device)
    model.to(device)
    with isolated(seed=method.seed) as param_state, threads(method.num_threads or model.num_threads):
        training = _set_up(model, data, method, rank, world, device)
        if world > 1:  # every process starts alike; from here each draws its own noise
            torch.manual_seed(derived_seed(method.seed, 7919 * rank))
        scorer = None if held_out is None else _HeldOut(training, held_out, device)
        optimizer = _make_optimizer(method, training.guide_name, training.parameters)
        if (checkpoint is not None or resumed is not None) and (optimizer.name != "adam" or world > 1):
            raise ValueError(
                "checkpoint / resume: only single-process SVI by Adam writes checkpoints (an L-BFGS MAP fit "
                f"takes tens of steps; this one runs {optimizer.name} in {world} process(es))"
            )
        bar = progress_bar(training.batches.total, f"SVI {method.label(model)}", method.progress)
        with warnings.catch_warnings():
            # Pyro warns of a NaN loss; the runner stops at it and says so itself (FitError).
            warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
            run = _optimise(training, optimizer, method, scorer, bar, checkpoint, resumed)
        guide, (draws, point, importance) = _final_posterior(model, training, method, run)
    fit = Fit(
        model=model,
        method=method,
        draws=model.relabel({name: value.cpu() for name, value in draws.items()}),
        point=relabel_point(model, {name: value.cpu() for name, value in point.items()}),
        train=data,
        losses=torch.tensor(run.losses),
        sample_stats={name: value.cpu() for name, value in importance.items()},
        diagnostics={
            "num_steps": len(run.losses),
            **_convergence(run, optimizer, training.batches.total),
            "final_loss": run.losses[-1] if run.losses else float("nan"),
            "optimizer": optimizer.name,
            "steps": "recorded" if training.recorded is not None else "compiled" if training.compiled is not None else "eager",
            "num_processes": world,
        },
        wall_time=time.perf_counter() - start,
        guide=guide,
        param_state=param_state,
        interrupted=run.interrupted or run.failure is not None,
        history={name: torch.tensor(values) for name, values in run.history.items()},
        # no global latent site (a VAE): the posterior over what the Fit keeps is one point
        draws_shape=None if draws else (1, 1),
    )
    if run.failure is not None:
        raise _failure(fit, run.failure, optimizer) from optimizer.error
    return fit


def _final_posterior(
    model: Model, training: _Training, method: SVI, run: _Run
) -> tuple[Any, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """The guide a finished run keeps and its posterior draws (see :func:`_posterior_draws`).

    After a failed run, or a Ctrl-C while drawing (which marks ``run`` interrupted), the
    posterior is the guide's last good point."""
    guide = training.plain[1]  # the guide itself, without the KL weighting of training
    if run.failure is None:
        try:
            if training.guide_name == "laplace":
                guide = laplace_approximation(training.trained, guide, training.elbo, training.kwargs)
            return guide, _posterior_draws(
                model, training.trained, guide, training.kwargs, training.data, method.num_draws(model)
            )
        except KeyboardInterrupt:  # while drawing: the training is kept, as its point
            run.interrupted, guide = True, training.plain[1]
    # The guide has just failed (or was interrupted while drawing): its posterior is its last
    # good point, one draw, with no sampling (nor Laplace's Hessian) at parameters next to
    # where it broke down.
    return guide, _posterior_draws(model, training.trained, guide, training.kwargs, training.data, 1, point_only=True)


def _failure(fit: Fit, step: int, optimizer: Optimizer) -> FitError:
    """The error of a run whose loss became NaN or infinite at ``step``; it holds the partial
    ``fit``."""
    error = optimizer.error
    cause = "" if error is None else f" ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
    return FitError(
        f"the loss became NaN or infinite at step {step} of SVI ({fit.method.label(fit.model)}){cause}; the fit "
        "stopped and kept its last parameters with a finite loss (the partial Fit is "
        "error.fit, whose posterior is that one point). Try a smaller learning_rate, or check the data's scale.",
        fit=fit,
        step=step,
    )


def _convergence(run: _Run, optimizer: Optimizer, budget: int) -> dict[str, Any]:
    """What ``fit.diagnostics`` says of the optimisation's convergence.

    ``converged``: for L-BFGS (a deterministic loss), that it stopped on its tolerance before
    the budget; for Adam (a noisy loss), that the late window of the loss no longer trends
    (:func:`zoo.ops.stationarity.late_window_trend`: a t test on batch means; its fitted change
    over the window is ``loss_change`` nats per datum, its t statistic ``loss_trend_t``). A fit
    that failed or was interrupted has not converged."""
    stopped_early = run.failure is None and not run.interrupted
    if optimizer.name == "lbfgs":
        return {
            "converged": bool(stopped_early and len(run.losses) < budget),
            "convergence_test": "stopped on its tolerance before the step budget",
        }
    trend = late_window_trend(torch.tensor(run.losses))
    return {
        "converged": bool(stopped_early and trend["stationary"]),
        "convergence_test": f"late-window trend test (batch means) over the last {trend['window']} steps",
        "loss_change": trend["change"],
        "loss_trend_t": trend["t"],
    }


def _posterior_draws(
    model: Model,
    trained: Callable[..., Any],
    guide: Any,
    kwargs: dict[str, Any],
    data: Dataset,
    num_samples: int,
    point_only: bool = False,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Draws (1, num_samples, ...) from the trained guide, a point (the guide's median), and
    the draws' importance terms (:data:`IMPORTANCE_TERMS`; empty where they cannot be had).

    ``num_samples`` is 1 for a point-mass guide (``SVI.num_draws``): its one draw is its point.
    ``point_only`` (a failed fit): the median is the one draw, where the guide has one; the
    guide is sampled (once) only where it has none.

    The guide runs on what it was trained on (``trained`` with ``kwargs``; the full data,
    not a minibatch): the same continuous sites as the model's definition, with no discrete
    site to trace."""
    kwargs = {**kwargs, "batch_size": None} if "batch_size" in kwargs else kwargs
    shapes = latent_shapes(model, kwargs, trained)
    for name in model.local_sites:  # per-datum codes: not parameters of p(x), no draws kept
        shapes.pop(name, None)
    if not shapes:
        return {}, {}, {}
    with torch.no_grad():
        if point_only:
            median = _median(guide, kwargs, shapes)
            if median is not None:
                return {name: value.detach()[None, None] for name, value in median.items()}, median, {}
        traced = None
        if isinstance(trained, CollapsedModel) and num_samples > 1:
            traced = _traced_guide_draws(model, guide, kwargs, num_samples)
        if traced is not None:
            samples, importance = traced
        else:
            samples, importance = Predictive(guide, num_samples=num_samples, parallel=True)(**kwargs), {}
        draws = {
            # detach: under no_grad a view of a parameter (AutoDelta's real-valued sites) still
            # requires grad, and relabelling would then give draws with a grad_fn.
            name: samples[name].detach().reshape((1, num_samples) + shapes[name][0])
            for name in shapes
            if name in samples
        }
        missing = set(shapes) - set(draws)
        if missing:
            raise ValueError(f"the guide does not sample the latent sites {sorted(missing)}")
        point = _median(guide, kwargs, shapes)
        if point is None:
            # No median (a flow or a hand-written guide): the draw that best explains the data.
            flat = flatten_draws(draws)
            fit_to_data = pointwise_log_likelihood(model, flat, data).sum(-1)
            point = select_draw(flat, int(fit_to_data.argmax()))
    return draws, point, importance


#: The per-draw terms of the importance weight log p(theta, x) - log q(theta) that a
#: variational fit keeps in ``fit.sample_stats``, each shaped (1, num_draws): the log prior
#: density of the draw, and the guide's log density of it. The third term, the log-likelihood
#: of the training data, is the sum of the ``log_likelihood`` group ``to_arviz`` computes, so it
#: is not stored twice.
IMPORTANCE_TERMS = ("log_prior", "log_guide")


def _traced_guide_draws(
    model: Model, guide: Any, kwargs: dict[str, Any], num_samples: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
    """``num_samples`` draws from the guide in one vectorised trace, with each draw's log
    prior density and log guide density (:data:`IMPORTANCE_TERMS`, each (1, num_samples)):
    what PSIS-LOO needs to weight draws of an approximate posterior (``zoo.diagnostics.loo``).

    The draws are taken as ``Predictive(guide, parallel=True)`` takes them (one plate of
    draws left of the model's plates). The guide's log density is that of the constrained
    values: an autoguide that samples in unconstrained space records the log-Jacobian of its
    transform on each site (the ``log_density`` of its Delta sites), so the trace's log
    probabilities sum to log q(theta). The log prior replays the global story as fitted
    (:func:`~zoo.infer.collapse.fitted_globals`: user priors in place, fixed sites observed and
    so left out) on the draws under the same plate. None (the caller falls back on ``Predictive``, with no
    weights) for a guide that cannot be traced under a plate of draws.
    """
    nesting = model.max_plate_nesting
    try:
        with pyro.plate("_num_draws", num_samples, dim=-(nesting + 1)):
            guide_trace = poutine.trace(guide).get_trace(**kwargs)
            prior_trace = poutine.trace(poutine.replay(fitted_globals, trace=guide_trace)).get_trace(model)
        guide_trace.compute_log_prob()
        prior_trace.compute_log_prob()
        log_guide = _sum_per_draw(guide_trace, num_samples, nesting)
        log_prior = _sum_per_draw(prior_trace, num_samples, nesting)
    except (RuntimeError, ValueError, NotImplementedError, TypeError):
        return None
    samples = {
        name: site["value"]
        for name, site in guide_trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }
    terms = {"log_prior": log_prior.reshape(1, -1), "log_guide": log_guide.reshape(1, -1)}
    if not all(torch.isfinite(value).all() for value in terms.values()):
        terms = {}  # a draw outside the prior's support: no weights rather than wrong ones
    return samples, terms


def _sum_per_draw(trace: poutine.Trace, num_samples: int, nesting: int) -> torch.Tensor:
    """The sum of every latent sample site's log density per draw, shape (num_samples,).

    A site's log density has the plate of draws at dim ``-(nesting + 1)`` of its batch shape
    (the plates' broadcasting puts it there); a site whose batch shape stops short of it, or
    has size 1 there, does not vary by draw and adds the same number to each."""
    total = torch.zeros(num_samples, dtype=torch.float64)
    for site in trace.nodes.values():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        log_prob = site["log_prob"].double()
        axis = log_prob.dim() - (nesting + 1)
        if axis < 0 or log_prob.shape[axis] == 1:
            total = total + log_prob.sum()
        else:
            total = total + log_prob.movedim(axis, 0).reshape(num_samples, -1).sum(-1)
    return total


def _median(
    guide: Any, kwargs: dict[str, Any], shapes: dict[str, tuple[tuple[int, ...], int]]
) -> dict[str, torch.Tensor] | None:
    """The guide's median of every latent site in ``shapes`` (site shapes), or None where the
    guide has no median (a flow, a hand-written guide)."""
    median = getattr(guide, "median", None)
    if not callable(median):
        return None
    try:
        point = {name: value.detach().reshape(shapes[name][0]) for name, value in median(**kwargs).items() if name in shapes}
    except (NotImplementedError, AttributeError, TypeError):
        return None
    return point if set(point) == set(shapes) else None


# ---------------------------------------------------------------------- minibatches and epochs
class _Batches:
    """Which data each step sees: the data plate's own subsample (``num_steps``), or shuffled
    epochs of explicit indices (``num_epochs``), sharded across the processes of a distributed run."""

    def __init__(self, method: SVI, num_data: int, rank: int = 0, world: int = 1, explicit: bool = False) -> None:
        self.num_data, self.rank, self.world = num_data, rank, world
        self.batch = min(method.batch_size or num_data, num_data)
        self.per_epoch = math.ceil(num_data / self.batch)
        self.epochs = method.num_epochs
        self.total = self.epochs * self.per_epoch if self.epochs is not None else method.num_steps
        # The runner picks the rows itself in epochs (each datum once per epoch), across
        # processes, and when something besides the ELBO must see the same rows (``explicit``).
        self.explicit = (self.epochs is not None or explicit) and (self.batch < num_data or world > 1)
        self.generator = torch.Generator().manual_seed(int(method.seed))
        self.order = torch.arange(num_data)

    def index(self, step: int, device: torch.device) -> torch.Tensor | None:
        """The indices of step ``step`` (this process's shard), or None for the plate's own."""
        if not self.explicit:
            return None
        position = step % self.per_epoch
        if position == 0:
            self.order = torch.randperm(self.num_data, generator=self.generator)
        batch = self.order[position * self.batch : (position + 1) * self.batch]
        return shard(batch, self.rank, self.world).to(device)

    def end_of_epoch(self, step: int) -> bool:
        return (step + 1) % self.per_epoch == 0


def _auxiliary_loss(model: Model, data: Dataset, index: torch.Tensor | None) -> torch.Tensor:
    """The model's auxiliary loss on the step's rows ``index`` (None: all rows), scaled as the
    data plate scales the ELBO: by num_data / rows."""
    rows = data if index is None else data.rows(index)
    term = model.auxiliary_loss(rows)
    if term is None:
        raise ValueError(f"{type(model).__name__}.auxiliary_loss returned None; return a scalar tensor")
    return term * (len(data) / len(rows))


def _all_finite(parameters: list[torch.Tensor]) -> bool:
    """Whether every parameter (or gradient) is finite, by one sum per parameter (NaN and infinity propagate
    through a sum): 30 times cheaper than an elementwise check on a network's weights."""
    if not parameters:
        return True
    with torch.no_grad():
        return bool(torch.isfinite(torch.stack([parameter.detach().sum() for parameter in parameters]).sum()))


def _subsample(plate: str, index: torch.Tensor | None) -> Any:
    """Make the plate ``plate`` take the subsample ``index`` in model and guide alike."""
    if index is None:
        return contextlib.nullcontext()
    trace = poutine.Trace()
    trace.add_node(plate, name=plate, type="sample", is_observed=False, value=index, infer={})
    return poutine.replay(trace=trace)


class _CompiledLoss:
    """Each step's ELBO through Pyro's jit (``SVI(jit=True)``), fed the way a recording needs.

    ``JitTrace_ELBO`` (and ``JitTraceEnum_ELBO``) records one run of model and guide with
    ``torch.jit.trace`` and replays the recording on later calls. Whatever changes from step to
    step must therefore reach it as a tensor argument; a Python value read while tracing is
    frozen into the recording. So:

    * the minibatch's indices are a tensor argument, and the data plate takes them *inside* the
      traced function (the replay of :func:`_subsample`), not from a context around it, whose
      indices the recording would keep as constants;
    * the model's tensor keyword arguments (the data) are passed positionally, as Pyro's jit
      asks, and the others (sizes, flags: fixed for a fit) stay in a closure;
    * the minibatch size is a keyword argument, on which Pyro keys its recordings: the plate's
      scale N / batch and every shape are constants of a recording, so an epoch's smaller last
      batch gets a recording of its own, not the full batches' (whose scale would be wrong).

    Compiling a size runs model and guide three times (Pyro's parameter capture, the trace, the
    first replay). It is done before the step, on a forked random generator, so the fit draws
    the same noise as with ``jit=False`` (in the same order, unless torch's graph optimiser
    reorders independent random ops: it does with the low-rank autoguide's two draws).

    Parameters
    ----------
    elbo : JitTrace_ELBO or JitTraceEnum_ELBO
    model, guide : callable
        What is trained (the model, or its collapsed training model) and its guide.
    plate : str
        The name of the data plate.
    kwargs : dict
        The model's keyword arguments for the fit (on ``device``).
    device : torch.device
        Where the random draws are made (whose generator to fork).
    """

    def __init__(
        self,
        elbo: Any,
        model: Callable[..., Any],
        plate: str,
        guide: Callable[..., Any],
        kwargs: dict[str, Any],
        device: torch.device,
    ) -> None:
        self.elbo, self.device = elbo, device
        names = tuple(name for name, value in kwargs.items() if isinstance(value, torch.Tensor))
        static = {name: value for name, value in kwargs.items() if name not in names}
        self.tensors = tuple(kwargs[name] for name in names)

        def indexed(function: Callable[..., Any]) -> Callable[..., Any]:
            """``function`` taking (index, *data tensors), or the tensors alone when the plate
            keeps its own subsample (``subsample_size`` None)."""

            def run(*tensors: torch.Tensor, subsample_size: int | None) -> Any:
                index = None
                if subsample_size is not None:
                    index, tensors = tensors[0], tensors[1:]
                with _subsample(plate, index):
                    return function(**dict(zip(names, tensors)), **static)

            return run

        # Built once: Pyro's jit keys its recordings on the identity of model and guide.
        self.model, self.guide = indexed(model), indexed(guide)
        self.compiled_sizes: set[int | None] = set()

    def __call__(self, index: torch.Tensor | None) -> torch.Tensor:
        """The ELBO's loss (not yet per observation) on the minibatch ``index`` (None: the data
        plate's own subsample, or all of it)."""
        size = None if index is None else len(index)
        arguments = self.tensors if index is None else (index, *self.tensors)
        if size not in self.compiled_sizes:
            self._compile(arguments, size)
            self.compiled_sizes.add(size)
        return self._loss(arguments, size)

    def _loss(self, arguments: tuple[torch.Tensor, ...], size: int | None) -> torch.Tensor:
        return self.elbo.differentiable_loss(
            self.model, self.guide, *arguments, subsample_size=size
        )

    def _compile(self, arguments: tuple[torch.Tensor, ...], size: int | None) -> None:
        """Record the program for minibatches of ``size``, leaving the random generators as
        they were."""
        with _forked_rng(self.device), warnings.catch_warnings():
            # torch deprecates torch.jit.trace (for torch.compile, which Pyro's handlers do not
            # support yet): a note for Pyro's maintainers that a zoo user can do nothing about.
            warnings.filterwarnings(
                "ignore", message=".*torch.jit.trace.* is deprecated", category=DeprecationWarning
            )
            try:
                self._loss(arguments, size)
            except RuntimeError as error:
                if "requires grad as a constant" not in str(error):
                    raise
                raise ProgramError(
                    "SVI's compiled ELBO (jit=True, or the default for a model declaring jit_safe): "
                    "the model or guide uses a tensor that requires grad without "
                    "registering it with Pyro (a network called without pyro.module, or a "
                    "parameter that is neither a pyro.param nor an attribute of a PyroModule): the "
                    "compiled program could hold it only as a constant, which would not train. "
                    "Register it, or fit with jit=False."
                ) from error


class ProgramError(ValueError):
    """An error of the model's or guide's program found at a step (not at the set-up run), such
    as a compiled ELBO that would freeze an unregistered network: raised as it is, never taken for
    a divergence of the numbers (which :func:`_evaluate` turns into a FitError)."""


def _forked_rng(device: torch.device) -> Any:
    """A context whose random draws (on the CPU, and on ``device`` if a GPU) leave the global
    generators as they found them."""
    # (The GPU branch has not yet run on a GPU: none was at hand when it was written.)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index])
    return torch.random.fork_rng(devices=[])


def _schedule(method: SVI, total: int) -> Callable[[int], float] | None:
    """The learning-rate schedule as a factor of the base rate per step (None: constant). Step
    ``k`` (from 0) runs at ``base * factor(k)``, as ``torch.optim.lr_scheduler.LambdaLR`` would
    set it."""
    final = method.final_learning_rate_fraction
    if method.learning_rate_schedule == "constant":
        return None
    if method.learning_rate_schedule == "cosine":
        def factor(step: int) -> float:
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    else:
        def factor(step: int) -> float:
            return final ** (min(step, total) / total)
    return factor


def _to_device(value: Any, device: torch.device) -> Any:
    """Tensors of model kwargs (a dict: tensors and data sets) or of a Dataset moved to ``device``."""
    if device.type == "cpu" and device.index is None:
        return value
    if isinstance(value, Dataset):
        return dataclasses.replace(
            value,
            x=value.x.to(device),
            y=None if value.y is None else value.y.to(device),
            lengths=None if value.lengths is None else value.lengths.to(device),
            weights=None if value.weights is None else value.weights.to(device),
            observed=None if value.observed is None else value.observed.to(device),
            states=None if value.states is None else value.states.to(device),
        )
    return {
        name: item.to(device) if isinstance(item, torch.Tensor) else _to_device(item, device) if isinstance(item, Dataset) else item
        for name, item in value.items()
    }
