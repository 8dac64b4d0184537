"""Guide names -> guides.

A guide is built for one model, around the model with its enumerated sites hidden, so an
autoguide only ever sees the continuous latents and enumeration sums out the discrete ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer import autoguide
from pyro.infer.autoguide.initialization import init_to_median, init_to_value

from zoo.models.base import Model

__all__ = [
    "GUIDES",
    "DETERMINISTIC_GUIDES",
    "make_guide",
    "guide_names",
    "hide_enumerated",
    "laplace_approximation",
]

#: Guide name -> (autoguide class, what it is).
GUIDES: dict[str, tuple[type, str]] = {
    "delta": (autoguide.AutoDelta, "point mass at the posterior mode (MAP)"),
    "normal": (autoguide.AutoNormal, "mean-field Normal in unconstrained space"),
    "mvn": (autoguide.AutoMultivariateNormal, "full-rank multivariate Normal"),
    "lowrank": (autoguide.AutoLowRankMultivariateNormal, "low-rank plus diagonal multivariate Normal"),
    "laplace": (autoguide.AutoLaplaceApproximation, "MAP, then a Normal with the inverse Hessian as covariance"),
    "iaf": (autoguide.AutoIAFNormal, "inverse autoregressive flow (a normalising flow)"),
}

#: Guides whose ELBO has no Monte Carlo noise (a point mass): L-BFGS can optimise them.
DETERMINISTIC_GUIDES = ("delta", "laplace")


def guide_names(model: Model | None = None) -> list[str]:
    """The guide names a model can take: the generic ones and those it offers itself."""
    names = list(GUIDES)
    if model is not None:
        names = [name for name in names if name not in model.unsupported_guides]
        names += [name for name in model.guides() if name not in names]
    return names


def hide_enumerated(model: Model) -> Callable[..., Any]:
    """The model with its enumerated sites hidden from a guide's prototype trace."""
    if not model.enumerated_sites:
        return model
    return poutine.block(model, hide=list(model.enumerated_sites))


def make_guide(
    model: Model,
    guide: str | Callable[..., Any],
    initial_values: dict[str, torch.Tensor] | None = None,
) -> Callable[..., Any]:
    """Build the guide named ``guide`` for ``model`` (or return a given guide callable).

    Parameters
    ----------
    model : zoo.models.Model
    guide : str or callable
        A name from :func:`guide_names`, or a guide callable taking the model's arguments.
    initial_values : dict, optional
        Starting values of latent sites (constrained), e.g. the model's data-driven initialisation.

    Raises
    ------
    ValueError
        For an unknown name, or one the model does not support; the message lists the valid ones.
    """
    if callable(guide) and not isinstance(guide, str):
        return guide
    if not isinstance(guide, str):
        raise TypeError(f"guide must be a name or a callable, got {type(guide).__name__}")
    valid = guide_names(model)
    if guide not in valid:
        raise ValueError(
            f"unknown guide {guide!r} for {type(model).__name__}; valid guides: {', '.join(valid)}"
        )
    offered = model.guides()
    if guide in offered:
        return offered[guide]
    guide_class, _ = GUIDES[guide]
    init_loc_fn = init_to_value(values=dict(initial_values or {}), fallback=init_to_median)
    options: dict[str, Any] = {"init_loc_fn": init_loc_fn}
    if guide in ("normal", "mvn", "lowrank"):
        options["init_scale"] = 0.05
    if guide == "iaf":
        # AutoIAFNormal ignores init_loc_fn: a flow starts near a standard Normal.
        options = {"num_transforms": 2}
    return guide_class(hide_enumerated(model), **options)


def laplace_approximation(
    model: Model, guide: autoguide.AutoLaplaceApproximation, elbo: Any, kwargs: dict[str, Any]
) -> autoguide.AutoMultivariateNormal:
    """A Normal at the MAP with the inverse Hessian of the negative log joint as covariance.

    Pyro's own ``AutoLaplaceApproximation.laplace_approximation`` differentiates a trace in
    which enumerated sites are *sampled* from the prior, so its Hessian is of a random function
    and often not even positive definite for a mixture. Here the Hessian is of the loss with
    the enumerated sites summed out (the ELBO the MAP was fitted with, exact for a point mass).
    """
    loss = elbo.differentiable_loss(model, guide, **kwargs)
    hessian = torch.autograd.functional.hessian(
        lambda loc: _loss_at(model, guide, elbo, kwargs, loc), guide.loc.detach()
    )
    del loss
    with torch.no_grad():
        hessian = 0.5 * (hessian + hessian.T)
        try:
            covariance = torch.linalg.inv(hessian)
            scale = covariance.diagonal().sqrt()
            correlation = covariance / scale[:, None] / scale[None, :]
            scale_tril = torch.linalg.cholesky(correlation)
        except RuntimeError as error:
            raise ValueError(
                "the Laplace approximation failed: the Hessian of the negative log joint at the "
                "MAP is not positive definite (the fit may not have reached a mode; raise "
                f"num_steps or lower tolerance). {error}"
            ) from None
    gaussian = autoguide.AutoMultivariateNormal(guide.model)
    gaussian._setup_prototype(**kwargs)
    del gaussian.loc
    del gaussian.scale
    del gaussian.scale_tril
    gaussian.register_buffer("loc", guide.loc.detach().clone())
    gaussian.register_buffer("scale", scale)
    gaussian.register_buffer("scale_tril", scale_tril)
    return gaussian


def _loss_at(model: Model, guide: Any, elbo: Any, kwargs: dict[str, Any], loc: torch.Tensor) -> torch.Tensor:
    """The ELBO loss of a point-mass guide with its location replaced by ``loc``."""
    original = guide.loc
    try:
        del guide.loc
        guide.loc = loc
        return elbo.differentiable_loss(model, guide, **kwargs)
    finally:
        del guide.loc
        guide.loc = original
