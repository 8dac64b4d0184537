"""Smoke test of benchmarks/nuts.py's zoo side: no timing, no NumPyro (not a test dependency).

The benchmark's NumPyro worker is not run here; what is checked is what breaks silently when
zoo changes: the tasks' data and prior settings, the extras' fit configurations, and the
relabelling and agreement helpers the benchmark applies to both libraries' draws.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "nuts.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_nuts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("task", ["gmm", "hmm", "naive_bayes"])
def test_tasks_give_arrays_and_plain_prior_settings(bench, task) -> None:
    arrays, config = bench.numpyro_inputs(task)
    assert json.loads(json.dumps(config)) == config  # travels to the worker as JSON
    assert all(isinstance(value, np.ndarray) and value.size for value in arrays.values())
    assert set(bench.DIFFERENCES) == set(bench.TASKS)


@pytest.mark.parametrize("group", ["tour", "notebooks", "compare"])
def test_extras_are_valid_nuts_fits(bench, group) -> None:
    import zoo

    fits = bench.extra_fits(group, scale=0.1)
    assert fits
    for label, model, data, method in fits:
        assert isinstance(method, zoo.NUTS) and isinstance(model, zoo.models.Model), label
        model.prepare(data)


def test_relabelling_and_agreement(bench) -> None:
    generator = np.random.default_rng(0)
    locs = np.sort(generator.normal(size=(1, 200, 3, 2)) * 0.1 + np.array([[-5.0], [0.0], [5.0]]), axis=2)
    draws = {
        "weights": np.broadcast_to([0.2, 0.3, 0.5], (1, 200, 3)) + generator.normal(size=(1, 200, 3)) * 0.01,
        "locs": locs,
        "scales": np.abs(locs) + 1,
    }
    permutation = generator.permuted(np.tile(np.arange(3), (200, 1)), axis=1)[None]  # (1, 200, 3)
    switched = {
        name: np.take_along_axis(value, permutation.reshape(permutation.shape + (1,) * (value.ndim - 3)), axis=2)
        for name, value in draws.items()
    }
    relabelled = bench.relabel("gmm", switched)
    for name in draws:
        np.testing.assert_array_equal(relabelled[name], bench.relabel("gmm", draws)[name])
    assert bench.worst_difference(relabelled, draws, pooled=True)[0] == 0
    shifted = dict(relabelled, locs=relabelled["locs"] + 0.5 * relabelled["locs"].std(axis=(0, 1)))
    worst, where = bench.worst_difference(shifted, draws, pooled=False)
    assert worst == pytest.approx(0.5, rel=1e-6) and where.startswith("locs[")
    assert 0 < bench.min_bulk_ess(draws) <= 400


def test_zoo_worker_records_its_runs_and_step_costs(tmp_path) -> None:
    """The zoo worker, in a process of its own as the benchmark runs it, at a tiny budget: both runs, the sampler's potential evaluations, and
    the per-step costs it prints (positive; no timing is judged)."""
    import subprocess
    import sys

    arguments = ["--worker", "zoo", "--task", "naive_bayes", "--warmup", "5", "--samples", "5", "--out", str(tmp_path)]
    subprocess.run([sys.executable, str(SCRIPT), *arguments], check=True, timeout=300)
    stored = json.loads((tmp_path / "zoo_naive_bayes.json").read_text())
    assert set(stored["runs"]) == {"first", "warm"}
    # at least one evaluation per iteration (a leapfrog step each) and one per start
    assert all(run["evaluations"] >= 10 for run in stored["runs"].values())
    costs = stored["costs"]
    assert costs["gradient"] > 0 and costs["sampler"] > 0
    assert costs["dimension"] == 2 + 2 * 3 * 4  # 3 class weights on a simplex, per class 4 locations and 4 precisions
    assert np.load(tmp_path / "zoo_naive_bayes.npz")["first/weights"].shape[:2] == (1, 5)
