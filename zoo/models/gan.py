r"""Generative adversarial network: an implicit model that samples but defines no density.

Generative story
----------------
For N data (each of shape ``event_shape``: (D,) for tabular data, (D,) or (height, width) for
images) and a latent dimension L::

    generator weights  W      a point estimate (trained adversarially, not by a likelihood)
    for i in 1..N:
        z[i]  ~ Normal(0, I_L)
        x[i]  =  out(G_W(z[i]))          a Delta site: x is a deterministic function of z
                  out = identity  (output="identity", real-valued data)
                  out = sigmoid   (output="sigmoid", data in [0, 1], e.g. grey-level images)

That is the whole Pyro model: ``forward`` is the generator's sampling story and nothing else.
Because x is a deterministic, lower-dimensional image of z (L < D), the distribution of x has no
density with respect to Lebesgue measure: ``fit.log_prob`` raises, and the model is compared
with others by sample-based metrics (:mod:`zoo.metrics`).

Training is adversarial (Goodfellow et al., 2014), not an ELBO: a discriminator ``D_phi`` (the
model's second network, part of the model because the training objective needs it, though it is
not part of p(x)) learns to tell data from samples, and the generator learns to fool it. The
objective is the model's ``loss``:

* ``"non_saturating"``: D is a classifier with logits ``D(x)``; D minimises the cross-entropy
  ``softplus(-D(x_real)) + softplus(D(x_fake))``, G minimises ``softplus(-D(G(z)))`` (the
  non-saturating generator loss of Goodfellow et al.);
* ``"wgan_gp"``: D is a critic; it minimises
  ``D(x_fake) - D(x_real) + lambda (||grad D(x_hat)|| - 1)^2`` at random interpolates x_hat
  (Gulrajani et al., 2017), G minimises ``-D(G(z))``.

The loop (alternating steps, where the detach goes, optimisers, seeds) is
:func:`zoo.infer.adversarial.run_adversarial`; the model only declares its networks.

Sample sites
------------
=========  ================================  ===============================================
name       shape                             support
=========  ================================  ===============================================
``data``   (N,)                              the data plate
``z``      (N, L)                            real; local (per datum), Normal(0, I)
``x``      (N, *event_shape)                 Delta(out(G(z))): real, or (0, 1) for "sigmoid"
=========  ================================  ===============================================

What a Fit of a GAN holds
-------------------------
The generator's weights are point estimates and z is local, so ``fit.draws`` is empty and every
one of the fit's draws is the same point (as for a VAE). ``fit.sample(n)`` draws z from the prior
and pushes it through the generator. ``fit.log_prob`` and ``fit.log_likelihood`` raise a
ValueError naming the metrics to use instead; ``fit.to_arviz()`` has ``posterior_predictive``
and ``observed_data`` groups and no ``log_likelihood`` group (so no LOO or WAIC).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from zoo.datasets import simulate
from zoo.datasets.dataset import Dataset
from zoo.models.nets import Decoder, Discriminator
from zoo.models.network_model import NetworkModel, check_network_data
from zoo.models.registry import register

__all__ = ["GAN", "LOSSES", "OUTPUTS", "NO_DENSITY"]

LOSSES = ("non_saturating", "wgan_gp")
OUTPUTS = ("auto", "identity", "sigmoid")

#: What a GAN says when asked for a density.
NO_DENSITY = (
    "a GAN is an implicit model: it can sample, but it defines no density (x = G(z) lies on a "
    "low-dimensional surface), so there is no log_prob, log_likelihood, LOO or WAIC for it. "
    "Compare it with other models by sample-based metrics instead: zoo.metrics.mmd (kernel MMD "
    "with its standard error), zoo.metrics.classifier_two_sample_test (0.5 accuracy is perfect), "
    "and for images zoo.metrics.frechet_distance and zoo.metrics.class_coverage "
    "(zoo.metrics.compare_samples puts them in one table)"
)


@register("gan")
class GAN(NetworkModel):
    """Generative adversarial network: generator = model, discriminator = training device.

    Parameters
    ----------
    latent_dim : int
        L, the size of the noise z fed to the generator (>= 1).
    hidden_sizes : sequence of int
        Hidden layer sizes of the discriminator; the generator uses them reversed (the VAE's
        encoder / decoder convention, from ``zoo.models.nets``).
    architecture : {"mlp", "conv"}
        Fully connected, or two stride-2 (transposed) convolutions (images whose height and
        width are multiples of 4, e.g. 8x8 digits, 28x28 MNIST).
    loss : {"non_saturating", "wgan_gp"}
        The adversarial objective (see the module docstring).
    output : {"auto", "identity", "sigmoid"}
        The generator's last transform. "auto" picks "sigmoid" when the training data lie in
        [0, 1] and "identity" otherwise (resolved by ``zoo.fit``).
    image_shape : sequence of int, optional
        Shape of one datum; default: taken from the training data by ``zoo.fit``.
    init_seed : int
        Seed of the networks' initial weights (a private generator: the global one is untouched).

    Examples
    --------
    >>> import zoo
    >>> ring = zoo.datasets.load("ring", num_data=500)
    >>> fit = zoo.fit(zoo.models.GAN(latent_dim=2, hidden_sizes=[32, 32]), ring,
    ...               zoo.Adversarial(num_steps=50, batch_size=100))   # a real fit: thousands of steps
    >>> fit.sample(500).shape
    torch.Size([500, 2])
    >>> score = zoo.metrics.mmd(fit.sample(1000), ring)   # instead of fit.log_prob, which raises:
    >>> fit.log_prob(ring)
    Traceback (most recent call last):
    ValueError: a GAN is an implicit model: it can sample, but it defines no density ...
    """

    enumerated_sites = ()
    local_sites = ("z",)
    max_plate_nesting = 1
    data_plate = "data"
    observed_site = "x"
    value_dim = "feature"  # points in the plane as often as images
    methods = ("adversarial",)
    refused_methods = {
        kind: "a GAN is an implicit model: it samples but has no density p(x), hence no "
        "likelihood for an ELBO or a posterior; it is fitted by adversarial training (zoo.Adversarial)"
        for kind in ("svi", "nuts", "exact")
    }
    # SVI is not a GAN's method (no density, hence no ELBO): no guide applies.
    default_guide = ""
    unsupported_guides = ("delta", "normal", "mvn", "lowrank", "laplace", "iaf")
    num_threads = 1

    def __init__(
        self,
        latent_dim: int,
        hidden_sizes: Sequence[int] = (128, 128),
        architecture: str = "mlp",
        loss: str = "non_saturating",
        output: str = "auto",
        image_shape: Sequence[int] | None = None,
        init_seed: int = 0,
    ) -> None:
        super().__init__(latent_dim, hidden_sizes, architecture, init_seed)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.loss = loss
        self.output = output
        # Small fully connected networks run fastest on one thread; convolutions use torch's setting.
        self.num_threads = 1 if architecture == "mlp" else None  # type: ignore[misc]
        if image_shape is not None:
            self._build(image_shape)

    # ------------------------------------------------------------------ the model
    def transform(self, output: torch.Tensor) -> torch.Tensor:
        """The generator's last transform (identity or sigmoid), shapes unchanged."""
        if self.output == "sigmoid":
            return torch.sigmoid(output)
        return output

    def forward(
        self,
        x: torch.Tensor | None = None,
        num_data: int | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """The generator's sampling story: ``num_data`` draws of x = out(G(z)), z ~ Normal(0, I).

        Parameters
        ----------
        x : None
            A GAN cannot be conditioned on data (it has no density); giving x raises.
        num_data : int
            How many data to generate.
        batch_size : int, optional
            Subsample size of the data plate.

        Returns
        -------
        Tensor, shape (num_data, *event_shape)
        """
        self._check_ready()
        if x is not None:
            raise ValueError(NO_DENSITY)
        if num_data is None:
            raise ValueError("give num_data, the number of data to generate")
        with pyro.plate(self.data_plate, num_data, subsample_size=batch_size, device=self.device):
            z = pyro.sample("z", self.prior())
            value = self.transform(self.generator(z))
            return pyro.sample(self.observed_site, dist.Delta(value, event_dim=len(self.event_shape)))

    # ------------------------------------------------------------------ declarations
    def build_networks(self, shape: list[int]) -> None:
        """The generator (the VAE's decoder) and the discriminator, for data of ``shape``."""
        self.generator = Decoder(shape, self.latent_dim, self.hidden_sizes, self.architecture)
        self.discriminator = Discriminator(shape, self.hidden_sizes, self.architecture)

    @classmethod
    def example(cls) -> tuple["GAN", Dataset]:
        return cls(latent_dim=2, hidden_sizes=[16]), simulate.ring(num_data=40)

    def validate(self, data: Dataset) -> None:
        x = data.x
        check_network_data(data, "GAN", self.image_shape, self.architecture)
        if self.output == "sigmoid":
            low, high = float(x.min()), float(x.max())
            if low < 0.0 or high > 1.0:
                raise ValueError(
                    f"data.x holds values in [{low:g}, {high:g}], but output='sigmoid' generates values "
                    "in (0, 1): scale the data (e.g. digits / 16) or use output='identity'"
                )

    def prepared_config(self, data: Dataset) -> dict[str, Any]:
        """``output="auto"`` resolved: "sigmoid" for data inside [0, 1], "identity" otherwise."""
        if self.output != "auto":
            return {}
        inside = float(data.x.min()) >= 0.0 and float(data.x.max()) <= 1.0
        return {"output": "sigmoid" if inside else "identity"}

    def capability(self, name: str) -> bool:
        return name == "sample"

    def capability_message(self, name: str) -> str | None:
        """Why a GAN cannot do ``name``: for densities, the metrics to use instead."""
        if name == "log_prob":
            return NO_DENSITY
        if name == "discrete":
            return "a GAN has no discrete latent sites"
        return None

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset, **options: Any) -> torch.Tensor:
        """Raises: a GAN defines no density (see :data:`NO_DENSITY`)."""
        raise ValueError(NO_DENSITY)

    # ------------------------------------------------------------------ what training uses
    def generate(self, num_samples: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``forward``'s sampling story without Pyro's bookkeeping (what training calls each step).

        Draws z with torch's global generator, as ``forward`` does under ``pyro.sample``, so for
        the same random state both give the same values (tested).

        Parameters
        ----------
        num_samples : int
        noise : Tensor, shape (num_samples, L), optional
            Use this z instead of drawing it.

        Returns
        -------
        Tensor, shape (num_samples, *event_shape)
            Differentiable with respect to the generator's weights.
        """
        self._check_ready()
        if noise is None:
            noise = torch.randn(num_samples, self.latent_dim, device=self.device)
        return self.transform(self.generator(noise))

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's score (logit, or critic value) of each datum.

        Parameters
        ----------
        x : Tensor, shape (batch, *event_shape)

        Returns
        -------
        Tensor, shape (batch,)
        """
        self._check_ready()
        return self.discriminator(x)

    def generator_parameters(self) -> list[nn.Parameter]:
        self._check_ready()
        return list(self.generator.parameters())

    def discriminator_parameters(self) -> list[nn.Parameter]:
        self._check_ready()
        return list(self.discriminator.parameters())
