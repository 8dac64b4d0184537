"""Do zoo's NUTS chains mix on mixtures, and does zoo say so when they do not?

Issue 12's mixing study: Gaussian mixtures fitted by ``zoo.NUTS`` (2 chains x 500 warm-up + 500
draws, seed 0) to

* Old Faithful (272 points, 2-D, standardised by the model's empirical prior), K = 2, 3, 4;
* a simulated 1-D mixture of 4 overlapping components (300 points; means 0, 2, 4.5, 7, sd 1,
  weights 0.3, 0.2, 0.3, 0.2), K = 3, 4, 5, 6: K > 4 has components the data cannot identify;
* the galaxies velocities (82 points, 1-D), K = 2: the case where two chains once settled in
  different modes (R-hat 1.83) without a word.

Per fit it prints the largest R-hat and the smallest bulk and tail ESS over every scalar (zoo's
own, equal to ArviZ's), the divergences, whether zoo flagged the fit (its one-line warning and
the NOT MIXED mark of its repr), and the wall time. The goal: R-hat < 1.01 and bulk ESS > 400
wherever the components are identified; a flag wherever they are not. Wall times depend on the
machine and its load (the seconds are for orientation, the ratios of ``benchmarks/nuts.py`` are
the speed measure).

With ``--numpyro`` each case is also sampled by NumPyro's NUTS (``benchmarks/_numpyro_models.py``:
the same priors and likelihood, the assignments enumerated; its default start, ``init_to_uniform``;
2 chains in sequence, the same budget, seed 0), relabelled as zoo relabels, and judged by the same
diagnostics (``zoo.diagnostics.convergence``): where both libraries miss the goal at this budget,
the posterior, not zoo's sampler, sets the limit. Needs the ``bench`` extra.

Usage: ``python benchmarks/nuts_mixing.py [--quick] [--only CASES] [--numpyro]`` (``--quick``:
100 + 100 draws, a smoke run; ``--only "galaxies:2,old_faithful:3"``: those cases alone).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zoo  # noqa: E402


def overlapping(num_data: int = 300, seed: int = 0) -> zoo.Dataset:
    """300 points from four unit-sd components whose means are 2 to 2.5 sds apart."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.tensor([0.0, 2.0, 4.5, 7.0])
    weights = torch.tensor([0.3, 0.2, 0.3, 0.2])
    component = torch.multinomial(weights, num_data, replacement=True, generator=generator)
    x = means[component] + torch.randn(num_data, generator=generator)
    return zoo.Dataset(x=x.unsqueeze(-1), name="overlapping 1-D")


def numpyro_diagnostics(model: zoo.models.Model, data: zoo.Dataset, budget: int) -> tuple[dict[str, float], int, float]:
    """NumPyro's NUTS on the twin of ``model`` (prepared for ``data``): zoo's diagnostics of its
    relabelled draws, its divergences and its wall time."""
    import jax
    import numpy as np
    import numpyro
    from numpyro.infer import MCMC, NUTS

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _numpyro_models
    from nuts import relabel  # zoo's relabelling, in numpy, as benchmarks/nuts.py applies it

    numpyro.set_platform("cpu")
    config = model.prepare(data).config()
    twin = _numpyro_models.model("gmm", config)
    mcmc = MCMC(NUTS(twin), num_warmup=budget, num_samples=budget, num_chains=2, chain_method="sequential",
                progress_bar=False)
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(0), np.asarray(data.x, dtype=np.float32), extra_fields=("diverging",))
    wall = time.perf_counter() - start
    draws = relabel("gmm", {name: np.asarray(value) for name, value in mcmc.get_samples(group_by_chain=True).items()})
    stats = zoo.diagnostics.convergence({name: torch.as_tensor(value) for name, value in draws.items()})
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return stats, divergences, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 + 100 draws (a smoke run)")
    parser.add_argument("--only", help='a subset of the cases, e.g. "galaxies:2,overlapping 1-D:5"')
    parser.add_argument("--numpyro", action="store_true", help="also sample each case with NumPyro's NUTS")
    arguments = parser.parse_args()
    budget = 100 if arguments.quick else 500
    cases = [("old_faithful", zoo.datasets.load("old_faithful"), k) for k in (2, 3, 4)]
    cases += [("overlapping 1-D", overlapping(), k) for k in (3, 4, 5, 6)]
    cases += [("galaxies", zoo.datasets.load("galaxies"), 2)]
    if arguments.only:
        chosen = {(name.strip(), int(k)) for name, k in (case.rsplit(":", 1) for case in arguments.only.split(","))}
        unknown = chosen - {(name, k) for name, _, k in cases}
        if unknown:
            parser.error(f"--only names cases this study does not have: {sorted(unknown)}")
        cases = [case for case in cases if (case[0], case[2]) in chosen]
    print(f"NUTS, 2 chains x ({budget} warm-up + {budget} draws), seed 0; torch {torch.__version__}")
    print(f"{'data':<16} {'K':>2} {'max R-hat':>9} {'min bulk ESS':>12} {'min tail ESS':>12} "
          f"{'divergent':>9} {'flagged':>7} {'wall s':>7}")
    for name, data, k in cases:
        method = zoo.NUTS(num_warmup=budget, num_samples=budget, num_chains=2, seed=0, progress=False)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = zoo.fit(zoo.models.GaussianMixture(k), data, method)
        wall = time.perf_counter() - start
        flagged = any("did not mix" in str(w.message) for w in caught) and "NOT MIXED" in repr(fit)
        stats = fit.diagnostics
        print(f"{name:<16} {k:>2} {stats['max_rhat']:>9.3f} {stats['min_ess_bulk']:>12.0f} "
              f"{stats['min_ess_tail']:>12.0f} {int(stats['num_divergences']):>9} {'yes' if flagged else 'no':>7} "
              f"{wall:>7.1f}", flush=True)
        if arguments.numpyro:
            stats, divergences, wall = numpyro_diagnostics(zoo.models.GaussianMixture(k), data, budget)
            print(f"{'  NumPyro':<16} {k:>2} {stats['max_rhat']:>9.3f} {stats['min_ess_bulk']:>12.0f} "
                  f"{stats['min_ess_tail']:>12.0f} {divergences:>9} {'-':>7} {wall:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
