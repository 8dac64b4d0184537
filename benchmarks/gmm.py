"""zoo's Gaussian mixture against scikit-learn's, side by side in one process.

Target (issue: foundation): on 10,000 simulated 2-D points with K=3 (2,000 held out), zoo's MAP
fit reaches scikit-learn's held-out log-likelihood within 0.002 nats per point in at most 5x
scikit-learn's EM time. Also prints zoo NUTS on 500 points (500 warm-up + 500 draws, 2 chains)
as a reference, and a plain Pyro SVI loop (AutoDelta + Adam, no initialisation) for contrast.

Timings are the median of ``--repeats`` warm runs (the first run of each, which pays for imports
and first-call set-up, is discarded). Run: ``.venv/bin/python benchmarks/gmm.py``.

First calls (issue 12, "no waste around a fit"): a user's first fit in a fresh process pays for
whatever the first call sets up, which warm timings hide. The second table runs each library in
fresh subprocesses (``--child``) on the same data and times, after the imports, the first call
("cold") and the median of the next three ("warm") of: the MAP fit, the log-density of the 2,000
held-out points (``fit.log_prob`` / ``score_samples``) and zoo's ``fit.to_arviz()``. Targets:
zoo's first fit <= 5x scikit-learn's first fit, ``log_prob`` <= 10 ms, ``to_arviz`` <= 0.5 s.
A first ``to_arviz`` in a process imports ArviZ (seconds: scipy.stats, matplotlib, numba
compiling ArviZ's functions); that import is timed on its own in another fresh process and
printed beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

import zoo
from zoo.datasets import simulate


def timed(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    function()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def plain_pyro_svi(train: zoo.Dataset, num_steps: int) -> Any:
    """What a user writes from Pyro's GMM tutorial: AutoDelta, Adam, TraceEnum_ELBO."""
    import pyro
    from pyro.infer import SVI, TraceEnum_ELBO
    from pyro.infer.autoguide import AutoDelta
    from pyro.optim import Adam

    model = zoo.models.GaussianMixture(3).prepare(train)
    pyro.get_param_store().clear()
    pyro.set_rng_seed(0)
    guide = AutoDelta(pyro.poutine.block(model, hide=["assignment"]))
    svi = SVI(model, guide, Adam({"lr": 0.05}), TraceEnum_ELBO(max_plate_nesting=1))
    for _ in range(num_steps):
        svi.step(x=train.x)
    return guide


#: The MAP fit of both tables: stopping rule comparable to scikit-learn's (see ``main``).
def zoo_map_method() -> Any:
    return zoo.SVI(guide="delta", num_steps=200, tolerance=1e-4, progress=False)


def first_and_next(function: Callable[[], Any], repeats: int = 3) -> tuple[float, float, Any]:
    """Seconds of the first call and the median of the next ``repeats``, and the last result."""
    start = time.perf_counter()
    result = function()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), result


def child(kind: str, folder: Path) -> None:
    """Run in a fresh process: time the first and the next calls, print them as JSON."""
    if kind == "arviz":  # the import alone, after zoo's (what a first to_arviz pays for it)
        begin = time.perf_counter()
        import arviz  # noqa: F401

        print(json.dumps({"import_arviz": time.perf_counter() - begin}))
        return
    x_train, x_test = np.load(folder / "train.npy"), np.load(folder / "test.npy")
    if kind == "sklearn":
        estimator = lambda: SklearnGaussianMixture(3, covariance_type="full", random_state=0).fit(x_train)  # noqa: E731
        fit_cold, fit_warm, fitted = first_and_next(estimator)
        score_cold, score_warm, _ = first_and_next(lambda: fitted.score_samples(x_test))
        print(json.dumps({"fit": [fit_cold, fit_warm], "log_prob": [score_cold, score_warm]}))
        return
    # float32, as the simulator made them (the parent saved them as float64, exactly)
    train, test = (zoo.Dataset(torch.as_tensor(values, dtype=torch.float32)) for values in (x_train, x_test))
    fit_cold, fit_warm, fit = first_and_next(lambda: zoo.fit(zoo.models.GaussianMixture(3), train, zoo_map_method()))
    score_cold, score_warm, _ = first_and_next(lambda: fit.log_prob(test))
    arviz_cold, arviz_warm, _ = first_and_next(lambda: fit.to_arviz())
    print(json.dumps({
        "fit": [fit_cold, fit_warm], "log_prob": [score_cold, score_warm], "to_arviz": [arviz_cold, arviz_warm],
        "num_draws": fit.num_draws,
        "compiler_imported": "torch._dynamo" in sys.modules, "sympy_imported": "sympy" in sys.modules,
    }))


