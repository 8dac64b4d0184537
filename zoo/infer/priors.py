"""User priors per global site (``zoo.fit(..., priors=...)``): checked once, applied by one handler.

A model states its priors in its global story (``sample_globals``). A user who knows better (a
location known to within a few units, a scale on another order of magnitude, a sticky transition
matrix) hands ``zoo.fit`` a distribution per site instead::

    zoo.fit(model, data, "nuts", priors={"locs": dist.Normal(0.0, 3.0)})

:class:`zoo.infer.collapse.UserPriors` is a Pyro messenger that replaces the distribution (``msg["fn"]``) of the
named sites while the global story runs; :func:`zoo.infer.collapse.fitted_globals` runs the story
under it, so the training model that SVI fits (every guide, MAP included) and the potential NUTS
samples (:mod:`zoo.infer.potential`, which reads the priors off that story once) both use the
user's distributions, and nothing else needs to know. Methods that do not run the global story
cannot honour a user prior and refuse one: ``zoo.Exact`` computes the posterior in closed form
from the model's own conjugate priors, and adversarial training has no prior at all.

:func:`check_priors` turns what the user gives into one distribution per site of exactly the
site's batch shape (its plates) and event shape, and refuses, before any work, what cannot be:
an unknown site, something that is not a Pyro distribution, a shape that does not broadcast to
the site's, a support other than the site's (the model's likelihood is defined on the site's
support, and NUTS maps the site to unconstrained space by that support's bijection), a site that
is also ``fixed``.
"""

from __future__ import annotations

import math
from typing import Any

import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from zoo.infer.collapse import global_site_nodes, sites_named
from zoo.models.base import Model

__all__ = ["check_priors", "describe", "label_symmetric", "same_support"]

#: Where each site's own prior is computed some other way than by running the global story.
CLOSED_FORM_REASONS = {
    "exact": "zoo.Exact computes the posterior in closed form from the model's own conjugate priors, "
    "so it cannot take another prior; use zoo.SVI or zoo.NUTS",
    "adversarial": "adversarial training fits networks with no prior over them; there is no prior to replace",
}


def _bounds(constraint: Any) -> tuple[Any, ...]:
    """What a support is, up to its boundary: ("lower", 0.0) for both ``positive`` and
    ``nonnegative`` (a Gamma's support is the closed half-line in torch, a LogNormal's the open
    one: the same set but for a point of probability zero), the interval's ends for open,
    half-open and closed intervals alike, and the constraint's type and fields otherwise."""
    while isinstance(constraint, constraints.independent):
        constraint = constraint.base_constraint
    fields = {key: float(value) if isinstance(value, (int, float, torch.Tensor)) and torch.as_tensor(value).numel() == 1 else value
              for key, value in vars(constraint).items()}
    if isinstance(constraint, (constraints.greater_than, constraints.greater_than_eq)):
        return ("lower", fields["lower_bound"])
    if isinstance(constraint, constraints.less_than):
        return ("upper", fields["upper_bound"])
    if isinstance(constraint, (constraints.interval, constraints.half_open_interval)):
        return ("interval", fields["lower_bound"], fields["upper_bound"])
    return (type(constraint).__name__, tuple(sorted((key, repr(value)) for key, value in fields.items())))


def same_support(first: Any, second: Any) -> bool:
    """Whether two supports (torch constraints) are the same set, up to a boundary of probability
    zero, and the same per-coordinate constraint however many dims are reinterpreted as event
    dims (the caller matches the event shapes)."""
    return _bounds(first) == _bounds(second)


def _support_name(constraint: Any) -> str:
    bounds = _bounds(constraint)
    if bounds[0] == "lower":
        return "the positive numbers" if bounds[1] == 0 else f"the numbers greater than {bounds[1]}"
    if bounds[0] == "interval":
        return f"the interval ({bounds[1]}, {bounds[2]})"
    return {"_Real": "the real numbers", "_Simplex": "the simplex", "_CorrCholesky": "Cholesky factors of correlation matrices"}.get(
        bounds[0], str(constraint)
    )


#: A distribution on each support, named in the error that refuses another support.
EXAMPLES = {
    "the real numbers": "Normal, StudentT",
    "the positive numbers": "LogNormal, Gamma, HalfNormal",
    "the interval (0.0, 1.0)": "Beta",
    "the simplex": "Dirichlet",
    "Cholesky factors of correlation matrices": "LKJCholesky",
}


