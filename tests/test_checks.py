"""The argument checks every layer shares (zoo.checks), and where the runners and results use them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import zoo
from zoo.checks import MAX_SEED, check_choice, check_device, check_flag, check_integer_levels, check_probability, check_seed
from zoo.datasets import simulate


def test_a_seed_is_a_python_or_numpy_integer_in_range() -> None:
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED
    seed = check_seed(np.int64(7))
    assert seed == 7 and type(seed) is int
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*63 - 1\], got -1"):
        check_seed(-1)
    with pytest.raises(ValueError, match="seed must be in"):
        check_seed(MAX_SEED + 1)
    for bad in (True, 1.0, "3", None):
        with pytest.raises(TypeError, match="seed must be an integer"):
            check_seed(bad)
    with pytest.raises(TypeError, match="chain_seed must be"):
        check_seed(1.5, "chain_seed")


def test_a_probability_is_strictly_between_zero_and_one() -> None:
    assert check_probability(0.25, "p") == 0.25 and check_probability(np.float32(0.5), "p") == 0.5
    for bad in (0, 1, 0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"target must be in \(0, 1\)"):
            check_probability(bad, "target")
    with pytest.raises(TypeError, match=r"target must be a number in \(0, 1\)"):
        check_probability("0.5", "target")


def test_flags_choices_and_devices() -> None:
    check_flag(True, "jit")
    check_flag(None, "jit", allow_none=True)
    with pytest.raises(TypeError, match="jit must be True, False or None, got 1"):
        check_flag(1, "jit", allow_none=True)
    with pytest.raises(ValueError, match=r"optimizer must be one of \('adam', 'lbfgs'\), got 'sgd'"):
        check_choice("sgd", "optimizer", ("adam", "lbfgs"))
    check_device("cuda:1")  # a name, checked before any GPU is looked for
    with pytest.raises(ValueError, match="device must name a torch device"):
        check_device("gpu0")


def test_integer_levels_are_whole_numbers_from_zero_to_k_minus_one() -> None:
    check_integer_levels(torch.tensor([[0.0, 16.0], [3.0, 7.0]]), 17, "data.x", "a model", "hint")  # accepted
    for value in (16.5, -1.0, 17.0, float("nan")):
        values = torch.tensor([[0.0, 1.0], [2.0, value]])
        with pytest.raises(ValueError, match=rf"data.x holds {value:g}: a model takes integer pixels 0..16 \(hint\)"):
            check_integer_levels(values, 17, "data.x", "a model", "hint", unit="pixels")


def test_method_configurations_keep_seeds_as_python_ints() -> None:
    """A numpy seed is taken, and kept as an int: the configuration compares equal and saves."""
    for config in (zoo.SVI, zoo.NUTS, zoo.Exact, zoo.Adversarial):
        method = config(seed=np.int64(3))
        assert method == config(seed=3) and type(method.seed) is int
        json.dumps(method.to_dict())
        with pytest.raises(ValueError, match="seed must be in"):
            config(seed=-1)
    with pytest.raises(ValueError, match=r"target_accept_prob must be in \(0, 1\)"):
        zoo.NUTS(target_accept_prob=1.0)
    with pytest.raises(TypeError, match="distributed must be True or False"):
        zoo.SVI(distributed="yes")


def test_fit_answers_check_their_seeds_and_counts() -> None:
    data = simulate.gaussian_mixture(num_data=30, num_components=2, seed=0)
    fit = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="delta", num_steps=5, num_posterior_samples=4, progress=False))
    assert torch.equal(fit.sample(3, seed=np.int64(2)), fit.sample(3, seed=2))
    with pytest.raises(ValueError, match="seed must be in"):
        fit.sample(3, seed=-1)
    with pytest.raises(ValueError, match="seed must be in"):
        fit.posterior_predictive(seed=-2)
    with pytest.raises(ValueError, match="num_draws must be at least 1"):
        fit.marginals(num_draws=0)
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        fit.sample(0)


def test_a_fit_is_a_value_nothing_edits_after_construction() -> None:
    data = simulate.gaussian_mixture(num_data=30, num_components=2, seed=0)
    fit = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.NUTS(num_warmup=5, num_samples=5, num_chains=2, progress=False))
    # NUTS's convergence numbers are computed before the Fit is built
    assert {"max_rhat", "min_ess_bulk", "min_ess_tail", "num_divergences"} <= set(fit.diagnostics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.wall_time = 0.0  # type: ignore[misc]
    assert fit.replace(wall_time=1.0).wall_time == 1.0 and fit.wall_time != 1.0
