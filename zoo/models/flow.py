r"""Normalizing flow: an exact density by change of variables.

Generative story
----------------
For N data of D real coordinates (D >= 2), K invertible layers f_1..f_K and the training data's
mean m and standard deviation s per coordinate (fixed when the model is prepared)::

    layer weights  W      point estimates (maximum likelihood: the ELBO of an empty guide)
    for i in 1..N:
        u[i]  ~ Normal(0, I_D)
        x[i]  = m + s * f_K(... f_1(u[i]))                       (a deterministic map)

so that, by the change of variables,
``log p(x) = log Normal(u; 0, I) - sum_k log |det J_k| - sum_d log s_d`` with ``u`` the inverse
image of ``x``. In Pyro this is one site: ``x ~ TransformedDistribution(Normal(0, I_D),
[f_1, ..., f_K, Affine(m, s)])``, whose ``log_prob`` runs the inverse maps and whose ``sample``
the forward ones.

Layers (``layer``), from Pyro's own :mod:`pyro.distributions.transforms` (zuko, which Pyro wraps
in ``pyro.contrib.zuko``, is not installed here):

* ``"spline_coupling"`` (neural spline flow, Durkan et al. 2019): the first half of the
  coordinates passes unchanged and parameterises monotone rational-quadratic splines (on
  [-3, 3], identity outside) of the second half; between layers the coordinates are reversed,
  so every coordinate is transformed. Both directions cost one network pass.
* ``"affine_coupling"`` (RealNVP, Dinh et al. 2017): the same split, an affine map.
* ``"affine_autoregressive"`` (MAF, Papamakarios et al. 2017): coordinate d is an affine map of
  u[d] with shift and log scale from a masked network (MADE) of the coordinates before it.
  ``log_prob`` is one pass; ``sample`` inverts coordinate by coordinate (D passes).

Sample sites
------------
=========  ==================  ===========================================================
name       shape               support
=========  ==================  ===========================================================
``data``   (batch,)            subsample indices of the data plate
``x``      (N, D)              real; observed
=========  ==================  ===========================================================

There is no latent site: a flow's only unknowns are its weights. A fit is their point estimate
(guide ``"delta"``, an empty guide here, whose ELBO is the exact log-likelihood): full-batch
L-BFGS by default, Adam with ``batch_size`` or ``num_epochs``. A variational posterior over the
weights (Bayesian flow) is refused with a message: a mean-field Gaussian over thousands of
coupled spline weights is not a posterior worth reporting, and no autoguide here sees the
weights (they are parameters, not sample sites). ``fit.log_prob(data)`` is the exact
log-density per datum; ``fit.sample(n)`` pushes Normal noise through the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import pyro.distributions.transforms as transforms
import torch
from torch import nn

from zoo.checks import check_choice, check_positive_int
from zoo.datasets import simulate
from zoo.datasets.dataset import Dataset
from zoo.models.network_model import NetworkDensity
from zoo.models.registry import register

__all__ = ["Flow", "LAYERS"]

LAYERS = ("spline_coupling", "affine_coupling", "affine_autoregressive")
_COUPLING = ("spline_coupling", "affine_coupling")


@register("flow")
class Flow(NetworkDensity):
    """Normalizing flow for continuous data: exact ``log_prob`` and ``sample``.

    Parameters
    ----------
    num_layers : int
        K, the number of invertible layers (>= 1).
    layer : {"spline_coupling", "affine_coupling", "affine_autoregressive"}
        The kind of every layer (see the module docstring).
    hidden_sizes : sequence of int
        Hidden layer sizes of each layer's network.
    num_bins : int
        Spline segments per coordinate (``"spline_coupling"`` only).
    image_shape : sequence of int, optional
        ``[D]``, the shape of one datum; default: taken from the training data by ``zoo.fit``.
    init_seed : int
        Seed of the networks' initial weights (a private generator: the global one is untouched).

    Examples
    --------
    >>> import zoo
    >>> ring = zoo.datasets.load("ring", num_data=400)
    >>> fit = zoo.fit(zoo.models.Flow(num_layers=2, hidden_sizes=[16]), ring, zoo.SVI(batch_size=100, num_epochs=2, progress=False))
    >>> fit.log_prob(ring).shape
    torch.Size([400])
    >>> fit.sample(5).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        num_layers: int = 4,
        layer: str = "spline_coupling",
        hidden_sizes: Sequence[int] = (64, 64),
        num_bins: int = 8,
        image_shape: Sequence[int] | None = None,
        init_seed: int = 0,
    ) -> None:
        check_positive_int(num_layers, "num_layers")
        check_choice(layer, "layer", LAYERS)
        check_positive_int(num_bins, "num_bins")
        super().__init__(hidden_sizes, init_seed)
        self.num_layers = num_layers
        self.layer = layer
        self.num_bins = num_bins
        if image_shape is not None:
            self._build(image_shape)

    def check_shape(self, shape: list[int]) -> None:
        if len(shape) != 1:
            raise ValueError(
                f"a Flow takes data shaped (num_data, D), got {tuple(shape)} per datum: flatten images "
                "to (num_data, height * width)"
            )
        if shape[0] < 2 and self.layer in _COUPLING:
            raise ValueError(
                f"layer={self.layer!r} splits the coordinates of a datum into two groups and needs D >= 2, "
                f"got D = {shape[0]}; use layer='affine_autoregressive'"
            )

    def build_networks(self, shape: list[int]) -> None:
        (width,) = shape
        layers: list[nn.Module] = []
        for _ in range(self.num_layers):
            if self.layer == "spline_coupling":
                layers.append(transforms.spline_coupling(width, hidden_dims=self.hidden_sizes, count_bins=self.num_bins))
            elif self.layer == "affine_coupling":
                layers.append(transforms.affine_coupling(width, hidden_dims=self.hidden_sizes))
            else:
                layers.append(transforms.affine_autoregressive(width, hidden_dims=self.hidden_sizes))
        self.layers = nn.ModuleList(layers)
        # The training data's location and scale: data standardised before the layers, so a
        # spline's interval [-3, 3] covers them. Buffers: saved with the weights.
        self.register_buffer("data_loc", torch.zeros(width))
        self.register_buffer("data_scale", torch.ones(width))

    def prepare(self, data: Any) -> "Flow":
        """A copy for ``data``: networks built for its width and, on a first fit, the data's
        mean and standard deviation per coordinate as the fixed outer affine map."""
        fresh = self.image_shape is None
        prepared = super().prepare(data)
        if fresh:
            with torch.no_grad():
                prepared.data_loc.copy_(data.x.mean(0))
                prepared.data_scale.copy_(data.x.std(0).clamp_min(1e-6) if len(data) > 1 else torch.ones(data.x.shape[1]))
        return prepared

    def validate(self, data: Dataset) -> None:
        """Raise ValueError unless ``data`` are independent rows of real numbers of the built width."""
        if data.lengths is not None:
            raise ValueError("a Flow takes independent data, not sequences (lengths given)")
        if data.x.dim() != 2:
            raise ValueError(f"data.x must be (num_data, D) for a Flow, got shape {tuple(data.x.shape)}")
        self.check_shape(list(data.x.shape[1:]))
        if self.image_shape is not None and list(data.x.shape[1:]) != list(self.image_shape):
            raise ValueError(
                f"data have {data.x.shape[1]} coordinates per datum but the Flow was built for {self.image_shape[0]}"
            )

    # ------------------------------------------------------------------ the density
    def transform(self) -> transforms.ComposeTransform:
        """u -> x: the layers (coordinates reversed between coupling layers), then the affine map
        to the data's location and scale. Maps (..., D) to (..., D)."""
        self._check_ready()
        parts: list[Any] = []
        width = self.event_shape[0]
        reverse = torch.arange(width - 1, -1, -1, device=self.data_loc.device)
        for index, layer in enumerate(self.layers):
            if index:
                parts.append(transforms.Permute(reverse))
            # MAF: the masked network's fast direction is the density's (x -> u), so the
            # layer is used inverted; sampling inverts it coordinate by coordinate.
            parts.append(layer.inv if self.layer == "affine_autoregressive" else layer)
        parts.append(transforms.AffineTransform(self.data_loc, self.data_scale, event_dim=1))
        return transforms.ComposeTransform(parts)

    def distribution(self) -> dist.TransformedDistribution:
        """p(x): Normal(0, I_D) pushed through :meth:`transform`; event shape (D,)."""
        zeros = torch.zeros(self.event_shape, device=self.data_loc.device)
        return dist.TransformedDistribution(dist.Normal(zeros, 1.0).to_event(1), self.transform())

    def dims(self) -> dict[str, list[str]]:
        return {"x": ["datum", "feature"]}

    @classmethod
    def example(cls) -> tuple["Flow", Dataset]:
        return cls(num_layers=2, hidden_sizes=[8], num_bins=4), simulate.ring(num_data=40, seed=0)

    @classmethod
    def examples(cls) -> list[tuple["Flow", Dataset]]:
        ring = simulate.ring(num_data=40, seed=0)
        return [cls.example()] + [(cls(num_layers=2, layer=kind, hidden_sizes=[8]), ring) for kind in LAYERS[1:]]
