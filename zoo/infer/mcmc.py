"""NUTS, with the model's enumerated sites summed out inside the potential energy: the runner of
``zoo.NUTS``.

Chains run one after the other (parallel chains hang in Jupyter on some systems). Each chain
starts from the model's data-driven initialisation with its own seed. The loop drives Pyro's NUTS
kernel step by step, so every draw's statistics are kept as data (BlackJAX's (state, info)):
``diverging``, ``acceptance_rate``, ``step_size`` and ``lp`` (the log density at the draw). The
convergence diagnostics (R-hat, effective sample sizes) are computed from the draws before the
``Fit`` is built, so the Fit is complete when constructed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from pyro.infer.mcmc import NUTS as PyroNUTS

from zoo.datasets.dataset import Dataset
from zoo.diagnostics import convergence
from zoo.infer.collapse import training_model
from zoo.infer.evaluate import relabel_point
from zoo.infer.methods import NUTS
from zoo.infer.runtime import isolated, progress_bar, threads
from zoo.models.base import Model
from zoo.results import Fit, FitError

__all__ = ["NUTS", "run_nuts"]

#: The per-draw statistics a chain records, in ``fit.sample_stats``.
STATISTICS = ("diverging", "acceptance_rate", "step_size", "lp")


@dataclass
class _Chain:
    """The kept draws of one chain (constrained values, one tensor per draw and site) and their
    statistics (one float per draw and statistic)."""

    draws: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    stats: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in STATISTICS})

    def __len__(self) -> int:
        return len(self.stats["lp"])


def _kernel(model: Model, trained: Any, data: Dataset, method: NUTS, chain: int) -> PyroNUTS:
    """Pyro's NUTS kernel for ``trained``, started at the model's initial values for ``chain``."""
    initial = model.initial_values(data, seed=method.seed + chain)
    return PyroNUTS(
        trained,
        max_plate_nesting=model.max_plate_nesting,
        target_accept_prob=method.target_accept_prob,
        max_tree_depth=method.max_tree_depth,
        jit_compile=method.jit_compile,
        ignore_jit_warnings=True,
        init_strategy=init_to_value(values=initial, fallback=init_to_median),
    )


def _sample_chain(model: Model, data: Dataset, method: NUTS, chain: int, chains: list[_Chain], bar: Any) -> None:
    """Run chain ``chain`` (warm-up, then ``num_samples`` kept draws), appending its record to
    ``chains`` once the kernel is set up and filling it one draw at a time, so that an interrupt
    leaves the draws so far in it."""
    trained, kwargs = training_model(model, data)
    torch.manual_seed(method.seed + chain)
    kernel = _kernel(model, trained, data, method, chain)
    kernel.setup(method.num_warmup, **kwargs)
    z = kernel.initial_params
    record = _Chain(draws={name: [] for name in z})
    chains.append(record)
    for step in range(method.num_warmup + method.num_samples):
        # Pyro's kernel keeps a running mean of the acceptance statistic, and exposes it only
        # rounded to 3 digits (kernel.logging()); this step's value is recovered from the
        # running mean before and after it, read from the private attribute for want of a
        # public one.
        mean_before = kernel._mean_accept_prob
        z = kernel.sample(z)
        bar.update(1)
        kept = step + 1 - method.num_warmup  # n, the number of kept draws including this one
        if kept < 1:
            continue
        mean_after = kernel._mean_accept_prob
        accept = mean_after if kept == 1 else mean_before + kept * (mean_after - mean_before)
        for name, value in z.items():
            record.draws[name].append(kernel.transforms[name].inv(value).detach())
        # Public: the kernel's diagnostics list the kept draws whose trajectory diverged.
        divergences = kernel.diagnostics()["divergences"]
        record.stats["diverging"].append(float(bool(divergences) and divergences[-1] == kept - 1))
        record.stats["acceptance_rate"].append(float(accept))
        record.stats["step_size"].append(float(kernel.step_size))
        # The potential energy at the draw is -log density (unconstrained space). The public
        # route, kernel.potential_fn(z), evaluates it once more per draw: measured 5% of NUTS's
        # time on a mixture and on Naive Bayes. The kernel caches the value at the draw it
        # returns, so it is read there, from the private attribute, for want of a public one.
        record.stats["lp"].append(-float(kernel._potential_energy_last))
    kernel.cleanup()


def _stack(chains: list[_Chain]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Draws {site: (chain, draw, ...)} relabelled, and statistics {name: (chain, draw)}, of
    the draws every chain holds (an interrupted chain holds fewer)."""
    kept = min(len(chain) for chain in chains)
    draws = {name: torch.stack([torch.stack(chain.draws[name][:kept]) for chain in chains]) for name in chains[0].draws}
    stats = {name: torch.tensor([chain.stats[name][:kept] for chain in chains]) for name in STATISTICS}
    stats["diverging"] = stats["diverging"].bool()
    return draws, stats


def run_nuts(model: Model, data: Dataset, method: NUTS) -> Fit:
    """Sample ``model`` (already prepared for ``data``) by NUTS. See :class:`~zoo.infer.methods.NUTS`.

    Raises
    ------
    zoo.FitError
        If interrupted (Ctrl-C) before any chain kept a draw.
    """
    start = time.perf_counter()
    chains: list[_Chain] = []
    interrupted = False
    bar = progress_bar((method.num_warmup + method.num_samples) * method.num_chains, "NUTS", method.progress)
    with isolated(seed=method.seed) as param_state, threads(method.num_threads or model.num_threads):
        try:
            for chain in range(method.num_chains):
                _sample_chain(model, data, method, chain, chains, bar)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
    if not chains or min(len(chain) for chain in chains) == 0:
        raise FitError("NUTS was interrupted before it kept any draw; nothing to return")
    draws, sample_stats = _stack(chains)
    best = int(sample_stats["lp"].reshape(-1).argmax())  # the draw of highest posterior density
    point = {name: value.reshape((-1,) + value.shape[2:])[best] for name, value in draws.items()}
    draws = model.relabel(draws)
    return Fit(
        model=model,
        method=method,
        draws=draws,
        point=relabel_point(model, point),
        train=data,
        sample_stats=sample_stats,
        diagnostics={
            "num_divergences": int(sample_stats["diverging"].sum()),
            "acceptance_rate": float(sample_stats["acceptance_rate"].mean()),
            "step_size": [float(chain.stats["step_size"][-1]) for chain in chains],
            **convergence(draws),
        },
        wall_time=time.perf_counter() - start,
        param_state=param_state,
        interrupted=interrupted,
    )
