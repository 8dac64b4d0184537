"""Small networks shared by the deep generative models (the VAE's encoder and decoder, a GAN).
What the network models themselves share (building the networks for the data's shape, a seed,
the code's prior) is in :mod:`zoo.models.network_model`.

Every network takes inputs with any number of leading batch dims: a decoder maps codes shaped
(..., latent_dim) to outputs shaped (..., *event_shape), an encoder maps data shaped
(..., *event_shape) to a location and a scale shaped (..., latent_dim). Two architectures:

* ``"mlp"``: fully connected layers with ReLU between them, on the flattened datum;
* ``"conv"``: two stride-2 convolutions (4x4 kernels, 32 then 64 channels) before the fully
  connected layers, mirrored by two transposed convolutions in the decoder, so an image's height
  and width must be multiples of 4 (8x8 digits, 28x28 MNIST). A datum of D values with D a
  perfect square is read as a sqrt(D) x sqrt(D) image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional

__all__ = ["ARCHITECTURES", "MLP", "Encoder", "Decoder", "Classifier", "Discriminator", "image_size", "check_architecture"]

ARCHITECTURES = ("mlp", "conv")
_CHANNELS = (32, 64)


def image_size(event_shape: Sequence[int]) -> tuple[int, int] | None:
    """(height, width) of a datum of shape ``event_shape`` read as an image: the shape itself
    if it is (height, width), (sqrt(D), sqrt(D)) if it is (D,) with D a perfect square, else None."""
    shape = tuple(int(size) for size in event_shape)
    if len(shape) == 2:
        return shape  # type: ignore[return-value]
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        if side * side == shape[0]:
            return side, side
    return None


def check_architecture(architecture: str, event_shape: Sequence[int]) -> None:
    """Raise ValueError unless ``architecture`` can take data of ``event_shape``."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if len(event_shape) not in (1, 2) or any(int(size) < 1 for size in event_shape):
        raise ValueError(
            f"image shape must be (num_pixels,) or (height, width), got {tuple(event_shape)}"
        )
    if architecture == "conv":
        size = image_size(event_shape)
        if size is None or size[0] % 4 or size[1] % 4:
            raise ValueError(
                "architecture='conv' takes images whose height and width are multiples of 4 "
                f"(two stride-2 convolutions), got image shape {tuple(event_shape)}; use "
                "architecture='mlp' or crop / pad the images"
            )


class MLP(nn.Sequential):
    """Linear layers with ReLU between them (none after the last).

    Parameters
    ----------
    sizes : sequence of int
        Input size, hidden sizes, output size.
    negative_slope : float
        0 for ReLU between the layers; a positive slope gives LeakyReLU (a GAN's discriminator).
    """

    def __init__(self, sizes: Sequence[int], negative_slope: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for index, (inputs, outputs) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(inputs, outputs))
            if index < len(sizes) - 2:
                layers.append(nn.LeakyReLU(negative_slope) if negative_slope else nn.ReLU())
        super().__init__(*layers)


