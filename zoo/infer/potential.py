"""The NUTS potential in plain torch, derived once per fit from a model's collapsed density.

Pyro's NUTS evaluates its potential energy, and its gradient, at every leapfrog step. Handed a
model, it gets that energy by running the model under effect handlers each time (a trace with a
node per site, distribution objects, transforms): on a small model that bookkeeping is most of
the cost. A model stating the density contract (:mod:`zoo.models.base`) needs none of it:

    U(u) = -[ sum_sites log p(T(u_site))  +  log |det dT/du|  +  sum_i w_i log p(x_i | T(u)) ]

with ``u`` the unconstrained parameters, ``T`` each global site's bijection onto its support
(``biject_to(support)``: stick-breaking for a simplex, exp for a positive scale, the
correlation-Cholesky transform for an LKJ site), the prior terms from the model's
``sample_globals`` (the user's priors in its place where ``zoo.fit(..., priors=...)`` gives them:
:func:`zoo.infer.collapse.fitted_globals`) and the last term its collapsed ``log_likelihood``, each datum's weighted by
``Dataset(weights=...)`` (1 without; :func:`zoo.infer.collapse.weighted`).

The priors are read once: a site whose prior does not change with the other sites (every prior
of the mixture and the HMM) keeps its distribution object, evaluated directly; where a prior
depends on another site (Naive Bayes's location given its precision) the global story is run
under one small handler that substitutes the values and adds up the log densities, with no
trace. Both give Pyro's own potential (``pyro.infer.mcmc.util.initialize_model``) to rounding:
the contract tests check it for every registered model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro.distributions.transforms import biject_to
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from zoo.datasets.dataset import Dataset
from zoo.infer.collapse import fitted_globals, weighted
from zoo.models.base import Model
from zoo.ops.bijections import fast_bijection
from zoo.ops.recording import replay, replayable

__all__ = ["VECTOR_SITE", "Potential", "Replay", "compiled"]

#: The one site under which the sampler sees every unconstrained coordinate (see
#: :meth:`Potential.of_vector`).
VECTOR_SITE = "unconstrained"


class _PriorDensity(Messenger):
    """Substitutes given values at the global sites and sums their prior log densities."""

    def __init__(self, values: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.values = values
        self.total: torch.Tensor | float = 0.0

    def _pyro_sample(self, msg: Any) -> None:
        if site_is_subsample(msg) or msg["name"] not in self.values:
            return
        value = self.values[msg["name"]]
        msg["value"] = value
        msg["done"] = True
        self.total = self.total + msg["fn"].log_prob(value).sum()


class Potential:
    """U(u) = -log p(theta, x) - log |det dtheta/du| for a model with a collapsed likelihood.

    Parameters
    ----------
    model : zoo.models.Model
        A prepared model stating ``sample_globals`` and ``log_likelihood``.
    data : Dataset
        The data it is fitted to.

    Attributes
    ----------
    transforms : dict of str to Transform
        Per global site, the map from its support to unconstrained space (Pyro's convention
        for NUTS's ``transforms``); ``transforms[name].inv`` constrains.
    shapes : dict of str to tuple of int
        Each site's shape.
    unconstrained_shapes : dict of str to tuple of int
        Each site's shape in unconstrained space (a K-simplex has K - 1 coordinates), the
        sites in sorted order.
    """

    def __init__(self, model: Model, data: Dataset) -> None:
        self.model, self.data = model, data
        first, second = (_trace_globals(model, seed) for seed in (0, 1))
        self.prior_draw = {name: site["value"] for name, site in first.items()}
        self.shapes = {name: tuple(site["value"].shape) for name, site in first.items()}
        self.transforms = {name: fast_bijection(biject_to(site["fn"].support).inv) for name, site in first.items()}
        self.unconstrained_shapes = {
            name: tuple(value.shape) for name, value in sorted(self.unconstrain(self.prior_draw).items())
        }
        # A prior that scores one value alike in two runs at other values of every other site
        # does not depend on them: keep its distribution object.
        self.fixed_priors: dict[str, Any] | None = {name: site["fn"] for name, site in first.items()}
        for name, site in first.items():
            value = site["value"]
            if not torch.equal(site["fn"].log_prob(value), second[name]["fn"].log_prob(value)):
                self.fixed_priors = None
                break

    def initial_point(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The unconstrained point of ``values`` (constrained, e.g. a model's data-driven start);
        a site it does not give starts at a draw from its prior."""
        return self.unconstrain({name: values.get(name, draw) for name, draw in self.prior_draw.items()})

    def constrain(self, unconstrained: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The parameters on their supports, site shapes."""
        return {name: self.transforms[name].inv(value) for name, value in unconstrained.items()}

    def unconstrain(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The unconstrained coordinates of ``params`` (site shapes, on their supports)."""
        return {name: self.transforms[name](params[name]).detach() for name in self.transforms}

    def flatten(self, unconstrained: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every site's coordinates in one (P,) vector: the sites in sorted order, each
        flattened (the order in which Pyro's NUTS lays out its mass matrix)."""
        return torch.cat([unconstrained[name].reshape(-1) for name in self.unconstrained_shapes])

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """The sites of a (P,) vector from :meth:`flatten`, site shapes (views of it)."""
        shapes = self.unconstrained_shapes
        pieces = vector.split([math.prod(shape) for shape in shapes.values()])
        return {name: piece.reshape(shape) for (name, shape), piece in zip(shapes.items(), pieces)}

    def of_vector(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """The potential energy at ``state[VECTOR_SITE]``, a (P,) vector of :meth:`flatten`.

        What the sampler evaluates: Pyro's NUTS does its arithmetic site by site (each leapfrog
        update, the kinetic energy, the U-turn check), so one site holding every coordinate
        makes each of them one tensor operation instead of one per site, with the same numbers
        (elementwise updates; sums over the coordinates in the order it concatenates them).
        """
        return self(self.unflatten(state[VECTOR_SITE]))

    def log_prior(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum over global sites of log p(theta_site): a scalar."""
        if self.fixed_priors is not None:
            return sum(prior.log_prob(params[name]).sum() for name, prior in self.fixed_priors.items())
        with _PriorDensity(params) as density:
            fitted_globals(self.model)
        return torch.as_tensor(density.total)

    def __call__(self, unconstrained: dict[str, torch.Tensor]) -> torch.Tensor:
        """The potential energy at ``unconstrained`` (site shapes): a scalar."""
        params = self.constrain(unconstrained)
        log_joint = self.log_prior(params)
        batched = {name: value.unsqueeze(0) for name, value in (self.model.fixed | params).items()}
        log_joint = log_joint + weighted(self.model.log_likelihood(batched, self.data), self.data).sum()
        for name, transform in self.transforms.items():
            log_joint = log_joint - transform.log_abs_det_jacobian(params[name], unconstrained[name]).sum()
        return -log_joint


def compiled(
    potential: Callable[[dict[str, torch.Tensor]], torch.Tensor], point: dict[str, torch.Tensor]
) -> Replay:
    """``potential`` and its gradient recorded once at ``point`` as one graph of tensor
    operations, and replayed: the same numbers without Python per operation (distribution
    objects, transforms, the model's code) and without autograd's bookkeeping per step.

    Pyro's NUTS asks for the potential and then its gradient at every leapfrog step. Run op by
    op, each of the potential's few hundred small operations costs autograd a node on the way
    forward and a call on the way back. Here :func:`zoo.ops.recording.replayable` records the
    forward pass and the backward pass that ``torch.autograd.grad`` runs as one graph of ATen
    operations (the kernels autograd itself calls, so the numbers are the same) as a TorchScript
    function, and each step runs that function once with no autograd graph.
    The :class:`Replay` returned hands Pyro the value as a tensor whose backward returns the
    gradient already computed, so Pyro's ``potential_grad`` gets both from one call; zoo's NUTS
    leapfrog steps skip autograd altogether and ask :meth:`Replay.value_and_gradient`.

    Only for a model whose collapsed likelihood has no Python branch on a tensor's value
    (``Model.static_likelihood``): a recording keeps the branch taken at ``point`` for every
    later point. Recorded with Pyro's argument validation off (its checks branch on values).
    """
    names = tuple(sorted(point))
    values = tuple(point[name].detach().clone() for name in names)

    def value_and_gradient(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.enable_grad():
            leaves = [tensor.detach().requires_grad_() for tensor in tensors]
            energy = potential(dict(zip(names, leaves)))
            gradient = torch.autograd.grad(energy, leaves)
        return (energy.detach(), *gradient)

    with pyro.validation_enabled(False):
        recording_of_graph = replayable(value_and_gradient, *values)

    return Replay(recording_of_graph, names)


class Replay:
    """A potential recorded with its gradient (:func:`compiled`), replayed.

    Called, it returns the potential as a tensor whose backward hands autograd the gradient the
    same call computed (what Pyro's ``potential_grad`` asks for); :meth:`value_and_gradient`
    returns both without autograd.
    """

    def __init__(self, graph: Any, names: tuple[str, ...]) -> None:
        self.graph, self.names = graph, names

    def __call__(self, unconstrained: dict[str, torch.Tensor]) -> torch.Tensor:
        return _ValueWithGradient.apply(self.graph, *(unconstrained[name] for name in self.names))

    def value_and_gradient(self, unconstrained: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The potential (a 0-dim tensor) and its gradient (one tensor per site) at ``unconstrained``."""
        energy, *gradient = replay(self.graph, *(unconstrained[name] for name in self.names))
        return energy, dict(zip(self.names, gradient))


class _ValueWithGradient(torch.autograd.Function):
    """The potential's value from the recorded joint graph, with the gradient the graph also
    computed as its backward: one call of the graph per leapfrog step."""

    @staticmethod
    def forward(ctx: Any, graph: Any, *tensors: torch.Tensor) -> torch.Tensor:
        energy, *gradient = replay(graph, *tensors)
        ctx.save_for_backward(*gradient)
        return energy

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return (None, *(grad_output * gradient for gradient in ctx.saved_tensors))


def _trace_globals(model: Model, seed: int) -> dict[str, Any]:
    """The global sample sites of one prior run of ``sample_globals`` (a private generator)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad(), pyro.poutine.block():
        torch.manual_seed(seed)
        trace = pyro.poutine.trace(fitted_globals).get_trace(model)
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }
