"""What the network models share: networks built for the data's shape from a seed
(:class:`ShapedNetworkModel`), a latent code and its prior (:class:`NetworkModel`: VAE, GAN), or
one exact density over a whole datum (:class:`NetworkDensity`: a flow, an autoregressive model).
The networks themselves are in :mod:`zoo.models.nets`.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch

from zoo.checks import check_positive_int
from zoo.models.base import Model
from zoo.models.nets import ARCHITECTURES, check_architecture

__all__ = ["ShapedNetworkModel", "NetworkModel", "NetworkDensity", "seeded", "check_network_data"]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside the block (e.g. to initialise a network's weights
    reproducibly) and restore the caller's generator state after it."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        yield


def check_network_data(data: Any, model_name: str, image_shape: Any, architecture: str) -> list[int]:
    """Checks shared by the network models: one datum per row, no sequences, the shape the
    networks were built for (``image_shape``, if built), one the ``architecture`` takes;
    ``model_name`` ("VAE", "GAN", ...) for the messages. Returns the shape of one datum."""
    x = data.x
    if x.dim() not in (2, 3):
        raise ValueError(
            f"data.x must be (num_data, num_features) or (num_data, height, width) for a {model_name}, "
            f"got shape {tuple(x.shape)}"
        )
    if data.lengths is not None:
        raise ValueError(f"a {model_name} takes independent data, not sequences (lengths given)")
    if x.dim() == 3 and 1 in x.shape[1:]:
        raise ValueError(
            f"data.x of shape {tuple(x.shape)} would be images {x.shape[1]} x {x.shape[2]} pixels, one pixel "
            f"wide: for {x.shape[1] * x.shape[2]} features per datum pass data.x.reshape({x.shape[0]}, -1)"
        )
    shape = list(x.shape[1:])
    if image_shape is not None and shape != list(image_shape):
        raise ValueError(
            f"data have shape {tuple(shape)} per datum but the {model_name} was built for image_shape "
            f"{tuple(image_shape)}"
        )
    check_architecture(architecture, shape)
    return shape


class ShapedNetworkModel(Model):
    """What every network model shares: networks built for the data's shape, from a seed.

    A subclass stores ``image_shape`` (None until the networks exist), builds its networks in
    :meth:`build_networks` and rebuilds itself from ``config()`` with the shape of the data it
    is prepared for; ``prepared_config`` may resolve other data-dependent options (the GAN's
    ``output="auto"``). :class:`NetworkModel` adds a latent code (VAE, GAN); the explicit
    densities without one (a flow, an autoregressive model, a diffusion model) derive from this
    class directly.
    """

    #: The ArviZ dim of a datum's values when it is a vector (an image is (row, column)).
    value_dim = "pixel"

    def __init__(self, hidden_sizes: Sequence[int], init_seed: int) -> None:
        """The checks and settings every network model's constructor shares: ``hidden_sizes``
        positive integers, the seed of the initial weights; no networks until :meth:`_build` is
        given a datum's shape.

        Raises
        ------
        TypeError
            If ``hidden_sizes`` is not a sequence.
        ValueError
            If a hidden size is not a positive integer.
        """
        super().__init__()
        if isinstance(hidden_sizes, (str, bytes)) or not isinstance(hidden_sizes, Sequence):
            raise TypeError(f"hidden_sizes must be a sequence of integers, got {hidden_sizes!r}")
        if any(isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1 for size in hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive integers, got {list(hidden_sizes)}")
        self.hidden_sizes = [int(size) for size in hidden_sizes]
        self.init_seed = int(init_seed)
        self.image_shape: list[int] | None = None

    def build_networks(self, shape: list[int]) -> None:
        """Create the networks for data of ``shape`` (called under ``seeded(init_seed)``)."""
        raise NotImplementedError

    def check_shape(self, shape: list[int]) -> None:
        """Raise ValueError unless the networks can be built for one datum of ``shape``."""

    def _build(self, shape: Sequence[int]) -> None:
        """Build the networks for data of ``shape`` (one datum's), seeded by ``init_seed``."""
        shape = [int(size) for size in shape]
        self.check_shape(shape)
        self.image_shape = shape
        with seeded(self.init_seed):
            self.build_networks(shape)

    @property
    def event_shape(self) -> tuple[int, ...]:
        self._check_ready()
        return tuple(self.image_shape or ())

    @property
    def device(self) -> torch.device:
        """Where the networks' weights are."""
        self._check_ready()
        return next(self.parameters()).device

    def _check_ready(self) -> None:
        if self.image_shape is None:
            raise ValueError(
                f"this {type(self).__name__} has no networks yet: fit it with zoo.fit (which builds them "
                "for the data's shape), or pass image_shape to the constructor"
            )

    def dims(self) -> dict[str, list[str]]:
        if self.image_shape is not None and len(self.image_shape) == 2:
            return {"x": ["datum", "row", "column"]}
        return {"x": ["datum", self.value_dim]}

    def capability(self, name: str) -> bool:
        return name in ("log_prob", "sample")

    def prepared_config(self, data: Any) -> dict[str, Any]:
        """Constructor arguments that depend on ``data``, besides its shape (none by default)."""
        return {}

    def prepare(self, data: Any) -> "ShapedNetworkModel":
        """A copy for ``data``: networks built for its shape, or this model's own weights (copied)
        when it was built already, so training can continue from a fitted model."""
        self.validate(data)
        if self.image_shape is not None:
            return copy.deepcopy(self)
        return type(self)(**{**self.config(), **self.prepared_config(data), "image_shape": list(data.x.shape[1:])})


class NetworkModel(ShapedNetworkModel):
    """What the network models with a latent code (VAE, GAN) share: a code size, an
    architecture, and the prior p(z) of the code."""

    def __init__(self, latent_dim: int, hidden_sizes: Sequence[int], architecture: str, init_seed: int) -> None:
        """The checks and settings every network model's constructor shares: ``latent_dim`` >= 1,
        ``hidden_sizes`` positive integers, ``architecture`` one of :data:`ARCHITECTURES`, the seed
        of the initial weights; no networks until :meth:`_build` is given a datum's shape.

        Raises
        ------
        TypeError
            If ``latent_dim`` is not an integer or ``hidden_sizes`` not a sequence.
        ValueError
            Naming the argument that is out of range.
        """
        check_positive_int(latent_dim, "latent_dim", minimum=1)
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        super().__init__(hidden_sizes, init_seed)
        self.latent_dim = latent_dim
        self.architecture = architecture

    def check_shape(self, shape: list[int]) -> None:
        check_architecture(self.architecture, shape)

    def prior(self) -> "dist.Distribution":
        """p(z) = Normal(0, I_L), event shape (L,), L = ``latent_dim``."""
        zero = torch.zeros(self.latent_dim, device=self.device)
        return dist.Normal(zero, 1.0).to_event(1)


class NetworkDensity(ShapedNetworkModel):
    """A network model whose density is one distribution over a whole datum (a flow, an
    autoregressive model): no latent site, an exact ``log_prob``.

    A subclass builds its networks and returns p(x) from :meth:`distribution` (event shape
    ``event_shape``); ``forward`` observes every datum of the data plate under it, and
    ``log_likelihood`` is its ``log_prob``. The weights are the only unknowns, point estimates
    (guide ``"delta"``: an empty guide, so the ELBO is the exact log-likelihood and the fit is
    maximum likelihood); a variational posterior over them is refused with a message.
    """

    methods = ("svi",)
    default_guide = "delta"
    num_threads = 1  # small networks, many small operations: one thread, no contention
    unsupported_guides = ("normal", "mvn", "lowrank", "laplace", "iaf")
    unsupported_guides_reason = (
        "this model has no latent site: its weights are point estimates (guide 'delta', maximum "
        "likelihood); a variational posterior over its weights is not offered"
    )

    def distribution(self) -> "dist.Distribution":
        """p(x) of one datum: event shape ``event_shape``, batch shape ()."""
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size: int | None = None
    ) -> torch.Tensor:
        """p(x): ``x`` shaped (N, *event_shape) to condition on, or ``num_data`` to generate.

        Returns
        -------
        Tensor, shape (batch, *event_shape)
            The data of the (subsampled) data plate: ``x``'s rows, or new ones.
        """
        density = self.distribution()  # built once: each network lookup registers its weights with Pyro
        size = self.plate_size(x, num_data)
        with pyro.plate(self.data_plate, size, subsample_size=batch_size, device=self.device) as index:
            observed = None if x is None else x.index_select(0, index)
            return pyro.sample(self.observed_site, density, obs=observed)

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Any, batch_size: int = 4096) -> torch.Tensor:
        """The exact log p(x_i) per datum.

        Parameters
        ----------
        draws : dict
            Empty (the weights are point estimates).
        data : Dataset
        batch_size : int
            Data per chunk (memory).

        Returns
        -------
        Tensor, shape (1, num_data)
        """
        self.validate(data)
        density = self.distribution()
        with torch.no_grad():
            rows = [density.log_prob(chunk.to(self.device)) for chunk in data.x.split(batch_size)]
        return torch.cat(rows).unsqueeze(0).cpu()
