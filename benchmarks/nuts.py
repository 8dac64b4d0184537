"""zoo's NUTS against NumPyro's, side by side in one run: wall time, ESS, ESS per second.

Targets (issue 12), one chain of 500 warm-up + 500 draws each:

* Gaussian mixture, full covariance (500 simulated 2-D points, K = 3): zoo's wall time at most
  0.5x NumPyro's first run and at most 2x its compiled run; zoo's ESS/s at least NumPyro's
  first-run ESS/s.
* Poisson HMM, 3 states (the 107 earthquake counts): zoo at most 1.0x NumPyro's first run; the
  same posterior means (within 0.3 posterior sd, states sorted by rate in both).
* Gaussian Naive Bayes (iris, every row labeled): zoo at most 1.0x NumPyro's first run; both
  libraries' posterior means within 0.3 sd of zoo's ``zoo.Exact`` posterior.

zoo is timed as ``zoo.fit(model, data, zoo.NUTS(num_warmup=500, num_samples=500, num_chains=1,
seed=0, progress=False))``, whatever ``zoo.NUTS`` is in the checkout this script sits in (its
root goes first on ``sys.path``, in this process and in the workers): for "before" numbers,
copy ``benchmarks/nuts.py`` and ``benchmarks/_numpyro_models.py`` into a checkout of the
older commit and run them there.

What is measured
----------------
Each library runs in a fresh worker process of its own (``--worker``), so imports, first-call
set-up and JAX compilation are what a user meets; imports and data loading are timed apart and
left out of every run's time.

* zoo: its first ``zoo.fit`` in the fresh process, then a second, warm call (same seed, so the
  same draws when zoo is deterministic).
* NumPyro (``MCMC(NUTS(model), progress_bar=False)``, its faster setting, default
  ``init_to_uniform`` start): its **first run** (``mcmc.run`` + ``get_samples``, JAX
  compilation included); a **second** ``mcmc.run`` on the same object and arrays (what a user
  re-running a cell gets: NumPyro 0.22 compiles its sampling loop again there, because with
  ``progress_bar=False`` the loop body is a new ``jax.jit`` object, a static argument, at
  every run); and its **compiled run**: the same run wrapped in one ``jax.jit`` and called
  twice, the second call timed (no compilation left; what the "2x compiled" target is judged
  against). The seconds JAX reports compiling (``jax.monitoring``) are printed for each run.

Per run: wall and CPU seconds (CPU: of the worker process, all threads: on a loaded machine
wall time includes waiting for a core, and XLA compiles on more than one thread whatever the
flags below say, so NumPyro's CPU time can exceed its wall time), the smallest bulk ESS over
all scalars that vary (``arviz.ess(method="bulk")``, the same function on both libraries'
draws, after the same relabelling: components sorted by ``locs[:, 0]``, states by rate), ESS
per wall second and the number of divergent transitions. (The compiled run's draws are not the
first run's, though both use key 0: their ESS is computed from their own draws.) Targets are
judged on zoo's *first* call in a fresh process (what a user meets; the warm call's ratios are
printed beside it).

Per leapfrog step, for zoo's first fit: its wall time over the potential's evaluations in the
sampler (warm-up and draws), beside what the recorded potential and its gradient cost alone and
what Pyro's NUTS machinery costs alone (the kernel zoo drives, on a free potential: a standard
normal in as many coordinates). The second is a floor that no faster potential removes while
zoo drives Pyro's sampler; times zoo's step count, it is set beside 2x NumPyro's compiled run.

Posterior agreement (printed yes / no per task): the largest |mean_zoo - mean_NumPyro| over
every varying scalar, in units of the posterior sd (the root mean square of the two
libraries' sds); for Naive Bayes each library against ``zoo.Exact`` (4000 exact draws), in
units of the exact posterior sd.

The NumPyro models live in ``benchmarks/_numpyro_models.py``; each task prints what differs
between the two models. Options: ``--quick`` (50 + 50 draws: a smoke run, numbers rough),
``--numpyro-forward-hmm`` (also NumPyro's HMM as a hand-written forward algorithm, no
enumeration), ``--extras [tour,notebooks,compare]`` (zoo's times for the tour's NUTS fits, the
NUTS cells of notebooks 01, 02 and 06 at their full setting, and ``zoo.compare``'s default
reference on Old Faithful; long, so off by default; with ``--quick`` at a tenth of the
budgets).

Threads: every worker runs with ``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1`` and
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``; the zoo worker
also calls ``torch.set_num_threads(1)`` and ``torch.set_num_interop_threads(1)`` (zoo's NUTS
runs on the model's thread count, 1 for these models); NumPyro runs on the CPU
(``numpyro.set_platform("cpu")``), in float32 as zoo.

Needs the ``bench`` extra (numpyro, jax, funsor): ``pip install -e ".[bench]"``.
Run: ``.venv/bin/python benchmarks/nuts.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # measure the zoo of this checkout, not another install
    sys.path.insert(0, str(ROOT))

TASKS = ("gmm", "hmm", "naive_bayes")
TITLES = {
    "gmm": "Gaussian mixture, full covariance: 500 simulated points, 2-D, K = 3",
    "hmm": "Poisson HMM, 3 states: the 107 earthquake counts",
    "naive_bayes": "Gaussian Naive Bayes: iris (150 labeled rows, 4 features, 3 classes)",
}
#: Largest posterior-mean difference, in posterior sds, for "the same posterior".
AGREEMENT = 0.3
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
#: What differs between zoo's model and the NumPyro twin, beyond what every task shares.
DIFFERENCES = {
    "gmm": [
        "same priors, densities and unconstrained parametrisation: Pyro's and NumPyro's LKJCholesky, "
        "correlation-Cholesky transform (tanh + signed stick-breaking), stick-breaking simplex and their "
        "Jacobians agree to float32 rounding (checked for D = 2 and 3), so nothing differs in the model",
        "assignment: NumPyro enumerates it (config_enumerate; funsor contracts the (K, N) factor); zoo sums "
        "it out by its collapsed logsumexp likelihood: the same density",
        "start: zoo's k-means++ initial values; NumPyro's init_to_uniform (its default)",
    ],
    "hmm": [
        "same priors (Dirichlet(1.1) initial and transition rows, LogNormal(log mean count, 1) rates)",
        "states: NumPyro enumerates them through contrib.control_flow.scan (hmm_enum style; the first "
        "state drawn from `initial` inside the scanned step by where(t == 0, ...)); zoo runs its forward "
        "algorithm: the same density",
        "start: zoo's k-means + 3 Baum-Welch steps; NumPyro's init_to_uniform (its default)",
    ],
    "naive_bayes": [
        "same model: Dirichlet(1) class weights, Normal-Gamma per class and feature (loc_count 0.01, "
        "precision shape 1, empirical prior centre and scale); labels observed, nothing enumerated",
        "start: zoo's initial values; NumPyro's init_to_uniform (its default)",
    ],
}
SHARED = (
    "both: Stan-style windowed adaptation of step size and a diagonal mass matrix, target "
    "acceptance 0.8, max tree depth 10, float32; zoo relabels its draws after sampling and the "
    "benchmark applies the same relabelling to NumPyro's draws"
)

warnings.filterwarnings("ignore", category=FutureWarning)


# =========================================================================== tasks (zoo side)
def task_setup(task: str) -> tuple[Any, Any]:
    """zoo's model (not yet prepared) and data set for ``task``."""
    import zoo

    if task == "gmm":
        data = zoo.datasets.simulate.gaussian_mixture(num_data=500, num_components=3, num_features=2, seed=0)
        return zoo.models.GaussianMixture(num_components=3), data
    if task == "hmm":
        return zoo.models.HiddenMarkovModel(num_states=3, emission="poisson"), zoo.datasets.load("earthquakes")
    if task == "naive_bayes":
        return zoo.models.NaiveBayes(num_classes=3), zoo.datasets.load("iris")
    raise ValueError(f"unknown task {task!r}")