def _fitted_to_site(name: str, given: Any, site: dict[str, Any]) -> Any:
    """``given`` as a distribution of the site's batch shape and event shape, or ValueError.

    A distribution with fewer event dims than the site is made independent over the rest
    (``to_event``), one with more is split back where they are a reinterpreted batch
    (``Normal(0, 3).expand([K, D]).to_event(2)`` on a site of batch (K,) and event (D,): the
    same density, its K factors under the site's plate); batch dims broadcast to the site's."""
    batch_shape, event_shape = tuple(site["fn"].batch_shape), tuple(site["fn"].event_shape)
    shape = batch_shape + event_shape
    expected = (
        f"the site's shape is {shape} (batch {batch_shape} over its plates, event {event_shape}): give a "
        f"distribution of that shape or one that broadcasts to it (a scalar Normal(0.0, 3.0) is one prior per number)"
    )
    prior = given
    excess = len(prior.event_shape) - len(event_shape)
    while excess > 0 and isinstance(prior, torch.distributions.Independent):
        removed = min(excess, prior.reinterpreted_batch_ndims)
        kept = prior.reinterpreted_batch_ndims - removed
        prior = dist.Independent(prior.base_dist, kept) if kept else prior.base_dist
        excess -= removed
    given_shape = tuple(prior.batch_shape) + tuple(prior.event_shape)
    if excess > 0:
        raise ValueError(
            f"priors[{name!r}] has event shape {tuple(given.event_shape)}, a joint density across the site's plates, "
            f"which a site under plates cannot take; {expected}"
        )
    prior_event = tuple(prior.event_shape)
    if prior_event != shape[len(shape) - len(prior_event):]:
        raise ValueError(f"priors[{name!r}] has shape {given_shape} (event {prior_event}); {expected}")
    target = shape[: len(shape) - len(prior_event)]
    batch = tuple(prior.batch_shape)
    # by hand: torch.broadcast_shapes imports sympy on first use (seconds)
    broadcasts = len(batch) <= len(target) and all(size in (1, wanted) for size, wanted in zip(reversed(batch), reversed(target)))
    if not broadcasts:
        raise ValueError(f"priors[{name!r}] has shape {given_shape} (batch {batch}); {expected}")
    try:
        prior = prior.expand(target)
    except (NotImplementedError, RuntimeError, ValueError) as error:
        raise ValueError(f"priors[{name!r}] ({type(prior).__name__}) cannot be broadcast to the site's shape {shape}: {error}") from None
    if len(prior_event) < len(event_shape):
        prior = prior.to_event(len(event_shape) - len(prior_event))
    return prior


def check_priors(model: Model, kind: str, priors: Any, fixed: Any = None) -> dict[str, Any]:
    """``priors`` checked against ``model``'s global sites: {site: distribution of the site's
    batch and event shape, on its support}.

    Parameters
    ----------
    model : zoo.models.Model
        The prepared model (its empirical priors resolved).
    kind : str
        The method's kind ("svi", "nuts", ...).
    priors : dict of str to pyro.distributions.Distribution
    fixed : dict, optional
        The sites held at given values (``zoo.fit(..., fixed=...)``): a fixed site has no prior.

    Raises
    ------
    TypeError
        For ``priors`` not a dict, or a value not a Pyro distribution.
    ValueError
        For a method or model that cannot take a prior, an unknown site, a site also fixed, a
        shape that does not broadcast to the site's, or a support other than the site's.
    """
    if kind in CLOSED_FORM_REASONS:
        raise ValueError(f"priors: {CLOSED_FORM_REASONS[kind]}")
    sites = sites_named(model, kind, priors, "priors", "pyro.distributions distribution")
    checked = {}
    for name, given in priors.items():
        if fixed and name in fixed:
            raise ValueError(f"priors[{name!r}]: the site is also in fixed, which holds it at a value (a known parameter has no prior)")
        if not isinstance(given, torch.distributions.Distribution):
            raise TypeError(f"priors[{name!r}] must be a pyro.distributions distribution (e.g. dist.Normal(0.0, 3.0)), got {type(given).__name__}")
        if not isinstance(given, TorchDistributionMixin):
            raise TypeError(
                f"priors[{name!r}] is a torch.distributions {type(given).__name__}; Pyro's sample sites need "
                f"pyro.distributions.{type(given).__name__} (the same distribution, with Pyro's methods)"
            )
        site = sites[name]
        prior = _fitted_to_site(name, given, site)
        if not same_support(prior.support, site["fn"].support):
            wanted = _support_name(site["fn"].support)
            raise ValueError(
                f"priors[{name!r}] has support {_support_name(prior.support)}, but the site's support is {wanted} "
                f"(the model's likelihood is defined there); use a distribution on {wanted}"
                + (f" (e.g. {EXAMPLES[wanted]})" if wanted in EXAMPLES else "")
            )
        with torch.no_grad():
            draw = prior.sample()
        if draw.dtype != site["value"].dtype:
            raise ValueError(f"priors[{name!r}] gives {draw.dtype} values; the site's are {site['value'].dtype}: build it from such tensors")
        checked[name] = prior
    return checked


