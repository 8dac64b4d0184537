"""Adversarial training: alternating discriminator and generator steps (a GAN's method); the
runner of ``zoo.Adversarial``.

A model that takes ``zoo.Adversarial()`` declares ``"adversarial"`` in its ``methods``, names
its objective in ``model.loss`` (one of :data:`OBJECTIVES`), and offers

* ``generate(num_samples, noise=None) -> Tensor (num_samples, *event_shape)``: its
  ``forward``'s sampling story without Pyro's bookkeeping, differentiable in the generator's
  weights (``noise``: the z to use, shaped (num_samples, latent_dim)). Training draws the
  noise itself, from torch's global generator as ``generate`` would (so the model also needs a
  ``latent_dim`` attribute), and always passes it;
* ``discriminate(x) -> Tensor (batch,)``: the discriminator's score of each datum;
* ``generator_parameters()`` and ``discriminator_parameters()``.

One step of training is ``discriminator_steps`` discriminator updates, each on a fresh minibatch
of real data and of samples, then one generator update:

* the discriminator's samples are made without a graph into the generator (``torch.no_grad``,
  which is ``detach`` without the wasted graph): its loss must not move the generator;
* the last discriminator update's samples are made *with* the graph and detached for the
  discriminator's loss; the generator's update then reuses them through the (just updated)
  discriminator, the usual DCGAN loop, which saves one generator pass per step. Gradients that
  reach the discriminator's weights in the generator's update are cleared before its next step,
  and its optimiser never sees them.

Optimiser: Adam with ``betas`` (0.5, 0.999) by default (Radford et al., 2016); WGAN-GP asks for
(0.5, 0.9) and several critic steps per generator step (``discriminator_steps=5``).

Recorded per step: ``fit.losses`` is the generator's loss; ``fit.history`` holds
"discriminator_loss" (the mean over the step's discriminator updates), "real_score" and
"fake_score" (the discriminator's mean score of real data and of samples in the step's last
update), and, for WGAN-GP, "gradient_penalty". None of them is an ELBO: a GAN's losses do not
measure fit, and need not go down; use :mod:`zoo.metrics` on samples for that.

Several processes (``distributed=True``, started by ``torchrun``): DistributedDataParallel's
arithmetic, as for SVI (:mod:`zoo.infer.distributed`). Every process holds the same networks and
takes its shard of each global minibatch of real data; each discriminator update and each
generator update averages the gradients over the processes in one all-reduce, so every process
applies the same update and the run follows the single-process run on the same global batches
(tested to float tolerance). The noise z is not drawn per process: every process draws the
noise of the whole global batch from the shared seed (as the single process does) and keeps its
shard's rows, and the same for WGAN-GP's interpolation weights. Noise drawn per process from a
seed offset by rank would be as good statistically but would differ from the single-process
run's noise, which would then be equal only in distribution and not testable for equality; the
cost of the shared draw is (world - 1) x batch x latent_dim extra normal draws per update,
nothing next to the networks' passes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional

from zoo.datasets.dataset import Dataset
from zoo.infer.distributed import average_gradients, join, shard
from zoo.infer.methods import OBJECTIVES, Adversarial
from zoo.infer.optimizers import Adam
from zoo.infer.runtime import isolated, progress_bar, threads
from zoo.models.base import Model
from zoo.results import Fit, FitError

__all__ = ["Adversarial", "run_adversarial", "OBJECTIVES", "discriminator_loss", "generator_loss"]

# ---------------------------------------------------------------------- the objectives
def discriminator_loss(
    loss: str,
    discriminate: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    gradient_penalty: float = 10.0,
    mix: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The discriminator's loss on a minibatch of real data and (detached) samples.

    Parameters
    ----------
    loss : {"non_saturating", "wgan_gp"}
    discriminate : callable
        x shaped (batch, *event_shape) -> scores (batch,).
    real, fake : Tensor, shape (batch, *event_shape)
        ``fake`` must carry no graph into the generator.
    gradient_penalty : float
        WGAN-GP's lambda.
    mix : Tensor, shape (batch, 1, ..., 1), optional
        WGAN-GP's interpolation weights between ``real`` and ``fake`` (uniform on [0, 1]);
        drawn here with torch's global generator when not given.

    Returns
    -------
    loss : Tensor, shape ()
    mean_scores : Tensor, shape (2,)
        The mean score of the real data and of the samples, detached (one reduction for both:
        it is recorded every step).
    penalty : Tensor, shape ()
        The gradient penalty, detached (0 for non_saturating).
    """
    # real and samples in one call: (2 * batch,) scores, real ones first
    pooled = discriminate(torch.cat([real, fake]))
    real_scores, fake_scores = pooled[: len(real)], pooled[len(real) :]
    mean_scores = pooled.detach().view(2, -1).mean(dim=1)  # (2,): real, samples (equal counts)
    if loss == "wgan_gp":
        if mix is None:
            mix = torch.rand(_mix_shape(real, len(real)), device=real.device)
        between = (mix * real + (1 - mix) * fake).requires_grad_(True)
        (gradient,) = torch.autograd.grad(discriminate(between).sum(), between, create_graph=True)
        penalty = ((gradient.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
        value = fake_scores.mean() - real_scores.mean() + gradient_penalty * penalty
        return value, mean_scores, penalty.detach()
    value = functional.softplus(-real_scores).mean() + functional.softplus(fake_scores).mean()
    return value, mean_scores, _ZERO


def generator_loss(loss: str, fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator's loss from the discriminator's scores of its samples (with their graph).

    "non_saturating": mean softplus(-D(G(z))) = -log sigmoid(D(G(z))); "wgan_gp": -mean D(G(z)).
    """
    if loss == "wgan_gp":
        return -fake_scores.mean()
    return functional.softplus(-fake_scores).mean()


#: The non-saturating loss's gradient penalty: none (one constant, not a new tensor per step).
_ZERO = torch.zeros(())


def _mix_shape(real: torch.Tensor, rows: int) -> tuple[int, ...]:
    """The shape of WGAN-GP's interpolation weights for ``rows`` rows shaped like ``real``'s."""
    return (rows,) + (1,) * (real.dim() - 1)


class _RealBatches:
    """Shuffled minibatches of real data, epoch after epoch, from a private generator."""

    def __init__(self, num_data: int, batch_size: int, seed: int) -> None:
        self.num_data, self.batch = num_data, min(batch_size, num_data)
        self.per_epoch = max(1, num_data // self.batch)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.position = self.per_epoch
        self.order = torch.arange(num_data)
        self.epochs = 0

    def next(self) -> torch.Tensor:
        if self.position == self.per_epoch:
            self.order = torch.randperm(self.num_data, generator=self.generator)
            self.position = 0
            self.epochs += 1
        index = self.order[self.position * self.batch : (self.position + 1) * self.batch]
        self.position += 1
        return index



# ---------------------------------------------------------------------- one step
class _Adversaries:
    """The model's two networks seen through the adversarial protocol, their optimisers, the
    real data and how it is shared among the processes: what one training step needs.

    Parameters
    ----------
    model : zoo.models.Model
        A prepared model offering ``generate``, ``discriminate``, ``generator_parameters``,
        ``discriminator_parameters``, ``latent_dim`` and ``loss``.
    data : Dataset
    method : Adversarial
    rank, world : int
        This process and the number of processes.
    device : torch.device
    """

    def __init__(self, model: Model, data: Dataset, method: Adversarial, rank: int, world: int, device: torch.device) -> None:
        self.method, self.rank, self.world, self.device = method, rank, world, device
        self.loss: str = model.loss  # type: ignore[attr-defined]
        self.latent_dim: int = model.latent_dim  # type: ignore[attr-defined]
        self.generate: Callable[..., torch.Tensor] = model.generate  # type: ignore[attr-defined]
        self.discriminate: Callable[[torch.Tensor], torch.Tensor] = model.discriminate  # type: ignore[attr-defined]
        self.generator_params = list(model.generator_parameters())  # type: ignore[attr-defined]
        self.discriminator_params = list(model.discriminator_parameters())  # type: ignore[attr-defined]
        self.x = data.x.to(device)
        self.batch = min(method.batch_size, len(data))
        if self.batch < world:
            raise ValueError(
                f"batch_size={self.batch} cannot be shared by {world} processes: each needs at least one row"
            )
        self.batches = _RealBatches(len(data), self.batch, method.seed)
        # zoo's Adam (torch.optim.Adam's update): torch.optim would import torch's compiler on a first fit
        self.g_optimizer = Adam(self.generator_params, learning_rate=method.generator_learning_rate, betas=method.betas)
        self.d_optimizer = Adam(
            self.discriminator_params, learning_rate=method.discriminator_learning_rate, betas=method.betas
        )

    def discriminator_update(self, last: bool) -> "_DiscriminatorUpdate | None":
        """One discriminator update on a fresh minibatch of real data and samples; None if its
        loss is not finite (no update is then made).

        ``last``: the step's last update, whose samples keep their graph into the generator for
        the generator's update to reuse.
        """
        index = shard(self.batches.next(), self.rank, self.world)
        real = self.x[index.to(self.device)]
        # the global batch's noise from the shared random state, this process's rows of it: the
        # single process's noise, whatever the number of processes (drawn here as the model's
        # generate would draw it)
        noise = shard(torch.randn(self.batch, self.latent_dim, device=self.device), self.rank, self.world)
        fake = None
        if last:
            fake = self.generate(len(index), noise=noise)  # with its graph: G's step reuses it
            detached = fake.detach()  # the discriminator's loss must not reach G
        else:
            with torch.no_grad():
                detached = self.generate(len(index), noise=noise)
        mix = None
        if self.world > 1 and self.loss == "wgan_gp":
            mix = shard(torch.rand(_mix_shape(real, self.batch), device=self.device), self.rank, self.world)
        d_loss, mean_scores, penalty = discriminator_loss(
            self.loss, self.discriminate, real, detached, self.method.gradient_penalty, mix
        )
        # this shard's losses weighted by its share of the global batch, so that the mean over
        # processes is the global batch's loss (and gradient)
        weight = len(index) * self.world / self.batch
        self.d_optimizer.zero_grad()
        reported = self._backward(d_loss, self.discriminator_params, weight, (mean_scores, penalty))
        if reported is None:
            return None
        d_value, (mean_scores, penalty) = reported
        self.d_optimizer.step()
        return _DiscriminatorUpdate(d_value, fake, mean_scores, penalty, weight)

    def generator_update(self, fake: torch.Tensor, weight: float) -> float | None:
        """One generator update through the (just updated) discriminator's scores of ``fake``;
        returns its loss, or None if that is not finite (no update is then made)."""
        g_loss = generator_loss(self.loss, self.discriminate(fake))
        self.g_optimizer.zero_grad()
        reported = self._backward(g_loss, self.generator_params, weight)
        if reported is None:
            return None
        self.g_optimizer.step()
        return reported[0]

    def _backward(
        self, loss: torch.Tensor, parameters: list[torch.Tensor], weight: float, values: tuple[torch.Tensor, ...] = ()
    ) -> tuple[float, list[torch.Tensor]] | None:
        """The backward pass of one network's ``loss``: (the loss, ``values``), averaged over
        the processes with the gradients of ``parameters``, or None if the loss is not finite
        (on every process alike: all stop).

        ``weight`` is this process's share of the global batch; ``values`` are other records to
        average in the same all-reduce (the mean scores (2,) and the penalty ()).
        """
        if self.world == 1:  # no averaging: the records stay as they are, with no copy
            value = float(loss.detach())
            if not math.isfinite(value):
                return None
            loss.backward()
            return value, list(values)
        if torch.isfinite(loss):
            (loss * weight).backward()
        flat = torch.cat([loss.detach().reshape(1)] + [value.to(loss).reshape(-1) for value in values]) * weight
        flat = average_gradients(parameters, flat, self.world)
        if not math.isfinite(float(flat[0])):
            return None
        parts = flat[1:].split([value.numel() for value in values])
        return float(flat[0]), [part.reshape(value.shape) for part, value in zip(parts, values)]

    def clear_gradients(self) -> None:
        """Leave no gradients on the fitted networks (the Fit's model)."""
        self.d_optimizer.zero_grad()
        self.g_optimizer.zero_grad()


@dataclass
class _DiscriminatorUpdate:
    """What a discriminator update reports: its loss, the samples with their graph (its step's
    last update only), the mean scores of real data and samples (2,), the gradient penalty and
    this process's weight in the global batch."""

    loss: float
    fake: torch.Tensor | None
    mean_scores: torch.Tensor
    penalty: torch.Tensor
    weight: float


# ---------------------------------------------------------------------- the loop
@dataclass
class _Record:
    """The generator's loss per step, the per-step history, and how training ended
    (``failure``: the step, and ``failed_network``: which network's loss was not finite)."""

    losses: list[float] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    interrupted: bool = False
    failure: int | None = None
    failed_network: str = ""

    def add(self, g_value: float, d_total: float, update: _DiscriminatorUpdate, steps: int) -> None:
        """Record one step: the generator's loss, the mean discriminator loss over its ``steps``
        updates, and the last update's scores (and penalty, for WGAN-GP)."""
        # the records as plain floats: one conversion for both scores (a few microseconds a step
        # are a few percent of a small GAN's step)
        real_score, fake_score = update.mean_scores.tolist()
        self.losses.append(g_value)
        self.history["discriminator_loss"].append(d_total / steps)
        self.history["real_score"].append(real_score)
        self.history["fake_score"].append(fake_score)
        if "gradient_penalty" in self.history:
            self.history["gradient_penalty"].append(float(update.penalty))


def _train(adversaries: _Adversaries, total: int, bar: Any) -> _Record:
    """``total`` steps of ``discriminator_steps`` discriminator updates and one generator
    update, until the end, a non-finite loss or Ctrl-C."""
    record = _Record(history={"discriminator_loss": [], "real_score": [], "fake_score": []})
    if adversaries.loss == "wgan_gp":
        record.history["gradient_penalty"] = []
    steps = adversaries.method.discriminator_steps
    try:
        for step in range(total):
            d_total, update = 0.0, None
            for inner in range(steps):
                update = adversaries.discriminator_update(last=inner == steps - 1)
                if update is None:
                    record.failure, record.failed_network = step, "discriminator"
                    return record
                d_total += update.loss
            assert update is not None and update.fake is not None  # steps >= 1: the last update's samples
            g_value = adversaries.generator_update(update.fake, update.weight)
            if g_value is None:
                record.failure, record.failed_network = step, "generator"
                return record
            record.add(g_value, d_total, update, steps)
            bar.update(1)
            if step % 25 == 0:
                bar.set_postfix(g=f"{g_value:.3f}", d=f"{update.loss:.3f}")
    except KeyboardInterrupt:
        record.interrupted = True
    return record


def run_adversarial(model: Model, data: Dataset, method: Adversarial) -> Fit:
    """Train ``model`` (already prepared for ``data``) adversarially. See
    :class:`~zoo.infer.methods.Adversarial`.

    Raises
    ------
    zoo.FitError
        If a network's loss became NaN or infinite; ``error.fit`` holds the partial fit, whose
        weights are the last finite ones.
    """
    start = time.perf_counter()
    rank, world = join(method.distributed, method.device)
    device = torch.device(method.device)
    model.to(device)
    total = method.total_steps(len(data))
    adversaries = _Adversaries(model, data, method, rank, world, device)
    with isolated(seed=method.seed) as param_state, threads(method.num_threads or model.num_threads):
        bar = progress_bar(total, f"Adversarial {method.label(model)}", method.progress and rank == 0)
        try:
            record = _train(adversaries, total, bar)
        finally:
            bar.close()
            adversaries.clear_gradients()
    losses, history = record.losses, record.history
    fit = Fit(
        model=model,
        method=method,
        draws={},
        point={},
        train=data,
        losses=torch.tensor(losses),
        diagnostics={
            "num_steps": len(losses),
            "num_epochs": adversaries.batches.epochs,
            "converged": False,  # a GAN's losses do not converge to an optimum one can test for
            "completed": bool(record.failure is None and not record.interrupted and len(losses) == total),
            "final_loss": losses[-1] if losses else float("nan"),
            "final_discriminator_loss": history["discriminator_loss"][-1] if losses else float("nan"),
            "loss": adversaries.loss,
            "num_processes": world,
        },
        wall_time=time.perf_counter() - start,
        guide=None,
        param_state=param_state,
        interrupted=record.interrupted or record.failure is not None,
        history={name: torch.tensor(values) for name, values in history.items()},
        draws_shape=(1, method.num_posterior_samples),
    )
    if record.failure is not None:
        raise FitError(
            f"the {record.failed_network}'s loss became NaN or infinite at step {record.failure} of adversarial "
            f"training ({method.label(model)}); training stopped before that update, so the partial Fit "
            "(error.fit) holds the last finite weights. Try smaller learning rates, or check the data's scale.",
            fit=fit,
            step=record.failure,
        )
    return fit
