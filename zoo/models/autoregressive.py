r"""Autoregressive model (MADE): an exact density of discrete pixels by the chain rule.

Generative story
----------------
For N images of D pixels (each of shape ``event_shape``: (D,) or (height, width), pixels read in
raster order), each pixel one of K values 0..K-1 (K = ``num_categories``; K = 2: binary)::

    network weights  W      point estimates (maximum likelihood: the ELBO of an empty guide)
    for i in 1..N:
        for d in 1..D:
            x[i, d] ~ Categorical(softmax(made_W(x[i, <d])[d]))      (Bernoulli for K = 2)

so ``log p(x) = sum_d log p(x_d | x_<d)`` is exact and costs one pass of a masked network
(MADE, Germain et al. 2015: Pyro's :class:`~pyro.nn.AutoRegressiveNN` with the identity order),
whose output d sees only the pixels before d. Sampling is sequential: D passes, pixel by pixel.
The network reads each pixel as the number x / (K - 1) in [0, 1].

Sample sites
------------
=========  ================================  ===============================================
name       shape                             support
=========  ================================  ===============================================
``data``   (batch,)                          subsample indices of the data plate
``x``      (N, *event_shape)                 integers 0..K-1; observed
=========  ================================  ===============================================

The chain over pixels is one site with the density of :class:`PixelChain` (a Pyro distribution
whose ``log_prob`` is the masked pass and whose ``sample`` the sequential loop), so the whole
image is one observation: there is no latent site. A fit is a point estimate of the weights
(guide ``"delta"``, an empty guide whose ELBO is the exact log-likelihood): full-batch L-BFGS by
default, Adam with ``batch_size`` or ``num_epochs``. A variational posterior over the weights
is refused, as for :class:`zoo.models.Flow`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import AutoRegressiveNN

from zoo.checks import check_integer_levels, check_positive_int
from zoo.datasets import real
from zoo.datasets.dataset import Dataset
from zoo.models.network_model import NetworkDensity
from zoo.models.registry import register

__all__ = ["Autoregressive", "PixelChain"]


class PixelChain(dist.TorchDistribution):
    """p(x) = prod_d p(x_d | x_<d) over D discrete pixels, from a masked network.

    Parameters
    ----------
    network : AutoRegressiveNN
        Maps pixels (..., D) read as numbers in [0, 1] to logits: (..., D) for K = 2 (Bernoulli),
        (..., K, D) for K > 2; output d depends on inputs before d only.
    num_categories : int
        K.
    event_shape : torch.Size
        Shape of one image (D pixels in all).
    batch_shape : torch.Size
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    has_enumerate_support = False

    def __init__(
        self,
        network: AutoRegressiveNN,
        num_categories: int,
        event_shape: torch.Size,
        batch_shape: torch.Size = torch.Size(),
        device: torch.device | None = None,
    ) -> None:
        self.network = network
        self.num_categories = num_categories
        self.device = device
        super().__init__(batch_shape, event_shape, validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.integer_interval(0, self.num_categories - 1), len(self.event_shape))

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> "PixelChain":
        return PixelChain(self.network, self.num_categories, self.event_shape, torch.Size(batch_shape), self.device)

    def conditional_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x_d | x_<d) per pixel.

        Parameters
        ----------
        x : Tensor, shape (..., *event_shape)
            Integer pixel values (any dtype).

        Returns
        -------
        Tensor, shape (..., D)
        """
        pixels = x.reshape(*x.shape[: x.dim() - len(self.event_shape)], -1)
        logits = self.network(pixels.float() / (self.num_categories - 1))
        if self.num_categories == 2:
            return -torch.nn.functional.binary_cross_entropy_with_logits(logits, pixels.float(), reduction="none")
        log_probs = logits.log_softmax(-2)  # (..., K, D)
        return log_probs.gather(-2, pixels.long().unsqueeze(-2)).squeeze(-2)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log p(x), summed over the pixels: shape ``value.shape[:-len(event_shape)]``."""
        return self.conditional_log_probs(value).sum(-1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Pixel by pixel, in raster order: D passes of the network. Shape
        ``sample_shape + batch_shape + event_shape``, float pixel values."""
        shape = torch.Size(sample_shape) + self.batch_shape
        width = math.prod(self.event_shape)
        pixels = torch.zeros(shape + (width,), device=self.device)
        with torch.no_grad():
            for index in range(width):
                logits = self.network(pixels / (self.num_categories - 1))
                if self.num_categories == 2:
                    pixels[..., index] = dist.Bernoulli(logits=logits[..., index]).sample()
                else:
                    pixels[..., index] = dist.Categorical(logits=logits[..., :, index]).sample().float()
        return pixels.reshape(shape + self.event_shape)


@register("autoregressive")
class Autoregressive(NetworkDensity):
    """MADE: exact likelihood of binary or categorical pixels, sampled pixel by pixel.

    Parameters
    ----------
    num_categories : int
        K, the number of values a pixel takes (0..K-1): 2 for binary images, 17 for the 8x8
        digits' grey levels.
    hidden_sizes : sequence of int
        Hidden layer sizes of the masked network (at least one, each at least D, as Pyro's
        :class:`~pyro.nn.AutoRegressiveNN` needs).
    image_shape : sequence of int, optional
        Shape of one datum; default: taken from the training data by ``zoo.fit``.
    init_seed : int
        Seed of the network's initial weights (a private generator: the global one is untouched).

    Examples
    --------
    >>> import zoo
    >>> digits = zoo.datasets.load("digits", binarize=True).subset(list(range(200)))
    >>> fit = zoo.fit(zoo.models.Autoregressive(hidden_sizes=[128]), digits,
    ...               zoo.SVI(batch_size=100, num_epochs=2, progress=False))
    >>> fit.log_prob(digits).shape      # exact log p(x), nats per image
    torch.Size([200])
    >>> fit.sample(3).shape
    torch.Size([3, 64])
    """

    def __init__(
        self,
        num_categories: int = 2,
        hidden_sizes: Sequence[int] = (256,),
        image_shape: Sequence[int] | None = None,
        init_seed: int = 0,
    ) -> None:
        check_positive_int(num_categories, "num_categories", minimum=2)
        super().__init__(hidden_sizes, init_seed)
        self.num_categories = num_categories
        if image_shape is not None:
            self._build(image_shape)

    def check_shape(self, shape: list[int]) -> None:
        if len(shape) not in (1, 2) or any(size < 1 for size in shape):
            raise ValueError(f"image shape must be (num_pixels,) or (height, width), got {tuple(shape)}")
        width = math.prod(shape)
        if width < 2:
            raise ValueError(f"an Autoregressive model needs at least 2 pixels per datum, got shape {tuple(shape)}")
        if not self.hidden_sizes or min(self.hidden_sizes) < width:
            raise ValueError(
                f"hidden_sizes must each be at least D = {width} for images of {width} pixels (Pyro's masked "
                f"network needs as many hidden units as inputs, so that every pixel's output can see all "
                f"pixels before it), got {self.hidden_sizes}"
            )

    def build_networks(self, shape: list[int]) -> None:
        width = math.prod(shape)
        param_dims = [1] if self.num_categories == 2 else [self.num_categories]
        self.network = AutoRegressiveNN(width, self.hidden_sizes, param_dims=param_dims, permutation=torch.arange(width))

    def validate(self, data: Dataset) -> None:
        """Raise ValueError unless ``data`` are independent images of the built shape whose
        pixels are integers 0..K-1."""
        if data.lengths is not None:
            raise ValueError("an Autoregressive model takes independent data, not sequences (lengths given)")
        if data.x.dim() not in (2, 3):
            raise ValueError(
                f"data.x must be (num_data, num_pixels) or (num_data, height, width), got shape {tuple(data.x.shape)}"
            )
        shape = list(data.x.shape[1:])
        self.check_shape(shape)
        if self.image_shape is not None and shape != list(self.image_shape):
            raise ValueError(f"data have shape {tuple(shape)} per datum but the model was built for {tuple(self.image_shape)}")
        check_integer_levels(
            data.x, self.num_categories, "data.x", f"an Autoregressive model with num_categories={self.num_categories}",
            "binarise, or set num_categories to the number of grey levels; for continuous data use zoo.models.Flow",
            unit="pixels",
        )

    # ------------------------------------------------------------------ the density
    def distribution(self) -> PixelChain:
        """p(x) over one image, event shape ``event_shape``."""
        self._check_ready()
        network = self.network  # one lookup: each registers the weights with Pyro
        return PixelChain(network, self.num_categories, torch.Size(self.event_shape), device=self.device)

    @classmethod
    def example(cls) -> tuple["Autoregressive", Dataset]:
        return cls(hidden_sizes=[16]), _middle_rows(real.digits(binarize=True))

    @classmethod
    def examples(cls) -> list[tuple["Autoregressive", Dataset]]:
        return [cls.example(), (cls(num_categories=17, hidden_sizes=[16]), _middle_rows(real.digits()))]


def _middle_rows(digits: Dataset) -> Dataset:
    """40 digits, the 16 pixels of their two middle rows (where the strokes are): a small example."""
    return Dataset(x=digits.x[:40, 24:40], name=digits.name, description="the middle two rows of 40 digits")
