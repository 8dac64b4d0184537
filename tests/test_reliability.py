"""Faults the runner survives and files it checks (issue 13): divergence, interrupts, damaged
files, grad mode. The per-model catalogue of bad inputs is tests/test_catalogue.py."""

from __future__ import annotations

import warnings

import pytest
import torch

import zoo
from zoo.infer import optimizers


def _finite_partial_fit(error: zoo.FitError) -> zoo.Fit:
    partial = error.fit
    assert partial is not None and partial.interrupted
    for value in partial.draws.values():
        assert value.shape[:2] == (1, 1)  # the last good point, not draws from the failed guide
        assert torch.isfinite(value).all()
    assert torch.isfinite(partial.log_prob()).all()
    return partial


@pytest.mark.parametrize("guide", ["normal", "mvn"])
@pytest.mark.parametrize("model_name", ["GaussianMixture", "HiddenMarkovModel"])
def test_adam_divergence_keeps_the_parameters_before_the_failing_update(model_name: str, guide: str) -> None:
    """learning_rate=1e10: the first update carries the scales to exp(1e10) = inf, which Pyro's
    distributions refuse (GMM) or which make the loss NaN (HMM): the partial fit holds the
    parameters before that update, whose log-likelihood is finite."""
    model, data = getattr(zoo.models, model_name).example()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pyro's "Encountered NaN: loss"
        with pytest.raises(zoo.FitError, match=r"NaN or infinite at step 1 ") as caught:
            zoo.fit(model, data, zoo.SVI(guide=guide, learning_rate=1e10, num_steps=40, progress=False))
    partial = _finite_partial_fit(caught.value)
    assert len(partial.losses) == 1


@pytest.mark.parametrize("exception", [IndexError, ValueError, RuntimeError])
def test_an_error_inside_the_lbfgs_line_search_is_a_fit_error(monkeypatch: pytest.MonkeyPatch, exception: type) -> None:
    model, data = zoo.models.GaussianMixture.example()
    calls = {"count": 0}
    original = optimizers.LBFGS.step

    def failing_step(self: optimizers.LBFGS, closure: object) -> torch.Tensor:
        calls["count"] += 1
        if calls["count"] == 3:
            raise exception("list index out of range")
        return original(self, closure)

    monkeypatch.setattr(optimizers.LBFGS, "step", failing_step)
    with pytest.raises(zoo.FitError, match=rf"at step 2 .*{exception.__name__}: list index") as caught:
        zoo.fit(model, data, zoo.SVI(guide="delta", num_steps=40, tolerance=0.0, progress=False))
    assert isinstance(caught.value.__cause__, exception)
    _finite_partial_fit(caught.value)
