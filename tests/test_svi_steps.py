"""SVI's recorded steps: where zoo records a step once and replays it, and where it must not.

That the replayed steps are the eager ones, for every registered model that declares
``static_likelihood``, is a contract check (``tests/test_contract.py``); here is what decides
whether a fit records its step at all.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

import zoo


class SumOfTwoNormals(zoo.models.Model):
    """a, b ~ Normal(0, 1); x_i ~ Normal(a + b, 1); counts the runs of its story."""

    methods = ("svi",)
    static_likelihood = True
    runs = 0

    def config(self) -> dict:
        return {}

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size: int | None = None) -> torch.Tensor:
        type(self).runs += 1
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x) if x is not None else num_data, subsample_size=batch_size) as rows:
            return pyro.sample("x", dist.Normal(a + b, 1.0), obs=None if x is None else x[rows])


class Branching(SumOfTwoNormals):
    """Declares ``static_likelihood`` wrongly: its noise scale depends on a's value (on the
    parity of its fourth decimal, so that two draws take one branch or the other by chance)."""

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size: int | None = None) -> torch.Tensor:
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
        scale = 1.0 if int(float(a.detach()) * 1e4) % 2 == 0 else 3.0
        with pyro.plate("data", len(x) if x is not None else num_data, subsample_size=batch_size):
            return pyro.sample("x", dist.Normal(a + b, scale), obs=x)


DATA = 0.5 + torch.randn(12, generator=torch.Generator().manual_seed(0))


def svi(**options: object) -> zoo.SVI:
    settings = {"guide": "normal", "num_steps": 20, "num_posterior_samples": 10, "seed": 0, "progress": False}
    return zoo.SVI(**{**settings, **options})


def test_recorded_steps_do_not_run_the_model() -> None:
    """Recorded, the story runs at the set-up and for the posterior draws, never per step: 80
    more steps add no run. Eagerly, every step runs it (the guide's trace replayed in it)."""
    runs = {}
    for mode, jit in (("recorded", None), ("eager", False)):
        for steps in (20, 100):
            SumOfTwoNormals.runs = 0
            fit = zoo.fit(SumOfTwoNormals(), DATA, svi(num_steps=steps, jit=jit))
            assert fit.diagnostics["steps"] == mode and fit.diagnostics["num_steps"] == steps
            runs[mode, steps] = SumOfTwoNormals.runs
    assert runs["recorded", 100] == runs["recorded", 20]
    assert runs["eager", 100] - runs["eager", 20] >= 80


@pytest.mark.parametrize(
    ("why", "model", "options"),
    [
        ("asked to run eagerly", SumOfTwoNormals(), {"jit": False}),
        ("minibatches: rows and scale change by step", SumOfTwoNormals(), {"batch_size": 4}),
        ("a point mass: L-BFGS takes fewer evaluations than a recording costs", SumOfTwoNormals(), {"guide": "delta"}),
        ("a guide zoo did not build", SumOfTwoNormals(), {"guide": pyro.infer.autoguide.AutoNormal(SumOfTwoNormals())}),
        ("no static_likelihood declared", type("Plain", (SumOfTwoNormals,), {"static_likelihood": False})(), {}),
    ],
)
def test_steps_are_eager_where_a_recording_is_not_sure(why: str, model: zoo.models.Model, options: dict) -> None:
    fit = zoo.fit(model, DATA, svi(**options))
    assert fit.diagnostics["steps"] == "eager", why


def test_a_recording_that_differs_from_the_eager_step_is_not_used() -> None:
    """A model that declares ``static_likelihood`` but branches on a value: the recording keeps
    the branch of its own draw of a, the check before the first step draws a of the other sign
    (seed 1), the two steps differ, and the fit steps eagerly: the run of ``jit=False``."""
    fit = zoo.fit(Branching(), DATA, svi(seed=1))
    eager = zoo.fit(Branching(), DATA, svi(seed=1, jit=False))
    assert fit.diagnostics["steps"] == "eager"
    assert torch.equal(fit.losses, eager.losses)
    for site, value in eager.draws.items():
        assert torch.equal(fit.draws[site], value)


def test_the_benchmark_runs_its_workers(tmp_path: object) -> None:
    """benchmarks/svi_steps.py's workers, in process: zoo's recorded and eager fits of its
    smallest task give the same draws, and Pyro's loop runs on the same collapsed model."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "svi_steps.py"
    spec = importlib.util.spec_from_file_location("bench_svi_steps", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = {}
    for runner in ("zoo", "zoo jit=False", "pyro"):
        out = Path(str(tmp_path)) / f"{runner}.json"
        bench.worker("sum", runner, out)
        results[runner] = json.loads(out.read_text())
    assert results["zoo"]["draws"] and results["zoo"]["draws"] == results["zoo jit=False"]["draws"]
    assert results["pyro"]["first"] > 0 and results["pyro"]["steps"] == 200
