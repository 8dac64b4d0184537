"""What the VAE and the semi-supervised VAE (M2) share; neither story lives here.

``vae.py`` writes p(x, z) and ``m2.py`` writes p(x, y, z); both decode a code (and, for M2, a
class) into the parameters of a pixel likelihood, and both are fitted with an encoder that
proposes codes. :class:`Autoencoder` holds what would otherwise be written twice:

* the likelihood family of the decoder's output, p(x | output) per pixel (:data:`LIKELIHOODS`),
  and the check that the data lie in its support;
* the importance weights log p(x, z_k | c) - log q(z_k | x, c) with codes z_k from the encoder,
  for every condition c the networks take (none for the VAE, each class for M2): the machinery
  of both models' IWAE and ELBO estimates;
* how a model turns classes into the vector its networks are conditioned on (none for the VAE),
  which the helpers of :mod:`zoo.models.vae` (``encode``, ``decode``, ...) use for both models;
* the constructor's checks, the configuration and the declarations the two models have in common.

Compiled steps: the models and their guides are of static structure, and every network they call
is registered with Pyro (``pyro.module`` in the guides, attribute access of the ``PyroModule`` in
the model), so they declare ``jit_safe`` and ``zoo.SVI()`` compiles their ELBO by default
(``jit=False`` turns it off; the steps are the same to float rounding, tested). Keep them that
way: no Python branch on a tensor's value in ``forward`` or a guide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from torch import nn

from zoo.checks import check_positive_int
from zoo.datasets.dataset import Dataset
from zoo.models.nets import Decoder, Encoder
from zoo.models.network_model import NetworkModel, check_network_data

__all__ = ["Autoencoder", "LIKELIHOODS"]

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")
ESTIMATORS = ("iwae", "elbo")


class Autoencoder(NetworkModel):
    """Base of the VAE and M2: a decoder's pixel likelihood and an encoder's proposals.

    A subclass builds its networks in :meth:`build_networks` (at least ``encoder``, an
    :class:`~zoo.models.nets.Encoder`, and ``decoder``, a :class:`~zoo.models.nets.Decoder`),
    calls :meth:`_build` at the end of its constructor when given ``image_shape``, and writes its
    own ``forward`` and guides; a model whose networks take a class also says how its estimates
    per class combine into log p(x) (:meth:`combine_conditions`).

    Parameters
    ----------
    latent_dim, likelihood, hidden_sizes, architecture, init_seed
        As for :class:`zoo.models.VAE`. A Gaussian likelihood learns one scale per pixel
        (``log_scale``, shaped like one datum).
    """

    local_sites = ("z",)
    methods = ("svi",)
    refused_methods = {
        "nuts": (
            "its posterior holds every datum's code z (N x latent_dim continuous local latents, "
            "which no enumeration sums out) around a network's weights: NUTS would sample all of "
            "them jointly, one gradient of the whole data set per leapfrog step, on a posterior "
            "far too large and multimodal to mix in any useful time. Amortized SVI (zoo.SVI) "
            "learns one encoder for every code instead"
        ),
        "exact": "no closed-form posterior exists for a neural decoder",
    }
    default_guide = "amortized"
    num_threads = None
    jit_safe = True
    # Autoguides over every datum's code jointly, or over a Hessian of N x L codes, are not
    # sensible here; "normal" and "delta" are offered by each model itself (minibatch-aware).
    unsupported_guides = ("mvn", "lowrank", "laplace", "iaf")

    encoder: Encoder
    decoder: Decoder

    def __init__(
        self, latent_dim: int, likelihood: str, hidden_sizes: Sequence[int], architecture: str, init_seed: int
    ) -> None:
        super().__init__(latent_dim, hidden_sizes, architecture, init_seed)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.likelihood = likelihood

    def _build(self, shape: Sequence[int]) -> None:
        """Build the networks for data of ``shape`` (seeded by ``init_seed``), and the per-pixel
        log scale of a Gaussian likelihood."""
        super()._build(shape)
        if self.likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(shape))

    # ------------------------------------------------------------------ declarations

    def validate(self, data: Dataset) -> None:
        """Raise ValueError unless ``data`` are independent images of the built shape, with
        values in the likelihood's support."""
        check_network_data(data, type(self).__name__, self.image_shape, self.architecture)
        if self.likelihood in ("bernoulli", "continuous_bernoulli"):
            low, high = float(data.x.min()), float(data.x.max())
            if low < 0.0 or high > 1.0:
                raise ValueError(
                    f"data.x holds values in [{low:g}, {high:g}], outside [0, 1]: the "
                    f"{self.likelihood} likelihood takes pixel intensities in [0, 1]. Scale the data "
                    "(e.g. digits / 16, or zoo.datasets.load('digits', binarize=True)) or use "
                    "likelihood='gaussian'"
                )

    def images(self, data: Any, batched: bool = False) -> torch.Tensor:
        """The images of ``data`` (a Dataset, or a tensor or array shaped (..., *event_shape)) on
        the networks' device; ``batched`` asks for exactly one batch dim, (N, *event_shape)."""
        self._check_ready()
        x = data.x if isinstance(data, Dataset) else torch.as_tensor(data, dtype=torch.float32)
        batch_dims = x.dim() - len(self.event_shape)
        if tuple(x.shape[batch_dims:]) != self.event_shape or batch_dims < 0 or (batched and batch_dims != 1):
            expected = f"(N, *{self.event_shape})" if batched else f"(..., *{self.event_shape})"
            raise ValueError(f"images must be shaped {expected}, got {tuple(x.shape)}")
        return x.to(self.device)

    def _plate_size(self, x: torch.Tensor | None, num_data: int | None) -> int:
        """The size of ``forward``'s data plate: the rows of ``x``, or ``num_data`` to generate."""
        self._check_ready()
        return self.plate_size(x, num_data)

    def _not_ready(self, *args: Any, **kwargs: Any) -> None:
        """What a guide is before the networks exist: it asks for them to be built."""
        self._check_ready()

    # ------------------------------------------------------------------ the decoder's likelihood
    def likelihood_distribution(self, output: torch.Tensor) -> dist.Distribution:
        """p(x | output) from the decoder's output shaped (..., *event_shape).

        Returns
        -------
        Distribution
            Batch shape (...), event shape ``event_shape`` (pixels independent given the output).
        """
        if self.likelihood == "bernoulli":
            # no support check, so grey levels in [0, 1] read as cross-entropy targets
            base: dist.Distribution = dist.Bernoulli(logits=output, validate_args=False)
        elif self.likelihood == "continuous_bernoulli":
            base = dist.ContinuousBernoulli(logits=output.clamp(-15.0, 15.0), validate_args=False)
        else:
            base = dist.Normal(output, self.log_scale.exp())
        return base.to_event(len(self.event_shape))

    # ------------------------------------------------------------------ conditions (classes)
    def proposal_conditions(self) -> torch.Tensor | None:
        """What the encoder and decoder are conditioned on when weighing codes for every
        condition at once: None (the VAE); M2, every class as a one-hot row, (C, 1, C)."""
        return None

    def network_condition(self, y: Any, batch_shape: Sequence[int]) -> torch.Tensor | None:
        """The vector the networks are conditioned on for classes ``y``, broadcast with
        ``batch_shape``: (*batch, C), or None for a model without classes (which refuses a ``y``)."""
        if y is not None:
            raise ValueError(f"y is for a SemiSupervisedVAE (M2); a {type(self).__name__} has no classes")
        return None

    def default_classes(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The classes to encode images ``x`` (N, *event_shape) with when none are given: None
        for a model without classes; M2 uses the ``labels`` where known, else its classifier."""
        return None

    # ------------------------------------------------------------------ importance weights
    def log_weights(
        self, x: torch.Tensor, num_particles: int = 1, seed: int = 0, batch_size: int | None = None
    ) -> torch.Tensor:
        """Importance log-weights log p(x, z_k | c) - log q(z_k | x, c), z_k ~ q(z | x, c).

        One set of K codes per datum and condition c (:meth:`proposal_conditions`: none for the
        VAE, each class for M2), drawn with a private generator.

        Parameters
        ----------
        x : Tensor, shape (N, *event_shape)
        num_particles : int
            K, codes per datum and condition.
        seed : int
            Seed of the codes' generator: the same call gives the same weights.
        batch_size : int, optional
            Data per chunk (memory); default: chunks of about 4 million numbers.

        Returns
        -------
        Tensor, shape (num_particles, *conditions, N)
            (K, N) for the VAE; (K, C, N) for M2.
        """
        self._check_ready()
        check_positive_int(num_particles, "num_particles")
        device = self.device
        generator = torch.Generator(device=device).manual_seed(int(seed))
        condition = self.proposal_conditions()  # None, or (C, 1, C): broadcasts against (n, ...)
        width = 1 if condition is None else condition.shape[0]
        chunk = batch_size or max(1, (1 << 22) // (num_particles * width * max(1, math.prod(self.event_shape))))
        prior = self.prior()
        rows = []
        with torch.no_grad():
            for start in range(0, x.shape[0], chunk):
                batch = x[start : start + chunk].to(device)
                loc, scale = self.encoder(batch, condition)  # (*conditions, n, L)
                noise = torch.randn((num_particles,) + loc.shape, generator=generator, device=device)
                z = loc + scale * noise
                log_q = dist.Normal(loc, scale).to_event(1).log_prob(z)
                output = self.decoder(z, condition)
                log_joint = prior.log_prob(z) + self.likelihood_distribution(output).log_prob(batch)
                rows.append(log_joint - log_q)
        return torch.cat(rows, dim=-1)

    def log_likelihood(
        self,
        draws: dict[str, torch.Tensor],
        data: Dataset,
        num_particles: int = 100,
        estimator: str = "iwae",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """An estimate of log p(x_i) per datum (M2: of log p(x_i, y_i) where the label is given),
        with the encoder as proposal.

        The decoder weights are point estimates and the codes are local latents, so a Fit keeps
        no draws (``fit.draws`` is empty; the codes are in ``local_sites``) and every one of its
        ``num_draws`` draws is the same point: one row is returned, and the Fit repeats it per
        draw (in ArviZ's log_likelihood group too, where WAIC's p_waic is then 0, as for any
        point estimate). Both estimates are lower bounds in expectation; they use the encoder, so
        after a fit with a non-amortized guide (untrained encoder) they are loose.

        Parameters
        ----------
        draws : dict
            Empty.
        data : Dataset
        num_particles : int
            K, the number of codes drawn from q(z | x) per datum (and per class, for M2).
        estimator : {"iwae", "elbo"}
            "iwae": log (1/K) sum_k p(x, z_k) / q(z_k | x), a lower bound that tightens with K
            (Burda et al., 2016). "elbo": (1/K) sum_k log p(x, z_k) / q(z_k | x), the ELBO.
        seed : int
            Seed of a private generator for the codes: the same call gives the same estimate.
        batch_size : int, optional
            Data per chunk (memory); default: chunks of about 4 million numbers.

        Returns
        -------
        Tensor, shape (1, num_data)
        """
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be 'iwae' or 'elbo', got {estimator!r}")
        weights = self.log_weights(data.x, num_particles=num_particles, seed=seed, batch_size=batch_size)
        if estimator == "iwae":
            bound = weights.logsumexp(0) - math.log(num_particles)
        else:
            bound = weights.mean(0)
        return self.combine_conditions(bound, data, estimator).unsqueeze(0).cpu()

    def combine_conditions(self, bound: torch.Tensor, data: Dataset, estimator: str) -> torch.Tensor:
        """The estimate per datum from the estimates per condition and datum.

        Parameters
        ----------
        bound : Tensor, shape (*conditions, N)
            The estimate given each condition (:meth:`proposal_conditions`).
        data : Dataset
        estimator : {"iwae", "elbo"}

        Returns
        -------
        Tensor, shape (N,)
            ``bound`` itself for a model without conditions (the VAE).
        """
        return bound
