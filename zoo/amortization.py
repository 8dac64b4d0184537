"""The amortization gap of a fitted VAE: the ELBO lost by sharing one encoder among all data.

One encoder serves every datum, so its q(z | x) is not the best Gaussian for each one. The gap
(Cremer, Li and Duvenaud, 2018) is the difference between the ELBO with a separate Gaussian per
datum, fitted with the decoder frozen, and the ELBO with the encoder, on the same data:

>>> import zoo
>>> train, test = zoo.datasets.load("digits", binarize=True).split(test_fraction=0.2)
>>> fit = zoo.fit(zoo.models.VAE(latent_dim=4, hidden_sizes=[64]), train, zoo.SVI(batch_size=100, num_epochs=2))
>>> result = zoo.amortization_gap(fit, test.subset(list(range(20))), num_steps=50, num_particles=10)
>>> sorted(result)     # result["gap"]: nats per image, >= 0 once the per-datum fit has converged
['encoder_elbo', 'fit', 'gap', 'optimal_elbo']

(Budgets this small keep the example to seconds; a real measurement trains the VAE for tens of
epochs and keeps the default ``num_steps=2000``.)

It runs inference (a fit of the per-datum guide), so it lives above the runner, beside
:mod:`zoo.comparison` and :mod:`zoo.sbc`, not in :mod:`zoo.models`.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from pyro.infer import Trace_ELBO

from zoo.checks import check_positive_int
from zoo.datasets.dataset import as_dataset
from zoo.infer import SVI
from zoo.infer import fit as fit_model
from zoo.infer.runtime import isolated
from zoo.models.vae import VAE, elbo

__all__ = ["amortization_gap"]


def amortization_gap(
    fit: Any,
    data: Any,
    num_steps: int = 2000,
    learning_rate: float = 0.02,
    num_particles: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """The ELBO lost by amortization: per-datum Gaussians against the encoder, same decoder.

    Fits a mean-field Normal q_i(z_i) for every datum (the VAE's ``guide="normal"``) with the
    fitted decoder frozen, then compares the ELBO per datum under those q_i with the encoder's
    ELBO. For small data sets: the per-datum guide has 2 x N x L parameters.

    Parameters
    ----------
    fit : zoo.Fit of a VAE (or the VAE)
        The unsupervised VAE: a SemiSupervisedVAE's guide has a classifier too, whose gap this
        per-datum Gaussian fit does not measure.
    data : Dataset, Tensor or array, shape (N, *event_shape)
    num_steps : int
        Adam steps of the per-datum fit.
    learning_rate : float
    num_particles : int
        Codes per datum in both ELBO estimates.
    seed : int
        Seed of the per-datum fit and of both estimates.

    Returns
    -------
    dict
        ``"encoder_elbo"`` and ``"optimal_elbo"`` (means per datum), ``"gap"`` (their difference,
        >= 0 up to optimisation and Monte Carlo error) and ``"fit"`` (the per-datum fit).
    """
    model = getattr(fit, "model", fit)
    if not isinstance(model, VAE):
        raise TypeError(
            f"amortization_gap takes a Fit of a VAE (or the VAE), got {type(model).__name__}; for a "
            "SemiSupervisedVAE, whose guide has a classifier too, a per-datum Gaussian fit does not "
            "measure the gap"
        )
    model._check_ready()
    check_positive_int(num_particles, "num_particles")
    dataset = as_dataset(data)
    frozen = copy.deepcopy(model)
    frozen.decoder.requires_grad_(False)
    frozen.encoder.requires_grad_(False)
    method = SVI(guide="normal", num_steps=num_steps, learning_rate=learning_rate, num_posterior_samples=1,
                 tolerance=0.0, seed=seed, progress=False)
    with warnings.catch_warnings():  # pyro.module notes that frozen weights are not trained: intended
        warnings.filterwarnings("ignore", message=".*was not registered in the param store.*")
        per_datum = fit_model(frozen, dataset, method)
        kwargs = per_datum.model.model_kwargs(dataset)
        with isolated(per_datum.param_state, seed=seed), torch.no_grad():
            estimator = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
            optimal = -estimator.loss(per_datum.model, per_datum.guide, **kwargs) / len(dataset)
    encoder = float(elbo(model, dataset, num_particles=num_particles, seed=seed).mean())
    return {"encoder_elbo": encoder, "optimal_elbo": float(optimal), "gap": float(optimal) - encoder, "fit": per_datum}
