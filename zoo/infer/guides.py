"""Guide names -> guides.

A guide is built for one model, around the model with its enumerated sites hidden, so an
autoguide only ever sees the continuous latents and enumeration sums out the discrete ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from pyro.distributions.transforms import AffineTransform, ComposeTransform, affine_autoregressive
from pyro.infer import autoguide
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from pyro.nn import PyroParam

from zoo.checks import check_positive_float, check_positive_int
from zoo.models.base import Model

__all__ = [
    "GUIDES",
    "DETERMINISTIC_GUIDES",
    "POINT_MASS_GUIDES",
    "make_guide",
    "guide_names",
    "hide_enumerated",
    "laplace_approximation",
    "AutoIAF",
    "INIT_SCALE",
]

#: Initial standard deviation (unconstrained space) of every Gaussian and flow guide: small, so
#: that the first steps explore near the model's data-driven initial values.
INIT_SCALE = 0.05


class AutoIAF(autoguide.AutoContinuous):
    """An inverse autoregressive flow that starts where the Gaussian guides start.

    The latent vector z (all continuous latents, unconstrained, concatenated: shape (P,)) is

        z = loc + scale * f_K(... f_1(eps)),    eps ~ Normal(0, I_P),

    with ``f_k`` affine autoregressive transforms (Kingma et al. 2016), each driven by a masked
    network (MADE) with hidden layers of sizes ``hidden_dims``, and ``loc``, ``scale`` (P,)
    learned.

    Why not Pyro's ``AutoIAFNormal``: it ignores ``init_loc_fn`` and puts its flow directly on
    a standard Normal, so it starts at the origin of the unconstrained space with unit scale and
    a random map. A posterior far from there (a mixture's locations near 70 minutes on Old
    Faithful) is out of reach of a few hundred Adam steps, and the fit fails. Here the flow
    works in standardised coordinates: ``loc`` starts at the model's data-driven initial values
    (as the Gaussian guides' locations do), ``scale`` at ``init_scale``, and each flow's output
    layer starts at zero, so each ``f_k`` starts as the identity and the guide as
    Normal(loc, init_scale**2 I), exactly the start of ``AutoNormal``. The flows then only have
    to learn the posterior's shape (correlations, skew), on the scale of one unit.

    Parameters
    ----------
    model : callable
        The model (enumerated sites hidden).
    init_loc_fn : callable
        Per-site initialisation of ``loc`` (constrained values).
    init_scale : float
        Initial ``scale`` of every coordinate.
    num_transforms : int
        K, the number of autoregressive transforms (their orders are random permutations).
    hidden_dims : list of int, optional
        Hidden layer sizes of each transform's network; default [3 P + 1] (Pyro's).

    Notes
    -----
    Flows are less forgiving of large steps than the Gaussian guides: on notebook 06's iris
    Naive Bayes this one trains at Adam's 0.01 but diverges after about 250 steps at 0.02.
    """

    def __init__(
        self,
        model: Callable[..., Any],
        init_loc_fn: Callable[..., Any] = init_to_median,
        init_scale: float = INIT_SCALE,
        num_transforms: int = 2,
        hidden_dims: list[int] | None = None,
    ) -> None:
        self._init_scale = check_positive_float(init_scale, "init_scale")
        check_positive_int(num_transforms, "num_transforms")
        self._num_transforms = num_transforms
        self._hidden_dims = hidden_dims
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        init_loc = self._init_loc()  # (P,), unconstrained
        self.loc = torch.nn.Parameter(init_loc)
        self.scale = PyroParam(torch.full_like(init_loc, self._init_scale), constraints.softplus_positive)
        flows = []
        for _ in range(self._num_transforms):
            flow = affine_autoregressive(self.latent_dim, hidden_dims=self._hidden_dims)
            output = flow.arn.layers[-1]
            with torch.no_grad():  # output (mean 0, log scale 0): the flow starts as the identity
                output.weight.zero_()
                output.bias.zero_()
            flows.append(flow.to(init_loc.device))
        self.flows = torch.nn.ModuleList(flows)

    def get_base_dist(self) -> dist.Distribution:
        """Standard Normal on the P latent coordinates, event shape (P,)."""
        zeros = torch.zeros_like(self.loc)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def get_transform(self, *args: Any, **kwargs: Any) -> ComposeTransform:
        """The flows, then the elementwise affine map to the posterior's location and scale."""
        # cache_size=1: the ELBO scores the draw it just made, and each transform's inverse must
        # return the cached input object so that the flows find their own caches. Without it the
        # affine inverse makes a new tensor and every flow is inverted numerically, coordinate by
        # coordinate: slow, and unstable enough to send the loss to -1e16 within 300 steps.
        affine = AffineTransform(self.loc, self.scale, event_dim=1, cache_size=1)
        return ComposeTransform([*self.flows, affine])

    def get_posterior(self, *args: Any, **kwargs: Any) -> dist.Distribution:
        return dist.TransformedDistribution(self.get_base_dist(), self.get_transform())


