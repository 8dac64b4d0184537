"""zoo.ops.convergence against ArviZ's rhat and ess: the same numbers on continuous draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.ops import convergence

arviz = pytest.importorskip("arviz")


def draws_of(kind: str, chains: int, length: int, generator: np.random.Generator) -> np.ndarray:
    if kind == "independent":
        return generator.normal(size=(chains, length))
    if kind == "autocorrelated":  # AR(1) with coefficient 0.9: ESS far below the draw count
        values = np.zeros((chains, length))
        noise = generator.normal(size=(chains, length))
        for t in range(1, length):
            values[:, t] = 0.9 * values[:, t - 1] + noise[:, t]
        return values
    if kind == "disagreeing":  # chains centred apart: R-hat far above 1
        return generator.normal(size=(chains, length)) + np.arange(chains)[:, None]
    return generator.standard_t(3, size=(chains, length)) * np.linspace(1, 3, chains)[:, None]  # heavy tails, scales apart


@pytest.mark.parametrize("kind", ["independent", "autocorrelated", "disagreeing", "heavy_tailed"])
def test_rhat_and_ess_equal_arviz(kind: str) -> None:
    """Continuous draws (ties would make the tail ESS depend on how a quantile rounds)."""
    generator = np.random.default_rng(0)
    for chains, length in [(1, 50), (2, 7), (2, 200), (4, 301), (3, 1000)]:
        values = draws_of(kind, chains, length, generator)
        idata = arviz.from_dict(posterior={"a": values})
        expected = [float(arviz.rhat(idata)["a"]), float(arviz.ess(idata, method="bulk")["a"]), float(arviz.ess(idata, method="tail")["a"])]
        tensor = torch.tensor(values)
        actual = [convergence.rhat(tensor), convergence.ess_bulk(tensor), convergence.ess_tail(tensor)]
        for name, mine, theirs in zip(("rhat", "ess_bulk", "ess_tail"), actual, expected):
            if math.isnan(theirs):
                assert math.isnan(mine), (name, chains, length)
            else:
                assert mine == pytest.approx(theirs, rel=1e-9), (name, chains, length)


def test_ranks_share_ties_and_constant_draws_are_left_out() -> None:
    ranks = convergence._average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0, 3.0]))
    assert ranks.tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]
    constant = torch.ones(2, 50)
    assert math.isnan(convergence.rhat(constant)) and math.isnan(convergence.ess_bulk(constant))
