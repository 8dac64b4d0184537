"""zoo's own Adam and L-BFGS (zoo.infer.optimizers) against torch.optim.Adam and scipy's L-BFGS-B,
and the fitting paths that no longer import torch._dynamo."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.optimize
import torch

from zoo.infer.optimizers import LBFGS, Adam, strong_wolfe


# ---------------------------------------------------------------------- Adam
def regression_problem(dtype: torch.dtype) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=generator, dtype=dtype)
    y = x @ torch.tensor([1.5, -2.0, 0.5], dtype=dtype) + 0.1 * torch.randn(40, generator=generator, dtype=dtype)
    weight = torch.zeros(3, dtype=dtype, requires_grad=True)
    bias = torch.zeros(1, dtype=dtype, requires_grad=True)
    unused = torch.ones(2, dtype=dtype, requires_grad=True)  # never gets a gradient: left alone
    return [weight, unused, bias], x, y


def loss_of(parameters: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    weight, _, bias = parameters
    return ((x @ weight + bias - y) ** 2).mean() + (weight**4).sum()


def cosine(step: int, total: int = 50, final: float = 0.01) -> float:
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"betas": (0.5, 0.999), "schedule": True},
        {"weight_decay": 1e-2, "schedule": True},
    ],
)
def test_adam_takes_torch_adams_steps(dtype: torch.dtype, options: dict) -> None:
    """50 steps side by side, with torch's LambdaLR schedule against zoo's per-step factor: the
    same iterates to float rounding."""
    options = dict(options)
    schedule = options.pop("schedule", False)
    ours, x, y = regression_problem(dtype)
    theirs = [parameter.detach().clone().requires_grad_() for parameter in ours]
    learning_rate = 0.05
    zoo_adam = Adam(ours, learning_rate=learning_rate, **options)
    torch_adam = torch.optim.Adam(theirs, lr=learning_rate, **options)
    scheduler = torch.optim.lr_scheduler.LambdaLR(torch_adam, cosine) if schedule else None
    for step in range(50):
        if schedule:
            zoo_adam.learning_rate = learning_rate * cosine(step)
        zoo_adam.zero_grad()
        torch_adam.zero_grad(set_to_none=True)
        loss_of(ours, x, y).backward()
        loss_of(theirs, x, y).backward()
        zoo_adam.step()
        torch_adam.step()
        if scheduler is not None:
            scheduler.step()
        tolerance = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {}
        for mine, reference in zip(ours, theirs):
            torch.testing.assert_close(mine.detach(), reference.detach(), **tolerance)
    assert torch.equal(ours[1].detach(), torch.ones(2, dtype=dtype))  # no gradient, no step
    assert zoo_adam.steps == [50, 0, 50]
    assert loss_of(ours, x, y) < 0.5 * loss_of([torch.zeros(3, dtype=dtype), None, torch.zeros(1, dtype=dtype)], x, y)


# ---------------------------------------------------------------------- L-BFGS
def minimise(function, start: np.ndarray, steps: int = 300, **options: object) -> tuple[np.ndarray, LBFGS]:
    """zoo's L-BFGS with SVI's settings, ``steps`` one-iteration steps from ``start``."""
    point = torch.tensor(start, dtype=torch.float64, requires_grad=True)

    def closure() -> torch.Tensor:
        point.grad = None
        value = function(point)
        value.backward()
        return value

    optimizer = LBFGS([point], learning_rate=1.0, history_size=20, max_evaluations=25,
                      tolerance_grad=1e-9, tolerance_change=1e-12, **options)
    for _ in range(steps):
        optimizer.step(closure)
    return point.detach().numpy(), optimizer


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return ((1 - x[:-1]) ** 2).sum() + 100 * ((x[1:] - x[:-1] ** 2) ** 2).sum()


def scipy_minimum(function, start: np.ndarray) -> np.ndarray:
    def value_and_gradient(values: np.ndarray) -> tuple[float, np.ndarray]:
        point = torch.tensor(values, dtype=torch.float64, requires_grad=True)
        value = function(point)
        value.backward()
        return float(value.detach()), point.grad.numpy()

    result = scipy.optimize.minimize(
        value_and_gradient, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 5000}
    )
    return result.x


@pytest.mark.parametrize("start", [[-1.2, 1.0], [-1.2, 1.0, -0.5, 0.8], [0.0] * 10])
def test_lbfgs_finds_scipys_rosenbrock_minimum(start: list[float]) -> None:
    start_array = np.array(start)
    ours, _ = minimise(rosenbrock, start_array)
    reference = scipy_minimum(rosenbrock, start_array)
    np.testing.assert_allclose(ours, reference, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours, np.ones_like(ours), atol=1e-6, rtol=0)


def test_lbfgs_finds_scipys_logistic_regression_optimum() -> None:
    generator = np.random.default_rng(0)
    features = generator.normal(size=(200, 4))
    logits = features @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3
    labels = (generator.uniform(size=200) < 1 / (1 + np.exp(-logits))).astype(float)
    design = torch.tensor(np.column_stack([features, np.ones(200)]))
    targets = torch.tensor(labels)

    def negative_log_likelihood(weights: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(design @ weights, targets, reduction="sum")

    start = np.zeros(5)
    ours, optimizer = minimise(negative_log_likelihood, start, steps=100, reuse_evaluation=True)
    np.testing.assert_allclose(ours, scipy_minimum(negative_log_likelihood, start), atol=1e-6, rtol=0)
    assert optimizer.num_evaluations < 60  # converged, then stopped moving (and evaluating)


def test_reusing_the_line_searchs_last_evaluation_changes_nothing_but_the_count() -> None:
    start = np.array([-1.2, 1.0, -0.5, 0.8])
    again, evaluating = minimise(rosenbrock, start, steps=40)
    reused, reusing = minimise(rosenbrock, start, steps=40, reuse_evaluation=True)
    assert np.array_equal(again, reused)
    assert reusing.num_evaluations < evaluating.num_evaluations - 30


def test_the_line_search_returns_a_strong_wolfe_step_and_backs_off_from_nan() -> None:
    """phi(a) = (a - 3)^2 along a descent direction, NaN beyond a = 5: bracketing from a tiny first
    trial must extrapolate, and a first trial in the NaN region must come back."""
    def phi(alpha: float, limit: float = 5.0) -> tuple[float, float, torch.Tensor, torch.Tensor]:
        if alpha > limit:
            return math.nan, math.nan, torch.tensor(math.nan), torch.tensor([math.nan])
        value, slope = (alpha - 3.0) ** 2, 2.0 * (alpha - 3.0)
        return value, slope, torch.tensor(value, dtype=torch.float64), torch.tensor([slope], dtype=torch.float64)

    phi0, slope0 = 9.0, -6.0
    for trial in (1e-3, 1.0, 50.0):
        alpha, payload = strong_wolfe(phi, phi0, slope0, trial, max_evaluations=25)
        value, slope, _, _ = phi(alpha)
        assert value <= phi0 + 1e-4 * alpha * slope0  # sufficient decrease
        assert abs(slope) <= 0.9 * abs(slope0)  # curvature, strong form
        assert payload is not None and float(payload[0]) == value


# ---------------------------------------------------------------------- no compiler on the way
FRESH_FIT = """
import sys
import zoo
from zoo.datasets import simulate

