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

The guide is the encoder (Kingma and Welling, 2014): q(z[i] | x[i]) = Normal(loc(x[i]),
scale(x[i])), one network for every datum ("amortized", the default guide). A non-amortized guide,
``"normal"``, keeps a separate mean-field Normal per datum (Pyro's ``AutoNormal`` over z, the
decoder weights still point estimates): it fits small data sets only (2 x N x L parameters) and
measures the amortization gap, the ELBO lost by sharing one encoder (:func:`amortization_gap`).
``"delta"`` is a point mass per datum.

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

Minibatches
-----------
``z`` and ``x`` live in the data plate, which is subsampled (``batch_size`` in ``zoo.SVI``, or
explicit indices from the runner's epochs): Pyro scales the batch's log densities by N / batch, so
each step's ELBO is an unbiased estimate of the full-data ELBO.

Compiled steps
--------------
The model and its guides (both VAEs, every guide) are of static structure, and every network
they call is registered with Pyro (``pyro.module`` in the guides, attribute access of the
``PyroModule`` in the model), so they declare ``jit_safe`` and ``zoo.SVI()`` compiles their ELBO
by default (``jit=None``; ``jit=False`` turns it off): the same steps to float rounding (tested),
with epochs on MNIST about 12% shorter, within 1.10x of a hand-written PyTorch loop on the same
networks (``benchmarks/vae.py``). Keep them that way: no Python branch on a tensor's value in
``forward`` or a guide.

What a Fit of a VAE holds (the decision)
----------------------------------------
The decoder weights are point estimates and the codes ``z`` are local latents, so there is no
global latent site to draw: ``fit.draws`` is empty (``z`` is declared in ``local_sites``; keeping
draws of N x L codes would cost memory and describe no parameter of p(x)). The posterior over the
model's parameters is a point mass, so every one of the fit's ``num_draws`` draws is the same,
and:

* ``fit.log_likelihood(data)`` repeats one estimate of log p(x_i) per draw, and ``fit.log_prob``
  is that estimate: the importance-weighted bound (IWAE, Burda et al., 2016) with K particles
  drawn from the encoder, ``fit.log_prob(data, num_particles=K)``; ``estimator="elbo"`` gives the
  plain ELBO per datum. Both are lower bounds in expectation; IWAE tightens as K grows. The
  estimate is seeded (``seed=0``), so the same call gives the same number. It uses the encoder,
  so after a fit with a non-amortized guide (untrained encoder) it is a loose bound.
* ``fit.sample(n)`` draws z from the prior and x from the decoder's likelihood (binary images for
  a Bernoulli likelihood; :func:`decode` gives the mean images).