#: Guide name -> (autoguide class, what it is).
GUIDES: dict[str, tuple[type, str]] = {
    "delta": (autoguide.AutoDelta, "point mass at the posterior mode (MAP)"),
    "normal": (autoguide.AutoNormal, "mean-field Normal in unconstrained space"),
    "mvn": (autoguide.AutoMultivariateNormal, "full-rank multivariate Normal"),
    "lowrank": (autoguide.AutoLowRankMultivariateNormal, "low-rank plus diagonal multivariate Normal"),
    "laplace": (autoguide.AutoLaplaceApproximation, "MAP, then a Normal with the inverse Hessian as covariance"),
    "iaf": (AutoIAF, "inverse autoregressive flow (a normalising flow) started at the initial values"),
}

#: Guides whose ELBO has no Monte Carlo noise (a point mass): L-BFGS can optimise them.
DETERMINISTIC_GUIDES = ("delta", "laplace")

#: Guides whose posterior is one point: a fit by one holds one draw, since more would be copies
#: of it ("laplace" is fitted as a point mass too, but then becomes a Gaussian with draws).
POINT_MASS_GUIDES = ("delta",)


def guide_names(model: Model | None = None) -> list[str]:
    """The guide names a model can take: the generic ones and those it offers itself."""
    names = list(GUIDES)
    if model is not None:
        names = [name for name in names if name not in model.unsupported_guides]
        names += [name for name in model.guides() if name not in names]
    return names


def hide_enumerated(model: Model) -> Callable[..., Any]:
    """The model with its enumerated (and closed-form integrated) sites hidden from a guide's
    prototype trace: no guide sees them."""
    hidden = list(model.enumerated_sites) + list(model.integrated_sites)
    if not hidden:
        return model
    return poutine.block(model, hide=hidden)


def make_guide(
    model: Model,
    guide: str | Callable[..., Any],
    initial_values: dict[str, torch.Tensor] | None = None,
    trained: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """Build the guide named ``guide`` for ``model`` (or return a given guide callable).

    Parameters
    ----------
    model : zoo.models.Model
    guide : str or callable
        A name from :func:`guide_names`, or a guide callable taking the model's arguments.
    initial_values : dict, optional
        Starting values of latent sites (constrained), e.g. the model's data-driven initialisation.
    trained : callable, optional
        What the guide will be trained with (the collapsed training model, whose sites are the
        model's global ones); an autoguide is built around it. Default: ``model`` with its
        enumerated sites hidden.

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
        why = getattr(model, "unsupported_guides_reason", "")
        reason = f" ({why})" if why and guide in model.unsupported_guides else ""
        if guide in GUIDES:  # a guide zoo has, which this model refuses
            raise ValueError(
                f"guide {guide!r} does not apply to {type(model).__name__}{reason}; it takes: {', '.join(valid)}"
            )
        raise ValueError(
            f"unknown guide {guide!r} for {type(model).__name__}; valid guides: {', '.join(valid)}{reason}"
        )
    offered = model.guides()
    if guide in offered:
        return offered[guide]
    guide_class, _ = GUIDES[guide]
    init_loc_fn = init_to_value(values=dict(initial_values or {}), fallback=init_to_median)
    options: dict[str, Any] = {"init_loc_fn": init_loc_fn}
    if guide in ("normal", "mvn", "lowrank", "iaf"):
        options["init_scale"] = INIT_SCALE
    return guide_class(trained if trained is not None else hide_enumerated(model), **options)


def laplace_approximation(
    model: Callable[..., Any], guide: autoguide.AutoLaplaceApproximation, elbo: Any, kwargs: dict[str, Any]
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
    # The autoguide's own set-up, which Pyro otherwise runs on its first call: a call would
    # also draw a sample and create the loc / scale parameters that are replaced just below.
    # No public method sets up an autoguide without calling it, hence the private one.
    gaussian._setup_prototype(**kwargs)
    del gaussian.loc
    del gaussian.scale
    del gaussian.scale_tril
    gaussian.register_buffer("loc", guide.loc.detach().clone())
    gaussian.register_buffer("scale", scale)
    gaussian.register_buffer("scale_tril", scale_tril)
    return gaussian


def _loss_at(model: Callable[..., Any], guide: Any, elbo: Any, kwargs: dict[str, Any], loc: torch.Tensor) -> torch.Tensor:
    """The ELBO loss of a point-mass guide with its location replaced by ``loc``."""
    original = guide.loc
    try:
        del guide.loc
        guide.loc = loc
        return elbo.differentiable_loss(model, guide, **kwargs)
    finally:
        del guide.loc
        guide.loc = original