def loaded():
    return sorted(name for name in ("torch._dynamo", "sympy") if name in sys.modules)

data = simulate.gaussian_mixture(num_data=60, num_components=2, seed=0)
zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="delta", num_steps=20, progress=False))
zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="normal", num_steps=20, progress=False,
        num_posterior_samples=5, learning_rate_schedule="cosine"))
print(loaded())
zoo.fit(zoo.models.GaussianMixture(2), data, zoo.NUTS(num_warmup=5, num_samples=5, num_chains=1, progress=False,
        jit_compile=False))
print(loaded())
zoo.fit(zoo.models.GaussianMixture(2), data, zoo.NUTS(num_warmup=5, num_samples=5, num_chains=1, progress=False))
print(loaded())
"""


def test_no_fit_in_a_fresh_process_imports_the_compiler() -> None:
    """torch.optim's first optimiser imports torch._dynamo (and sympy), seconds on a first fit
    (issue 12); zoo's optimisers do not, and neither do SVI (L-BFGS for a point mass, Adam with a
    schedule for a Normal), NUTS on the eager potential, nor NUTS recording its potential and
    gradient as one graph (``zoo.ops.recording.record``, where ``make_fx`` would import the
    compiler). (Guides built on torch's MultivariateNormal, "mvn", "lowrank" and "laplace", still
    import sympy: its constructor's torch.broadcast_shapes does, on first use.)"""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FRESH_FIT)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-3:] == ["[]", "[]", "[]"], result.stdout