* ``fit.to_arviz()`` has no posterior group (nothing to put in it), an honest log_likelihood group
  (the repeated estimate: WAIC's p_waic is 0, as it is for a point estimate), and a posterior
  predictive group with one replicate per draw.
* The weights of both networks ride in the model's ``state_dict``, so ``Fit.save`` / ``zoo.load``
  restore them.

Semi-supervised VAE (M2)
------------------------
:class:`SemiSupervisedVAE` is model M2 of Kingma, Rezende, Mohamed and Welling (2014). For C
classes, with labels known for some images (``data.y``; ``-1`` marks an unlabeled one)::

    decoder weights  W      a point estimate, as above
    for i in 1..N:
        y[i]  ~ Categorical(1/C, ..., 1/C)        observed where the label is known
        z[i]  ~ Normal(0, I_L)                    the "style", independent of the class
        x[i]  ~ p(x | decoder_W(z[i], onehot(y[i])))

The guide ("amortized", the default) is q(y | x) = Categorical(classifier(x)) and q(z | x, y) =
Normal(encoder(x, onehot(y))). The objective (their eq. 9) is, per labeled row, the bound on
log p(x, y), L(x, y) = E_q(z|x,y)[log p(x | y, z) + log p(y) + log p(z) - log q(z | x, y)]; per
unlabeled row the bound on log p(x), U(x) = sum_y q(y | x) [L(x, y) - log q(y | x)]; plus the
auxiliary classification term alpha * log q(y_i | x_i) on labeled rows (``classifier_weight``),
without which the classifier would learn from the unlabeled rows only.

How zoo computes it, and why y is enumerated in the guide. The runner's minibatches mix labeled
and unlabeled rows in one data plate, and a sample site is observed or latent as a whole, so
given images ``y`` is a latent site of the model, and the guide supplies it: on a labeled row a
point mass at the label (log q = 0, so the row's ELBO is exactly L(x, y), as if y were observed),
on an unlabeled row q(y | x), enumerated in parallel (``infer={"enumerate": "parallel"}``), so
TraceEnum_ELBO sums over the C classes weighted by q(y | x): U(x) exactly, entropy included, with
no score-function noise (as in Pyro's ``examples/vae/ss_vae_M1_M2.py``). Enumerating y in the
*model* instead (as Naive Bayes does) cannot give M2: a model-enumerated site is invisible to the
guide, and q(z | x, y) needs y. The model declares ``guide_enumerated_sites = ("y",)``, so SVI
uses TraceEnum_ELBO. The auxiliary term is a ``pyro.factor`` ("y_classifier") in the model's data
plate, so minibatches scale it by N / batch like every other per-datum term; it is added only
when fitting (``model_kwargs(training=True)``): the training loss includes it, the held-out loss,
``fit.log_prob`` and the ELBO do not.

=================  ================================  =========================================
name               shape                             support
=================  ================================  =========================================
``data``           (batch,)                          subsample indices of the data plate
``y``              (N,), subsampled to (batch,)      {0, ..., C-1}; local; given images, latent
                                                     (the guide's point mass or enumeration);
                                                     observed when generating with ``y=c``
``z``              (N, L), subsampled to (batch, L)  real; local
``x``              (N, *event_shape)                 as for the VAE; observed
``y_classifier``   (batch,)                          factor alpha * log q(y_i | x_i) on labeled
                                                     rows; when fitting only
=================  ================================  =========================================

A Fit of it holds no draws (``y`` and ``z`` are local sites) and answers:

* ``fit.log_prob(data, num_particles=K)``: log p(x_i, y_i) where the label is given, log p(x_i)
  where it is not (as Naive Bayes): per class the IWAE bound with K codes from q(z | x, y), then
  y summed out exactly. Pass the images alone for log p(x) of every row. ``estimator="elbo"``:
  the M2 bounds L and U.
* ``fit.discrete(data)`` / ``fit.marginals(data)``: the classifier's q(y | x) (its most probable
  class, its probabilities), keeping the label (a one-hot row) where the data give one, as Naive
  Bayes does; :func:`predict` / :func:`predict_proba` classify every row, labels ignored.
* ``fit.sample(n, y=c)``: new images of class c; ``fit.sample(n)``: of classes drawn from p(y).
  ``decode(fit, z, y=c)``: mean images of a style z as class c.
* Guides: "amortized"; "normal" and "delta" keep class logits per datum and a code per datum and
  class (N x C x L), for small data sets.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.autoguide import AutoDelta, AutoNormal
from pyro.infer.autoguide.initialization import init_to_sample
from pyro.ops.indexing import Vindex
from torch import nn

from zoo.checks import check_positive_int
from zoo.datasets.dataset import UNLABELED, Dataset, as_dataset
from zoo.models.base import class_labels
from zoo.models.nets import (
    ARCHITECTURES, Classifier, Decoder, Encoder, NetworkModel, check_architecture, check_network_data, seeded,
)
from zoo.models.registry import register

__all__ = [
    "VAE",
    "SemiSupervisedVAE",
    "LIKELIHOODS",
    "encode",
    "decode",
    "reconstruct",
    "interpolate",
    "elbo",
    "amortization_gap",
    "predict",
    "predict_proba",
]

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian")


@register("vae")
class VAE(NetworkModel):
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
    >>> train, test = zoo.datasets.digits(binarize=True).split(test_fraction=0.2)
    >>> fit = zoo.fit(zoo.models.VAE(latent_dim=8), train, zoo.SVI(batch_size=100, num_epochs=20))
    >>> fit.log_prob(test, num_particles=100).mean()   # IWAE estimate of log p(x), nats per image
    >>> eager = zoo.fit(zoo.models.VAE(latent_dim=8), train, zoo.SVI(batch_size=100, num_epochs=20, jit=False))
    """

    registry_name = "vae"
    enumerated_sites = ()
    local_sites = ("z",)
    max_plate_nesting = 1
    data_plate = "data"
    observed_site = "x"
    methods = ("svi",)
    default_guide = "amortized"
    num_threads = None
    jit_safe = True  # SVI compiles the ELBO by default (see "Compiled steps" above)
    # Autoguides over every datum's code jointly, or over a Hessian of N x L codes, are not
    # sensible for a VAE; "normal" and "delta" are offered by the model itself (minibatch-aware).
    unsupported_guides = ("mvn", "lowrank", "laplace", "iaf")

    def __init__(
        self,
        latent_dim: int,
        likelihood: str = "bernoulli",
        hidden_sizes: Sequence[int] = (256,),
        architecture: str = "mlp",
        image_shape: Sequence[int] | None = None,
        init_seed: int = 0,
    ) -> None:
        super().__init__()
        check_positive_int(latent_dim, "latent_dim", minimum=1)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        hidden = [int(size) for size in hidden_sizes]
        if any(size < 1 for size in hidden):
            raise ValueError(f"hidden_sizes must be positive integers, got {list(hidden_sizes)}")
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.hidden_sizes = hidden
        self.architecture = architecture
        self.init_seed = int(init_seed)
        self.image_shape: list[int] | None = None
        if image_shape is not None:
            self._build([int(size) for size in image_shape])

    def _build(self, shape: list[int]) -> None:
        """Build the networks for images of ``shape`` (seeded by ``init_seed``)."""
        check_architecture(self.architecture, shape)
        self.image_shape = shape
        with seeded(self.init_seed):
            self.encoder = Encoder(shape, self.latent_dim, self.hidden_sizes, self.architecture)
            self.decoder = Decoder(shape, self.latent_dim, self.hidden_sizes, self.architecture)
        if self.likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(shape))

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["VAE", Dataset]:
        from zoo.datasets import real

        data = real.digits(binarize=True)
        return cls(latent_dim=2, hidden_sizes=[16]), data.subset(list(range(40)))

    def config(self) -> dict[str, Any]:
        return {
            "latent_dim": self.latent_dim,
            "likelihood": self.likelihood,
            "hidden_sizes": list(self.hidden_sizes),
            "architecture": self.architecture,
            "image_shape": None if self.image_shape is None else list(self.image_shape),
            "init_seed": self.init_seed,
        }

    def validate(self, data: Dataset) -> None:
        x = data.x
        check_network_data(data, "VAE", self.image_shape, self.architecture)
        if self.likelihood in ("bernoulli", "continuous_bernoulli"):
            low, high = float(x.min()), float(x.max())
            if low < 0.0 or high > 1.0:
                raise ValueError(
                    f"data.x holds values in [{low:g}, {high:g}], outside [0, 1]: the "
                    f"{self.likelihood} likelihood takes pixel intensities in [0, 1]. Scale the data "
                    "(e.g. digits / 16, or zoo.datasets.digits(binarize=True)) or use "
                    "likelihood='gaussian'"
                )

    def dims(self) -> dict[str, list[str]]:
        if self.image_shape is not None and len(self.image_shape) == 2:
            return {"x": ["datum", "row", "column"]}
        return {"x": ["datum", "pixel"]}

    def capability(self, name: str) -> bool:
        return name in ("log_prob", "sample")

    # ------------------------------------------------------------------ the model
    def likelihood_distribution(self, output: torch.Tensor) -> dist.Distribution:
        """p(x | z) from the decoder's output shaped (..., *event_shape); event dims = image dims."""
        if self.likelihood == "bernoulli":
            # no support check, so grey levels in [0, 1] read as cross-entropy targets
            base: dist.Distribution = dist.Bernoulli(logits=output, validate_args=False)
        elif self.likelihood == "continuous_bernoulli":
            base = dist.ContinuousBernoulli(logits=output.clamp(-15.0, 15.0), validate_args=False)
        else:
            base = dist.Normal(output, self.log_scale.exp())
        return base.to_event(len(self.event_shape))

    def forward(
        self,
        x: torch.Tensor | None = None,
        num_data: int | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """p(x, z): ``x`` shaped (N, *event_shape) to condition on, or ``num_data`` to generate."""
        self._check_ready()
        if x is not None:
            num_data = x.shape[0]
        elif num_data is None:
            raise ValueError("give x (to condition on) or num_data (to generate)")
        # A PyroModule registers a plain nn.Module attribute's parameters with Pyro (pyro.module)
        # on every access while it runs, so the decoder is looked up once (each lookup costs a
        # param statement per weight: ~0.1 ms a step, when the whole step is a few ms).
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

    def _not_ready(self, *args: Any, **kwargs: Any) -> None:
        self._check_ready()

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

    # ------------------------------------------------------------------ densities
    def log_likelihood(
        self,
        draws: dict[str, torch.Tensor],
        data: Dataset,
        num_particles: int = 100,
        estimator: str = "iwae",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """An estimate of log p(x_i) per datum, with the encoder as proposal.

        The draws are empty (the decoder is a point estimate, see the module docstring), so one
        row is returned and the Fit repeats it per draw.

        Parameters
        ----------
        draws : dict
            Empty.
        data : Dataset
        num_particles : int
            K, the number of codes drawn from q(z | x) per datum.
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
        weights = self.log_weights(data.x, num_particles=num_particles, seed=seed, batch_size=batch_size)
        if estimator == "iwae":
            estimate = weights.logsumexp(0) - math.log(num_particles)
        elif estimator == "elbo":
            estimate = weights.mean(0)
        else:
            raise ValueError(f"estimator must be 'iwae' or 'elbo', got {estimator!r}")
        return estimate.unsqueeze(0).cpu()

    def log_weights(
        self, x: torch.Tensor, num_particles: int = 1, seed: int = 0, batch_size: int | None = None
    ) -> torch.Tensor:
        """Importance log-weights log p(x, z_k) - log q(z_k | x), z_k ~ q(z | x) from the encoder.

        Parameters
        ----------
        x : Tensor, shape (N, *event_shape)
        num_particles : int
        seed : int
        batch_size : int, optional

        Returns
        -------
        Tensor, shape (num_particles, N)
        """
        self._check_ready()
        if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
        device = self.device
        generator = torch.Generator(device=device).manual_seed(int(seed))
        pixels = max(1, math.prod(self.event_shape))
        chunk = batch_size or max(1, (1 << 22) // (num_particles * pixels))
        prior = self.prior()
        rows = []
        with torch.no_grad():
            for start in range(0, x.shape[0], chunk):
                batch = x[start : start + chunk].to(device)
                loc, scale = self.encoder(batch)
                noise = torch.randn((num_particles,) + loc.shape, generator=generator, device=device)
                z = loc + scale * noise
                log_q = dist.Normal(loc, scale).to_event(1).log_prob(z)
                log_joint = prior.log_prob(z) + self.likelihood_distribution(self.decoder(z)).log_prob(batch)
                rows.append(log_joint - log_q)
        return torch.cat(rows, dim=1)


# ---------------------------------------------------------------------- semi-supervised (M2)
#: log-probability given by the guide to the classes a labeled row does not have: exp of it is
#: exactly 0 in float32, and it stays finite (no 0 * inf in the ELBO's sums).
_EXCLUDED = -1e4


@register("m2_vae")
class SemiSupervisedVAE(VAE):
    """Semi-supervised VAE, model M2 of Kingma, Rezende, Mohamed and Welling (2014).

    p(y) uniform over ``num_classes``, p(z) = Normal(0, I), p(x | y, z) a decoder of the code and
    the one-hot class. The guide ("amortized", the default) is q(y | x) q(z | x, y): a classifier
    and an encoder of the image and the class. Labeled rows (``data.y >= 0``) contribute the ELBO
    of log p(x, y); unlabeled rows (``-1``) the ELBO of log p(x), with y summed out exactly over
    the classifier's probabilities (enumerated in the guide). The auxiliary term
    ``classifier_weight * log q(y | x)`` on labeled rows trains the classifier on the labels too.
    See the module docstring ("Semi-supervised VAE (M2)") for the objective and why y is
    enumerated in the guide.

    Parameters
    ----------
    num_classes : int
        C, the number of classes (>= 2); labels are 0..C-1, and -1 marks an unlabeled row.
    latent_dim : int
        L, the size of each datum's style code z (>= 1).
    likelihood, hidden_sizes, architecture, image_shape, init_seed
        As for :class:`VAE`; the classifier, the encoder and the decoder all use ``hidden_sizes``.
    classifier_weight : float
        alpha: the weight of log q(y_i | x_i) per labeled row in the training objective (>= 0).
        Kingma et al. use 0.1 N in total over the labeled rows; Pyro's example 46 per labeled
        row. zoo's default, 50 per labeled row, is of that order.

    Examples
    --------
    >>> import zoo
    >>> from zoo.models import vae
    >>> train, test = zoo.datasets.digits(binarize=True).split(test_fraction=0.2)
    >>> labels = torch.full_like(train.y, -1); labels[:100] = train.y[:100]   # keep 100 labels
    >>> fit = zoo.fit(zoo.models.SemiSupervisedVAE(10, latent_dim=8), train.replace(y=labels),
    ...               zoo.SVI(batch_size=100, num_epochs=100))
    >>> (vae.predict(fit, test) == test.y).float().mean()       # accuracy of q(y | x)
    >>> fit.sample(16, y=3)                                      # new images of the class 3
    """

    registry_name = "m2_vae"
    # Per-datum latents: the class (summed out by the guide) and the style code; no draws kept.
    local_sites = ("y", "z")
    guide_enumerated_sites = ("y",)

    def __init__(
        self,
        num_classes: int,
        latent_dim: int,
        likelihood: str = "bernoulli",
        hidden_sizes: Sequence[int] = (256,),
        architecture: str = "mlp",
        image_shape: Sequence[int] | None = None,
        init_seed: int = 0,
        classifier_weight: float = 50.0,
    ) -> None:
        check_positive_int(num_classes, "num_classes", minimum=2)
        if isinstance(classifier_weight, bool) or not isinstance(classifier_weight, (int, float)):
            raise TypeError(f"classifier_weight must be a number, got {classifier_weight!r}")
        if not math.isfinite(classifier_weight) or classifier_weight < 0:
            raise ValueError(f"classifier_weight must be a finite number >= 0, got {classifier_weight}")
        super().__init__(latent_dim, likelihood, hidden_sizes, architecture, None, init_seed)
        self.num_classes = num_classes
        self.classifier_weight = float(classifier_weight)
        if image_shape is not None:
            self._build([int(size) for size in image_shape])

    def _build(self, shape: list[int]) -> None:
        check_architecture(self.architecture, shape)
        self.image_shape = shape
        classes, hidden = self.num_classes, self.hidden_sizes
        with seeded(self.init_seed):
            self.classifier = Classifier(shape, classes, hidden, self.architecture)
            self.encoder = Encoder(shape, self.latent_dim, hidden, self.architecture, condition_dim=classes)
            self.decoder = Decoder(shape, self.latent_dim, hidden, self.architecture, condition_dim=classes)
        if self.likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(shape))

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["SemiSupervisedVAE", Dataset]:
        """40 binarised digits, every third one unlabeled: both kinds of rows in one small set."""
        from zoo.datasets import real

        data = real.digits(binarize=True).subset(list(range(40)))
        labels = data.y.clone()
        labels[::3] = UNLABELED
        return cls(num_classes=10, latent_dim=2, hidden_sizes=[16]), dataclasses.replace(data, y=labels)

    def config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, **super().config(), "classifier_weight": self.classifier_weight}

    def validate(self, data: Dataset) -> None:
        super().validate(data)
        if data.y is not None:
            self._check_labels(data.y)

    def _check_labels(self, labels: torch.Tensor) -> None:
        bad = (labels < UNLABELED) | (labels >= self.num_classes)
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"y holds label {int(labels[index])} (row {index}): labels must be in "
                f"0..{self.num_classes - 1}, or {UNLABELED} for an unlabeled row"
            )

    def capability(self, name: str) -> bool:
        return name in ("log_prob", "sample", "discrete")

    def model_kwargs(
        self,
        data: Dataset | None = None,
        *,
        num_samples: int | None = None,
        batch_size: int | None = None,
        y: Any = None,
        training: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
        """Arguments of ``forward`` (and of the guides).

        Parameters
        ----------
        data : Dataset, optional
            Condition on its images ``x`` and its labels ``y`` (-1: unlabeled; no ``y``: all
            unlabeled).
        num_samples : int, optional
            Without data: generate this many images.
        batch_size : int, optional
            Subsample size of the data plate.
        y : int or Tensor, optional
            With data, labels (num_data,) replacing ``data.y``; without data, a class (int) to
            generate class-conditional images from p(x | y).
        training : bool
            True (the runner, fitting): add the auxiliary classification term. Without it (the
            held-out loss, evaluation) the objective is the plain ELBO.
        """
        if data is not None:
            labels = data.y if y is None else torch.as_tensor(y, dtype=torch.long)
            if labels is not None:
                if labels.shape != (len(data),):
                    raise ValueError(f"y must have one label per datum ({len(data)}), got shape {tuple(labels.shape)}")
                self._check_labels(labels)
            weight = self.classifier_weight if training else 0.0
            return {"x": data.x, "y": labels, "batch_size": batch_size, "classifier_weight": weight}
        return {"x": None, "y": class_labels(y, self.num_classes, num_samples), "num_data": num_samples}

    # ------------------------------------------------------------------ the model
    def class_prior(self) -> dist.Distribution:
        """p(y): uniform over the classes."""
        return dist.Categorical(logits=torch.zeros(self.num_classes, device=self.device))

    def one_hot(self, classes: torch.Tensor) -> torch.Tensor:
        """Classes (...) -> one-hot vectors (..., num_classes), float."""
        return nn.functional.one_hot(classes, self.num_classes).float()

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        num_data: int | None = None,
        batch_size: int | None = None,
        classifier_weight: float = 0.0,
    ) -> torch.Tensor:
        """p(x, y, z): ``x`` (and labels ``y``) to condition on, or ``num_data`` to generate.

        Conditioning on images, y is a latent site that the guide supplies (its point mass at the
        label for a labeled row, q(y | x) enumerated for an unlabeled one). Generating, y is
        drawn from p(y), or observed when labels are given (class-conditional images).
        """
        self._check_ready()
        if x is not None:
            num_data = x.shape[0]
        elif num_data is None:
            raise ValueError("give x (to condition on) or num_data (to generate)")
        # Each lookup of a network registers its weights with Pyro (see VAE.forward): once each.
        decoder = self.decoder
        device = next(decoder.parameters()).device
        with pyro.plate(self.data_plate, num_data, subsample_size=batch_size, device=device) as index:
            labels = None if y is None else y.to(device).index_select(0, index)
            class_prior = dist.Categorical(logits=torch.zeros(self.num_classes, device=device))
            if x is None:
                classes = pyro.sample("y", class_prior, obs=labels)
            else:
                classes = pyro.sample("y", class_prior)
            z = pyro.sample("z", dist.Normal(torch.zeros(self.latent_dim, device=device), 1.0).to_event(1))
            observed = None if x is None else x.index_select(0, index)
            output = decoder(z, self.one_hot(classes))
            value = pyro.sample(self.observed_site, self.likelihood_distribution(output), obs=observed)
            if observed is not None and labels is not None and classifier_weight > 0:
                # The auxiliary term of M2: alpha * log q(y_i | x_i) on labeled rows, a factor in
                # the data plate (so scaled like every other per-datum term).
                labeled = labels >= 0
                log_q = self.classifier(observed).log_softmax(-1)
                picked = log_q.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                pyro.factor("y_classifier", classifier_weight * torch.where(labeled, picked, torch.zeros_like(picked)))
            return value

    # ------------------------------------------------------------------ guides
    def _guide_logits(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Normalised class logits of the guide: ``logits`` on unlabeled rows, a point mass at the
        label (log-probability 0, the other classes ``_EXCLUDED``) on labeled ones."""
        logits = logits.log_softmax(-1)
        if labels is None:
            return logits
        known = torch.full_like(logits, _EXCLUDED).scatter(-1, labels.clamp(min=0).unsqueeze(-1), 0.0)
        return torch.where((labels >= 0).unsqueeze(-1), known, logits)

    def amortized_guide(  # type: ignore[override]
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        num_data: int | None = None,
        batch_size: int | None = None,
        classifier_weight: float = 0.0,
    ) -> None:
        """q(y_i | x_i) q(z_i | x_i, y_i): the classifier, enumerated (parallel) where the label is
        unknown and a point mass at it where known, then the encoder of the image and the class."""
        self._check_ready()
        if x is None:
            raise ValueError("the amortized guide encodes data: give x")
        pyro.module("classifier", self.classifier)
        pyro.module("encoder", self.encoder)
        with pyro.plate(self.data_plate, x.shape[0], subsample_size=batch_size, device=self.device) as index:
            batch = x.index_select(0, index)
            labels = None if y is None else y.index_select(0, index)
            logits = self._guide_logits(self.classifier(batch), labels)
            classes = pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
            loc, scale = self.encoder(batch, self.one_hot(classes))
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def _per_datum_guide(self, point_mass: bool) -> Callable[..., None]:
        """Non-amortized: class logits per datum, and a code per datum and class (a Normal, or a
        point mass), for small data sets (N x C x L parameters); follows the data plate's subsample."""

        def guide(
            x: torch.Tensor | None = None,
            y: torch.Tensor | None = None,
            num_data: int | None = None,
            batch_size: int | None = None,
            classifier_weight: float = 0.0,
        ) -> None:
            self._check_ready()
            if x is None:
                raise ValueError("a per-datum guide needs the data: give x")
            size, classes, device = x.shape[0], self.num_classes, self.device
            class_logits = pyro.param("y_logits", lambda: torch.zeros(size, classes, device=device))
            if class_logits.shape[0] != size:
                raise ValueError(
                    f"this guide has parameters for {class_logits.shape[0]} training images, not {size}: "
                    "a per-datum guide cannot take new data"
                )
            loc = pyro.param("z_loc", lambda: 0.1 * torch.randn(size, classes, self.latent_dim, device=device))
            if not point_mass:
                scale = pyro.param(
                    "z_scale",
                    lambda: torch.full((size, classes, self.latent_dim), 0.1, device=device),
                    constraint=dist.constraints.positive,
                )
            with pyro.plate(self.data_plate, size, subsample_size=batch_size, device=device) as index:
                labels = None if y is None else y.index_select(0, index)
                logits = self._guide_logits(class_logits.index_select(0, index), labels)
                chosen = pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
                rows = torch.arange(len(index), device=device)
                where = Vindex(loc.index_select(0, index))[rows, chosen]
                if point_mass:
                    pyro.sample("z", dist.Delta(where, event_dim=1))
                else:
                    spread = Vindex(scale.index_select(0, index))[rows, chosen]
                    pyro.sample("z", dist.Normal(where, spread).to_event(1))

        return guide

    def guides(self) -> dict[str, Callable[..., Any]]:
        """"amortized" (classifier and encoder), and per-datum "normal" / "delta" guides."""
        if self.image_shape is None:  # names only: the guides need the networks (zoo.fit builds them)
            return {name: self._not_ready for name in ("amortized", "normal", "delta")}
        return {
            "amortized": self.amortized_guide,
            "normal": self._per_datum_guide(point_mass=False),
            "delta": self._per_datum_guide(point_mass=True),
        }

    # ------------------------------------------------------------------ densities and classes
    def classify(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """q(y | x), the classifier's class probabilities: (N, num_classes)."""
        self._check_ready()
        with torch.no_grad():
            chunks = [self.classifier(x[start : start + batch_size].to(self.device)).softmax(-1)
                      for start in range(0, x.shape[0], batch_size)]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.num_classes)

    def log_likelihood(
        self,
        draws: dict[str, torch.Tensor],
        data: Dataset,
        num_particles: int = 100,
        estimator: str = "iwae",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """log p(x_i, y_i) for labeled rows, log p(x_i) (y summed out) for the rest: (1, N).

        As Naive Bayes does: pass the images alone (no ``y``) for log p(x) of every row.

        Parameters
        ----------
        estimator : {"iwae", "elbo"}
            "iwae": per class, the importance-weighted bound with K codes from q(z | x, y), then
            y summed out exactly: log sum_y p(y) (1/K) sum_k p(x, z_k | y) / q(z_k | x, y), a
            lower bound in expectation that tightens with K. "elbo": the M2 bound itself, per
            class the mean over the K codes, then sum_y q(y | x) [... - log q(y | x)] for an
            unlabeled row (the training objective without the auxiliary term).
        Other parameters as for :meth:`VAE.log_likelihood`.
        """
        if estimator not in ("iwae", "elbo"):
            raise ValueError(f"estimator must be 'iwae' or 'elbo', got {estimator!r}")
        weights = self.log_weights(data.x, num_particles=num_particles, seed=seed, batch_size=batch_size)
        log_prior = -math.log(self.num_classes)
        if estimator == "iwae":
            per_class = weights.logsumexp(0) - math.log(num_particles) + log_prior  # (C, N)
            marginal = per_class.logsumexp(0)
        else:
            per_class = weights.mean(0) + log_prior
            log_q = self.classify(data.x).clamp(min=torch.finfo(torch.float32).tiny).log().T.to(per_class.device)
            marginal = (log_q.exp() * (per_class - log_q)).sum(0)
        if data.y is not None:
            labels = data.y.to(per_class.device)
            picked = per_class.gather(0, labels.clamp(min=0).unsqueeze(0)).squeeze(0)
            marginal = torch.where(labels >= 0, picked, marginal)
        return marginal.unsqueeze(0).cpu()

    def log_weights(
        self, x: torch.Tensor, num_particles: int = 1, seed: int = 0, batch_size: int | None = None
    ) -> torch.Tensor:
        """Importance log-weights per class: log p(x, z_k | y) - log q(z_k | x, y), z_k ~ q(z | x, y).

        Returns
        -------
        Tensor, shape (num_particles, num_classes, N)
            (One more dim than :meth:`VAE.log_weights`: every class.)
        """
        self._check_ready()
        if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
        device = self.device
        generator = torch.Generator(device=device).manual_seed(int(seed))
        pixels = max(1, math.prod(self.event_shape))
        chunk = batch_size or max(1, (1 << 22) // (num_particles * self.num_classes * pixels))
        prior = self.prior()
        condition = torch.eye(self.num_classes, device=device).unsqueeze(1)  # (C, 1, C)
        rows = []
        with torch.no_grad():
            for start in range(0, x.shape[0], chunk):
                batch = x[start : start + chunk].to(device)
                loc, scale = self.encoder(batch, condition)  # (C, n, L)
                noise = torch.randn((num_particles,) + loc.shape, generator=generator, device=device)
                z = loc + scale * noise
                log_q = dist.Normal(loc, scale).to_event(1).log_prob(z)
                output = self.decoder(z, condition)
                log_joint = prior.log_prob(z) + self.likelihood_distribution(output).log_prob(batch)
                rows.append(log_joint - log_q)
        return torch.cat(rows, dim=2)

    def marginals(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, torch.Tensor]:
        """q(y_i | x_i) (a one-hot row where y_i is given): {"y": (1, N, C)}."""
        probs = self.classify(data.x).cpu()
        if data.y is not None:
            labels = data.y.cpu()
            one_hot = nn.functional.one_hot(labels.clamp(min=0), self.num_classes).to(probs.dtype)
            probs = torch.where((labels >= 0).unsqueeze(-1), one_hot, probs)
        return {"y": probs.unsqueeze(0)}

    def discrete(
        self, params: dict[str, torch.Tensor], data: Dataset, temperature: int = 0
    ) -> dict[str, torch.Tensor]:
        """The classifier's most probable class (temperature 0) or a draw from q(y | x) (1);
        labeled rows keep their label: {"y": (N,)}."""
        probs = self.marginals({}, data)["y"][0]
        if temperature == 0:
            return {"y": probs.argmax(-1)}
        return {"y": torch.multinomial(probs, 1)[:, 0]}


# ---------------------------------------------------------------------- helpers taking a Fit
def _vae(fit: Any) -> VAE:
    model = getattr(fit, "model", fit)
    if not isinstance(model, VAE):
        raise TypeError(f"expected a Fit of a VAE (or a VAE), got {type(model).__name__}")
    model._check_ready()
    return model


def _images(model: VAE, data: Any) -> torch.Tensor:
    x = data.x if isinstance(data, Dataset) else torch.as_tensor(data, dtype=torch.float32)
    if tuple(x.shape[-len(model.event_shape) :]) != model.event_shape:
        raise ValueError(f"images must end in shape {model.event_shape}, got {tuple(x.shape)}")
    return x.to(model.device)


def _classes(model: VAE, y: Any, batch: tuple[int, ...]) -> torch.Tensor | None:
    """One-hot classes for a semi-supervised VAE's networks, from ``y`` (an int, or classes that
    broadcast with ``batch``); None for a plain VAE, which takes no ``y``."""
    if not isinstance(model, SemiSupervisedVAE):
        if y is not None:
            raise ValueError(f"y is for a semi-supervised VAE; a {type(model).__name__} has no classes")
        return None
    if y is None:
        raise ValueError(
            "a semi-supervised VAE's decoder takes the class too: give y (an int, or one class per code)"
        )
    classes = torch.as_tensor(y, dtype=torch.long, device=model.device)
    if bool(((classes < 0) | (classes >= model.num_classes)).any()):
        raise ValueError(f"y must hold classes in 0..{model.num_classes - 1}, got {y!r}")
    onehot = model.one_hot(classes)
    return onehot.expand(*torch.broadcast_shapes(tuple(batch), classes.shape), model.num_classes)


def _encoder_classes(model: VAE, data: Any, x: torch.Tensor, y: Any) -> torch.Tensor | None:
    """The classes a semi-supervised VAE encodes ``x`` with: ``y`` if given, else the data's
    labels where known and the classifier's most probable class elsewhere."""
    if not isinstance(model, SemiSupervisedVAE) or y is not None:
        return y
    predicted = model.classify(x).argmax(-1)
    labels = data.y if isinstance(data, Dataset) else None
    if labels is None:
        return predicted
    labels = labels.to(predicted.device)
    return torch.where(labels >= 0, labels, predicted)


def encode(fit: Any, data: Any, y: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's q(z | x) (q(z | x, y) for a semi-supervised VAE): location and scale of each
    datum's code.

    Parameters
    ----------
    fit : zoo.Fit of a VAE (or the VAE)
    data : Dataset or Tensor, shape (N, *event_shape)
    y : int or Tensor, optional
        Semi-supervised VAE only: the class(es) to encode with. Default: the data's labels where
        given, else the classifier's most probable class.

    Returns
    -------
    loc, scale : Tensor, shape (N, latent_dim)
        ``loc`` is the code to plot (the posterior mean under the encoder).
    """
    model = _vae(fit)
    x = _images(model, data)
    with torch.no_grad():
        condition = _classes(model, _encoder_classes(model, data, x, y), x.shape[: x.dim() - len(model.event_shape)])
        loc, scale = model.encoder(x) if condition is None else model.encoder(x, condition)
    return loc.cpu(), scale.cpu()


def decode(fit: Any, z: torch.Tensor, y: Any = None) -> torch.Tensor:
    """Mean image E[x | z] (E[x | y, z] for a semi-supervised VAE) for codes ``z`` shaped
    (..., latent_dim): (..., *event_shape).

    ``y`` (semi-supervised VAE only, needed there): a class (int), or classes that broadcast with
    ``z``'s batch dims. The same code decoded with every class gives the same style as each class.
    """
    model = _vae(fit)
    z = torch.as_tensor(z, dtype=torch.float32).to(model.device)
    if z.shape[-1] != model.latent_dim:
        raise ValueError(f"z must end in latent_dim={model.latent_dim}, got shape {tuple(z.shape)}")
    with torch.no_grad():
        condition = _classes(model, y, z.shape[:-1])
        output = model.decoder(z) if condition is None else model.decoder(z, condition)
        return model.likelihood_distribution(output).mean.cpu()


def reconstruct(fit: Any, data: Any, y: Any = None) -> torch.Tensor:
    """decode(encode(x)): the mean image at each datum's code, shaped like the data (for a
    semi-supervised VAE, with the classes :func:`encode` uses, or ``y``)."""
    model = _vae(fit)
    classes = _encoder_classes(model, data, _images(model, data), y)
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
        Semi-supervised VAE only: the class to encode and decode with (default: the classifier's
        most probable class of ``first``).

    Returns
    -------
    Tensor, shape (num_steps, *event_shape)
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
    model = _vae(fit)
    pair = torch.stack([torch.as_tensor(first), torch.as_tensor(second)]).float()
    if isinstance(model, SemiSupervisedVAE) and y is None:
        y = int(model.classify(pair[:1]).argmax(-1)[0])
    codes, _ = encode(fit, pair, y=y)
    weights = torch.linspace(0.0, 1.0, num_steps).unsqueeze(-1)
    return decode(fit, (1 - weights) * codes[0] + weights * codes[1], y=y)


def predict_proba(fit: Any, data: Any) -> torch.Tensor:
    """A semi-supervised VAE's classifier q(y | x) for each image, labels (if any) ignored.

    ``fit.marginals(data)`` gives the same for unlabeled rows and a one-hot row where the data's
    label is given (the posterior given everything observed); this classifies every row.

    Returns
    -------
    Tensor, shape (N, num_classes)
    """
    model = _vae(fit)
    if not isinstance(model, SemiSupervisedVAE):
        raise TypeError(f"predict needs a semi-supervised VAE (it has a classifier), got {type(model).__name__}")
    x = _images(model, data)
    if x.dim() != len(model.event_shape) + 1:
        raise ValueError(f"images must be shaped (N, *{model.event_shape}), got {tuple(x.shape)}")
    return model.classify(x).cpu()


def predict(fit: Any, data: Any) -> torch.Tensor:
    """The classifier's most probable class of each image (labels ignored): (N,) int64."""
    return predict_proba(fit, data).argmax(-1)


def elbo(fit: Any, data: Any, num_particles: int = 100, seed: int = 0) -> torch.Tensor:
    """The ELBO per datum with the encoder as q, averaged over ``num_particles`` codes: (N,).

    For a semi-supervised VAE, the M2 bound: of log p(x, y) where the label is given, of log p(x)
    (y summed under q(y | x)) where it is not.
    """
    model = _vae(fit)
    dataset = as_dataset(data)
    return model.log_likelihood({}, dataset, num_particles=num_particles, estimator="elbo", seed=seed)[0]


def amortization_gap(
    fit: Any,
    data: Any,
    num_steps: int = 2000,
    learning_rate: float = 0.02,
    num_particles: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """The ELBO lost by amortization: per-datum Gaussians against the encoder, same decoder.

    Fits a mean-field Normal q_i(z_i) for every datum (``guide="normal"``) with the fitted
    decoder frozen, then compares the ELBO per datum under those q_i with the encoder's ELBO
    (Cremer, Li and Duvenaud, 2018). For small data sets: the per-datum guide has 2 x N x L
    parameters.

    Returns
    -------
    dict
        ``"encoder_elbo"`` and ``"optimal_elbo"`` (means per datum), ``"gap"`` (their difference,
        >= 0 up to optimisation and Monte Carlo error) and ``"fit"`` (the per-datum fit).
    """
    import zoo
    from pyro.infer import Trace_ELBO

    model = _vae(fit)
    if isinstance(model, SemiSupervisedVAE):
        raise NotImplementedError(
            "amortization_gap is for the unsupervised VAE: a semi-supervised VAE's guide has a "
            "classifier too, whose gap this per-datum Gaussian fit does not measure"
        )
    dataset = as_dataset(data)
    frozen = copy.deepcopy(model)
    frozen.decoder.requires_grad_(False)
    frozen.encoder.requires_grad_(False)
    method = zoo.SVI(guide="normal", num_steps=num_steps, learning_rate=learning_rate, num_posterior_samples=1,
                     tolerance=0.0, seed=seed, progress=False)
    with warnings.catch_warnings():  # pyro.module notes that frozen weights are not trained: intended
        warnings.filterwarnings("ignore", message=".*was not registered in the param store.*")
        per_datum = zoo.fit(frozen, dataset, method)
        kwargs = per_datum.model.model_kwargs(dataset)
        with per_datum._context(seed=seed), torch.no_grad():
            estimator = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
            optimal = -estimator.loss(per_datum.model, per_datum.guide, **kwargs) / len(dataset)
    encoder = float(elbo(model, dataset, num_particles=num_particles, seed=seed).mean())
    return {"encoder_elbo": encoder, "optimal_elbo": float(optimal), "gap": float(optimal) - encoder, "fit": per_datum}
