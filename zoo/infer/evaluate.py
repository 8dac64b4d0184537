"""Evaluating a model at posterior draws: exact marginal likelihoods, simulation, discrete values.

These are the generic paths, written against ``forward`` alone (the model's definition):

* :func:`marginal_log_likelihood` sums out every enumerated site with Pyro's tensor-variable
  elimination, keeping the data plate, so it gives log p(x_i | theta) per datum (per sequence);
* :func:`simulate` runs the model under a plate of draws, one simulated data set per draw;
* :func:`discrete_values` is ``infer_discrete``: Viterbi-like MAP values (temperature 0) or
  exact posterior samples (temperature 1) of the enumerated sites.

A model may override ``log_likelihood`` with a faster closed form; the contract tests check that
it agrees with :func:`marginal_log_likelihood`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import TraceEnum_ELBO, infer_discrete
from pyro.ops.contract import contract_to_tensor
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from zoo.datasets.dataset import Dataset
from zoo.models.base import Model

__all__ = [
    "latent_shapes",
    "global_site_shapes",
    "declared_state",
    "marginal_log_likelihood",
    "pointwise_log_likelihood",
    "simulate",
    "discrete_values",
    "posterior_marginals",
    "num_draws",
    "flatten_draws",
    "select_draw",
    "relabel_point",
]


def num_draws(draws: dict[str, torch.Tensor], leading: int = 1) -> int:
    """Number of draws: the product of the first ``leading`` dims of any site."""
    value = next(iter(draws.values()))
    return int(torch.tensor(value.shape[:leading]).prod())


def flatten_draws(draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """(chain, draw, ...) -> (chain * draw, ...)."""
    return {name: value.reshape((-1,) + value.shape[2:]) for name, value in draws.items()}


def select_draw(draws: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    """One draw (flat index) of flattened draws."""
    return {name: value[index] for name, value in draws.items()}


def relabel_point(model: Model, point: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model.relabel`` of one parameter value (site shapes), which it takes as draws shaped
    (chain, draw, ...): a point estimate whose labels follow the draws' order."""
    batched = model.relabel({name: value[None, None] for name, value in point.items()})
    return {name: value[0, 0] for name, value in batched.items()}


def latent_shapes(
    model: Model, kwargs: dict[str, Any], trained: Callable[..., Any] | None = None
) -> dict[str, tuple[tuple[int, ...], int]]:
    """Shape and number of batch dims of each continuous latent site, from one prior run of
    ``trained`` (the model, or its collapsed training model) with ``kwargs``."""
    hidden = list(model.enumerated_sites)
    with torch.no_grad():
        trace = poutine.trace(poutine.block(trained or model, hide=hidden)).get_trace(**kwargs)
    shapes = {}
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and not name.startswith("_"):
            if site_is_subsample(site):
                continue
            shapes[name] = (tuple(site["value"].shape), len(site["fn"].batch_shape))
    return shapes


class _ShapesOnly(Messenger):
    """Give every latent sample site zeros of its distribution's shape instead of a draw: a
    model's story then reveals its sites' shapes without sampling (nor touching the random
    generator). A site of more than ``max_elements`` numbers raises ValueError before its
    zeros are allocated."""

    def __init__(self, max_elements: int | None = None) -> None:
        super().__init__()
        self.max_elements = max_elements

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["value"] is None and not msg["is_observed"] and not site_is_subsample(msg):
            shape = msg["fn"].shape()
            if self.max_elements is not None and math.prod(shape) > self.max_elements:
                raise ValueError(f"site {msg['name']!r} of shape {tuple(shape)} holds more than {self.max_elements:,} numbers")
            msg["value"] = torch.zeros(shape)
            msg["done"] = True


def global_site_shapes(model: Model, max_elements: int | None = None) -> dict[str, tuple[int, ...]]:
    """The shape of each global latent site of ``model`` (its ``sample_globals``), found without
    sampling; empty for a model with no global story (a VAE).

    Raises
    ------
    ValueError
        If a site holds more than ``max_elements`` numbers (checked before allocating it).
    """
    try:
        with _ShapesOnly(max_elements), pyro.validation_enabled(False), torch.no_grad():
            trace = poutine.trace(model.sample_globals).get_trace()
    except NotImplementedError:  # no global story
        return {}
    return {
        name: tuple(site["value"].shape)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }


