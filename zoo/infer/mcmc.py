"""NUTS, with the model's enumerated sites summed out inside the potential energy.

Chains run one after the other (parallel chains hang in Jupyter on some systems). Each chain
starts from the model's data-driven initialisation with its own seed. The loop drives Pyro's NUTS
kernel step by step, so every draw's statistics are kept as data (BlackJAX's (state, info)):
``diverging``, ``acceptance_rate``, ``step_size`` and ``lp`` (the log density at the draw).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from pyro.infer.mcmc import NUTS as PyroNUTS

from zoo.datasets.dataset import Dataset
from zoo.infer.collapse import training_model
from zoo.infer.runtime import FitError, check_positive_float, check_positive_int, isolated, progress_bar, threads
from zoo.models.base import Model
from zoo.results import Fit

__all__ = ["NUTS", "run_nuts"]


@dataclass(frozen=True)
class NUTS:
    """The No-U-Turn sampler.

    Parameters
    ----------
    num_warmup : int
        Adaptation steps per chain (step size and a diagonal mass matrix); discarded.
    num_samples : int
        Draws kept per chain.
    num_chains : int
        Chains, run one after the other.
    target_accept_prob : float
        Target of the step-size adaptation, in (0, 1).
    max_tree_depth : int
        At most 2**max_tree_depth leapfrog steps per draw.
    jit_compile : bool
        Compile the potential energy with the PyTorch JIT (measured no faster here, so off).
    num_threads : int, optional
        Torch threads while sampling; default: the model's ``num_threads`` (1 for the small
        models, whose many small operations several threads only slow down).
    seed : int
        Chain c uses seed + c.
    progress : bool
        Show a progress bar (only when standard error is a terminal).
    """

    num_warmup: int = 500
    num_samples: int = 500
    num_chains: int = 2
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    jit_compile: bool = False
    num_threads: int | None = None
    seed: int = 0
    progress: bool = True

    kind = "nuts"

    def __post_init__(self) -> None:
        check_positive_int(self.num_warmup, "num_warmup", minimum=0)
        check_positive_int(self.num_samples, "num_samples")
        check_positive_int(self.num_chains, "num_chains")
        check_positive_float(self.target_accept_prob, "target_accept_prob")
        if not self.target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {self.target_accept_prob}")
        check_positive_int(self.max_tree_depth, "max_tree_depth")
        if self.num_threads is not None:
            check_positive_int(self.num_threads, "num_threads")
        check_positive_int(self.seed, "seed", minimum=0)

    def label(self, model: Model | None = None) -> str:
        return "nuts"

    def validate(self, model: Model, data: Dataset) -> None:
        """Nothing beyond the constructor's checks."""

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def run_nuts(model: Model, data: Dataset, method: NUTS) -> Fit:
    """Sample ``model`` (already prepared for ``data``) by NUTS. See :class:`NUTS`."""
    trained, kwargs = training_model(model, data)
    start = time.perf_counter()
    chains: list[dict[str, list[torch.Tensor]]] = []
    stats: list[dict[str, list[float]]] = []
    interrupted = False
    total = method.num_warmup + method.num_samples
    bar = progress_bar(total * method.num_chains, "NUTS", method.progress)
    with isolated(seed=method.seed) as param_state, threads(method.num_threads or model.num_threads):
        try:
            for chain in range(method.num_chains):
                torch.manual_seed(method.seed + chain)
                initial = model.initial_values(data, seed=method.seed + chain)
                kernel = PyroNUTS(
                    trained,
                    max_plate_nesting=model.max_plate_nesting,
                    target_accept_prob=method.target_accept_prob,
                    max_tree_depth=method.max_tree_depth,
                    jit_compile=method.jit_compile,
                    ignore_jit_warnings=True,
                    init_strategy=init_to_value(values=initial, fallback=init_to_median),
                )
                kernel.setup(method.num_warmup, **kwargs)
                z = kernel.initial_params
                draws: dict[str, list[torch.Tensor]] = {name: [] for name in z}
                info: dict[str, list[float]] = {
                    "diverging": [], "acceptance_rate": [], "step_size": [], "lp": []
                }
                chains.append(draws)
                stats.append(info)
                for step in range(total):
                    divergences = len(kernel._divergences)
                    mean_accept = kernel._mean_accept_prob
                    z = kernel.sample(z)
                    bar.update(1)
                    if step < method.num_warmup:
                        continue
                    # NUTS keeps a running mean of the acceptance statistic: recover this step's.
                    n = step + 1 - method.num_warmup
                    accept = kernel._mean_accept_prob if n == 1 else mean_accept + n * (kernel._mean_accept_prob - mean_accept)
                    for name, value in z.items():
                        draws[name].append(kernel.transforms[name].inv(value).detach())
                    info["diverging"].append(float(len(kernel._divergences) > divergences))
                    info["acceptance_rate"].append(float(accept))
                    info["step_size"].append(float(kernel.step_size))
                    info["lp"].append(-float(kernel._potential_energy_last))
                kernel.cleanup()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
    kept = min(len(info["lp"]) for info in stats) if stats else 0
    if kept == 0:
        raise FitError("NUTS was interrupted before it kept any draw; nothing to return")
    draws = {
        name: torch.stack([torch.stack(chain[name][:kept]) for chain in chains[: len(stats)]])
        for name in chains[0]
    }
    sample_stats = {
        key: torch.tensor([info[key][:kept] for info in stats]) for key in stats[0]
    }
    sample_stats["diverging"] = sample_stats["diverging"].bool()
    flat_lp = sample_stats["lp"].reshape(-1)
    best = int(flat_lp.argmax())
    point = {name: value.reshape((-1,) + value.shape[2:])[best] for name, value in draws.items()}
    draws = model.relabel(draws)
    point = {name: value[0, 0] for name, value in model.relabel({k: v[None, None] for k, v in point.items()}).items()}
    fit = Fit(
        model=model,
        method=method,
        draws=draws,
        point=point,
        train=data,
        sample_stats=sample_stats,
        diagnostics={
            "num_divergences": int(sample_stats["diverging"].sum()),
            "acceptance_rate": float(sample_stats["acceptance_rate"].mean()),
            "step_size": [float(info["step_size"][-1]) for info in stats],
        },
        wall_time=time.perf_counter() - start,
        param_state=param_state,
        interrupted=interrupted,
    )
    from zoo import diagnostics

    fit.diagnostics.update(diagnostics.convergence(fit))
    return fit
