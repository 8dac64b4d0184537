"""One table for the explicit and implicit models of the zoo, on the same data.

>>> import zoo
>>> table = zoo.leaderboard(fast=True)          # seconds; the default setting takes minutes

Data and what is measured:

* 2-D toy densities, ``two_moons`` and ``ring`` (8 Gaussians on a circle), each a training and a
  held-out sample of its own seed: held-out **nats per point** (higher is better), exact or a
  lower bound (the diffusion model's ELBO); the kernel MMD^2 of the model's samples against the
  held-out points (lower is better, :func:`zoo.metrics.mmd`) for every model that samples,
  the GAN included (it has no density: its density columns are empty).
* scikit-learn's 8x8 digits with their 17 grey levels (0..16), split by
  ``Dataset.split(test_fraction=0.2, seed=0)``: held-out **bits per dimension** of the discrete
  data (lower is better): exact for the autoregressive model, a lower bound on log P(x) (an upper
  bound on bits/dim) for the diffusion model's discretised ELBO and for the continuous models
  (flow, Gaussian mixture) scored by uniform dequantization (:mod:`zoo.units`); sample quality
  by the Fréchet distance in the features of zoo's own digit classifier and its class coverage
  (:func:`zoo.metrics.frechet_distance`, :func:`zoo.metrics.class_coverage`), for every model
  that samples, the GAN included.

Every row records its wall time (seconds on this machine: noise on a shared one). The budgets
of the default and the fast setting are :data:`SETTINGS`; seeds are fixed (``seed``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from zoo.metrics import class_coverage, frechet_distance, mmd, train_classifier
from zoo.units import dequantize, dequantized_log_prob, score
from zoo.datasets import load
from zoo.datasets.dataset import Dataset
from zoo.infer import SVI, Adversarial
from zoo.infer import fit as fit_model
from zoo.models import GAN, Autoregressive, Diffusion, Flow, GaussianMixture

__all__ = ["leaderboard", "SETTINGS", "COLUMNS"]

#: Budgets: points of each toy set (train, test), digits used for training (all 1437 of the
#: split's training part by default), epochs of minibatch SVI, GAN steps, the digit classifier's
#: epochs, diffusion steps, L-BFGS steps of the mixtures, flow layers and the hidden width of
#: every network.
SETTINGS: dict[str, dict[str, int]] = {
    "default": {"toy_train": 2000, "toy_test": 1000, "digit_train": 1437, "epochs": 60, "digit_epochs": 60,
                "gan_steps": 3000, "classifier_epochs": 30, "diffusion_steps": 20, "mixture_steps": 300,
                "flow_layers": 4, "width": 128},
    "fast": {"toy_train": 100, "toy_test": 50, "digit_train": 100, "epochs": 1, "digit_epochs": 1, "gan_steps": 5,
             "classifier_epochs": 1, "diffusion_steps": 2, "mixture_steps": 3, "flow_layers": 1, "width": 8},
}

COLUMNS = ["data", "model", "log_likelihood", "standard_error", "bits_per_dim", "kind", "mmd2", "frechet",
           "class_coverage", "seconds"]

_DIGIT_LEVELS = 17


def _dequantized_to_unit(samples: torch.Tensor) -> torch.Tensor:
    """Samples of dequantized digits, y = (level + u) / 17, to level / 16 (the classifier's scale)."""
    return (samples * _DIGIT_LEVELS - 0.5) / (_DIGIT_LEVELS - 1)


def _timed(make: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = make()
    return value, time.perf_counter() - start


def _toy_rows(name: str, budget: dict[str, int], seed: int) -> list[dict[str, Any]]:
    """Fit every toy-density row on ``name``; one row each."""
    train = load(name, num_data=budget["toy_train"], seed=seed)
    test = load(name, num_data=budget["toy_test"], seed=seed + 1)
    epochs = budget["epochs"]
    batch = min(200, budget["toy_train"])
    entries: list[tuple[str, Any, Any, bool]] = [
        ("gaussian mixture (K=8)", GaussianMixture(8), SVI(guide="delta", num_steps=budget["mixture_steps"], seed=seed, progress=False), False),
        ("flow (spline coupling)", Flow(num_layers=budget["flow_layers"], hidden_sizes=[budget["width"]] * 2),
         SVI(batch_size=batch, num_epochs=epochs, learning_rate=0.005, seed=seed, progress=False), False),
        ("diffusion (ELBO)", Diffusion(num_timesteps=budget["diffusion_steps"], hidden_sizes=[budget["width"]] * 2),
         SVI(batch_size=batch, num_epochs=epochs, learning_rate=0.002, seed=seed, progress=False), True),
        ("gan", GAN(latent_dim=2, hidden_sizes=[budget["width"]] * 2),
         Adversarial(num_steps=budget["gan_steps"], batch_size=batch, seed=seed, progress=False), False),
    ]
    rows = []
    for label, model, method, bound in entries:
        fitted, seconds = _timed(lambda: fit_model(model, train, method))
        row: dict[str, Any] = {"data": name, "model": label}
        if fitted.model.capability("log_prob"):
            summary = score(fitted.log_prob(test), num_dims=2, bound=bound)
            row.update(log_likelihood=summary.nats_per_datum, standard_error=summary.standard_error,
                       bits_per_dim=summary.bits_per_dim, kind="bound" if bound else "exact")
        else:
            row["kind"] = "samples only"
        row["mmd2"] = mmd(fitted.sample(len(test), seed=seed), test, num_permutations=20, seed=seed).mmd2
        row["seconds"] = seconds
        rows.append(row)
    return rows


def _digit_rows(budget: dict[str, int], seed: int) -> list[dict[str, Any]]:
    """Fit every digits row; one row each. Pixels are levels 0..16."""
    digits = load("digits")
    train, test = digits.split(test_fraction=0.2, seed=0)
    train = train.subset(list(range(min(len(train), budget["digit_train"]))))
    num_dims = train.x.shape[1]
    dequantized = dequantize(train, _DIGIT_LEVELS, seed=seed)
    scaled = Dataset(x=train.x / (_DIGIT_LEVELS - 1), y=train.y)
    classifier = train_classifier(scaled, num_epochs=budget["classifier_epochs"], seed=seed)
    held_out = Dataset(x=test.x / (_DIGIT_LEVELS - 1), y=test.y)
    epochs = budget["digit_epochs"]
    svi = SVI(batch_size=min(100, len(train)), num_epochs=epochs, learning_rate=0.002, seed=seed, progress=False)
    # (label, model, training data, method, how held-out log P(x) is scored, sample -> levels / 16)
    entries: list[tuple[str, Any, Dataset, Any, str, Callable[[torch.Tensor], torch.Tensor]]] = [
        ("autoregressive (MADE)", Autoregressive(num_categories=_DIGIT_LEVELS, hidden_sizes=[max(64, 4 * budget["width"])]), train, svi,
         "exact", lambda samples: samples / (_DIGIT_LEVELS - 1)),
        ("flow (spline coupling, dequantized)", Flow(num_layers=budget["flow_layers"], hidden_sizes=[2 * budget["width"]]), dequantized, svi,
         "dequantized", _dequantized_to_unit),
        ("gaussian mixture (K=10, diagonal, dequantized)", GaussianMixture(10, covariance="diag"), dequantized,
         SVI(guide="delta", num_steps=budget["mixture_steps"], seed=seed, progress=False), "dequantized",
         _dequantized_to_unit),
        ("diffusion (discretised ELBO)", Diffusion(num_timesteps=budget["diffusion_steps"], hidden_sizes=[4 * budget["width"]] * 2,
                                                   num_levels=_DIGIT_LEVELS), train, svi, "bound",
         lambda samples: samples / (_DIGIT_LEVELS - 1)),
        ("gan", GAN(latent_dim=16, hidden_sizes=[2 * budget["width"]]), scaled,
         Adversarial(num_steps=budget["gan_steps"], batch_size=min(100, len(train)), seed=seed, progress=False), "samples only",
         lambda samples: samples),
    ]
    rows = []
    for label, model, data, method, scoring, to_unit in entries:
        fitted, seconds = _timed(lambda: fit_model(model, data, method))
        row: dict[str, Any] = {"data": "digits (17 levels)", "model": label, "kind": scoring}
        if scoring != "samples only":
            if scoring == "dequantized":
                log_probs = dequantized_log_prob(fitted, test, _DIGIT_LEVELS, seed=seed)
            else:
                log_probs = fitted.log_prob(test)
            summary = score(log_probs, num_dims=num_dims, bound=scoring != "exact")
            row.update(log_likelihood=summary.nats_per_datum, standard_error=summary.standard_error,
                       bits_per_dim=summary.bits_per_dim, kind="exact" if scoring == "exact" else "bound")
        samples = to_unit(fitted.sample(len(test), seed=seed)).clamp(0.0, 1.0)
        row["frechet"] = frechet_distance(samples, held_out, classifier)
        row["class_coverage"] = class_coverage(samples, classifier).coverage
        row["seconds"] = seconds
        rows.append(row)
    return rows


def leaderboard(fast: bool = False, seed: int = 0, toys: tuple[str, ...] = ("two_moons", "ring"),
                digits: bool = True) -> Any:
    """Fit every applicable model on the toy densities and the digits; one row per (data, model).

    Parameters
    ----------
    fast : bool
        The small budgets of ``SETTINGS["fast"]`` (seconds; for tests), else ``SETTINGS["default"]``.
    seed : int
        Seed of every fit, sample and data set.
    toys : tuple of str
        Which 2-D toy sets (``"two_moons"``, ``"ring"``).
    digits : bool
        Include the digits rows.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: ``log_likelihood`` (held-out nats per datum, ``kind`` says
        "exact" or "bound"; empty for the GAN), its ``standard_error``, ``bits_per_dim`` (of the
        digits' 17 levels; of the toy densities' two coordinates, in bits), ``mmd2`` (toys),
        ``frechet`` and ``class_coverage`` (digits), ``seconds`` (wall time of the fit).
    """
    import pandas as pd

    unknown = [name for name in toys if name not in ("two_moons", "ring")]
    if unknown:
        raise ValueError(f"toys must be among ('two_moons', 'ring'), got {unknown}")
    budget = SETTINGS["fast" if fast else "default"]
    rows: list[dict[str, Any]] = []
    for name in toys:
        rows += _toy_rows(name, budget, seed)
    if digits:
        rows += _digit_rows(budget, seed)
    table = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in table:
            table[column] = math.nan
    return table[COLUMNS]