def declared_state(model_class: type[Model], config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Shape and dtype of each ``state_dict`` entry of a model built from ``config``, found by
    building it on torch's meta device (shapes, no storage): a configuration asking for
    30,000-wide layers costs nothing to examine.

    Raises
    ------
    Exception
        Whatever the model's constructor raises for a configuration it refuses.
    """
    with torch.device("meta"):
        model = model_class(**config)
    return {name: (tuple(value.shape), value.dtype) for name, value in model.state_dict().items()}


def marginal_log_likelihood(model: Model, params: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
    """log p(x_i | theta) for each datum, every enumerated site summed out exactly.

    Parameters
    ----------
    model : Model
    params : dict
        One value of each continuous latent site (site shapes, no draw dims).
    data : Dataset

    Returns
    -------
    Tensor, shape (num_data,)
    """
    kwargs = model.model_kwargs(data)
    first_dim = -model.max_plate_nesting - 1
    conditioned = poutine.condition(model, data=params)
    trace = poutine.trace(poutine.enum(conditioned, first_available_dim=first_dim)).get_trace(**kwargs)
    trace.compute_log_prob()
    trace.pack_tensors()
    plate_symbols = set(trace.plate_to_symbol.values())
    log_factors: OrderedDict[frozenset[str], list[torch.Tensor]] = OrderedDict()
    sum_dims: set[str] = set()
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or name in params or site_is_subsample(site):
            continue
        ordinal = frozenset(
            trace.plate_to_symbol[frame.name] for frame in site["cond_indep_stack"] if frame.vectorized
        )
        log_prob = site["packed"]["log_prob"]
        log_factors.setdefault(ordinal, []).append(log_prob)
        sum_dims.update(set(log_prob._pyro_dims) - plate_symbols)
    target = frozenset({trace.plate_to_symbol[model.data_plate]})
    result = contract_to_tensor(log_factors, sum_dims, target_ordinal=target)
    return result.reshape(-1)


def pointwise_log_likelihood(
    model: Model, draws: dict[str, torch.Tensor], data: Dataset, chunk_elements: int = 2**24, **options: Any
) -> torch.Tensor:
    """log p(x_i | theta_s) for flat draws ``s``: the model's fast path, else enumeration.

    ``options`` go to the model's own ``log_likelihood`` (the enumerated definition takes none).

    Returns
    -------
    Tensor, shape (num_draws, num_data)
    """
    total = num_draws(draws)
    with torch.no_grad():
        try:
            per_draw = max(1, chunk_elements // max(1, data.x.numel()))
            chunks = []
            for start in range(0, total, per_draw):
                chunk = {name: value[start : start + per_draw] for name, value in draws.items()}
                chunks.append(model.log_likelihood(chunk, data, **options))
            return torch.cat(chunks)
        except NotImplementedError:
            if options:
                raise ValueError(
                    f"{type(model).__name__} has no options for its log-likelihood; got {sorted(options)}"
                ) from None
            rows = [marginal_log_likelihood(model, select_draw(draws, s), data) for s in range(total)]
            return torch.stack(rows)


def simulate(
    model: Model, draws: dict[str, torch.Tensor], kwargs: dict[str, Any], total: int | None = None
) -> torch.Tensor:
    """One simulated data set per flat draw: the observed site, shaped (num_draws, ...).

    ``total``: the number of data sets, needed when ``draws`` is empty (a model with no global
    latents: every data set comes from the same point).
    """
    shapes = latent_shapes(model, kwargs)
    total = num_draws(draws) if draws else int(total or 1)
    nesting = model.max_plate_nesting
    conditioned = {}
    for name, value in draws.items():
        if name not in shapes:
            continue
        shape, batch_dims = shapes[name]
        conditioned[name] = value.reshape((total,) + (1,) * (nesting - batch_dims) + shape)
    with torch.no_grad():
        prototype = poutine.trace(model).get_trace(**kwargs)
        with pyro.plate("_draws", total, dim=-nesting - 1):
            trace = poutine.trace(poutine.condition(model, data=conditioned)).get_trace(**kwargs)
    value = trace.nodes[model.observed_site]["value"].cpu()
    return value.reshape((total,) + tuple(prototype.nodes[model.observed_site]["value"].shape))


def discrete_values(
    model: Model, params: dict[str, torch.Tensor], data: Dataset, temperature: int = 0
) -> dict[str, torch.Tensor]:
    """MAP (temperature 0) or sampled (temperature 1) values of the enumerated sites given data."""
    kwargs = model.model_kwargs(data)
    conditioned = poutine.condition(model, data=params)
    inferred = infer_discrete(
        conditioned, first_available_dim=-model.max_plate_nesting - 1, temperature=temperature
    )
    with torch.no_grad():
        trace = poutine.trace(inferred).get_trace(**kwargs)
    return {name: trace.nodes[name]["value"] for name in model.enumerated_sites if name in trace.nodes}


def posterior_marginals(
    model: Model, params: dict[str, torch.Tensor], data: Dataset
) -> dict[str, torch.Tensor]:
    """p(z | x, theta) of each enumerated site, by Pyro's exact marginal computation.

    Returns
    -------
    dict of str to Tensor
        Probabilities shaped (*site_shape, num_values): (num_data, K) for a mixture.
    """
    kwargs = model.model_kwargs(data)
    conditioned = poutine.condition(model, data=params)
    elbo = TraceEnum_ELBO(max_plate_nesting=model.max_plate_nesting)
    with torch.no_grad():
        marginals = elbo.compute_marginals(conditioned, _empty_guide, **kwargs)
    return {name: _value_probabilities(marginals[name]) for name in model.enumerated_sites if name in marginals}


def _value_probabilities(marginal: dist.Distribution) -> torch.Tensor:
    """One probability per value, last: a Categorical's ``probs`` (N, K); a Bernoulli's (N, 2),
    as (p(0), p(1)), since its ``probs`` is p(1) alone (and ``log_prob`` at logits of -inf, a
    value ruled out, is NaN)."""
    if isinstance(marginal, dist.Bernoulli):
        return torch.stack([1 - marginal.probs, marginal.probs], dim=-1)
    return marginal.probs


def _empty_guide(*args: Any, **kwargs: Any) -> None:
    """The guide of a model whose latents are all conditioned or enumerated."""