class _ImageReader(nn.Module):
    """What the networks that read a datum share (encoder, classifier, discriminator): its shape,
    and its features, flattened ("mlp") or after two stride-2 convolutions ("conv")."""

    def _build_reader(
        self, event_shape: Sequence[int], architecture: str, activation: Callable[[], nn.Module] = nn.ReLU
    ) -> int:
        """Set the datum's shape and, for "conv", the convolutions (each followed by
        ``activation()``); return the number of features a datum gives."""
        check_architecture(architecture, event_shape)
        self.event_shape = tuple(int(size) for size in event_shape)
        self.architecture = architecture
        if architecture != "conv":
            return math.prod(self.event_shape)
        height, width = image_size(self.event_shape)  # type: ignore[misc]
        self.image = (height, width)
        self.conv = nn.Sequential(
            nn.Conv2d(1, _CHANNELS[0], 4, stride=2, padding=1),
            activation(),
            nn.Conv2d(_CHANNELS[0], _CHANNELS[1], 4, stride=2, padding=1),
            activation(),
        )
        return _CHANNELS[1] * (height // 4) * (width // 4)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
        """x (..., *event_shape) -> its features (B, F), B the batch dims flattened, and those dims."""
        batch = x.shape[: x.dim() - len(self.event_shape)]
        if self.architecture == "conv":
            return self.conv(x.reshape(-1, 1, *self.image)).flatten(1), batch
        return x.reshape(-1, math.prod(self.event_shape)), batch


class Encoder(_ImageReader):
    """x -> (loc, scale) of a diagonal Normal over the latent code.

    Parameters
    ----------
    event_shape : sequence of int
        Shape of one datum.
    latent_dim : int
    hidden_sizes : sequence of int
    architecture : {"mlp", "conv"}
    condition_dim : int
        Size of a vector the code is also conditioned on (e.g. a one-hot class: q(z | x, y) of the
        semi-supervised VAE), joined to the image's features before the fully connected layers;
        0 for none.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        latent_dim: int,
        hidden_sizes: Sequence[int],
        architecture: str = "mlp",
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.condition_dim = int(condition_dim)
        features = self._build_reader(event_shape, architecture)
        self.mlp = MLP([features + self.condition_dim, *hidden_sizes, 2 * latent_dim])

    def forward(
        self, x: torch.Tensor, condition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Parameters
        ----------
        x : Tensor, shape (..., *event_shape)
        condition : Tensor, shape (..., condition_dim), optional
            Needed when ``condition_dim > 0``; its batch dims broadcast with those of ``x``.

        Returns
        -------
        loc, scale : Tensor, shape (broadcast batch dims..., latent_dim)
        """
        features, batch = self._features(x)
        if self.condition_dim:
            features, batch = _join(features.reshape(*batch, -1), condition, self.condition_dim)
        out = self.mlp(features)
        out = out.reshape(*batch, 2 * self.latent_dim)
        loc, raw_scale = out.split(self.latent_dim, dim=-1)
        return loc, functional.softplus(raw_scale) + 1e-4


class Decoder(nn.Module):
    """z -> the decoder's output per pixel (logits, or means for a Gaussian likelihood).

    Parameters
    ----------
    event_shape : sequence of int
        Shape of one datum.
    latent_dim : int
    hidden_sizes : sequence of int
        In the encoder's order; the decoder uses them reversed.
    architecture : {"mlp", "conv"}
    condition_dim : int
        Size of a vector the output is also conditioned on (e.g. a one-hot class: p(x | y, z) of
        the semi-supervised VAE), joined to the code; 0 for none.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        latent_dim: int,
        hidden_sizes: Sequence[int],
        architecture: str = "mlp",
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        check_architecture(architecture, event_shape)
        self.event_shape = tuple(int(size) for size in event_shape)
        self.architecture = architecture
        self.latent_dim = latent_dim
        self.condition_dim = int(condition_dim)
        inputs = latent_dim + self.condition_dim
        reversed_sizes = list(hidden_sizes)[::-1]
        if architecture == "conv":
            height, width = image_size(self.event_shape)  # type: ignore[misc]
            self.grid = (_CHANNELS[1], height // 4, width // 4)
            self.mlp = MLP([inputs, *reversed_sizes, math.prod(self.grid)])
            self.deconv = nn.Sequential(
                nn.ReLU(),
                nn.ConvTranspose2d(_CHANNELS[1], _CHANNELS[0], 4, stride=2, padding=1),
                nn.ReLU(),
                nn.ConvTranspose2d(_CHANNELS[0], 1, 4, stride=2, padding=1),
            )
        else:
            self.mlp = MLP([inputs, *reversed_sizes, math.prod(self.event_shape)])

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """
        Parameters
        ----------
        z : Tensor, shape (..., latent_dim)
        condition : Tensor, shape (..., condition_dim), optional
            Needed when ``condition_dim > 0``; its batch dims broadcast with those of ``z``.

        Returns
        -------
        Tensor, shape (broadcast batch dims..., *event_shape)
        """
        batch = z.shape[:-1]
        if self.condition_dim:
            z, batch = _join(z, condition, self.condition_dim)
        out = self.mlp(z.reshape(-1, z.shape[-1]))
        if self.architecture == "conv":
            out = self.deconv(out.reshape(-1, *self.grid))
        return out.reshape(*batch, *self.event_shape)


class Classifier(_ImageReader):
    """x -> logits over ``num_classes`` classes: q(y | x) of the semi-supervised VAE.

    The encoder's body (fully connected, or two stride-2 convolutions first) with ReLU between
    layers and ``num_classes`` outputs.

    Parameters
    ----------
    event_shape : sequence of int
        Shape of one datum.
    num_classes : int
    hidden_sizes : sequence of int
    architecture : {"mlp", "conv"}
    """

    def __init__(
        self, event_shape: Sequence[int], num_classes: int, hidden_sizes: Sequence[int], architecture: str = "mlp"
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        features = self._build_reader(event_shape, architecture)
        self.mlp = MLP([features, *hidden_sizes, self.num_classes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : Tensor, shape (..., *event_shape)

        Returns
        -------
        Tensor, shape (..., num_classes)
            Unnormalised log-probabilities.
        """
        features, batch = self._features(x)
        return self.mlp(features).reshape(*batch, self.num_classes)


def _join(
    features: torch.Tensor, condition: torch.Tensor | None, condition_dim: int
) -> tuple[torch.Tensor, torch.Size]:
    """features (..., F) and condition (..., condition_dim), batch dims broadcast, joined on the
    last dim: (batch..., F + condition_dim), and the broadcast batch shape."""
    if condition is None or condition.shape[-1] != condition_dim:
        got = None if condition is None else tuple(condition.shape)
        raise ValueError(f"this network is conditioned on a vector of size {condition_dim}; got {got}")
    batch = torch.broadcast_shapes(features.shape[:-1], condition.shape[:-1])
    joined = torch.cat(
        [features.expand(*batch, features.shape[-1]), condition.to(features.dtype).expand(*batch, condition_dim)], -1
    )
    return joined, batch


class Discriminator(_ImageReader):
    """x -> one real score per datum: a GAN's discriminator (logit) or critic (WGAN).

    The encoder's body (fully connected, or two stride-2 convolutions first) with LeakyReLU(0.2)
    between layers, as is usual for discriminators (no batch normalisation: WGAN-GP's gradient
    penalty is taken per datum).

    Parameters
    ----------
    event_shape : sequence of int
        Shape of one datum.
    hidden_sizes : sequence of int
    architecture : {"mlp", "conv"}
    """

    def __init__(self, event_shape: Sequence[int], hidden_sizes: Sequence[int], architecture: str = "mlp") -> None:
        super().__init__()
        features = self._build_reader(event_shape, architecture, activation=lambda: nn.LeakyReLU(0.2))
        self.mlp = MLP([features, *hidden_sizes, 1], negative_slope=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        x : Tensor, shape (..., *event_shape)

        Returns
        -------
        Tensor, shape (...)
        """
        features, batch = self._features(x)
        return self.mlp(features).reshape(batch)
