"""The training model, derived once per fit from a model's global story and collapsed likelihood.

A model that states ``sample_globals()`` (the priors over its parameters) and
``log_likelihood(params, data)`` (log p(x_i | theta) per datum, discrete latents summed out)
is fitted through :class:`CollapsedModel`::

    params = model.sample_globals()                        # the sites a guide or NUTS sees
    with pyro.plate(data_plate, N, subsample_size=B) as i:
        pyro.factor("log_likelihood", log p(x_i | params))   # (B,), discrete latents summed out

This is the same density as the model's ``forward`` with its discrete sites enumerated (the
contract tests prove it, in value and gradient), but it needs neither TraceEnum_ELBO nor a trace
of one site per discrete latent: SVI runs Trace_ELBO on it, NUTS differentiates it directly.

A model without a collapsed likelihood (a VAE: its codes are continuous local latents) is fitted
on ``forward`` itself; :func:`training_model` hands back whichever applies.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from zoo.datasets.dataset import Dataset
from zoo.models.base import Model

__all__ = [
    "CollapsedModel", "collapsible", "training_model", "global_sites", "global_site_nodes", "on_training_arguments",
    "weighted", "fitted_globals", "UserPriors", "sites_named",
]


def weighted(log_likelihood: torch.Tensor, data: Dataset) -> torch.Tensor:
    """Each datum's log-likelihood times its weight (``Dataset(weights=...)``): what every fit of
    a collapsed likelihood sums (the training model's factor, NUTS's potential), so that an
    integer weight counts a datum that many times, for MAP, SVI and NUTS alike.

    Parameters
    ----------
    log_likelihood : Tensor, shape (..., num_data)
    data : Dataset
        The rows scored, with their ``weights`` (None: each 1).

    Returns
    -------
    Tensor, shape (..., num_data)
    """
    return log_likelihood if data.weights is None else log_likelihood * data.weights.to(log_likelihood.dtype)


def collapsible(model: Model) -> bool:
    """Whether ``model`` states both its global story and its collapsed likelihood."""
    cls = type(model)
    return cls.sample_globals is not Model.sample_globals and cls.log_likelihood is not Model.log_likelihood


def global_site_nodes(model: Model) -> dict[str, dict[str, Any]]:
    """The trace node of every global latent sample site of one run of the model's own global
    story (``sample_globals``, no user prior, no fixed value): its value and distribution."""
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(model.sample_globals).get_trace()
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }


def sites_named(model: Model, kind: str, given: Any, argument: str, what: str) -> dict[str, dict[str, Any]]:
    """The global sites' trace nodes (:func:`global_site_nodes`), once ``given``, the argument
    ``argument`` of ``zoo.fit`` (``fixed``, ``priors``), is found to be a dict of ``what`` keyed
    by names of them, for a model with a collapsed likelihood fitted by the method ``kind``.

    Raises
    ------
    TypeError
        For ``given`` not a dict.
    ValueError
        For a model or method that does not run the global story, or a name that is not a
        global site (the message lists them).
    """
    if not isinstance(given, dict):
        raise TypeError(f"{argument} must be a dict of site name -> {what}, got {type(given).__name__}")
    if not collapsible(model) or kind not in ("svi", "nuts"):
        raise ValueError(
            f"{argument} applies to the global sites of a collapsed likelihood fitted by zoo.SVI or zoo.NUTS; "
            f"{type(model).__name__} fitted by {kind!r} does not take it"
        )
    sites = global_site_nodes(model)
    for name in given:
        if name not in sites:
            raise ValueError(f"{argument} names {name!r}, which is not a global site of {type(model).__name__}; its sites: {', '.join(sites)}")
    return sites


def global_sites(model: Model) -> dict[str, tuple[tuple[int, ...], int]]:
    """Shape and event dims of every global sample site, from one run of ``sample_globals``.

    Returns
    -------
    dict of str to (tuple of int, int)
        Site name -> (value shape with no draw dims, number of event dims).
    """
    return {name: (tuple(site["value"].shape), site["fn"].event_dim) for name, site in global_site_nodes(model).items()}


class CollapsedModel:
    """The global sites of ``model`` and one ``pyro.factor`` of its collapsed likelihood.

    Called as ``collapsed(data=Dataset, batch_size=None)``: the keyword arguments SVI, NUTS and
    the guides pass. The data plate is ``model.data_plate`` (so a runner that picks each step's
    rows itself, by replaying that plate, is obeyed), at dim -1: no other plate surrounds the
    factor.

    Parameters
    ----------
    model : zoo.models.Model
        A prepared model with ``sample_globals`` and ``log_likelihood``.
    """

    def __init__(self, model: Model) -> None:
        if not collapsible(model):
            raise TypeError(f"{type(model).__name__} states no collapsed likelihood (sample_globals and log_likelihood)")
        self.model = model
        self.sites = global_sites(model)

    def __call__(self, data: Dataset, batch_size: int | None = None) -> None:
        """The global sites (:func:`fitted_globals`: conditioned on the model's ``fixed`` values,
        its user priors in place), and the factor of the rows' weighted log-likelihood
        (:func:`weighted`)."""
        params = fitted_globals(self.model)
        with pyro.plate(self.model.data_plate, len(data), subsample_size=batch_size, dim=-1) as index:
            rows = data if len(index) == len(data) else data.rows(index)
            pyro.factor("log_likelihood", weighted(self.log_likelihood(params, rows), rows))

    def log_likelihood(self, params: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """The model's collapsed likelihood at ``params`` as Pyro sampled them.

        Under a plate of vectorised ELBO particles (dim ``-max_plate_nesting - 1``) every site
        carries the particle dim P left of its plate dims, its batch shape padded with ones up
        to ``max_plate_nesting`` (the Dirichlet weights of a mixture become (P, 1, K)). The
        draw dims of a site are what stands left of its event dims and those padded plate
        dims; they are flattened to the one leading dim S the model's likelihood takes, and the
        result (S, n) is shaped back so that it broadcasts against the particle plate and the
        data plate: (*draw_dims, 1, ..., 1, n) with max_plate_nesting - 1 ones.

        Returns
        -------
        Tensor, shape (n,) or (*draw_dims, 1, ..., 1, n)
        """
        nesting = self.model.max_plate_nesting
        draw_shape: tuple[int, ...] = ()
        flat: dict[str, torch.Tensor] = {}
        for name, (shape, event_dim) in self.sites.items():
            value = params[name]
            draw_dims = max(0, value.dim() - event_dim - nesting)
            if draw_dims > len(draw_shape):
                draw_shape = tuple(value.shape[:draw_dims])
            flat[name] = value.reshape((-1,) + shape)  # (S, *shape); S = 1 with no draw dims
        for name in self.model.fixed:  # a fixed value has no draw dims: the same for every draw
            flat[name] = flat[name].expand((math.prod(draw_shape),) + flat[name].shape[1:])
        log_likelihood = self.model.log_likelihood(flat, data)  # (S, n)
        if not draw_shape:
            return log_likelihood[0]
        if log_likelihood.shape[0] != math.prod(draw_shape):
            raise ValueError(
                f"{type(self.model).__name__}.log_likelihood returned {log_likelihood.shape[0]} rows for "
                f"{math.prod(draw_shape)} draws"
            )
        return log_likelihood.reshape(draw_shape + (1,) * (nesting - 1) + log_likelihood.shape[-1:])


class UserPriors(Messenger):
    """Replace the distribution of each named sample site by the given one
    (``zoo.fit(..., priors=...)``, checked by :func:`zoo.infer.priors.check_priors`).

    Applied around a model's global story: the plates inside the story have already broadcast
    the site's own distribution when this handler sees it (an outer handler sees the site
    later), and the distribution put in its place has the site's full batch shape, so Pyro's
    shape checks and any outer plate (ELBO particles, a plate of draws) treat it as they
    treated the model's own.

    Parameters
    ----------
    priors : dict of str to Distribution
        Site name -> distribution of the site's batch and event shape.
    """

    def __init__(self, priors: dict[str, Any]) -> None:
        super().__init__()
        self.priors = priors

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["name"] in self.priors and not site_is_subsample(msg):
            msg["fn"] = self.priors[msg["name"]]


def fitted_globals(model: Model) -> dict[str, torch.Tensor]:
    """``model.sample_globals()`` as a fit sees it: its ``fixed`` sites observed at their values
    (not sampled), its user ``priors`` in place of its own (:class:`UserPriors`).

    Every fit that runs the global story runs it through here: SVI's training model, NUTS's
    potential, the log prior of a variational fit's importance weights.
    """
    with contextlib.ExitStack() as handlers:
        if model.fixed:
            handlers.enter_context(poutine.condition(data=model.fixed))
        if model.priors:
            handlers.enter_context(UserPriors(model.priors))
        return model.sample_globals()


def training_model(model: Model, data: Dataset, batch_size: int | None = None) -> tuple[Any, dict[str, Any]]:
    """What a fit trains, and its keyword arguments.

    Returns
    -------
    (callable, dict)
        ``(CollapsedModel(model), {"data": data, "batch_size": batch_size})`` for a model with a
        collapsed likelihood, else ``(model, model.model_kwargs(data, batch_size=batch_size))``.
    """
    if collapsible(model):
        return CollapsedModel(model), {"data": data, "batch_size": batch_size}
    return model, model.model_kwargs(data, batch_size=batch_size)


def on_training_arguments(guide: Callable[..., Any], model: Model) -> Callable[..., Any]:
    """A guide written for ``forward``'s arguments (a user's callable), called with the
    collapsed training model's: it is handed ``model.model_kwargs(data, batch_size=...)``."""

    def adapted(data: Dataset, batch_size: int | None = None) -> Any:
        return guide(**model.model_kwargs(data, batch_size=batch_size))

    return adapted
