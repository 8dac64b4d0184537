r"""Variational autoencoder: a deep latent-variable model fitted by amortized SVI.

Generative story
----------------
For N images (each of shape ``event_shape``: (D,) or (height, width)) and a latent dimension L::

    decoder weights  W      a point estimate (maximum marginal likelihood, through the ELBO)
    for i in 1..N:
        z[i]  ~ Normal(0, I_L)
        x[i]  ~ p(x | decoder_W(z[i]))    per pixel, independent given z[i]:
                  bernoulli:             Bernoulli(logits = decoder_W(z))
                  continuous_bernoulli:  ContinuousBernoulli(logits = decoder_W(z))
                  gaussian:              Normal(decoder_W(z), exp(log_scale))  (log_scale per pixel)

Sample sites
------------
=========  ================================  ===============================================
name       shape                             support
=========  ================================  ===============================================
``data``   (batch,)                          subsample indices of the data plate
``z``      (N, L), subsampled to (batch, L)  real; local (per datum)
``x``      (N, *event_shape)                 {0, 1} (bernoulli), [0, 1] (continuous_bernoulli)
                                             or real (gaussian); observed
=========  ================================  ===============================================

The guide is the encoder (Kingma and Welling, 2014): q(z[i] | x[i]) = Normal(loc(x[i]),
scale(x[i])), one network for every datum ("amortized", the default guide). ``"normal"`` keeps a
separate mean-field Normal per datum instead (Pyro's ``AutoNormal`` over z, the decoder weights
still point estimates): it fits small data sets only (2 x N x L parameters) and measures the
amortization gap, the ELBO lost by sharing one encoder (:func:`zoo.amortization_gap`).
``"delta"`` is a point mass per datum. ``z`` and ``x`` live in the data plate, which is
subsampled (``batch_size`` in ``zoo.SVI``, or the runner's epochs): Pyro scales the batch's log
densities by N / batch, so each step's ELBO is an unbiased estimate of the full-data ELBO.

The objective can be tuned without touching the model: ``zoo.SVI(kl_weight=beta,
kl_warmup_steps=n)`` trains on ``E_q[log p(x | z)] - beta KL(q(z | x) || p(z))`` with beta
warmed up from 0 over n steps (a beta-VAE; KL annealing against posterior collapse). It
changes the objective, not the density: ``fit.log_prob`` is this model's p(x) whatever beta
was. ``fit.history["reconstruction"]`` and ``["kl"]`` record the two terms per epoch.

A Fit of a VAE keeps no draws (the decoder weights are point estimates, the codes local latents);
``fit.log_prob(data, num_particles=K)`` is the importance-weighted bound on log p(x_i) (IWAE) with K
codes from the encoder, ``estimator="elbo"`` the ELBO; ``fit.sample(n)`` draws z from the prior and
x from the likelihood; the networks' weights ride in the model's ``state_dict``, so ``Fit.save`` and
``zoo.load`` restore them. The likelihood family, these estimates, the data checks and the compiled
steps (``jit_safe``) are shared with the semi-supervised VAE (:mod:`zoo.models.m2`) in
:mod:`zoo.models.autoencoder`; the helpers below (:func:`encode`, :func:`decode`,
:func:`reconstruct`, :func:`interpolate`, :func:`elbo`) take a fit of either model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoDelta, AutoNormal
from pyro.infer.autoguide.initialization import init_to_sample

from zoo.datasets import real
from zoo.datasets.dataset import Dataset, as_dataset
from zoo.models.autoencoder import LIKELIHOODS, Autoencoder
from zoo.models.nets import Decoder, Encoder
from zoo.models.registry import register

__all__ = ["VAE", "LIKELIHOODS", "encode", "decode", "reconstruct", "interpolate", "elbo"]


@register("vae")
class VAE(Autoencoder):
    """Variational autoencoder (Kingma and Welling, 2014): decoder = model, encoder = guide.

    Parameters
    ----------
    latent_dim : int
        L, the size of each datum's code z (>= 1).
    likelihood : {"bernoulli", "continuous_bernoulli", "gaussian"}
        The per-pixel likelihood. "bernoulli" and "continuous_bernoulli" take pixel values in
        [0, 1]; "bernoulli" is a proper density for binary images and is read as the usual
        cross-entropy for grey levels. "gaussian" takes any real values and learns one scale per
        pixel.
    hidden_sizes : list of int
        Hidden layer sizes of the encoder (the decoder uses them reversed).
    architecture : {"mlp", "conv"}
        Fully connected, or two stride-2 convolutions first (height and width multiples of 4).
    image_shape : list of int, optional
        Shape of one datum; default: taken from the training data by ``zoo.fit``.
    init_seed : int
        Seed of the networks' initial weights (a private generator: the global one is untouched).

    Examples
    --------
    >>> import zoo
    >>> train, test = zoo.datasets.load("digits", binarize=True).split(test_fraction=0.2)
    >>> fit = zoo.fit(zoo.models.VAE(latent_dim=8, hidden_sizes=[64]), train,
    ...               zoo.SVI(batch_size=100, num_epochs=2))      # a real fit: tens of epochs
    >>> fit.log_prob(test, num_particles=100).shape   # IWAE estimates of log p(x), nats per image
    torch.Size([359])
    >>> eager = zoo.fit(zoo.models.VAE(latent_dim=8, hidden_sizes=[64]), train,
    ...                 zoo.SVI(batch_size=100, num_epochs=2, jit=False))   # the ELBO not compiled
    """

    def __init__(
        self,
        latent_dim: int,
        likelihood: str = "bernoulli",
        hidden_sizes: Sequence[int] = (256,),
        architecture: str = "mlp",
        image_shape: Sequence[int] | None = None,
        init_seed: int = 0,
    ) -> None:
        super().__init__(latent_dim, likelihood, hidden_sizes, architecture, init_seed)
        if image_shape is not None:
            self._build(image_shape)

    def build_networks(self, shape: list[int]) -> None:
        self.encoder = Encoder(shape, self.latent_dim, self.hidden_sizes, self.architecture)
        self.decoder = Decoder(shape, self.latent_dim, self.hidden_sizes, self.architecture)

    # ------------------------------------------------------------------ the model
    def forward(
        self,
        x: torch.Tensor | None = None,
        num_data: int | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """p(x, z): ``x`` shaped (N, *event_shape) to condition on, or ``num_data`` to generate.

        Returns
        -------
        Tensor, shape (batch, *event_shape)
            The images of the (subsampled) data plate: ``x``'s rows, or new ones.
        """
        num_data = self._plate_size(x, num_data)
        # A PyroModule registers a plain nn.Module attribute's parameters with Pyro (pyro.module)
        # on every access while it runs, so the decoder is looked up once (each lookup costs a
        # param statement per weight).
        decoder = self.decoder
        device = next(decoder.parameters()).device
        with pyro.plate(self.data_plate, num_data, subsample_size=batch_size, device=device) as index:
            z = pyro.sample("z", dist.Normal(torch.zeros(self.latent_dim, device=device), 1.0).to_event(1))
            observed = None if x is None else x.index_select(0, index)
            return pyro.sample(self.observed_site, self.likelihood_distribution(decoder(z)), obs=observed)

    # ------------------------------------------------------------------ guides
    def amortized_guide(
        self,
        x: torch.Tensor | None = None,
        num_data: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        """q(z_i | x_i) = Normal(encoder(x_i)): the encoder, shared by every datum."""
        self._check_ready()
        if x is None:
            raise ValueError("the amortized guide encodes data: give x")
        pyro.module("encoder", self.encoder)
        with pyro.plate(self.data_plate, x.shape[0], subsample_size=batch_size, device=self.device) as index:
            loc, scale = self.encoder(x.index_select(0, index))
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def _create_plates(
        self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size: int | None = None
    ) -> pyro.plate:
        size = x.shape[0] if x is not None else num_data
        return pyro.plate(self.data_plate, size, subsample_size=batch_size, device=self.device)

    def guides(self) -> dict[str, Callable[..., Any]]:
        """"amortized" (the encoder), and per-datum "normal" / "delta" guides over z that follow
        the data plate's subsample (so they take minibatches too)."""
        if self.image_shape is None:  # names only: the guides need the networks (zoo.fit builds them)
            return {name: self._not_ready for name in ("amortized", "normal", "delta")}
        return {
            "amortized": self.amortized_guide,
            "normal": AutoNormal(self, init_loc_fn=init_to_sample, init_scale=0.1, create_plates=self._create_plates),
            "delta": AutoDelta(self, init_loc_fn=init_to_sample, create_plates=self._create_plates),
        }

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["VAE", Dataset]:
        data = real.digits(binarize=True)
        return cls(latent_dim=2, hidden_sizes=[16]), data.subset(list(range(40)))


