"""SVI checkpoints: a resumed run equals an uninterrupted one, step for step."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import zoo
from zoo.datasets import simulate


@pytest.mark.slow
def test_a_resumed_run_equals_an_uninterrupted_one_step_for_step(tmp_path: Path) -> None:
    """60 Adam steps with a checkpoint every 40: resuming from step 40 (in a fresh fit, whose
    set-up draws other random numbers) repeats steps 40..59 exactly, losses and draws alike;
    minibatches (a random subsample per step) and a learning-rate schedule included."""
    data = simulate.gaussian_mixture(num_data=60, num_components=2, seed=0)
    path = tmp_path / "run.ckpt"
    method = zoo.SVI(
        guide="mvn", num_steps=60, batch_size=20, tolerance=0.0, learning_rate_schedule="cosine",
        num_posterior_samples=20, checkpoint=str(path), checkpoint_every=40, seed=3, progress=False,
    )
    model = zoo.models.GaussianMixture(2)
    uninterrupted = zoo.fit(model, data, method)
    assert path.is_file() and not path.with_name(path.name + ".tmp").exists()
    resumed = zoo.fit(model, data, dataclasses.replace(method, checkpoint=None), resume=path)
    assert torch.equal(resumed.losses, uninterrupted.losses)
    assert len(resumed.losses) == 60
    for name, value in uninterrupted.draws.items():
        assert torch.equal(resumed.draws[name], value)
    # without the checkpoint's state, a run from the start is not that run's tail
    fresh = zoo.fit(model, data, dataclasses.replace(method, checkpoint=None, seed=4))
    assert not torch.equal(fresh.losses[40:], uninterrupted.losses[40:])


def test_a_checkpoint_from_another_model_or_method_is_refused(tmp_path: Path) -> None:
    data = simulate.gaussian_mixture(num_data=30, num_components=2, seed=0)
    path = tmp_path / "run.ckpt"
    method = zoo.SVI(guide="normal", num_steps=10, checkpoint=str(path), checkpoint_every=5, num_posterior_samples=5, progress=False)
    zoo.fit(zoo.models.GaussianMixture(2), data, method)
    with pytest.raises(ValueError, match="another fit.*config"):
        zoo.fit(zoo.models.GaussianMixture(3), data, method, resume=path)
    with pytest.raises(ValueError, match="another fit.*method"):
        zoo.fit(zoo.models.GaussianMixture(2), data, dataclasses.replace(method, guide="mvn"), resume=path)
    with pytest.raises(ValueError, match="another fit.*num_data"):
        zoo.fit(zoo.models.GaussianMixture(2), data.subset(list(range(20))), method, resume=path)
    saved = zoo.fit(zoo.models.GaussianMixture(2), data, dataclasses.replace(method, checkpoint=None)).save(tmp_path / "fit.zoo")
    with pytest.raises(ValueError, match="not an SVI checkpoint"):
        zoo.fit(zoo.models.GaussianMixture(2), data, method, resume=saved)
    with pytest.raises(ValueError, match="resume: only SVI"):
        zoo.fit(zoo.models.GaussianMixture(2), data, zoo.NUTS(num_samples=5, num_warmup=5), resume=path)
    with pytest.raises(ValueError, match="only single-process SVI by Adam"):
        zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="delta", checkpoint=str(tmp_path / "map.ckpt"), progress=False))
    with pytest.raises(FileNotFoundError):
        zoo.fit(zoo.models.GaussianMixture(2), data, method, resume=tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="checkpoint_every"):
        zoo.SVI(checkpoint_every=0)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        zoo.SVI(checkpoint=3)  # type: ignore[arg-type]