def numpyro_inputs(task: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The data arrays (in the NumPyro model's argument order) and the prior settings of zoo's
    prepared model (empirical centres and spreads included) for the NumPyro worker."""
    model, data = task_setup(task)
    config = model.prepare(data).config()
    if task == "gmm":
        arrays = {"x": data.x.numpy().astype(np.float32)}
    elif task == "hmm":
        arrays = {"counts": data.x[0, : int(data.lengths[0]), 0].numpy().astype(np.float32)}
    else:
        arrays = {"x": data.x.numpy().astype(np.float32), "y": data.y.numpy().astype(np.int32)}
    return arrays, config


# =========================================================================== workers
def _timed(function: Any) -> tuple[Any, float, float]:
    start, start_cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - start, time.process_time() - start_cpu


def zoo_worker(task: str, num_warmup: int, num_samples: int, out: Path) -> None:
    """zoo's first fit in this fresh process, then a second (warm) one."""
    start = time.perf_counter()
    import torch

    import zoo

    import_time = time.perf_counter() - start
    import zoo.infer.mcmc

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    # Count the potential's evaluations in the sampler (warm-up and draws, one per leapfrog step
    # and one per start): zoo wraps the kernel's potential in the private ``_Counted``, which
    # counts them.
    counters: list[Any] = []
    counted_init = zoo.infer.mcmc._Counted.__init__

    def remembering(self: Any, function: Any) -> None:
        counted_init(self, function)
        counters.append(self)

    zoo.infer.mcmc._Counted.__init__ = remembering
    # and the time the leapfrog steps spend in the recorded graph, as the sampler calls it
    in_graph = {"seconds": 0.0}
    replayed = zoo.infer.potential.Replay.value_and_gradient

    def timed(self: Any, point: Any) -> Any:
        start = time.perf_counter()
        try:
            return replayed(self, point)
        finally:
            in_graph["seconds"] += time.perf_counter() - start

    zoo.infer.potential.Replay.value_and_gradient = timed
    try:
        model, data = task_setup(task)
        method = zoo.NUTS(num_warmup=num_warmup, num_samples=num_samples, num_chains=1, seed=0, progress=False)
        runs, draws = {}, {}
        for run in ("first", "warm"):
            counters.clear()
            in_graph["seconds"] = 0.0
            fit, wall, cpu = _timed(lambda: zoo.fit(model, data, method))
            runs[run] = {"wall": wall, "cpu": cpu, "divergences": int(fit.diagnostics.get("num_divergences", -1)),
                         "evaluations": sum(counter.calls for counter in counters),
                         "in_graph": in_graph["seconds"]}
            for name, value in fit.draws.items():
                draws[f"{run}/{name}"] = value.detach().cpu().numpy()
    finally:
        zoo.infer.mcmc._Counted.__init__ = counted_init
        zoo.infer.potential.Replay.value_and_gradient = replayed
    result = {
        "import_time": import_time,
        "runs": runs,
        "costs": step_costs(model, data),
        "config": fit.model.config(),
        "torch_threads": torch.get_num_threads(),
        "version": getattr(zoo, "__version__", "?"),
    }
    (out / f"zoo_{task}.json").write_text(json.dumps(result))
    np.savez(out / f"zoo_{task}.npz", **draws)


def step_costs(model: Any, data: Any, repeats: int = 300) -> dict[str, float]:
    """What one leapfrog step costs zoo, in seconds, split in two: the recorded potential and its
    gradient (``repeats`` calls of ``value_and_gradient``, as the leapfrog steps call it, at the
    model's start), and Pyro's NUTS machinery alone (the kernel zoo drives, in zoo's loop of
    ``kernel.sample``) on a free potential, a standard normal in as many coordinates whose
    gradient is its argument, 200 draws."""
    import torch
    from pyro.infer.mcmc import NUTS as PyroNUTS

    import zoo.infer.mcmc
    from zoo.infer.potential import VECTOR_SITE, Potential, compiled

    prepared = model.prepare(data)
    potential = Potential(prepared, data)
    point = potential.initial_point(prepared.initial_values(data, seed=0))
    # as the sampler sees it: one site holding every coordinate
    replay = compiled(potential.of_vector, {VECTOR_SITE: potential.flatten(point)})
    at = {VECTOR_SITE: potential.flatten(point)}
    for _ in range(20):
        replay.value_and_gradient(at)
    start = time.perf_counter()
    for _ in range(repeats):
        replay.value_and_gradient(at)
    gradient = (time.perf_counter() - start) / repeats

    dimension = sum(value.numel() for value in point.values())

    class Free:
        """A standard normal potential that, like zoo's recorded one, gives its own gradient."""

        calls = 0

        def __call__(self, z: dict[str, Any]) -> Any:
            return 0.5 * (z["x"] ** 2).sum()

        def value_and_gradient(self, z: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
            self.calls += 1
            return 0.5 * (z["x"] ** 2).sum(), {"x": z["x"]}

    # a fixed step of 0.1 without adaptation: trees of tens of steps, as in the tasks, so that the
    # per-draw bookkeeping is spread as it is there (and the adaptation's own cost is left out:
    # the floor errs low); the leapfrog steps take the gradient as zoo's do, without autograd
    torch.manual_seed(0)
    free = Free()
    with zoo.infer.mcmc._gradients_without_autograd():
        kernel = PyroNUTS(potential_fn=free, step_size=0.1, adapt_step_size=False, adapt_mass_matrix=False)
        kernel.initial_params = {"x": torch.zeros(dimension)}
        kernel.setup(0)
        z = kernel.initial_params
        start = time.perf_counter()
        for _ in range(200):
            z = kernel.sample(z)
        sampler = (time.perf_counter() - start) / free.calls
    return {"gradient": gradient, "sampler": sampler, "dimension": dimension}


def numpyro_worker(task: str, num_warmup: int, num_samples: int, out: Path, variant: str) -> None:
    """NumPyro's first run in this fresh process, a second ``mcmc.run``, and a compiled run."""
    from collections import Counter

    start = time.perf_counter()
    import jax
    import numpyro
    from numpyro.infer import MCMC, NUTS

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _numpyro_models

    numpyro.set_platform("cpu")
    import_time = time.perf_counter() - start

    compile_seconds: Counter = Counter()

    def on_event(event: str, duration: float, **_: Any) -> None:
        if event.startswith("/jax/core/compile/"):
            compile_seconds["total"] += duration

    jax.monitoring.register_event_duration_secs_listener(on_event)
    inputs = np.load(out / f"input_{task}.npz")
    config = json.loads((out / f"config_{task}.json").read_text())
    arrays = [jax.device_put(inputs[name]) for name in inputs.files]
    jax.block_until_ready(arrays)
    model = _numpyro_models.model(variant, config)
    options = {"num_warmup": num_warmup, "num_samples": num_samples, "num_chains": 1, "progress_bar": False}

    def run_once(mcmc: Any) -> tuple[dict[str, Any], Any]:
        mcmc.run(jax.random.PRNGKey(0), *arrays, extra_fields=("diverging",))
        samples = mcmc.get_samples(group_by_chain=True)
        return samples, mcmc.get_extra_fields(group_by_chain=True)["diverging"]

    runs, draws = {}, {}

    def record(run: str, result: tuple[Any, float, float]) -> None:
        (samples, diverging), wall, cpu = result
        runs[run] = {
            "wall": wall,
            "cpu": cpu,
            "compile": compile_seconds.pop("total", 0.0),
            "divergences": int(np.asarray(diverging).sum()),
        }
        for name, value in samples.items():
            draws[f"{run}/{name}"] = np.asarray(value)

    mcmc = MCMC(NUTS(model), **options)
    compile_seconds.clear()
    record("first", _timed(lambda: jax.block_until_ready(run_once(mcmc))))
    record("rerun", _timed(lambda: jax.block_until_ready(run_once(mcmc))))

    compiled = jax.jit(lambda: run_once(MCMC(NUTS(model), **options)))
    record("compiling", _timed(lambda: jax.block_until_ready(compiled())))
    record("compiled", _timed(lambda: jax.block_until_ready(compiled())))
    result = {
        "import_time": import_time,
        "runs": runs,
        "versions": {"numpyro": numpyro.__version__, "jax": jax.__version__},
        "devices": [str(device) for device in jax.devices()],
    }
    (out / f"numpyro_{task}.json").write_text(json.dumps(result))
    np.savez(out / f"numpyro_{task}.npz", **draws)


# --------------------------------------------------------------------------- extras (zoo only)
def _windows(series: Any, size: int) -> Any:
    """Notebook 02's cut of a one-sequence data set into consecutive windows of ~``size`` steps."""
    import torch

    import zoo

    values = series.x[0, : int(series.lengths[0])]
    pieces = torch.tensor_split(values, max(1, len(values) // size))
    lengths = torch.tensor([len(piece) for piece in pieces])
    x = torch.zeros(len(pieces), int(lengths.max()), values.shape[-1])
    for row, piece in enumerate(pieces):
        x[row, : len(piece)] = piece
    return zoo.Dataset(x, lengths=lengths, name="earthquake decades", feature_names=series.feature_names)


def extra_fits(group: str, scale: float) -> list[tuple[str, Any, Any, Any]]:
    """(label, model, data, method) of the NUTS fits of ``group``, as zoo/tour.py, notebooks 01,
    02 and 06 (full setting) and zoo/comparison.py make them; budgets times ``scale``."""
    import zoo
    from zoo.comparison import reference_method

    def nuts(num_warmup: int, num_samples: int, **options: Any) -> Any:
        return zoo.NUTS(
            num_warmup=max(10, round(num_warmup * scale)),
            num_samples=max(10, round(num_samples * scale)),
            progress=False,
            **options,
        )

    faithful_train, _ = zoo.datasets.load("old_faithful").split(test_fraction=0.2, seed=0)
    if group == "tour":  # zoo/tour.py, full setting (fast=False)
        digits_train, _ = zoo.datasets.load("digits").split(test_fraction=0.2, seed=0)
        quakes_train, _ = zoo.datasets.load("earthquakes").split(test_fraction=0.2)
        return [
            ("tour: Old Faithful mixture K=2", zoo.models.GaussianMixture(num_components=2),
             faithful_train, nuts(300, 500, num_chains=2)),
            ("tour: digits Naive Bayes (multinomial)",
             zoo.models.NaiveBayes(num_classes=10, features="multinomial"), digits_train,
             nuts(100, 100, num_chains=1, max_tree_depth=6)),
            ("tour: earthquakes HMM K=3", zoo.models.HiddenMarkovModel(3, emission="poisson"),
             quakes_train, nuts(200, 200, num_chains=2, max_tree_depth=6)),
        ]
    if group == "notebooks":
        quakes_train, _ = zoo.datasets.load("earthquakes").split(test_fraction=0.2)
        windows = _windows(quakes_train, 11)
        iris_train, _ = zoo.datasets.load("iris").split(test_fraction=0.3, seed=0)
        fits = [
            ("01: Old Faithful mixture K=2", zoo.models.GaussianMixture(num_components=2),
             faithful_train, nuts(300, 500, num_chains=2, max_tree_depth=10, seed=0)),
        ]
        fits += [
            (f"02: earthquake decades HMM K={k}",
             zoo.models.HiddenMarkovModel(k, emission="poisson"), windows,
             nuts(200, 200, num_chains=2, max_tree_depth=5, seed=0))
            for k in range(1, 5)
        ]
        fits += [
            ("06: reference, Old Faithful mixture K=2",
             zoo.models.GaussianMixture(num_components=2), faithful_train,
             nuts(150, 600, num_chains=1, max_tree_depth=8, seed=1)),
            ("06: Old Faithful mixture K=2", zoo.models.GaussianMixture(num_components=2),
             faithful_train, nuts(100, 200, num_chains=1, max_tree_depth=7, seed=0)),
            ("06: iris Naive Bayes", zoo.models.NaiveBayes(num_classes=3, features="gaussian"),
             iris_train, nuts(100, 200, num_chains=1, max_tree_depth=7, seed=0)),
        ]
        return fits
    if group == "compare":
        model = zoo.models.GaussianMixture(num_components=2)
        reference = reference_method(model)
        if scale != 1:
            reference = type(reference)(**{
                **reference.to_dict(),
                "num_warmup": max(10, round(reference.num_warmup * scale)),
                "num_samples": max(10, round(reference.num_samples * scale)),
            })
        return [("zoo.compare default reference, Old Faithful K=2", model, faithful_train, reference)]
    raise ValueError(f"unknown group of extras {group!r}")


def extras_worker(group: str, scale: float, out: Path) -> None:
    """zoo's wall time, R-hat and ESS for each fit of ``group``, one after the other in one process."""
    import torch

    import zoo

    torch.set_num_threads(1)
    rows = []
    for label, model, data, method in extra_fits(group, scale):
        fit, wall, cpu = _timed(lambda: zoo.fit(model, data, method))
        diagnostics = fit.diagnostics
        settings = f"{method.num_warmup}+{method.num_samples} x {method.num_chains}, depth {method.max_tree_depth}"
        rows.append({
            "label": f"{label}, {settings}",
            "wall": wall,
            "cpu": cpu,
            "max_rhat": diagnostics.get("max_rhat", math.nan),
            "min_ess_bulk": diagnostics.get("min_ess_bulk", math.nan),
            "divergences": diagnostics.get("num_divergences", -1),
        })
        print(f"  {label}: {wall:.1f} s", file=sys.stderr, flush=True)
    (out / f"extras_{group}.json").write_text(json.dumps(rows))


# =========================================================================== analysis
def relabel(task: str, draws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """zoo's relabelling, in numpy: mixture components by ``locs[:, 0]``, HMM states by rate."""
    if task == "gmm":
        order = np.argsort(draws["locs"][..., 0], axis=-1)  # (chain, draw, K)
        return {
            name: np.take_along_axis(value, order.reshape(order.shape + (1,) * (value.ndim - 3)), axis=2)
            for name, value in draws.items()
        }
    if task == "hmm":
        order = np.argsort(draws["rates"][..., 0], axis=-1)
        initial = np.take_along_axis(draws["initial"], order, axis=2)
        rates = np.take_along_axis(draws["rates"], order[..., None], axis=2)
        transition = np.take_along_axis(draws["transition"], order[..., None], axis=2)  # rows
        transition = np.take_along_axis(transition, order[..., None, :], axis=3)  # columns
        return {"initial": initial, "transition": transition, "rates": rates}
    return dict(draws)


def scalars(draws: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Names and values (chain * draw, P) of every scalar that varies over the draws (zoo's
    criterion in ``zoo.diagnostics.convergence``: sd > 1e-6 (1 + |mean|))."""
    names, columns = [], []
    for name in sorted(draws):
        value = draws[name]
        flat = value.reshape(value.shape[0] * value.shape[1], -1).astype(np.float64)
        for index in range(flat.shape[1]):
            column = flat[:, index]
            if column.std() > 1e-6 * (1 + abs(column.mean())):
                coordinate = np.unravel_index(index, value.shape[2:]) if value.ndim > 2 else ()
                names.append(f"{name}[{','.join(str(i) for i in coordinate)}]" if coordinate else name)
                columns.append(column)
    return names, np.stack(columns, axis=1)


def min_bulk_ess(draws: dict[str, np.ndarray]) -> float:
    """The smallest ``arviz.ess(method="bulk")`` over every scalar that varies."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(az.from_dict(posterior=dict(draws)), method="bulk")
    values = []
    for name in draws:
        value = draws[name]
        flat = value.reshape(value.shape[0] * value.shape[1], -1)
        varies = flat.std(0) > 1e-6 * (1 + np.abs(flat.mean(0)))
        values.append(np.asarray(ess[name]).ravel()[varies])
    values = np.concatenate(values)
    values = values[np.isfinite(values)]
    return float(values.min()) if values.size else math.nan


def worst_difference(draws: dict[str, np.ndarray], reference: dict[str, np.ndarray], pooled: bool) -> tuple[float, str]:
    """The largest |mean - mean_ref| over the reference's varying scalars, in posterior sds:
    the root mean square of both sds (``pooled``) or the reference's; and its scalar's name."""
    names, ref = scalars(reference)
    values = scalars({name: draws[name] for name in reference})
    lookup = dict(zip(values[0], values[1].T))
    worst, where = 0.0, ""
    for name, column in zip(names, ref.T):
        other = lookup.get(name)
        if other is None:  # constant in `draws`: compare with its one value
            site = name.split("[")[0]
            other = draws[site].reshape(-1, *draws[site].shape[2:])
            index = tuple(int(i) for i in name[len(site) + 1: -1].split(",")) if "[" in name else ()
            other = other[(slice(None),) + index].astype(np.float64)
        sd = math.sqrt((column.var() + other.var()) / 2) if pooled else column.std()
        difference = abs(other.mean() - column.mean()) / sd
        if difference > worst:
            worst, where = difference, name
    return worst, where


# =========================================================================== the run
def run_worker(arguments: list[str], label: str) -> None:
    """Run this script as a worker in a fresh process, threads set, this checkout's zoo first."""
    env = dict(os.environ, **THREAD_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env["JAX_PLATFORMS"] = "cpu"
    start = time.perf_counter()
    print(f"  running {label} ...", end="", flush=True)
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *arguments], env=env, capture_output=True, text=True
    )
    print(f" {time.perf_counter() - start:.0f} s", flush=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{label} failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")


def load_draws(path: Path, run: str) -> dict[str, np.ndarray]:
    with np.load(path) as stored:
        return {name.split("/", 1)[1]: stored[name] for name in stored.files if name.startswith(f"{run}/")}


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def row(label: str, wall: float, cpu: float, ess: float, divergences: int, note: str = "") -> str:
    rate = ess / wall if wall > 0 else math.nan
    return f"  {label:<44}{wall:>9.2f}{cpu:>9.2f}{ess:>10.0f}{rate:>9.1f}{divergences:>6d}  {note}"


def run_task(task: str, num_warmup: int, num_samples: int, out: Path, forward_hmm: bool) -> list[tuple[str, str, bool]]:
    """Run both libraries on ``task``, print its block, return its (target, value, met) rows."""
    import zoo

    arrays, config = numpyro_inputs(task)
    np.savez(out / f"input_{task}.npz", **arrays)
    (out / f"config_{task}.json").write_text(json.dumps(config))
    budget = ["--warmup", str(num_warmup), "--samples", str(num_samples), "--out", str(out)]
    print(f"\n== {TITLES[task]}; {num_warmup} warm-up + {num_samples} draws, one chain")
    run_worker(["--worker", "zoo", "--task", task, *budget], "zoo (fresh process)")
    run_worker(["--worker", "numpyro", "--task", task, *budget], "NumPyro (fresh process)")
    variants = [task]
    if task == "hmm" and forward_hmm:
        # the forward-algorithm variant writes under its own name
        (out / "input_hmm-forward.npz").write_bytes((out / "input_hmm.npz").read_bytes())
        (out / "config_hmm-forward.json").write_text(json.dumps(config))
        run_worker(["--worker", "numpyro", "--task", "hmm-forward", *budget], "NumPyro forward HMM (fresh process)")
        variants.append("hmm-forward")

    ours = json.loads((out / f"zoo_{task}.json").read_text())
    if ours["config"] != config:
        raise RuntimeError(f"zoo fitted priors {ours['config']} but NumPyro was given {config}")
    zoo_draws = {run: relabel(task, load_draws(out / f"zoo_{task}.npz", run)) for run in ("first", "warm")}
    zoo_ess = {run: min_bulk_ess(draws) for run, draws in zoo_draws.items()}

    print(f"  zoo: import {ours['import_time']:.1f} s; torch threads {ours['torch_threads']}")
    print(f"  {'':<44}{'wall (s)':>9}{'CPU (s)':>9}{'min ESS':>10}{'ESS/s':>9}{'div.':>6}")
    for run, label in (("first", "zoo, first fit (fresh process)"), ("warm", "zoo, second fit (warm)")):
        info = ours["runs"][run]
        print(row(label, info["wall"], info["cpu"], zoo_ess[run], info["divergences"]))
    theirs: dict[str, Any] = {}
    for variant in variants:
        stored = json.loads((out / f"numpyro_{variant}.json").read_text())
        name = "NumPyro" if variant == task else "NumPyro forward"
        runs = stored["runs"]
        draws = {run: relabel(task, load_draws(out / f"numpyro_{variant}.npz", run)) for run in runs}
        ess = {run: min_bulk_ess(value) for run, value in draws.items()}
        theirs[variant] = {"runs": runs, "draws": draws, "ess": ess}
        print(f"  {name}: import {stored['import_time']:.1f} s; numpyro {stored['versions']['numpyro']}, "
              f"jax {stored['versions']['jax']}, {', '.join(stored['devices'])}")
        labels = {
            "first": f"{name}, first run (fresh process)",
            "rerun": f"{name}, second mcmc.run",
            "compiled": f"{name}, compiled run",
        }
        for run, label in labels.items():
            info = runs[run]
            note = f"JAX compiling {info['compile']:.1f} s" if info["compile"] > 0.05 else "nothing compiled"
            print(row(label, info["wall"], info["cpu"], ess[run], info["divergences"], note))
        compiling = runs["compiling"]
        print(f"  ({name}'s compiled run: its first call, compiling, took {compiling['wall']:.1f} s wall)")

    # ---------------------------------------------------------------- ratios and targets
    first, warm = ours["runs"]["first"]["wall"], ours["runs"]["warm"]["wall"]
    np_runs = theirs[task]["runs"]
    np_first, np_compiled = np_runs["first"]["wall"], np_runs["compiled"]["wall"]
    ratio_first, ratio_compiled = first / np_first, first / np_compiled
    costs, evaluations = ours["costs"], ours["runs"]["first"]["evaluations"]
    print(f"  zoo's first fit evaluated its potential {evaluations} times in the sampler (warm-up and draws): "
          f"{first / evaluations * 1e6:.0f} us per leapfrog step, of which the recorded potential and its "
          f"gradient {costs['gradient'] * 1e6:.0f} us and Pyro's NUTS machinery (a free potential in "
          f"{costs['dimension']} coordinates) {costs['sampler'] * 1e6:.0f} us")
    in_graph = ours["runs"]["first"].get("in_graph", 0.0)
    if in_graph > 0:
        print(f"  inside that fit the recorded graph took {in_graph:.2f} s, {in_graph / evaluations * 1e6:.0f} us per "
              f"step (against {costs['gradient'] * 1e6:.0f} us called in a tight loop), everything else "
              f"{(first - in_graph) / evaluations * 1e6:.0f} us per step")
    print(f"  Pyro's machinery alone at that step count: {costs['sampler'] * evaluations:.2f} s; "
          f"2x NumPyro's compiled run: {2 * np_compiled:.2f} s")
    print(f"  zoo / NumPyro wall time: first fit / first run {ratio_first:.2f} (warm {warm / np_first:.2f}); "
          f"first fit / compiled run {ratio_compiled:.2f} (warm {warm / np_compiled:.2f}); "
          f"CPU first / first {ours['runs']['first']['cpu'] / np_runs['first']['cpu']:.2f}")
    zoo_rate = zoo_ess["first"] / first
    np_rate = theirs[task]["ess"]["first"] / np_first
    print(f"  ESS/s: zoo first fit {zoo_rate:.1f}, warm {zoo_ess['warm'] / warm:.1f}; NumPyro first run "
          f"{np_rate:.1f}, compiled {theirs[task]['ess']['compiled'] / np_compiled:.1f}; "
          f"zoo first / NumPyro first {zoo_rate / np_rate:.2f}")

    results: list[tuple[str, str, bool]] = []
    if task == "gmm":
        results.append(("zoo first fit <= 0.5x NumPyro first run", f"{ratio_first:.2f}x", ratio_first <= 0.5))
        results.append(("zoo first fit <= 2x NumPyro compiled run", f"{ratio_compiled:.2f}x", ratio_compiled <= 2.0))
        results.append(("zoo ESS/s >= NumPyro first-run ESS/s", f"{zoo_rate / np_rate:.2f}x", zoo_rate >= np_rate))
    else:
        results.append(("zoo first fit <= 1.0x NumPyro first run", f"{ratio_first:.2f}x", ratio_first <= 1.0))

    # ---------------------------------------------------------------- posterior agreement
    if task == "naive_bayes":
        model, data = task_setup(task)
        method = zoo.Exact(num_posterior_samples=4000, seed=1, progress=False)
        reference, wall, _ = _timed(lambda: {k: v.numpy() for k, v in zoo.fit(model, data, method).draws.items()})
        print(f"  zoo.Exact: {wall:.2f} s (fit and 4000 exact draws)")
        for name, draws in (("zoo NUTS", zoo_draws["first"]), ("NumPyro", theirs[task]["draws"]["first"])):
            worst, where = worst_difference(draws, reference, pooled=False)
            agree = worst <= AGREEMENT
            print(f"  posterior means, {name} vs zoo.Exact: worst {worst:.3f} exact sd ({where}): "
                  f"within {AGREEMENT} sd: {'yes' if agree else 'no'}")
            results.append((f"{name} means within {AGREEMENT} sd of Exact", f"{worst:.3f} sd", agree))
    else:
        for variant in variants:
            name = "NumPyro" if variant == task else "NumPyro forward"
            worst, where = worst_difference(zoo_draws["first"], theirs[variant]["draws"]["first"], pooled=True)
            agree = worst <= AGREEMENT
            print(f"  posterior means, zoo vs {name}: worst {worst:.3f} posterior sd ({where}): "
                  f"within {AGREEMENT} sd: {'yes' if agree else 'no'}")
            if variant == task:
                results.append((f"zoo and NumPyro means within {AGREEMENT} sd", f"{worst:.3f} sd", agree))
    print("  what differs between the models:")
    for line in DIFFERENCES[task] + [SHARED]:
        print(f"    - {line}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 + 50 draws (a smoke run; numbers rough)")
    parser.add_argument("--warmup", type=int, help="warm-up steps (default 500, 50 with --quick)")
    parser.add_argument("--samples", type=int, help="draws kept (default 500, 50 with --quick)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    parser.add_argument("--numpyro-forward-hmm", action="store_true",
                        help="also NumPyro's HMM as a hand-written forward algorithm (no enumeration)")
    parser.add_argument("--extras", nargs="?", const="tour,notebooks,compare", default="",
                        help="zoo's times for the tour's NUTS fits, notebooks 01/02/06 and zoo.compare's default "
                             "reference (comma-separated subset; long)")
    parser.add_argument("--worker", choices=["zoo", "numpyro", "extras"], help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    num_warmup = arguments.warmup or (50 if arguments.quick else 500)
    num_samples = arguments.samples or (50 if arguments.quick else 500)

    if arguments.worker == "zoo":
        return zoo_worker(arguments.task, num_warmup, num_samples, arguments.out)
    if arguments.worker == "numpyro":
        return numpyro_worker(arguments.task, num_warmup, num_samples, arguments.out, arguments.task)
    if arguments.worker == "extras":
        return extras_worker(arguments.task, arguments.scale, arguments.out)

    tasks = [task for task in arguments.tasks.split(",") if task]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown tasks {unknown}; choose from {TASKS}")
    settings = " ".join(f"{name}={value!r}" for name, value in THREAD_ENV.items())
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"zoo NUTS vs NumPyro NUTS; workers on one thread each ({settings}); "
          f"{os.cpu_count()} CPUs here, load average {load}")
    results: dict[str, list[tuple[str, str, bool]]] = {}
    with tempfile.TemporaryDirectory(prefix="zoo-nuts-bench-") as directory:
        out = Path(directory)
        for task in tasks:
            results[task] = run_task(task, num_warmup, num_samples, out, arguments.numpyro_forward_hmm)
        groups = [group for group in arguments.extras.split(",") if group]
        if groups:
            scale = 0.1 if arguments.quick else 1.0
            budgets = "a tenth of the budgets" if scale != 1 else "full settings"
            print(f"\n== zoo's own NUTS fits (information; {budgets}; each group in one fresh process, one thread)")
            print(f"  {'':<66}{'wall (s)':>9}{'CPU (s)':>9}{'R-hat':>7}{'min ESS':>9}{'div.':>6}")
            for group in groups:
                run_worker(["--worker", "extras", "--task", group, "--scale", str(scale), "--out", str(out)],
                           f"extras: {group}")
                for fit in json.loads((out / f"extras_{group}.json").read_text()):
                    rhat = "-" if math.isnan(fit["max_rhat"]) else f"{fit['max_rhat']:.3f}"  # none reported (e.g. one chain)
                    print(f"  {fit['label']:<66}{fit['wall']:>9.1f}{fit['cpu']:>9.1f}{rhat:>7}"
                          f"{fit['min_ess_bulk']:>9.0f}{fit['divergences']:>6d}")

    if not results:
        return
    print("\n== Targets (zoo judged on its first fit in a fresh process)")
    for task, rows in results.items():
        for target, value, met in rows:
            print(f"  {task:<12} {target:<46} {value:>10}  {verdict(met)}")
    if arguments.quick:
        print("  (--quick: 50 + 50 draws; the targets are stated for 500 + 500)")


if __name__ == "__main__":
    main()
