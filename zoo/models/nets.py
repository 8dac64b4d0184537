"""Small networks shared by the deep generative models (the VAE's encoder and decoder, a GAN).

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
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

__all__ = ["ARCHITECTURES", "MLP", "Encoder", "Decoder", "image_size", "check_architecture"]

ARCHITECTURES = ("mlp", "conv")
_CHANNELS = (32, 64)


def image_size(event_shape: Sequence[int]) -> tuple[int, int] | None:
    """(height, width) of a datum read as an image, or None if it cannot be one.

    Parameters
    ----------
    event_shape : sequence of int
        The shape of one datum: (height, width), or (D,) with D a perfect square.
    """
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
    """

    def __init__(self, sizes: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for index, (inputs, outputs) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(inputs, outputs))
            if index < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class Encoder(nn.Module):
    """x -> (loc, scale) of a diagonal Normal over the latent code.

    Parameters
    ----------
    event_shape : sequence of int
        Shape of one datum.
    latent_dim : int
    hidden_sizes : sequence of int
    architecture : {"mlp", "conv"}
    """

    def __init__(
        self, event_shape: Sequence[int], latent_dim: int, hidden_sizes: Sequence[int], architecture: str = "mlp"
    ) -> None:
        super().__init__()
        check_architecture(architecture, event_shape)
        self.event_shape = tuple(int(size) for size in event_shape)
        self.architecture = architecture
        self.latent_dim = latent_dim
        if architecture == "conv":
            height, width = image_size(self.event_shape)  # type: ignore[misc]
            self.image = (height, width)
            self.conv = nn.Sequential(
                nn.Conv2d(1, _CHANNELS[0], 4, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(_CHANNELS[0], _CHANNELS[1], 4, stride=2, padding=1),
                nn.ReLU(),
            )
            features = _CHANNELS[1] * (height // 4) * (width // 4)
            self.mlp = MLP([features, *hidden_sizes, 2 * latent_dim])
        else:
            self.mlp = MLP([math.prod(self.event_shape), *hidden_sizes, 2 * latent_dim])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Parameters
        ----------
        x : Tensor, shape (..., *event_shape)

        Returns
        -------
        loc, scale : Tensor, shape (..., latent_dim)
        """
        batch = x.shape[: x.dim() - len(self.event_shape)]
        if self.architecture == "conv":
            features = self.conv(x.reshape(-1, 1, *self.image)).flatten(1)
            out = self.mlp(features)
        else:
            out = self.mlp(x.reshape(-1, math.prod(self.event_shape)))
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
    """

    def __init__(
        self, event_shape: Sequence[int], latent_dim: int, hidden_sizes: Sequence[int], architecture: str = "mlp"
    ) -> None:
        super().__init__()
        check_architecture(architecture, event_shape)
        self.event_shape = tuple(int(size) for size in event_shape)
        self.architecture = architecture
        self.latent_dim = latent_dim
        reversed_sizes = list(hidden_sizes)[::-1]
        if architecture == "conv":
            height, width = image_size(self.event_shape)  # type: ignore[misc]
            self.grid = (_CHANNELS[1], height // 4, width // 4)
            self.mlp = MLP([latent_dim, *reversed_sizes, math.prod(self.grid)])
            self.deconv = nn.Sequential(
                nn.ReLU(),
                nn.ConvTranspose2d(_CHANNELS[1], _CHANNELS[0], 4, stride=2, padding=1),
                nn.ReLU(),
                nn.ConvTranspose2d(_CHANNELS[0], 1, 4, stride=2, padding=1),
            )
        else:
            self.mlp = MLP([latent_dim, *reversed_sizes, math.prod(self.event_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        z : Tensor, shape (..., latent_dim)

        Returns
        -------
        Tensor, shape (..., *event_shape)
        """
        batch = z.shape[:-1]
        out = self.mlp(z.reshape(-1, self.latent_dim))
        if self.architecture == "conv":
            out = self.deconv(out.reshape(-1, *self.grid))
        return out.reshape(*batch, *self.event_shape)
