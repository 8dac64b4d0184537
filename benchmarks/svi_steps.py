"""SVI steps recorded once and replayed, against eager steps and against Pyro's own SVI loop.

For a model declaring ``static_likelihood`` and a guide zoo builds by name, a full-batch
``zoo.SVI()`` records its step (the ELBO's forward and backward passes, the guide's random
draws among them) once as one graph of tensor operations and replays it (``fit.diagnostics
["steps"] == "recorded"``). This script times, on each task, in one fresh process per runner
(so the first fit is what a user meets):

* ``zoo``: ``zoo.SVI()`` as it runs by default (recorded steps);
* ``zoo jit=False``: the same fit with eager steps (Pyro's ``Trace_ELBO`` under autograd); the
  draws are the same to the bit (checked here, and for every registered model in
  ``tests/test_contract.py``);
* ``pyro``: the peer, Pyro's own loop on the same collapsed model and the same autoguide class
  (``pyro.infer.SVI``, ``Trace_ELBO``, ``pyro.optim.Adam``), the steps alone.

It prints the first fit's and a warm (second) fit's wall time, the milliseconds per step of the
warm fit (zoo: the whole fit over its steps, set-up and posterior draws included, so it errs
high) and the ratios. Tasks: the two-parameter model of notebook 06's SBC of guides (``mvn``,
16 particles, 200 steps), a 2-component mixture on Old Faithful (``normal``, 500 steps), Naive
Bayes on iris (``mvn``, 500 steps) and a 3-state Poisson HMM on the earthquake counts
(``normal``, 500 steps). Timings depend on the machine and its load; take them with nothing
else running and read the ratios.

Run: ``.venv/bin/python benchmarks/svi_steps.py`` (``--tasks sum,mixture`` for some).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TASKS = ("sum", "mixture", "naive_bayes", "hmm")


def task(name: str) -> tuple[Any, Any, dict[str, Any]]:
    """(model, data, SVI options) of task ``name``."""
    import pyro
    import pyro.distributions as dist
    import torch

    import zoo

    if name == "sum":

        class SumOfTwoNormals(zoo.models.Model):
            """a, b ~ Normal(0, 1); x_i ~ Normal(a + b, 1): notebook 06's model."""

            methods = ("svi",)
            static_likelihood = True

            def config(self) -> dict[str, Any]:
                return {}

            def forward(self, x: Any = None, num_data: Any = None, batch_size: Any = None) -> Any:
                a = pyro.sample("a", dist.Normal(0.0, 1.0))
                b = pyro.sample("b", dist.Normal(0.0, 1.0))
                with pyro.plate("data", len(x) if x is not None else num_data, subsample_size=batch_size):
                    return pyro.sample("x", dist.Normal(a + b, 1.0), obs=x)

        x = 0.5 + torch.randn(10, generator=torch.Generator().manual_seed(0))
        options = dict(guide="mvn", num_steps=200, num_particles=16, learning_rate=0.2)
        return SumOfTwoNormals(), zoo.Dataset(x=x), options
    if name == "mixture":
        return zoo.models.GaussianMixture(2), zoo.datasets.load("old_faithful"), dict(guide="normal", num_steps=500)
    if name == "naive_bayes":
        return zoo.models.NaiveBayes(3), zoo.datasets.load("iris"), dict(guide="mvn", num_steps=500)
    if name == "hmm":
        model = zoo.models.HiddenMarkovModel(3, emission="poisson")
        return model, zoo.datasets.load("earthquakes"), dict(guide="normal", num_steps=500)
    raise ValueError(f"unknown task {name!r}")


def worker(name: str, runner: str, out: Path) -> None:
    """Two fits of task ``name`` by ``runner`` in this fresh process; their times to ``out``."""
    import torch

    import zoo

    model, data, options = task(name)
    steps = options["num_steps"]
    times, draws = [], {}
    for run in range(2):
        if runner == "pyro":
            wall = pyro_loop(model, data, options)
        else:
            method = zoo.SVI(**options, num_posterior_samples=100, seed=0, progress=False,
                             jit=False if runner == "zoo jit=False" else None)
            start = time.perf_counter()
            fit = zoo.fit(model, data, method)
            wall = time.perf_counter() - start
            assert fit.diagnostics["steps"] == ("eager" if runner == "zoo jit=False" else "recorded")
            draws = {site: value.tolist() for site, value in fit.draws.items()}
        times.append(wall)
    out.write_text(json.dumps({"first": times[0], "warm": times[1], "steps": steps, "draws": draws,
                               "threads": torch.get_num_threads()}))


def pyro_loop(model: Any, data: Any, options: dict[str, Any]) -> float:
    """Pyro's SVI loop on zoo's collapsed training model with the autoguide class zoo uses."""
    import pyro
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
    from pyro.optim import Adam

    from zoo.infer.collapse import training_model

    prepared = model.prepare(data)
    trained, kwargs = training_model(prepared, data)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    guide = (AutoMultivariateNormal if options["guide"] == "mvn" else AutoNormal)(trained)
    particles = options.get("num_particles", 1)
    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1,
                      max_plate_nesting=prepared.max_plate_nesting)
    start = time.perf_counter()
    svi = SVI(trained, guide, Adam({"lr": options.get("learning_rate", 0.01)}), elbo)
    with pyro.validation_enabled(False):
        for _ in range(options["num_steps"]):
            svi.step(**kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"some of {', '.join(TASKS)}")
    parser.add_argument("--worker", nargs=3, metavar=("TASK", "RUNNER", "OUT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        name, runner, out = arguments.worker
        worker(name, runner, Path(out))
        return
    tasks = [name.strip() for name in arguments.tasks.split(",")]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"--tasks: unknown {unknown}; the tasks are {', '.join(TASKS)}")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print(f"SVI steps: zoo recorded vs zoo eager (jit=False) vs Pyro's SVI loop; each runner in a fresh "
          f"process, one thread; load average {', '.join(f'{value:.1f}' for value in os.getloadavg())}")
    print(f"{'task':<12} {'runner':<14} {'first fit s':>11} {'warm fit s':>10} {'ms / step':>9}")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"zoo_svi_steps_{os.getpid()}.json"
    for name in tasks:
        results = {}
        for runner in ("zoo", "zoo jit=False", "pyro"):
            subprocess.run([sys.executable, __file__, "--worker", name, runner, str(out)], check=True, env=environment)
            results[runner] = json.loads(out.read_text())
            result = results[runner]
            print(f"{name:<12} {runner:<14} {result['first']:>11.2f} {result['warm']:>10.2f} "
                  f"{1e3 * result['warm'] / result['steps']:>9.2f}", flush=True)
        out.unlink()
        zoo_, eager, pyro_ = results["zoo"], results["zoo jit=False"], results["pyro"]
        same = zoo_["draws"] == eager["draws"]
        print(f"{'':<12} recorded / eager: first {zoo_['first'] / eager['first']:.2f}, warm "
              f"{zoo_['warm'] / eager['warm']:.2f}; zoo / Pyro's loop: first {zoo_['first'] / pyro_['first']:.2f}, "
              f"warm {zoo_['warm'] / pyro_['warm']:.2f}; recorded draws equal the eager draws: "
              f"{'yes' if same else 'NO'}", flush=True)


if __name__ == "__main__":
    main()
