"""Dequantization and units: bounds against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo.units import dequantize, dequantized_log_prob, score


class _Density:
    """Stands in for a Fit: a density on [0, 1) per coordinate, independent coordinates."""

    def __init__(self, log_density: object) -> None:
        self.log_density = log_density

    def log_prob(self, data: zoo.Dataset) -> torch.Tensor:
        return self.log_density(data.x).sum(-1)  # type: ignore[operator]


def test_uniform_density_gives_the_exact_probability_of_each_cell() -> None:
    """Uniform on the unit cube: every cell of K^D has probability K^-D, and the bound is exact."""
    data = torch.tensor([[0.0, 16.0, 3.0], [5.0, 5.0, 5.0]])
    uniform = _Density(lambda x: torch.zeros_like(x))
    bound = dequantized_log_prob(uniform, data, num_levels=17, num_samples=3)
    torch.testing.assert_close(bound, torch.full((2,), -3 * math.log(17.0)))


def test_bound_is_jensens_and_tightens_to_the_cell_probability() -> None:
    """Density 2y on [0, 1) (Beta(2, 1)), K = 2: P(x=0) = 1/4, P(x=1) = 3/4. With one draw the
    bound's mean is E log(2 (x + u) / 2) - log 2 (closed form: -1 - log 2 for x = 0,
    2 log 2 - 1 - log 2 for x = 1), below log P(x); with many draws it reaches log P(x)."""
    beta = _Density(lambda x: torch.log(2 * x))
    zeros, ones = torch.zeros(4000, 1), torch.ones(4000, 1)
    one_draw_zero = dequantized_log_prob(beta, zeros, num_levels=2)
    one_draw_one = dequantized_log_prob(beta, ones, num_levels=2)
    # E_u log(x + u) for u ~ U[0, 1): -1 at x = 0, 2 log 2 - 1 at x = 1
    expected_zero = -1.0 - math.log(2.0)
    expected_one = (2 * math.log(2.0) - 1.0) - math.log(2.0)
    for bound, expected in ((one_draw_zero, expected_zero), (one_draw_one, expected_one)):
        error = 4 * float(bound.std()) / math.sqrt(len(bound))
        assert abs(float(bound.mean()) - expected) < error
    assert expected_zero < math.log(0.25) and expected_one < math.log(0.75)
    many = dequantized_log_prob(beta, torch.tensor([[0.0], [1.0]]), num_levels=2, num_samples=4000)
    torch.testing.assert_close(many, torch.tensor([math.log(0.25), math.log(0.75)]), atol=0.03, rtol=0)


def test_score_units_and_bounds() -> None:
    values = torch.tensor([-10.0, -12.0])
    exact, bound = score(values, num_dims=4, bound=False), score(values, num_dims=4, bound=True)
    assert exact.bits_per_dim == pytest.approx(11.0 / (4 * math.log(2.0)))
    assert exact.standard_error == pytest.approx(math.sqrt(2.0) / math.sqrt(2.0))
    assert "log p = -11.000" in str(exact) and "log p >= -11.000" in str(bound) and "bits/dim <=" in str(bound)


def test_dequantize_and_its_refusals() -> None:
    data = zoo.Dataset(x=torch.tensor([[0.0, 3.0]]), y=torch.tensor([1]))
    once, again = dequantize(data, 4, seed=1), dequantize(data, 4, seed=1)
    assert torch.equal(once.x, again.x) and torch.equal(once.y, data.y)
    assert bool(((once.x * 4).floor() == data.x).all())
    with pytest.raises(ValueError, match=r"holds 0.5: dequantization takes integer levels 0..3"):
        dequantize(torch.tensor([[0.5]]), 4)
    with pytest.raises(ValueError, match=r"holds 4: dequantization takes integer levels 0..3"):
        dequantize(torch.tensor([[4.0]]), 4)
    with pytest.raises(ValueError, match="num_levels"):
        dequantize(torch.tensor([[0.0]]), 1)
