"""Stochastic variational inference with a guide chosen by name.

The ELBO is ``TraceEnum_ELBO`` when the model declares enumerated sites (they are summed out
exactly; the guide never sees them) and ``Trace_ELBO`` otherwise. The loss is reported per
observation (data point, or time step for sequences) so curves compare across data sets and batch
sizes.

Optimiser: Adam for guides with Monte Carlo noise; L-BFGS with a strong-Wolfe line search for
point-mass guides on full batches (``guide="delta"`` or ``"laplace"``), whose loss is
deterministic: from the model's data-driven initialisation it reaches the mode in tens of steps
where Adam needs thousands.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import torch
from pyro.infer import Predictive, Trace_ELBO, TraceEnum_ELBO

from zoo.datasets.dataset import Dataset
from zoo.infer.evaluate import flatten_draws, latent_shapes, pointwise_log_likelihood, select_draw
from zoo.infer.guides import DETERMINISTIC_GUIDES, laplace_approximation, make_guide
from zoo.infer.runtime import FitError, check_positive_float, check_positive_int, isolated, progress_bar, threads
from zoo.models.base import Model
from zoo.results import Fit

__all__ = ["SVI", "run_svi"]

OPTIMIZERS = ("auto", "adam", "lbfgs")


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
        between consecutive windows; for L-BFGS (deterministic) it is the change between
        consecutive steps, twice in a row.
    num_posterior_samples : int
        Draws taken from the trained guide (one chain).
    optimizer : {"auto", "adam", "lbfgs"}
        "auto": L-BFGS for point-mass guides on full batches, Adam otherwise.
    num_threads : int, optional
        Torch threads while fitting; default: the model's ``num_threads``.
    seed : int
    progress : bool
        Show a progress bar (only when standard error is a terminal).
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

    def to_dict(self) -> dict[str, Any]:
        if self.guide is not None and not isinstance(self.guide, str):
            raise ValueError("a Fit whose guide is a callable cannot be saved: name the guide")
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


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


def run_svi(model: Model, data: Dataset, method: SVI) -> Fit:
    """Fit ``model`` (already prepared for ``data``) by SVI. See :class:`SVI`."""
    guide_name = method.guide_name(model)
    start = time.perf_counter()
    with isolated(seed=method.seed) as param_state, threads(method.num_threads or model.num_threads):
        guide = make_guide(model, guide_name, model.initial_values(data, seed=method.seed))
        kwargs = model.model_kwargs(data, batch_size=method.batch_size)
        if model.enumerated_sites:
            elbo = TraceEnum_ELBO(
                max_plate_nesting=model.max_plate_nesting,
                num_particles=method.num_particles,
                vectorize_particles=method.num_particles > 1,
            )
        else:
            elbo = Trace_ELBO(num_particles=method.num_particles, vectorize_particles=method.num_particles > 1)
        elbo.differentiable_loss(model, guide, **kwargs)  # creates the guide's parameters
        parameters = _parameters(model, guide)
        lbfgs = _use_lbfgs(method, guide_name)
        if lbfgs:
            optimizer: torch.optim.Optimizer = torch.optim.LBFGS(
                parameters,
                lr=method.learning_rate or 1.0,
                max_iter=1,
                history_size=20,
                line_search_fn="strong_wolfe",
                tolerance_grad=1e-9,
                tolerance_change=1e-12,
            )
        else:
            optimizer = torch.optim.Adam(parameters, lr=method.learning_rate or 0.01)
        scale = 1.0 / data.num_observations
        # L-BFGS's loss is deterministic: compare single steps, and ask for two quiet steps in a
        # row, since it can also creep slowly before the last few steps to the mode.
        window, patience, quiet = (1, 2, 0) if lbfgs else (50, 1, 0)
        losses: list[float] = []
        interrupted, failure = False, None
        snapshot = [parameter.detach().clone() for parameter in parameters]
        bar = progress_bar(method.num_steps, f"SVI {method.label(model)}", method.progress)

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            # Arguments were validated on the first call above; checking every distribution's
            # parameters again on each step costs more than the step itself on small models.
            with pyro.validation_enabled(False):
                loss = elbo.differentiable_loss(model, guide, **kwargs) * scale
            if torch.isfinite(loss):
                loss.backward()
            return loss

        try:
            for step in range(method.num_steps):
                if not lbfgs:
                    snapshot = [parameter.detach().clone() for parameter in parameters]
                loss = optimizer.step(closure) if lbfgs else closure()
                value = float(loss.detach())
                finite = math.isfinite(value) and all(
                    torch.isfinite(parameter).all() for parameter in parameters
                )
                if not finite:
                    with torch.no_grad():
                        for parameter, saved in zip(parameters, snapshot):
                            parameter.copy_(saved)
                    failure = step
                    break
                if lbfgs:
                    snapshot = [parameter.detach().clone() for parameter in parameters]
                else:
                    optimizer.step()
                losses.append(value)
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

        if failure is not None or interrupted:
            with torch.no_grad():
                for parameter, saved in zip(parameters, snapshot):
                    parameter.copy_(saved)
        if guide_name == "laplace":
            guide = laplace_approximation(model, guide, elbo, kwargs)
        draws, point = _posterior_draws(model, guide, data, method.num_posterior_samples)
    fit = Fit(
        model=model,
        method=method,
        draws=model.relabel(draws),
        point=_relabel_point(model, point),
        train=data,
        losses=torch.tensor(losses),
        diagnostics={
            "num_steps": len(losses),
            "converged": bool(failure is None and not interrupted and len(losses) < method.num_steps),
            "final_loss": losses[-1] if losses else float("nan"),
            "optimizer": "lbfgs" if lbfgs else "adam",
        },
        wall_time=time.perf_counter() - start,
        guide=guide,
        param_state=param_state,
        interrupted=interrupted or failure is not None,
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
    model: Model, guide: Any, data: Dataset, num_samples: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Draws (1, num_samples, ...) from the trained guide, and a point: the guide's median."""
    kwargs = model.model_kwargs(data)
    shapes = latent_shapes(model, kwargs)
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