def label_symmetric(model: Model, priors: dict[str, Any], num_draws: int = 16) -> bool:
    """Whether the user priors are unchanged by the model's relabelling, so that relabelling the
    posterior draws (undoing label switching) stays valid.

    The likelihood of a mixture or an HMM is the same under any permutation of the labels, and
    so is the model's own prior; :meth:`~zoo.models.base.Model.relabel` orders the draws by
    that symmetry. A user prior need not share it (a prior that puts component 0 near -5 and
    component 1 near +5 breaks it, by design). The test: draws from the model's own prior
    (labels in random order), relabelled, must have the same user prior density as before,
    draw by draw. With ``num_draws`` draws of K labels, the chance that no draw is permuted
    at all is (1 / K!) ** num_draws for a symmetric own prior, negligible at 16.
    """
    with torch.random.fork_rng(devices=[]), torch.no_grad(), poutine.block():
        torch.manual_seed(0)
        runs = [model.sample_globals() for _ in range(num_draws)]
    draws = {name: torch.stack([run[name] for run in runs])[None] for name in global_site_nodes(model)}  # (1, num_draws, *shape)
    relabelled = model.relabel(draws)
    for name, prior in priors.items():
        before = prior.log_prob(draws[name]).reshape(num_draws, -1).sum(-1)
        after = prior.log_prob(relabelled[name]).reshape(num_draws, -1).sum(-1)
        if not torch.allclose(before, after, rtol=1e-5, atol=1e-4):
            return False
    return True


def _number(value: torch.Tensor) -> str:
    return f"{float(value):.4g}"


def describe(prior: Any, fitted: Any = None) -> str:
    """A prior in words for a Fit's record: "Normal(loc=0, scale=3) over (2, 2)", a parameter
    that varies shown by its values (up to 6) or its shape.

    Parameters
    ----------
    prior : Distribution
        As the user gave it (its parameters before broadcasting).
    fitted : Distribution, optional
        As fitted (:func:`check_priors`): the shape it covers. Default: ``prior``'s own.
    """
    covered = prior if fitted is None else fitted
    shape = tuple(covered.batch_shape) + tuple(covered.event_shape)
    base = prior
    while isinstance(base, (torch.distributions.Independent, dist.ExpandedDistribution)):
        base = base.base_dist
    parameters = []
    for name in base.arg_constraints:
        if isinstance(getattr(type(base), name, None), lazy_property) and name not in vars(base):
            continue  # the other parametrisation of one given (logits of given probs)
        value = getattr(base, name)
        if not isinstance(value, torch.Tensor):
            parameters.append(f"{name}={value}")
        elif value.numel() == 0 or bool((value == value.reshape(-1)[0]).all()):
            parameters.append(f"{name}={_number(value.reshape(-1)[0]) if value.numel() else '[]'}")
        elif value.numel() <= 6:
            parameters.append(f"{name}=[{', '.join(_number(item) for item in value.reshape(-1))}]")
        else:
            parameters.append(f"{name}=<{tuple(value.shape)}>")
    text = f"{type(base).__name__}({', '.join(parameters)})"
    return text if math.prod(shape) == 1 else f"{text} over {shape}"
