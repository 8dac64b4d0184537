"""One table for the explicit and implicit models of the zoo, on the same data.

>>> import zoo
>>> table = zoo.leaderboard(fast=True)          # seconds; the default setting takes minutes

Data and what is measured:

* 2-D toy densities, ``two_moons`` and ``ring`` (8 Gaussians on a circle), each a training and a
  held-out sample of its own seed: held-out **nats per point** (higher is better), exact or a
  lower bound (the VAE's ELBO and importance-weighted bound, the diffusion model's ELBO and
  importance-weighted bound); the kernel MMD^2 of the model's samples against the held-out points
  (lower is better, :func:`zoo.metrics.mmd`) for every model that samples, the GAN included (it
  has no density: its density columns are empty). Naive Bayes, as the class-conditional density
  ``p(x) = sum_y p(y) p(x | y)``, only where the toy has classes (the two moons).
* scikit-learn's 8x8 digits with their 17 grey levels (0..16), split by
  ``Dataset.split(test_fraction=0.2, seed=0)``: held-out **bits per dimension** of the discrete
  data (lower is better): exact for the models of discrete pixels (MADE; Naive Bayes with
  categorical pixels, whose density at the posterior mean is its exact posterior predictive; a
  mixture of categorical pixels), a lower bound on log P(x) (an upper bound on bits/dim) for the
  diffusion model's discretised ELBO and importance-weighted bound and for the continuous models
  (flow, Gaussian mixture, factor analysis, VAE) scored by uniform dequantization
  (:mod:`zoo.units`); sample quality by the Fréchet distance in the features of zoo's own digit
  classifier and its class coverage (:func:`zoo.metrics.frechet_distance`,
  :func:`zoo.metrics.class_coverage`), for every model that samples, the GAN included.

One fit may give several rows (a VAE's ELBO and its IWAE bound share the fit, its samples and
its time). Every row records its wall time (seconds on this machine: noise on a shared one). The budgets
of the default and the fast setting are :data:`SETTINGS`; seeds are fixed (``seed``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from zoo.checks import check_choice
from zoo.metrics import class_coverage, frechet_distance, mmd, train_classifier
from zoo.units import dequantize, dequantized_log_prob, score
from zoo.datasets import load
from zoo.datasets.dataset import Dataset
from zoo.infer import SVI, Adversarial, Exact
from zoo.infer import fit as fit_model
from zoo.models import (GAN, VAE, Autoregressive, Diffusion, FactorAnalysis, Flow, GaussianMixture, Mixture,
                        NaiveBayes)

__all__ = ["leaderboard", "SETTINGS", "COLUMNS"]

#: Budgets: points of each toy set (train, test), digits used for training (all of the split's
#: training part by default), epochs of minibatch SVI, GAN steps, the digit classifier's epochs,
#: diffusion steps, optimizer steps of the point fits (mixtures, factor analysis), flow layers, the
#: hidden width of every network, the importance samples of the VAE's and the diffusion model's
#: bounds, and the factors of factor analysis.
SETTINGS: dict[str, dict[str, int]] = {
    "default": {"toy_train": 2000, "toy_test": 1000, "digit_train": 1437, "epochs": 60, "digit_epochs": 60,
                "gan_steps": 3000, "classifier_epochs": 30, "diffusion_steps": 20, "mixture_steps": 300,
                "flow_layers": 4, "width": 128, "particles": 100, "factors": 10},
    # the notebook's setting (09_one_table.ipynb): a few minutes, numbers between the two
    "medium": {"toy_train": 1000, "toy_test": 500, "digit_train": 1437, "epochs": 15, "digit_epochs": 10,
               "gan_steps": 1000, "classifier_epochs": 10, "diffusion_steps": 10, "mixture_steps": 100,
               "flow_layers": 2, "width": 64, "particles": 50, "factors": 10},
    "fast": {"toy_train": 100, "toy_test": 50, "digit_train": 100, "epochs": 1, "digit_epochs": 1, "gan_steps": 5,
             "classifier_epochs": 1, "diffusion_steps": 2, "mixture_steps": 3, "flow_layers": 1, "width": 8, "particles": 4, "factors": 2},
}

COLUMNS = ["data", "model", "log_likelihood", "standard_error", "bits_per_dim", "kind", "mmd2", "frechet",
           "class_coverage", "seconds"]

_DIGIT_LEVELS = 17
_DIGITS = "digits (17 levels)"


def _dequantized_to_unit(samples: torch.Tensor) -> torch.Tensor:
    """Samples of dequantized digits, y = (level + u) / 17, to level / 16 (the classifier's scale)."""
    return (samples * _DIGIT_LEVELS - 0.5) / (_DIGIT_LEVELS - 1)


def _timed(make: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = make()
    return value, time.perf_counter() - start


def _identity(samples: torch.Tensor) -> torch.Tensor:
    return samples


@dataclass(frozen=True)
class _Entry:
    """One fit of the table and the rows it gives.

    ``scorers`` are (row label, held-out log P(x_i) of the fit -> (N,) tensor, kind): one fit may
    give several rows (a VAE's ELBO and its importance-weighted bound); an empty tuple is the
    GAN's single "samples only" row, labelled ``label``.
    """

    label: str
    model: Any
    train: Dataset
    method: Any
    scorers: tuple[tuple[str, Callable[[Any], torch.Tensor], str], ...]
    to_unit: Callable[[torch.Tensor], torch.Tensor] = _identity


def _point_log_prob(fit: Any, data: Dataset) -> torch.Tensor:
    """log p(x_i | posterior mean) of a conjugate fit, the labels dropped: (N,). For Naive Bayes
    with categorical features this is the exact posterior predictive p(x_i | training data) (the
    class weights and every feature's probabilities are independent Dirichlets a posteriori, each
    entering p(x_i) once, so the predictive is the density at their means); for Gaussian features
    it is the plug-in density of the posterior mean."""
    point = {name: value.unsqueeze(0) for name, value in fit.point.items()}
    with torch.no_grad():
        return fit.model.log_likelihood(point, Dataset(x=data.x))[0]


def _rows(data_name: str, entries: list[_Entry], num_dims: int, num_samples: int, seed: int,
          sample_metrics: Callable[[torch.Tensor], dict[str, float]], fits: dict[tuple[str, str], Any] | None) -> list[dict[str, Any]]:
    """Fit each entry once; one row per scorer (or one "samples only" row), every row of a fit
    carrying the same sample metrics and fit time; each fit into ``fits`` under (data, row label)."""
    rows = []
    for entry in entries:
        fitted, seconds = _timed(lambda: fit_model(entry.model, entry.train, entry.method))
        metrics = sample_metrics(entry.to_unit(fitted.sample(num_samples, seed=seed)))
        scorers = entry.scorers or ((entry.label, None, "samples only"),)
        for label, held_out, kind in scorers:
            row: dict[str, Any] = {"data": data_name, "model": label, "kind": kind, **metrics, "seconds": seconds}
            if fits is not None:
                fits[data_name, label] = fitted
            if held_out is not None:
                summary = score(held_out(fitted), num_dims=num_dims, bound=kind == "bound")
                row.update(log_likelihood=summary.nats_per_datum, standard_error=summary.standard_error,
                           bits_per_dim=summary.bits_per_dim)
            rows.append(row)
    return rows


def _toy_rows(name: str, budget: dict[str, int], seed: int, fits: dict[tuple[str, str], Any] | None) -> list[dict[str, Any]]:
    """Fit every toy-density row on ``name``; Naive Bayes only where the toy has classes (the
    two moons)."""
    train = load(name, num_data=budget["toy_train"], seed=seed)
    test = load(name, num_data=budget["toy_test"], seed=seed + 1)
    epochs = budget["epochs"]
    batch = min(200, budget["toy_train"])
    particles = budget["particles"]
    hidden = [budget["width"]] * 2
    exact = lambda fit: fit.log_prob(test)  # noqa: E731
    entries = [
        _Entry("gaussian mixture (K=8)", GaussianMixture(8), train,
               SVI(guide="delta", num_steps=budget["mixture_steps"], seed=seed, progress=False),
               (("gaussian mixture (K=8)", exact, "exact"),)),
    ]
    if train.y is not None:
        entries.append(_Entry("naive bayes", NaiveBayes(int(train.y.max()) + 1), train, Exact(),
                              (("naive bayes (gaussian, summed over classes)", lambda fit: _point_log_prob(fit, test), "exact"),)))
    entries += [
        _Entry("flow", Flow(num_layers=budget["flow_layers"], hidden_sizes=hidden), train,
               SVI(batch_size=batch, num_epochs=epochs, learning_rate=0.005, seed=seed, progress=False),
               (("flow (spline coupling)", exact, "exact"),)),
        _Entry("vae", VAE(latent_dim=2, likelihood="gaussian", hidden_sizes=hidden), train,
               SVI(batch_size=batch, num_epochs=epochs, learning_rate=0.005, seed=seed, progress=False),
               (("vae (ELBO)", lambda fit: fit.log_prob(test, num_particles=particles, estimator="elbo", seed=seed), "bound"),
                (f"vae (IWAE, K={particles})", lambda fit: fit.log_prob(test, num_particles=particles, seed=seed), "bound"))),
        _Entry("diffusion", Diffusion(num_timesteps=budget["diffusion_steps"], hidden_sizes=hidden), train,
               SVI(batch_size=batch, num_epochs=epochs, learning_rate=0.002, seed=seed, progress=False),
               (("diffusion (ELBO)", exact, "bound"),
                (f"diffusion (IW bound, K={particles})",
                 lambda fit: fit.log_prob(test, num_particles=particles, estimator="iwae", seed=seed), "bound"))),
        _Entry("gan", GAN(latent_dim=2, hidden_sizes=hidden), train,
               Adversarial(num_steps=budget["gan_steps"], batch_size=batch, seed=seed, progress=False), ()),
    ]
    return _rows(name, entries, 2, len(test), seed,
                 lambda samples: {"mmd2": mmd(samples, test, num_permutations=20, seed=seed).mmd2}, fits)


def _digit_rows(budget: dict[str, int], seed: int, fits: dict[tuple[str, str], Any] | None) -> list[dict[str, Any]]:
    """Fit every digits row. Pixels are levels 0..16; the models of discrete pixels (MADE, Naive
    Bayes and a mixture with categorical pixels, the diffusion model's discretised decoder) score
    them directly, the density models (flow, Gaussian mixture, factor analysis, VAE) by uniform
    dequantization, a bound."""
    digits = load("digits")
    train, test = digits.split(test_fraction=0.2, seed=0)
    train = train.subset(list(range(min(len(train), budget["digit_train"]))))
    num_dims = train.x.shape[1]
    unlabelled = Dataset(x=train.x)
    dequantized = Dataset(x=dequantize(train, _DIGIT_LEVELS, seed=seed).x)
    scaled = Dataset(x=train.x / (_DIGIT_LEVELS - 1), y=train.y)
    classifier = train_classifier(scaled, num_epochs=budget["classifier_epochs"], seed=seed)
    held_out = Dataset(x=test.x / (_DIGIT_LEVELS - 1), y=test.y)
    particles = budget["particles"]
    svi = SVI(batch_size=min(100, len(train)), num_epochs=budget["digit_epochs"], learning_rate=0.002, seed=seed, progress=False)
    point = SVI(guide="delta", num_steps=budget["mixture_steps"], seed=seed, progress=False)
    exact = lambda fit: fit.log_prob(test)  # noqa: E731
    levels_to_unit = lambda samples: samples / (_DIGIT_LEVELS - 1)  # noqa: E731

    def dequantized_score(**options: Any) -> Callable[[Any], torch.Tensor]:
        return lambda fit: dequantized_log_prob(fit, test, _DIGIT_LEVELS, seed=seed, **options)

    categorical = ["categorical"] * num_dims
    entries = [
        _Entry("autoregressive", Autoregressive(num_categories=_DIGIT_LEVELS, hidden_sizes=[max(64, 4 * budget["width"])]),
               train, svi, (("autoregressive (MADE)", exact, "exact"),), levels_to_unit),
        _Entry("naive bayes", NaiveBayes(10, features="categorical", num_categories=[_DIGIT_LEVELS] * num_dims), train, Exact(),
               (("naive bayes (categorical pixels, summed over classes)", lambda fit: _point_log_prob(fit, test), "exact"),),
               levels_to_unit),
        _Entry("categorical mixture", Mixture(10, family="mixed", features=categorical, num_categories=[_DIGIT_LEVELS] * num_dims),
               unlabelled, point, (("mixture of categorical pixels (K=10)", exact, "exact"),), levels_to_unit),
        _Entry("gaussian mixture", GaussianMixture(10, covariance="diag"), dequantized, point,
               (("gaussian mixture (K=10, diagonal, dequantized)", dequantized_score(), "bound"),), _dequantized_to_unit),
        _Entry("factor analysis", FactorAnalysis(budget["factors"], noise="diagonal"), dequantized, point,
               ((f"factor analysis (L={budget['factors']}, dequantized)", dequantized_score(), "bound"),), _dequantized_to_unit),
        _Entry("flow", Flow(num_layers=budget["flow_layers"], hidden_sizes=[2 * budget["width"]]), dequantized, svi,
               (("flow (spline coupling, dequantized)", dequantized_score(), "bound"),), _dequantized_to_unit),
        _Entry("vae", VAE(latent_dim=16, likelihood="gaussian", hidden_sizes=[2 * budget["width"]]), dequantized, svi,
               (("vae (ELBO, dequantized)", dequantized_score(num_particles=particles, estimator="elbo"), "bound"),
                (f"vae (IWAE, K={particles}, dequantized)", dequantized_score(num_particles=particles), "bound")),
               _dequantized_to_unit),
        _Entry("diffusion", Diffusion(num_timesteps=budget["diffusion_steps"], hidden_sizes=[2 * budget["width"]] * 2,
                                      num_levels=_DIGIT_LEVELS), train, svi,
               (("diffusion (discretised ELBO)", exact, "bound"),
                (f"diffusion (discretised IW bound, K={particles})",
                 lambda fit: fit.log_prob(test, num_particles=particles, estimator="iwae", seed=seed), "bound")),
               levels_to_unit),
        _Entry("gan", GAN(latent_dim=16, hidden_sizes=[2 * budget["width"]]), scaled,
               Adversarial(num_steps=budget["gan_steps"], batch_size=min(100, len(train)), seed=seed, progress=False), ()),
    ]

    def sample_metrics(samples: torch.Tensor) -> dict[str, float]:
        samples = samples.clamp(0.0, 1.0)
        return {"frechet": frechet_distance(samples, held_out, classifier),
                "class_coverage": class_coverage(samples, classifier).coverage}

    return _rows(_DIGITS, entries, num_dims, len(test), seed, sample_metrics, fits)


def leaderboard(fast: bool = False, seed: int = 0, toys: tuple[str, ...] = ("two_moons", "ring"),
                digits: bool = True, setting: str | None = None, fits: dict[tuple[str, str], Any] | None = None) -> Any:
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
    setting : {"default", "medium", "fast"}, optional
        A budget of :data:`SETTINGS` by name (overrides ``fast``): "medium" is the notebook's.
    fits : dict, optional
        A dict that receives every fit, keyed by (``data``, ``model``) of its rows (e.g. to draw
        the toy densities' contours with :func:`zoo.plots.plot_density`).

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
    if setting is not None:
        check_choice(setting, "setting", tuple(SETTINGS))
    budget = SETTINGS[setting or ("fast" if fast else "default")]
    rows: list[dict[str, Any]] = []
    for name in toys:
        rows += _toy_rows(name, budget, seed, fits)
    if digits:
        rows += _digit_rows(budget, seed, fits)
    table = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in table:
            table[column] = math.nan
    return table[COLUMNS]
