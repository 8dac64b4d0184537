"""Stochastic variational inference with a guide chosen by name.

The ELBO is ``TraceEnum_ELBO`` when the model declares enumerated sites (they are summed out
exactly; the guide never sees them) or sites its own guides enumerate (``guide_enumerated_sites``:
summed under the guide's probabilities, e.g. the semi-supervised VAE's q(y | x)), and
``Trace_ELBO`` otherwise. The loss is reported per
observation (data point, or time step for sequences) so curves compare across data sets and batch
sizes.

Optimiser: Adam for guides with Monte Carlo noise; L-BFGS with a strong-Wolfe line search for
point-mass guides on full batches (``guide="delta"`` or ``"laplace"``), whose loss is
deterministic: from the model's data-driven initialisation it reaches the mode in tens of steps
where Adam needs thousands.

Compiled steps (``SVI(jit=True)``): the step's ELBO goes through Pyro's ``JitTrace_ELBO`` /
``JitTraceEnum_ELBO``, which trace model and guide once with ``torch.jit.trace`` and replay the
recorded tensor program on every later step, skipping Pyro's per-step Python (effect handlers,
site bookkeeping, distribution objects). See :class:`_CompiledLoss` for how the runner feeds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import JitTrace_ELBO, JitTraceEnum_ELBO, Predictive, Trace_ELBO, TraceEnum_ELBO

from zoo.datasets.dataset import Dataset
from zoo.infer.evaluate import flatten_draws, latent_shapes, pointwise_log_likelihood, select_draw
from zoo.infer.collapse import CollapsedModel, on_training_arguments, training_model
from zoo.infer.distributed import average_gradients, join, shard
from zoo.infer.guides import DETERMINISTIC_GUIDES, laplace_approximation, make_guide
from zoo.infer.runtime import FitError, check_positive_float, check_positive_int, isolated, progress_bar, threads
from zoo.models.base import Model
from zoo.results import Fit

__all__ = ["SVI", "run_svi"]

OPTIMIZERS = ("auto", "adam", "lbfgs")
SCHEDULES = ("constant", "cosine", "exponential")


@dataclass(frozen=True)
class SVI:
    """Stochastic variational inference.

    Parameters
    ----------
    guide : str or callable, optional
        "delta" (MAP), "normal" (mean-field), "mvn" (full-rank), "lowrank", "laplace", "iaf",
        a name the model offers itself, or a guide callable. Default: the model's default guide.
    num_steps : int
        Maximum number of optimisation steps.
    learning_rate : float, optional
        Step size; default 0.01 for Adam and 1.0 for L-BFGS.
    num_particles : int
        Monte Carlo samples per ELBO estimate.
    batch_size : int, optional
        Minibatch size (subsampling the data plate); default: the full data.
    tolerance : float
        Stop early when the relative change of the smoothed loss falls below this (0: never).
        The smoothed loss is the mean over a window of 50 steps for Adam, the change being taken
        between consecutive windows, three times in a row (noisy losses can agree by chance);
        for L-BFGS (deterministic) it is the change between consecutive steps, twice in a row.
    num_posterior_samples : int
        Draws taken from the trained guide (one chain).
    optimizer : {"auto", "adam", "lbfgs"}
        "auto": L-BFGS for point-mass guides on full batches, Adam otherwise.
    num_threads : int, optional
        Torch threads while fitting; default: the model's ``num_threads``.
    seed : int
    progress : bool
        Show a progress bar (only when standard error is a terminal).
    num_epochs : int, optional
        Train for this many passes over the data instead of ``num_steps``: each epoch shuffles
        the data (a private generator seeded by ``seed``) and visits every datum once, in
        minibatches of ``batch_size`` (the last one may be smaller); the data plate's scaling
        keeps each step's ELBO unbiased. Steps per epoch: ceil(num_data / batch_size).
    learning_rate_schedule : {"constant", "cosine", "exponential"}
        How the step size moves from ``learning_rate`` to ``learning_rate *
        final_learning_rate_fraction`` over the run (cosine annealing, or geometric decay).
    final_learning_rate_fraction : float
        The last step's learning rate as a fraction of the first (for a schedule other than
        "constant").
    device : str
        Torch device to fit on ("cpu", "cuda", "cuda:1"): the fitted model stays there; draws
        come back to the CPU.
    distributed : bool
        Data-parallel training across the processes of a ``torch.distributed`` job (started by
        ``torchrun``; gloo on CPU, nccl on GPUs): every process takes its shard of each global
        minibatch and the gradients are averaged, so the run follows the single-process run on
        the same global batches. Needs ``num_epochs``.
    jit : bool, optional
        None (default): the model's declaration (``jit_safe``: True for the VAEs) for a guide
        named by string, off for a guide given as a callable (whose structure zoo cannot vouch
        for). True / False: on / off. Compile each step's ELBO (Pyro's ``JitTrace_ELBO``, or ``JitTraceEnum_ELBO`` where sites
        are enumerated): model and guide are traced once per minibatch size and the recorded
        tensor program is replayed on later steps, without Pyro's per-step Python (effect
        handlers, site bookkeeping, distribution objects). It pays where that Python is a visible
        part of a step: an epoch of a VAE on MNIST (784-400-16) takes about 12% less time
        (``benchmarks/vae.py``), one of a small VAE on 8x8 digits about a third less; compiling
        costs a fraction of a second per minibatch size. The same seed gives the same run. It is the run of
        ``jit=False``, to float rounding, wherever the compiled program makes its random draws in
        the eager order (compiling runs on a forked generator): tested for the VAEs' guides,
        AutoNormal, AutoDelta; torch may reorder independent draws of one step (seen with the
        low-rank autoguide), and the run is then another, equally valid one: the same in
        distribution, not draw for draw.
        For a model and guide of static structure only: no Python branch or loop on a tensor's
        value (the recording keeps the branch taken while tracing, silently: torch's warnings
        about it are silenced, since the shape checks of every model raise the same ones
        harmlessly), no sites that come and go, and every network registered with Pyro
        (``pyro.module``, or an attribute of a ``PyroModule``) so that its weights are inputs of
        the program (torch refuses to record them as constants; zoo says why). Each minibatch
        size compiles once (an epoch's smaller last batch is one more). Works with
        ``distributed`` (each process compiles its shard's ELBO; the gradients are averaged
        outside it). ``torch.jit.trace``, on which Pyro's jit rests, is deprecated by torch in
        favour of ``torch.compile``, which Pyro's effect handlers do not support yet: the option
        lasts as long as torch keeps it.

    The per-epoch record is in ``fit.history``: "epoch_loss" (loss per datum, averaged over the
    epoch's steps), "learning_rate" (at the epoch's end) and, when ``zoo.fit`` is given
    ``held_out`` data, "held_out_loss" (negative ELBO per observation of the held-out data after
    each epoch).
    """

    guide: str | Callable[..., Any] | None = None
    num_steps: int = 1000
    learning_rate: float | None = None
    num_particles: int = 1
    batch_size: int | None = None
    tolerance: float = 1e-6
    num_posterior_samples: int = 1000
    optimizer: str = "auto"
    num_threads: int | None = None
    seed: int = 0
    progress: bool = True
    num_epochs: int | None = None
    learning_rate_schedule: str = "constant"
    final_learning_rate_fraction: float = 0.01
    device: str = "cpu"
    distributed: bool = False
    jit: bool | None = None

    kind = "svi"

    def __post_init__(self) -> None:
        check_positive_int(self.num_steps, "num_steps")
        if self.learning_rate is not None:
            check_positive_float(self.learning_rate, "learning_rate")
        check_positive_int(self.num_particles, "num_particles")
        if self.batch_size is not None:
            check_positive_int(self.batch_size, "batch_size")
        check_positive_float(self.tolerance, "tolerance", allow_zero=True)
        check_positive_int(self.num_posterior_samples, "num_posterior_samples")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        check_positive_int(self.seed, "seed", minimum=0)
        if self.num_threads is not None:
            check_positive_int(self.num_threads, "num_threads")
        if self.guide is not None and not isinstance(self.guide, str) and not callable(self.guide):
            raise TypeError(f"guide must be a name or a callable, got {type(self.guide).__name__}")
        if self.num_epochs is not None:
            check_positive_int(self.num_epochs, "num_epochs")
        if self.learning_rate_schedule not in SCHEDULES:
            raise ValueError(
                f"learning_rate_schedule must be one of {SCHEDULES}, got {self.learning_rate_schedule!r}"
            )
        check_positive_float(self.final_learning_rate_fraction, "final_learning_rate_fraction")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must name a torch device ('cpu', 'cuda'), got {self.device!r}") from None
        if self.distributed and self.num_epochs is None:
            raise ValueError("distributed=True trains by epochs: give num_epochs")
        if self.jit is not None and not isinstance(self.jit, bool):
            raise TypeError(f"jit must be True, False or None (the model's declaration), got {self.jit!r}")

    def guide_name(self, model: Model) -> str | Callable[..., Any]:
        return model.default_guide if self.guide is None else self.guide

    def label(self, model: Model | None = None) -> str:
        """"svi:GUIDE", the guide resolved against ``model`` when it is the default."""
        guide = self.guide_name(model) if model is not None else self.guide
        if guide is not None and not isinstance(guide, str):
            guide = "custom"
        return f"svi:{guide or 'default'}"

    def validate(self, model: Model, data: Dataset) -> None:
        if self.batch_size is not None and self.batch_size > len(data):
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the data ({len(data)} rows)"
            )
        # Building the guide checks its name before any work starts.
        make_guide(model, self.guide_name(model))
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r}, but torch finds no CUDA GPU here")

    def to_dict(self) -> dict[str, Any]:
        if self.guide is not None and not isinstance(self.guide, str):
            raise ValueError("a Fit whose guide is a callable cannot be saved: name the guide")
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _make_elbo(model: Model, method: SVI, enumerated: bool, jit: bool = False) -> Any:
    """TraceEnum_ELBO (discrete sites summed out) when ``enumerated``, else Trace_ELBO; their
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
    guide is one zoo builds by name."""
    if method.jit is not None:
        return method.jit
    return model.jit_safe and isinstance(guide_name, str)


def _use_lbfgs(method: SVI, guide_name: Any) -> bool:
    if method.optimizer != "auto":
        return method.optimizer == "lbfgs"
    return guide_name in DETERMINISTIC_GUIDES and method.batch_size is None


def _parameters(model: Model, guide: Any) -> list[torch.Tensor]:
    """Everything to optimise: the model's and guide's module parameters, and what a
    hand-written guide registered with ``pyro.param`` (in the fit's private store)."""
    parameters = list(model.parameters())
    if isinstance(guide, torch.nn.Module):
        parameters += list(guide.parameters())
    store = pyro.get_param_store()
    parameters += [store._params[name] for name in store.keys()]
    seen, unique = set(), []
    for parameter in parameters:
        if id(parameter) not in seen and parameter.requires_grad:
            seen.add(id(parameter))
            unique.append(parameter)
    return unique


def _converged(losses: list[float], window: int, tolerance: float) -> bool:
    """Relative change between the means of the last two windows of the loss."""
    if tolerance <= 0 or len(losses) < 2 * window or len(losses) % window:
        return False
    recent = sum(losses[-window:]) / window
    before = sum(losses[-2 * window : -window]) / window
    return abs(recent - before) <= tolerance * max(abs(recent), 1e-12)


def run_svi(model: Model, data: Dataset, method: SVI, held_out: Dataset | None = None) -> Fit:
    """Fit ``model`` (already prepared for ``data``) by SVI. See :class:`SVI`.

    ``held_out``: data whose negative ELBO per observation is recorded after every epoch.
    """
    guide_name = method.guide_name(model)
    start = time.perf_counter()
    rank, world = join(method.distributed, method.device)
    device = torch.device(method.device)
    model.to(device)
    with isolated(seed=method.seed) as param_state, threads(method.num_threads or model.num_threads):
        # A model's auxiliary loss (an objective besides its density) sees each step's rows too.
        auxiliary = type(model).auxiliary_loss is not Model.auxiliary_loss
        batches = _Batches(method, len(data), rank, world, explicit=auxiliary)
        # Where the runner picks each step's rows (explicit indices), the data plate does not.
        batch_size = None if method.num_epochs is not None or batches.explicit else method.batch_size
        trained, kwargs = training_model(model, _to_device(data, device), batch_size)
        kwargs = _to_device(kwargs, device)
        guide = make_guide(model, guide_name, model.initial_values(data, seed=method.seed), trained)
        parameters_of = guide  # the user's own guide callable keeps its parameters, whatever it is handed
        if isinstance(trained, CollapsedModel) and not isinstance(guide_name, str):
            guide = on_training_arguments(guide, model)
        # TraceEnum_ELBO where something is enumerated in what is fitted; the collapsed training
        # model sums its discrete sites out (one factor) and needs only Trace_ELBO, whose steps
        # cost less.
        enumerated = bool(model.guide_enumerated_sites) or _enumerates(model, trained, kwargs)
        elbo = _make_elbo(model, method, enumerated)
        elbo.differentiable_loss(trained, guide, **kwargs)  # creates the guide's parameters
        parameters = _parameters(model, parameters_of)
        compiled = None
        if _use_jit(method, model, guide_name):
            compiled_elbo = _make_elbo(model, method, isinstance(elbo, TraceEnum_ELBO), jit=True)
            compiled = _CompiledLoss(compiled_elbo, trained, model.data_plate, guide, kwargs, device)
        if world > 1:  # every process starts alike; from here each draws its own noise
            torch.manual_seed(method.seed + 7919 * rank)
        held_kwargs = None
        if held_out is not None:
            held_trained, held_kwargs = training_model(model, _to_device(held_out, device))
            held_kwargs = _to_device(held_kwargs, device)
            try:
                _held_out_loss(elbo, held_trained, guide, held_kwargs, held_out)
            except (RuntimeError, ValueError, IndexError) as error:
                raise ValueError(
                    f"held_out: the ELBO of held-out data cannot be computed with guide {guide_name!r} "
                    f"(a guide with parameters per training datum cannot take new data): {error}"
                ) from None
        lbfgs = _use_lbfgs(method, guide_name)
        device_data = _to_device(data, device)
        if lbfgs:
            optimizer: torch.optim.Optimizer = torch.optim.LBFGS(
                parameters,
                lr=method.learning_rate or 1.0,
                max_iter=1,
                # one iteration per step, but room for its line search: with max_iter=1 torch's
                # default max_eval (max_iter * 5 // 4 = 1) allows no trial step but the first,
                # and an overshooting first step then leaves every later step stuck at t = 0
                max_eval=25,
                history_size=20,
                line_search_fn="strong_wolfe",
                tolerance_grad=1e-9,
                tolerance_change=1e-12,
            )
        else:
            optimizer = torch.optim.Adam(parameters, lr=method.learning_rate or 0.01)
        scheduler = _scheduler(optimizer, method, batches.total)
        scale = 1.0 / data.num_observations
        history: dict[str, list[float]] = {"epoch_loss": [], "learning_rate": [], "epoch_time": []}
        if held_out is not None:
            history["held_out_loss"] = []
        epoch_start, epoch_losses = time.perf_counter(), []
        index: torch.Tensor | None = None
        # L-BFGS's loss is deterministic: compare single steps, and ask for two quiet steps in a
        # row, since it can also creep slowly before the last few steps to the mode.
        # Adam's loss is noisy: two window means can agree by chance while the loss still
        # trends, so three quiet windows in a row are asked for.
        window, patience, quiet = (1, 2, 0) if lbfgs else (50, 3, 0)
        losses: list[float] = []
        interrupted, failure = False, None
        snapshot = [parameter.detach().clone() for parameter in parameters]
        bar = progress_bar(batches.total, f"SVI {method.label(model)}", method.progress)

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            # Arguments were validated on the first call above; checking every distribution's
            # parameters again on each step costs more than the step itself on small models.
            with pyro.validation_enabled(False):
                if compiled is not None:
                    loss = compiled(index) * scale
                else:
                    with _subsample(model.data_plate, index):
                        loss = elbo.differentiable_loss(trained, guide, **kwargs) * scale
                if auxiliary:
                    loss = loss + _auxiliary_loss(model, device_data, index) * scale
            if torch.isfinite(loss):
                loss.backward()
            if world > 1:
                loss = average_gradients(parameters, loss.detach(), world)
            return loss

        try:
            for step in range(batches.total):
                index = batches.index(step, device)
                loss = optimizer.step(closure) if lbfgs else closure()
                value = float(loss.detach())
                # L-BFGS has moved the parameters inside its step: check them, and go back to the
                # last snapshot if they are not finite. Adam has not moved them yet: check the
                # gradients it is about to apply, so that a finite loss with a NaN or infinite
                # gradient stops the fit before the update that would make the parameters NaN;
                # the current parameters are then the last good ones, with no per-step snapshot.
                checked = parameters if lbfgs else [p.grad for p in parameters if p.grad is not None]
                finite = math.isfinite(value) and _all_finite(checked)
                if not finite:
                    if lbfgs:
                        with torch.no_grad():
                            for parameter, saved in zip(parameters, snapshot):
                                parameter.copy_(saved)
                    failure = step
                    break
                if lbfgs:
                    snapshot = [parameter.detach().clone() for parameter in parameters]
                else:
                    optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                losses.append(value)
                epoch_losses.append(value)
                if batches.end_of_epoch(step):
                    history["epoch_loss"].append(sum(epoch_losses) / len(epoch_losses))
                    history["learning_rate"].append(optimizer.param_groups[0]["lr"])
                    if held_kwargs is not None:
                        history["held_out_loss"].append(_held_out_loss(elbo, held_trained, guide, held_kwargs, held_out))
                    history["epoch_time"].append(time.perf_counter() - epoch_start)
                    epoch_start, epoch_losses = time.perf_counter(), []
                bar.update(1)
                if step % 25 == 0:
                    bar.set_postfix(loss=f"{value:.4f}")
                if _converged(losses, window, method.tolerance):
                    quiet += 1
                    if quiet >= patience:
                        break
                elif len(losses) % window == 0:
                    quiet = 0
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()

        if (failure is not None or interrupted) and lbfgs:  # Adam's current ones are the last good
            with torch.no_grad():
                for parameter, saved in zip(parameters, snapshot):
                    parameter.copy_(saved)
        if guide_name == "laplace":
            guide = laplace_approximation(trained, guide, elbo, kwargs)
        draws, point = _posterior_draws(model, trained, guide, kwargs, _to_device(data, device), method.num_posterior_samples)
        draws = {name: value.cpu() for name, value in draws.items()}
        point = {name: value.cpu() for name, value in point.items()}
    fit = Fit(
        model=model,
        method=method,
        draws=model.relabel(draws),
        point=_relabel_point(model, point),
        train=data,
        losses=torch.tensor(losses),
        diagnostics={
            "num_steps": len(losses),
            "converged": bool(failure is None and not interrupted and len(losses) < batches.total),
            "final_loss": losses[-1] if losses else float("nan"),
            "optimizer": "lbfgs" if lbfgs else "adam",
            "num_processes": world,
        },
        wall_time=time.perf_counter() - start,
        guide=guide,
        param_state=param_state,
        interrupted=interrupted or failure is not None,
        history={name: torch.tensor(values) for name, values in history.items()},
        draws_shape=None if draws else (1, method.num_posterior_samples),
    )
    if failure is not None:
        raise FitError(
            f"the loss became NaN or infinite at step {failure} of SVI ({method.label(model)}); the fit "
            "stopped and kept its last parameters with a finite loss (the partial Fit is "
            "error.fit). Try a smaller learning_rate, or check the data's scale.",
            fit=fit,
            step=failure,
        )
    return fit


def _relabel_point(model: Model, point: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    batched = model.relabel({name: value[None, None] for name, value in point.items()})
    return {name: value[0, 0] for name, value in batched.items()}


def _posterior_draws(
    model: Model, trained: Callable[..., Any], guide: Any, kwargs: dict[str, Any], data: Dataset, num_samples: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Draws (1, num_samples, ...) from the trained guide, and a point: the guide's median.

    The guide runs on what it was trained on (``trained`` with ``kwargs``; the full data,
    not a minibatch): the same continuous sites as the model's definition, with no discrete
    site to trace."""
    kwargs = {**kwargs, "batch_size": None} if "batch_size" in kwargs else kwargs
    shapes = latent_shapes(model, kwargs, trained)
    for name in model.local_sites:  # per-datum codes: not parameters of p(x), no draws kept
        shapes.pop(name, None)
    if not shapes:
        return {}, {}
    with torch.no_grad():
        samples = Predictive(guide, num_samples=num_samples, parallel=True)(**kwargs)
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
        median = getattr(guide, "median", None)
        point = None
        if callable(median):
            try:
                point = {name: value.reshape(shapes[name][0]) for name, value in median(**kwargs).items() if name in shapes}
            except (NotImplementedError, AttributeError, TypeError):
                point = None
        if point is None or set(point) != set(shapes):
            # No median (a flow or a hand-written guide): the draw that best explains the data.
            flat = flatten_draws(draws)
            fit_to_data = pointwise_log_likelihood(model, flat, data).sum(-1)
            point = select_draw(flat, int(fit_to_data.argmax()))
    return draws, point


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
                raise ValueError(
                    "SVI's compiled ELBO (jit=True, or the default for a model declaring jit_safe): "
                    "the model or guide uses a tensor that requires grad without "
                    "registering it with Pyro (a network called without pyro.module, or a "
                    "parameter that is neither a pyro.param nor an attribute of a PyroModule): the "
                    "compiled program could hold it only as a constant, which would not train. "
                    "Register it, or fit with jit=False."
                ) from error


def _forked_rng(device: torch.device) -> Any:
    """A context whose random draws (on the CPU, and on ``device`` if a GPU) leave the global
    generators as they found them."""
    # (The GPU branch has not yet run on a GPU: none was at hand when it was written.)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.random.fork_rng(devices=[index])
    return torch.random.fork_rng(devices=[])


def _scheduler(optimizer: torch.optim.Optimizer, method: SVI, total: int) -> Any:
    """A per-step learning-rate schedule (None for a constant rate)."""
    final = method.final_learning_rate_fraction
    if method.learning_rate_schedule == "constant":
        return None
    if method.learning_rate_schedule == "cosine":
        def factor(step: int) -> float:
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    else:
        def factor(step: int) -> float:
            return final ** (min(step, total) / total)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
        )
    return {
        name: item.to(device) if isinstance(item, torch.Tensor) else _to_device(item, device) if isinstance(item, Dataset) else item
        for name, item in value.items()
    }


def _held_out_loss(elbo: Any, model: Callable[..., Any], guide: Any, kwargs: dict[str, Any], data: Dataset) -> float:
    """Negative ELBO per observation of held-out data (no gradients).

    ``loss``, not ``differentiable_loss``: the same number, but TraceEnum_ELBO refuses to give
    a differentiable loss that does not require grad (any enumerated model under no_grad)."""
    with torch.no_grad(), pyro.validation_enabled(False):
        return float(elbo.loss(model, guide, **kwargs)) / data.num_observations