def in_fresh_process(kind: str, folder: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--data", str(folder)], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def first_calls(x_train: np.ndarray, x_test: np.ndarray) -> None:
    """The cold / warm table: each library in fresh processes on the same data."""
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "train.npy", x_train)
        np.save(Path(folder) / "test.npy", x_test)
        ours = in_fresh_process("zoo", Path(folder))
        theirs = in_fresh_process("sklearn", Path(folder))
        import_arviz = in_fresh_process("arviz", Path(folder))["import_arviz"]

    def row(label: str, zoo_times: list[float], sklearn_times: list[float] | None, unit: float = 1.0) -> None:
        cells = f"{label:<30}{zoo_times[0] * unit:>10.3f}{zoo_times[1] * unit:>10.3f}"
        if sklearn_times is None:
            print(cells)
            return
        ratios = [mine / reference for mine, reference in zip(zoo_times, sklearn_times)]
        print(
            cells + f"{sklearn_times[0] * unit:>10.3f}{sklearn_times[1] * unit:>10.3f}"
            f"{ratios[0]:>9.2f}{ratios[1]:>9.2f}"
        )

    print("\nFirst call in a fresh process (cold) and the median of the next three (warm), same data")
    print(f"{'':<30}{'zoo':>20}{'scikit-learn':>20}{'zoo / sklearn':>18}")
    print(f"{'':<30}{'cold':>10}{'warm':>10}{'cold':>10}{'warm':>10}{'cold':>9}{'warm':>9}")
    row("MAP fit (s)", ours["fit"], theirs["fit"])
    row("log-density, 2,000 pts (ms)", ours["log_prob"], theirs["log_prob"], unit=1e3)
    row("to_arviz (s)", ours["to_arviz"], None)
    print(f"{'  of which import arviz (s)':<30}{import_arviz:>10.3f}")
    print(
        f"(zoo's fit holds {ours['num_draws']} draw{'s' if ours['num_draws'] != 1 else ''}; torch._dynamo imported: {ours['compiler_imported']}, "
        f"sympy imported: {ours['sympy_imported']})"
    )
    fit_ratio = ours["fit"][0] / theirs["fit"][0]
    log_prob_ms = [value * 1e3 for value in ours["log_prob"]]
    print(f"first fit zoo / scikit-learn first fit {fit_ratio:.2f} (target <= 5): {'MET' if fit_ratio <= 5 else 'NOT MET'}")
    print(
        f"log_prob {log_prob_ms[1]:.1f} ms warm, {log_prob_ms[0]:.1f} ms cold (target <= 10 ms): "
        f"{'MET' if max(log_prob_ms) <= 10 else 'NOT MET'}"
    )
    to_arviz = ours["to_arviz"]
    print(
        f"to_arviz {to_arviz[1]:.3f} s warm (target <= 0.5 s): {'MET' if to_arviz[1] <= 0.5 else 'NOT MET'}; "
        f"cold {to_arviz[0]:.2f} s, of which about {import_arviz:.2f} s importing ArviZ: without it "
        f"{max(to_arviz[0] - import_arviz, 0.0):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plain-pyro-steps", type=int, default=500)
    parser.add_argument("--skip-nuts", action="store_true")
    parser.add_argument("--skip-first-calls", action="store_true", help="skip the cold / warm table")
    parser.add_argument("--child", choices=("zoo", "sklearn", "arviz"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child, arguments.data)
        return

    data = simulate.gaussian_mixture(num_data=12_000, num_components=3, num_features=2, seed=0)
    train, test = data.subset(range(10_000)), data.subset(range(10_000, 12_000))
    x_train, x_test = train.x.double().numpy(), test.x.double().numpy()

    sklearn_time, reference = timed(
        lambda: SklearnGaussianMixture(3, covariance_type="full", random_state=0).fit(x_train), arguments.repeats
    )
    sklearn_score = reference.score(x_test)

    # Stopping rules made comparable: scikit-learn stops when the mean log-likelihood bound per
    # point changes by less than tol=1e-3 (its default); zoo's tolerance is relative to the loss
    # per point (about 3.6 here), so 1e-4 asks for changes below ~4e-4 nats per point, twice in
    # a row: stricter than scikit-learn's. zoo's default (1e-6) is stricter still.
    zoo_time, fit = timed(lambda: zoo.fit(zoo.models.GaussianMixture(3), train, zoo_map_method()), arguments.repeats)
    zoo_score = fit.log_prob(test).mean().item()

    start = time.perf_counter()
    plain_pyro_svi(train, arguments.plain_pyro_steps)
    plain_time = time.perf_counter() - start

    print("Gaussian mixture, 10,000 train / 2,000 test points, D=2, K=3, full covariance")
    print(f"torch threads: {torch.get_num_threads()}; median of {arguments.repeats} warm runs\n")
    print(f"{'':<34}{'time (s)':>10}{'held-out ll/pt':>16}{'ratio':>8}")
    print(f"{'scikit-learn EM':<34}{sklearn_time:>10.3f}{sklearn_score:>16.5f}{1.0:>8.2f}")
    print(
        f"{'zoo MAP (delta, L-BFGS, tol 1e-4)':<34}{zoo_time:>10.3f}{zoo_score:>16.5f}{zoo_time / sklearn_time:>8.2f}"
        f"   ({fit.diagnostics['num_steps']} steps)"
    )
    print(
        f"{f'plain Pyro AutoDelta+Adam {arguments.plain_pyro_steps} st.':<34}{plain_time:>10.3f}{'':>16}"
        f"{plain_time / sklearn_time:>8.2f}"
    )
    gap = abs(zoo_score - sklearn_score)
    ratio = zoo_time / sklearn_time
    print(f"\nheld-out gap {gap:.5f} nats/point (target < 0.002): {'MET' if gap < 0.002 else 'NOT MET'}")
    print(f"time ratio zoo / scikit-learn {ratio:.2f} (target <= 5): {'MET' if ratio <= 5 else 'NOT MET'}")

    if not arguments.skip_first_calls:
        first_calls(x_train, x_test)

    if not arguments.skip_nuts:
        small = simulate.gaussian_mixture(num_data=500, num_components=3, seed=1)
        start = time.perf_counter()
        nuts = zoo.fit(
            zoo.models.GaussianMixture(3),
            small,
            zoo.NUTS(num_warmup=500, num_samples=500, num_chains=2, progress=False),
        )
        nuts_time = time.perf_counter() - start
        print(
            f"\nzoo NUTS, 500 points, 500 warm-up + 500 draws x 2 chains: {nuts_time:.1f} s "
            f"(max R-hat {nuts.diagnostics['max_rhat']:.3f}, divergences {nuts.diagnostics['num_divergences']})"
        )


if __name__ == "__main__":
    main()
