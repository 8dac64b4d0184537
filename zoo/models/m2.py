r"""Semi-supervised VAE: model M2 of Kingma, Rezende, Mohamed and Welling (2014).

Generative story
----------------
For N images (each of shape ``event_shape``), C classes and a latent dimension L, with labels
known for some images (``data.y``; ``-1`` marks an unlabeled one)::

    decoder weights  W      a point estimate (maximum marginal likelihood, through the ELBO)
    for i in 1..N:
        y[i]  ~ Categorical(1/C, ..., 1/C)        observed where the label is known
        z[i]  ~ Normal(0, I_L)                    the "style", independent of the class
        x[i]  ~ p(x | decoder_W(z[i], onehot(y[i])))   per pixel, as for the VAE (bernoulli,
                                                  continuous_bernoulli or gaussian)

Sample sites
------------
=========  ================================  =============================================
name       shape                             support
=========  ================================  =============================================
``data``   (batch,)                          subsample indices of the data plate
``y``      (N,), subsampled to (batch,)      {0, ..., C-1}; local; given images, latent (the
                                             guide's point mass or enumeration); observed
                                             when generating with ``y=c``
``z``      (N, L), subsampled to (batch, L)  real; local
``x``      (N, *event_shape)                 as for the VAE; observed
=========  ================================  =============================================

The guide ("amortized", the default) is a classifier q(y | x) = Categorical(classifier(x)) and an
encoder q(z | x, y) = Normal(encoder(x, onehot(y))). The objective (their eq. 9) is the ELBO of
this density, per labeled row the bound L(x, y) on log p(x, y), per unlabeled row the bound
U(x) = sum_y q(y | x) [L(x, y) - log q(y | x)] on log p(x), plus a term that is not part of the
density: alpha * -log q(y_i | x_i) on the labeled rows (``classifier_weight``), without which the
classifier would learn from the unlabeled rows only. The model declares it as what it is,
:meth:`SemiSupervisedVAE.auxiliary_loss`: SVI adds it on each step's rows, scaled as the ELBO;
held-out losses, ``fit.log_prob`` and the ELBO leave it out.

What M2 shares with the VAE is in :mod:`zoo.models.autoencoder`; the helpers of
:mod:`zoo.models.vae` (``encode``, ``decode``, ...) take a class ``y`` for M2.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch import nn

from zoo.checks import check_positive_float, check_positive_int
from zoo.datasets import real
from zoo.datasets.dataset import UNLABELED, Dataset
from zoo.models.autoencoder import Autoencoder
from zoo.models.base import check_labels, class_labels
from zoo.models.nets import Classifier, Decoder, Encoder
from zoo.models.registry import register

__all__ = ["SemiSupervisedVAE", "predict", "predict_proba"]

#: log-probability given by the guide to the classes a labeled row does not have: exp of it is
#: exactly 0 in float32, and it stays finite (no 0 * inf in the ELBO's sums).
_EXCLUDED = -1e4


@register("m2_vae")
class SemiSupervisedVAE(Autoencoder):
    """Semi-supervised VAE, model M2 of Kingma et al. (2014): p(y) p(z) p(x | y, z).

    The story is in the module docstring; the guide is q(y | x) q(z | x, y), a classifier and an
    encoder of image and class.

    Parameters
    ----------
    num_classes : int
        C, the number of classes (>= 2); labels are 0..C-1, and -1 marks an unlabeled row.
    latent_dim : int
        L, the size of each datum's style code z (>= 1).
    likelihood, hidden_sizes, architecture, image_shape, init_seed
        As for :class:`zoo.models.VAE`; the classifier, the encoder and the decoder all use
        ``hidden_sizes``.
    classifier_weight : float
        alpha: the weight of -log q(y_i | x_i) per labeled row in the training objective (>= 0).
        Kingma et al. use 0.1 N in total over the labeled rows; Pyro's example 46 per labeled
        row. zoo's default, 50 per labeled row, is of that order.

    Examples
    --------
    >>> import torch, zoo
    >>> from zoo.models import m2
    >>> train, test = zoo.datasets.load("digits", binarize=True).split(test_fraction=0.2)
    >>> labels = torch.full_like(train.y, -1); labels[:100] = train.y[:100]   # keep 100 labels
    >>> fit = zoo.fit(zoo.models.SemiSupervisedVAE(10, latent_dim=8, hidden_sizes=[64]),
    ...               zoo.Dataset(train.x, y=labels),
    ...               zoo.SVI(batch_size=100, num_epochs=2))     # a real fit: about 100 epochs
    >>> accuracy = (m2.predict(fit, test) == test.y).float().mean()    # of the classifier q(y | x)
    >>> fit.sample(16, y=3).shape                                  # new images of the class 3
    torch.Size([16, 64])
    """

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
        weight = check_positive_float(classifier_weight, "classifier_weight", allow_zero=True)
        super().__init__(latent_dim, likelihood, hidden_sizes, architecture, init_seed)
        self.num_classes = num_classes
        self.classifier_weight = weight
        if image_shape is not None:
            self._build(image_shape)

    def build_networks(self, shape: list[int]) -> None:
        classes, hidden = self.num_classes, self.hidden_sizes
        self.classifier = Classifier(shape, classes, hidden, self.architecture)
        self.encoder = Encoder(shape, self.latent_dim, hidden, self.architecture, condition_dim=classes)
        self.decoder = Decoder(shape, self.latent_dim, hidden, self.architecture, condition_dim=classes)

    # ------------------------------------------------------------------ the model
    def forward(
        self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, num_data: int | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """p(x, y, z): images ``x`` (N, *event_shape) and labels ``y`` (N,) to condition on, or
        ``num_data`` to generate. Given images, y is latent and the guide supplies it (see
        :meth:`amortized_guide`); generating, y is drawn from p(y), or observed when given.

        Returns
        -------
        Tensor, shape (batch, *event_shape)
        """
        num_data = self._plate_size(x, num_data)
        # Each lookup of a network registers its weights with Pyro (see VAE.forward): once each.
        decoder = self.decoder
        device = next(decoder.parameters()).device
        with pyro.plate(self.data_plate, num_data, subsample_size=batch_size, device=device) as index:
            labels = None if y is None else y.to(device).index_select(0, index)
            class_prior = dist.Categorical(logits=torch.zeros(self.num_classes, device=device))
            classes = pyro.sample("y", class_prior, obs=labels if x is None else None)
            z = pyro.sample("z", dist.Normal(torch.zeros(self.latent_dim, device=device), 1.0).to_event(1))
            observed = None if x is None else x.index_select(0, index)
            output = decoder(z, self.one_hot(classes))
            return pyro.sample(self.observed_site, self.likelihood_distribution(output), obs=observed)

    def auxiliary_loss(self, data: Dataset) -> torch.Tensor:
        """The classification term of M2: classifier_weight * -log q(y_i | x_i) summed over the
        labeled rows of ``data`` (0 when there are none).

        Not part of the density p(x, y, z): it trains the classifier, which the density does not
        contain, on the labels (their eq. 9). SVI adds it to each step's loss on the step's rows,
        scaled as the ELBO is (:meth:`zoo.models.Model.auxiliary_loss`).

        Returns
        -------
        Tensor, shape ()
        """
        self._check_ready()
        device = self.device
        if data.y is None:
            return torch.zeros((), device=device)
        labels = data.y.to(device)
        labeled = labels >= 0
        log_q = self.classifier(data.x.to(device)[labeled]).log_softmax(-1)  # (labeled rows, C)
        picked = log_q.gather(-1, labels[labeled].unsqueeze(-1)).squeeze(-1)
        return -self.classifier_weight * picked.sum()

    # ------------------------------------------------------------------ guides
    def _guide_logits(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Normalised class logits (batch, C) of the guide: ``logits`` on unlabeled rows, a point
        mass at the label (log-probability 0, the other classes ``_EXCLUDED``) on labeled ones."""
        logits = logits.log_softmax(-1)
        if labels is None:
            return logits
        known = torch.full_like(logits, _EXCLUDED).scatter(-1, labels.clamp(min=0).unsqueeze(-1), 0.0)
        return torch.where((labels >= 0).unsqueeze(-1), known, logits)

    def amortized_guide(
        self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, num_data: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        """q(y_i | x_i) q(z_i | x_i, y_i): the classifier, then the encoder of image and class.

        The runner's minibatches mix labeled and unlabeled rows in one data plate, and a sample
        site is observed or latent as a whole, so given images y is latent and the guide supplies
        it: on a labeled row a point mass at the label (log q = 0, so the row's ELBO is exactly
        L(x, y), as if y were observed), on an unlabeled row q(y | x), enumerated in parallel, so
        TraceEnum_ELBO sums over the C classes weighted by q(y | x): U(x) exactly, entropy
        included, with no score-function noise (as in Pyro's ``examples/vae/ss_vae_M1_M2.py``).
        Enumerating y in the *model* instead (as Naive Bayes does) cannot give M2: a
        model-enumerated site is invisible to the guide, and q(z | x, y) needs y. Under
        enumeration y is (C, 1) and z (C, batch, L): one code per class and datum.
        """
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
            x: torch.Tensor | None = None, y: torch.Tensor | None = None, num_data: int | None = None,
            batch_size: int | None = None,
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
                # chosen is (batch,), or (C, 1) under enumeration: pick each row's code of its class
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

    # ------------------------------------------------------------------ declarations and data
    @classmethod
    def example(cls) -> tuple["SemiSupervisedVAE", Dataset]:
        """40 binarised digits, every third one unlabeled: both kinds of rows in one small set."""
        data = real.digits(binarize=True).subset(list(range(40)))
        labels = data.y.clone()
        labels[::3] = UNLABELED
        return cls(num_classes=10, latent_dim=2, hidden_sizes=[16]), dataclasses.replace(data, y=labels)

    def validate(self, data: Dataset) -> None:
        super().validate(data)
        if data.y is not None:
            check_labels(data.y, self.num_classes)

    def capability(self, name: str) -> bool:
        return name in ("log_prob", "sample", "discrete")

    def model_kwargs(
        self, data: Dataset | None = None, *, num_samples: int | None = None, batch_size: int | None = None,
        y: Any = None, **options: Any,
    ) -> dict[str, Any]:
        """Arguments of ``forward`` (and of the guides).

        Parameters
        ----------
        data : Dataset, optional
            Condition on its images ``x`` and labels ``y`` (-1: unlabeled; no ``y``: all unlabeled).
        num_samples : int, optional
            Without data: generate this many images.
        batch_size : int, optional
            Subsample size of the data plate.
        y : int or Tensor, optional
            With data, labels (num_data,) replacing ``data.y``; without data, a class (int) to
            generate class-conditional images from p(x | y).
        """
        if data is not None:
            labels = data.y if y is None else torch.as_tensor(y, dtype=torch.long)
            if labels is not None:
                if labels.shape != (len(data),):
                    raise ValueError(f"y must have one label per datum ({len(data)}), got shape {tuple(labels.shape)}")
                check_labels(labels, self.num_classes)
            return {"x": data.x, "y": labels, "batch_size": batch_size}
        return {"x": None, "y": class_labels(y, self.num_classes, num_samples), "num_data": num_samples}

    # ------------------------------------------------------------------ classes
    def one_hot(self, classes: torch.Tensor) -> torch.Tensor:
        """Classes (...) -> one-hot vectors (..., num_classes), float."""
        return nn.functional.one_hot(classes, self.num_classes).float()

    def classify(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """q(y | x), the classifier's class probabilities of images (N, *event_shape): (N, C)."""
        self._check_ready()
        with torch.no_grad():
            chunks = [self.classifier(x[start : start + batch_size].to(self.device)).softmax(-1)
                      for start in range(0, x.shape[0], batch_size)]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.num_classes)

    def proposal_conditions(self) -> torch.Tensor:
        """Every class as a one-hot row, (C, 1, C): codes are weighed for each class."""
        return torch.eye(self.num_classes, device=self.device).unsqueeze(1)

    def network_condition(self, y: Any, batch_shape: Sequence[int]) -> torch.Tensor:
        """One-hot classes (*broadcast(batch_shape, y.shape), C) from ``y``: an int, or classes
        that broadcast with ``batch_shape``."""
        if y is None:
            raise ValueError(
                "a SemiSupervisedVAE's decoder takes the class too: give y (an int, or one class per code)"
            )
        classes = torch.as_tensor(y, dtype=torch.long, device=self.device)
        if bool(((classes < 0) | (classes >= self.num_classes)).any()):
            raise ValueError(f"y must hold classes in 0..{self.num_classes - 1}, got {y!r}")
        shape = torch.broadcast_shapes(tuple(batch_shape), classes.shape)
        return self.one_hot(classes).expand(*shape, self.num_classes)

    def default_classes(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The labels (N,) where known, else the classifier's most probable class of ``x``."""
        predicted = self.classify(x).argmax(-1)
        if labels is None:
            return predicted
        labels = labels.to(predicted.device)
        return torch.where(labels >= 0, labels, predicted)

    # ------------------------------------------------------------------ densities and classes
    def combine_conditions(self, bound: torch.Tensor, data: Dataset, estimator: str) -> torch.Tensor:
        """log p(x_i, y_i) for labeled rows, log p(x_i) (y summed out) for the rest, from the
        bound per class ``bound`` (C, N): (N,). ``fit.log_prob`` of the images alone (no ``y``)
        gives log p(x) of every row, as for Naive Bayes.

        "iwae": y summed out exactly, log sum_y p(y) (1/K) sum_k p(x, z_k | y) / q(z_k | x, y),
        a lower bound in expectation that tightens with K. "elbo": the M2 bound itself,
        sum_y q(y | x) [L(x, y) - log q(y | x)] on an unlabeled row (the training objective
        without the auxiliary term).
        """
        per_class = bound - math.log(self.num_classes)  # + log p(y)
        if estimator == "iwae":
            marginal = per_class.logsumexp(0)
        else:
            log_q = self.classify(data.x).clamp(min=torch.finfo(torch.float32).tiny).log().T.to(per_class.device)
            marginal = (log_q.exp() * (per_class - log_q)).sum(0)
        if data.y is None:
            return marginal
        labels = data.y.to(per_class.device)
        picked = per_class.gather(0, labels.clamp(min=0).unsqueeze(0)).squeeze(0)
        return torch.where(labels >= 0, picked, marginal)

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


def predict_proba(fit: Any, data: Any) -> torch.Tensor:
    """The classifier q(y | x) of a SemiSupervisedVAE for each image, labels (if any) ignored.

    ``fit.marginals(data)`` gives the same for unlabeled rows and a one-hot row where the data's
    label is given (the posterior given everything observed); this classifies every row.

    Parameters
    ----------
    fit : zoo.Fit of a SemiSupervisedVAE (or the model)
    data : Dataset or Tensor, shape (N, *event_shape)

    Returns
    -------
    Tensor, shape (N, num_classes)
    """
    model = getattr(fit, "model", fit)
    if not isinstance(model, SemiSupervisedVAE):
        raise TypeError(f"predict needs a Fit of a SemiSupervisedVAE (M2, which has a classifier), got {type(model).__name__}")
    return model.classify(model.images(data, batched=True)).cpu()


def predict(fit: Any, data: Any) -> torch.Tensor:
    """The classifier's most probable class of each image (labels ignored): (N,) int64."""
    return predict_proba(fit, data).argmax(-1)