# ---------------------------------------------------------------------- helpers taking a Fit
def _autoencoder(fit: Any) -> Autoencoder:
    model = getattr(fit, "model", fit)
    if not isinstance(model, Autoencoder):
        raise TypeError(f"expected a Fit of a VAE or a SemiSupervisedVAE (or the model), got {type(model).__name__}")
    model._check_ready()
    return model


def _classes(model: Autoencoder, data: Any, x: torch.Tensor, y: Any) -> Any:
    """``y`` if given, else the model's default classes for ``x`` (None for the VAE; for M2 the
    data's labels where known and the classifier's most probable class elsewhere)."""
    if y is not None:
        return y
    return model.default_classes(x, data.y if isinstance(data, Dataset) else None)


def encode(fit: Any, data: Any, y: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's q(z | x) (q(z | x, y) for a semi-supervised VAE): location and scale of each
    datum's code.

    Parameters
    ----------
    fit : zoo.Fit of a VAE or a SemiSupervisedVAE (or the model)
    data : Dataset or Tensor, shape (N, *event_shape)
    y : int or Tensor, optional
        SemiSupervisedVAE only: the class(es) to encode with. Default: the data's labels where
        given, else the classifier's most probable class.

    Returns
    -------
    loc, scale : Tensor, shape (N, latent_dim)
        ``loc`` is the code to plot (the posterior mean under the encoder).
    """
    model = _autoencoder(fit)
    x = model.images(data)
    with torch.no_grad():
        batch = x.shape[: x.dim() - len(model.event_shape)]
        loc, scale = model.encoder(x, model.network_condition(_classes(model, data, x, y), batch))
    return loc.cpu(), scale.cpu()


def decode(fit: Any, z: torch.Tensor, y: Any = None) -> torch.Tensor:
    """Mean image E[x | z] (E[x | y, z] for a semi-supervised VAE) for codes ``z`` shaped
    (..., latent_dim): (..., *event_shape).

    ``y`` (SemiSupervisedVAE only, needed there): a class (int), or classes that broadcast with
    ``z``'s batch dims. The same code decoded with every class gives the same style as each class.
    """
    model = _autoencoder(fit)
    z = torch.as_tensor(z, dtype=torch.float32).to(model.device)
    if z.shape[-1] != model.latent_dim:
        raise ValueError(f"z must end in latent_dim={model.latent_dim}, got shape {tuple(z.shape)}")
    with torch.no_grad():
        output = model.decoder(z, model.network_condition(y, z.shape[:-1]))
        return model.likelihood_distribution(output).mean.cpu()


def reconstruct(fit: Any, data: Any, y: Any = None) -> torch.Tensor:
    """decode(encode(x)): the mean image at each datum's code, shaped like the data (for a
    semi-supervised VAE, with the classes :func:`encode` uses, or ``y``)."""
    model = _autoencoder(fit)
    classes = _classes(model, data, model.images(data), y)
    loc, _ = encode(fit, data, y=classes)
    return decode(fit, loc, y=classes)


def interpolate(
    fit: Any, first: torch.Tensor, second: torch.Tensor, num_steps: int = 8, y: Any = None
) -> torch.Tensor:
    """Mean images along the straight line between the codes of two images.

    Parameters
    ----------
    first, second : Tensor, shape event_shape
    num_steps : int
        Number of images, both ends included (>= 2).
    y : int, optional
        SemiSupervisedVAE only: the class to encode and decode with (default: the classifier's
        most probable class of ``first``).

    Returns
    -------
    Tensor, shape (num_steps, *event_shape)
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
    model = _autoencoder(fit)
    pair = torch.stack([torch.as_tensor(first), torch.as_tensor(second)]).float()
    if y is None:
        classes = model.default_classes(pair[:1].to(model.device), None)
        y = None if classes is None else int(classes[0])
    codes, _ = encode(fit, pair, y=y)
    weights = torch.linspace(0.0, 1.0, num_steps).unsqueeze(-1)
    return decode(fit, (1 - weights) * codes[0] + weights * codes[1], y=y)


def elbo(fit: Any, data: Any, num_particles: int = 100, seed: int = 0) -> torch.Tensor:
    """The ELBO per datum with the encoder as q, averaged over ``num_particles`` codes: (N,).

    For a SemiSupervisedVAE, the M2 bound: of log p(x, y) where the label is given, of log p(x)
    (y summed under q(y | x)) where it is not.
    """
    model = _autoencoder(fit)
    dataset = as_dataset(data)
    return model.log_likelihood({}, dataset, num_particles=num_particles, estimator="elbo", seed=seed)[0]
