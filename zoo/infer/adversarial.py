"""Adversarial training: alternating discriminator and generator steps (a GAN's method).

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
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional

from zoo.datasets.dataset import Dataset
from zoo.infer.distributed import average_gradients, join, shard
from zoo.infer.runtime import FitError, check_positive_float, check_positive_int, isolated, progress_bar, threads
from zoo.models.base import Model
from zoo.results import Fit

__all__ = ["Adversarial", "run_adversarial", "OBJECTIVES", "discriminator_loss", "generator_loss"]

#: The adversarial objectives a model's ``loss`` may name.
OBJECTIVES = ("non_saturating", "wgan_gp")


@dataclass(frozen=True)
class Adversarial:
    """Adversarial training of a GAN: alternating discriminator and generator steps.

    Parameters
    ----------
    num_steps : int
        Generator updates (each preceded by ``discriminator_steps`` discriminator updates).
    num_epochs : int, optional
        Train for this many passes of the discriminator over the real data instead: each epoch
        shuffles the data (a private generator seeded by ``seed``) and the discriminator sees
        every datum once, in full minibatches (``num_data // batch_size`` of them; the remainder
        waits for the next epoch's shuffle). Steps: ceil(num_epochs * batches per epoch /
        discriminator_steps).
    batch_size : int
        Real data (and as many samples) per discriminator update; samples per generator update.
    generator_learning_rate : float
        Adam's step size for the generator.
    discriminator_learning_rate : float
        Adam's step size for the discriminator.
    discriminator_steps : int
        Discriminator updates per generator update (1 for the non-saturating loss, 5 is usual
        for WGAN-GP).
    betas : (float, float)
        Adam's moment decay rates for both networks.
    gradient_penalty : float
        lambda, the weight of WGAN-GP's gradient penalty (unused by the non-saturating loss).
    num_posterior_samples : int
        Draws the Fit reports. The generator's weights are a point estimate, so every draw is the
        same point: this sets the number of replicates in ``to_arviz()``'s posterior predictive.
    num_threads : int, optional
        Torch threads while training; default: the model's ``num_threads``.
    seed : int
        Seeds the networks' noise, the minibatches and the gradient penalty's interpolation: the
        same seed gives identical training.
    progress : bool
        Show a progress bar (only when standard error is a terminal).
    device : str
        Torch device to train on ("cpu", "cuda"); the fitted model stays there.
    distributed : bool
        Data-parallel training across the processes of a ``torch.distributed`` job (started by
        ``torchrun``; gloo on CPU, nccl on GPUs): every process takes its shard of each global
        minibatch of ``batch_size`` rows (and of its noise) and both networks' gradients are
        averaged, so the run follows the single-process run on the same global batches. Each
        process needs at least one row: ``batch_size`` >= the number of processes.
    """

    num_steps: int = 2000
    num_epochs: int | None = None
    batch_size: int = 64
    generator_learning_rate: float = 2e-4
    discriminator_learning_rate: float = 2e-4
    discriminator_steps: int = 1
    betas: tuple[float, float] = (0.5, 0.999)
    gradient_penalty: float = 10.0
    num_posterior_samples: int = 10
    num_threads: int | None = None
    seed: int = 0
    progress: bool = True
    device: str = "cpu"
    distributed: bool = False

    kind = "adversarial"

    def __post_init__(self) -> None:
        check_positive_int(self.num_steps, "num_steps")
        if self.num_epochs is not None:
            check_positive_int(self.num_epochs, "num_epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_float(self.generator_learning_rate, "generator_learning_rate")
        check_positive_float(self.discriminator_learning_rate, "discriminator_learning_rate")
        check_positive_int(self.discriminator_steps, "discriminator_steps")
        betas = tuple(self.betas) if isinstance(self.betas, (tuple, list)) else self.betas
        if not isinstance(betas, tuple) or len(betas) != 2 or not all(
            isinstance(beta, (int, float)) and not isinstance(beta, bool) and 0.0 <= beta < 1.0 for beta in betas
        ):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))
        check_positive_float(self.gradient_penalty, "gradient_penalty", allow_zero=True)
        check_positive_int(self.num_posterior_samples, "num_posterior_samples")
        if self.num_threads is not None:
            check_positive_int(self.num_threads, "num_threads")
        check_positive_int(self.seed, "seed", minimum=0)
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must name a torch device ('cpu', 'cuda'), got {self.device!r}") from None
        if not isinstance(self.distributed, bool):
            raise TypeError(f"distributed must be True or False, got {self.distributed!r}")

    def label(self, model: Model | None = None) -> str:
        """"adversarial:LOSS", the model's objective."""
        loss = getattr(model, "loss", None)
        return f"adversarial:{loss}" if loss else "adversarial"

    def validate(self, model: Model, data: Dataset) -> None:
        """The model must offer the adversarial protocol; the batch must fit in the data."""
        missing = [
            name
            for name in ("generate", "discriminate", "generator_parameters", "discriminator_parameters")
            if not callable(getattr(model, name, None))
        ]
        if missing:
            raise ValueError(f"{type(model).__name__} cannot be trained adversarially: it lacks {', '.join(missing)}")
        if getattr(model, "loss", None) not in OBJECTIVES:
            raise ValueError(f"the model's loss must be one of {OBJECTIVES}, got {getattr(model, 'loss', None)!r}")
        if self.batch_size > len(data):
            raise ValueError(f"batch_size={self.batch_size} is larger than the data ({len(data)} rows)")
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r}, but torch finds no CUDA GPU here")

    def total_steps(self, num_data: int) -> int:
        """Generator steps this configuration runs on ``num_data`` real data."""
        if self.num_epochs is None:
            return self.num_steps
        per_epoch = max(1, num_data // min(self.batch_size, num_data))
        return math.ceil(self.num_epochs * per_epoch / self.discriminator_steps)

    def to_dict(self) -> dict[str, Any]:
        config = {name: getattr(self, name) for name in self.__dataclass_fields__}
        config["betas"] = list(self.betas)
        return config


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


def run_adversarial(model: Model, data: Dataset, method: Adversarial) -> Fit:
    """Train ``model`` (already prepared for ``data``) adversarially. See :class:`Adversarial`."""
    start = time.perf_counter()
    rank, world = join(method.distributed, method.device)
    device = torch.device(method.device)
    model.to(device)
    loss_name: str = model.loss  # type: ignore[attr-defined]
    generator_params = list(model.generator_parameters())  # type: ignore[attr-defined]
    discriminator_params = list(model.discriminator_parameters())  # type: ignore[attr-defined]
    generate: Callable[..., torch.Tensor] = model.generate  # type: ignore[attr-defined]
    discriminate: Callable[[torch.Tensor], torch.Tensor] = model.discriminate  # type: ignore[attr-defined]
    x = data.x.to(device)
    total = method.total_steps(len(data))
    batch = min(method.batch_size, len(data))
    if batch < world:
        raise ValueError(
            f"batch_size={batch} cannot be shared by {world} processes: each needs at least one row"
        )
    history: dict[str, list[float]] = {"discriminator_loss": [], "real_score": [], "fake_score": []}
    if loss_name == "wgan_gp":
        history["gradient_penalty"] = []
    losses: list[float] = []
    interrupted, failure, failed_network = False, None, ""
    with isolated(seed=method.seed) as param_state, threads(method.num_threads or model.num_threads):
        g_optimizer = torch.optim.Adam(generator_params, lr=method.generator_learning_rate, betas=method.betas)
        d_optimizer = torch.optim.Adam(discriminator_params, lr=method.discriminator_learning_rate, betas=method.betas)
        batches = _RealBatches(len(data), batch, method.seed)
        bar = progress_bar(total, f"Adversarial {method.label(model)}", method.progress and rank == 0)
        latent_dim: int = model.latent_dim  # type: ignore[attr-defined]
        wgan = loss_name == "wgan_gp"
        try:
            for step in range(total):
                d_total = 0.0
                for inner in range(method.discriminator_steps):
                    index = shard(batches.next(), rank, world)
                    real = x[index.to(device)]
                    last = inner == method.discriminator_steps - 1
                    mix = None
                    # the global batch's noise from the shared random state, this process's rows
                    # of it: the single process's noise, whatever the number of processes (drawn
                    # here as the model's generate would draw it)
                    noise = shard(torch.randn(batch, latent_dim, device=device), rank, world)
                    if last:
                        fake = generate(len(index), noise=noise)  # with its graph: G's step reuses it
                        detached = fake.detach()  # the discriminator's loss must not reach G
                    else:
                        with torch.no_grad():
                            detached = generate(len(index), noise=noise)
                    if world > 1 and wgan:
                        mix = shard(torch.rand(_mix_shape(real, batch), device=device), rank, world)
                    d_loss, mean_scores, penalty = discriminator_loss(
                        loss_name, discriminate, real, detached, method.gradient_penalty, mix
                    )
                    if world == 1:
                        d_value = float(d_loss.detach())
                        if not math.isfinite(d_value):
                            failure, failed_network = step, "discriminator"
                            break
                        d_optimizer.zero_grad(set_to_none=True)
                        d_loss.backward()
                    else:
                        # this shard's losses weighted by its share of the global batch, so that
                        # the mean over processes is the global batch's loss (and gradient)
                        weight = len(index) * world / batch
                        d_optimizer.zero_grad(set_to_none=True)
                        if torch.isfinite(d_loss):
                            (d_loss * weight).backward()
                        reported = torch.cat([d_loss.detach()[None], mean_scores, penalty.to(d_loss)[None]]) * weight
                        reported = average_gradients(discriminator_params, reported, world)
                        d_value = float(reported[0])
                        if not math.isfinite(d_value):  # the same on every process: all stop
                            failure, failed_network = step, "discriminator"
                            break
                        mean_scores, penalty = reported[1:3], reported[3]
                    d_optimizer.step()
                    d_total += d_value
                if failure is not None:
                    break
                g_loss = generator_loss(loss_name, discriminate(fake))
                g_optimizer.zero_grad(set_to_none=True)
                if world == 1:
                    g_value = float(g_loss.detach())
                    if not math.isfinite(g_value):
                        failure, failed_network = step, "generator"
                        break
                    g_loss.backward()
                else:
                    if torch.isfinite(g_loss):
                        (g_loss * weight).backward()
                    g_value = float(average_gradients(generator_params, g_loss.detach() * weight, world))
                    if not math.isfinite(g_value):
                        failure, failed_network = step, "generator"
                        break
                g_optimizer.step()
                # the records as plain floats: one conversion for both scores (a few microseconds
                # a step are a few percent of a small GAN's step)
                real_score, fake_score = mean_scores.tolist()
                losses.append(g_value)
                history["discriminator_loss"].append(d_total / method.discriminator_steps)
                history["real_score"].append(real_score)
                history["fake_score"].append(fake_score)
                if wgan:
                    history["gradient_penalty"].append(float(penalty))
                bar.update(1)
                if step % 25 == 0:
                    bar.set_postfix(g=f"{g_value:.3f}", d=f"{d_value:.3f}")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            d_optimizer.zero_grad(set_to_none=True)
            g_optimizer.zero_grad(set_to_none=True)
    fit = Fit(
        model=model,
        method=method,
        draws={},
        point={},
        train=data,
        losses=torch.tensor(losses),
        diagnostics={
            "num_steps": len(losses),
            "num_epochs": batches.epochs,
            "converged": False,  # a GAN's losses do not converge to an optimum one can test for
            "completed": bool(failure is None and not interrupted and len(losses) == total),
            "final_loss": losses[-1] if losses else float("nan"),
            "final_discriminator_loss": history["discriminator_loss"][-1] if losses else float("nan"),
            "loss": loss_name,
            "num_processes": world,
        },
        wall_time=time.perf_counter() - start,
        guide=None,
        param_state=param_state,
        interrupted=interrupted or failure is not None,
        history={name: torch.tensor(values) for name, values in history.items()},
        draws_shape=(1, method.num_posterior_samples),
    )
    if failure is not None:
        raise FitError(
            f"the {failed_network}'s loss became NaN or infinite at step {failure} of adversarial training "
            f"({method.label(model)}); training stopped before that update, so the partial Fit (error.fit) "
            "holds the last finite weights. Try smaller learning rates, or check the data's scale.",
            fit=fit,
            step=failure,
        )
    return fit

