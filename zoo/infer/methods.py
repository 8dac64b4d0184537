"""The inference methods' configurations: small frozen dataclasses, and the registry of them.

A method configuration says *what* to run (``zoo.SVI(guide="mvn", num_steps=2000)``), never
how: the runners (:mod:`zoo.infer.svi`, :mod:`~zoo.infer.mcmc`, :mod:`~zoo.infer.exact`,
:mod:`~zoo.infer.adversarial`) sit in a layer above :mod:`zoo.results`, since they build a
``Fit``, while the configurations sit below it, since a ``Fit`` holds one and ``zoo.load``
rebuilds one from a file. This module is that lower half: the dataclasses, what they share
(:class:`MethodConfig`), the registry by kind (:data:`CONFIGS`) and the parser of short strings
such as ``"svi:mvn"`` (:func:`parse_method`).
"""

from __future__ import annotations

import ast
import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from zoo.checks import (
    check_choice,
    check_memory,
    check_device,
    check_flag,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_seed,
)
from zoo.datasets.dataset import Dataset
from zoo.infer.evaluate import global_site_shapes
from zoo.infer.guides import POINT_MASS_GUIDES, make_guide
from zoo.models.base import Model

__all__ = [
    "MethodConfig",
    "SVI",
    "NUTS",
    "Exact",
    "Adversarial",
    "CONFIGS",
    "register_config",
    "parse_method",
    "OPTIMIZERS",
    "SCHEDULES",
    "OBJECTIVES",
]

#: SVI's optimisers and learning-rate schedules.
OPTIMIZERS = ("auto", "adam", "lbfgs")
SCHEDULES = ("constant", "cosine", "exponential")
#: Where NUTS chains start, and how they run.
INITIALIZATIONS = ("map", "model")
CHAIN_METHODS = ("sequential", "parallel")
#: The adversarial objectives a model's ``loss`` may name.
OBJECTIVES = ("non_saturating", "wgan_gp")

#: Method kind ("svi", "nuts", ...) -> its configuration class: what ``zoo.fit`` dispatches on,
#: and what ``zoo.load`` rebuilds a saved fit's method with.
CONFIGS: dict[str, type] = {}


def register_config(config: type) -> type:
    """Add a method configuration class (a frozen dataclass with a ``kind``) to :data:`CONFIGS`.

    Raises
    ------
    ValueError
        If the class names no kind, or another class is registered under its kind.
    """
    kind = getattr(config, "kind", "")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{config.__name__} names no kind (a class attribute such as kind = 'svi')")
    if CONFIGS.get(kind, config) is not config:
        raise ValueError(f"a method configuration is already registered as {kind!r}: {CONFIGS[kind].__name__}")
    CONFIGS[kind] = config
    return config


class MethodConfig:
    """What every method configuration shares: its kind, label, checks and saved form.

    A subclass is a frozen dataclass that names its kind once, in the class statement
    (``class SVI(MethodConfig, kind="svi")``), which registers it in :data:`CONFIGS`. The checks
    of the fields that several methods have (``seed``, ``num_threads``, ``device``,
    ``distributed``; the batch's size and the device's presence against the data) are made
    here, by field name, so a new method with such a field gets them without writing them.
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, kind: str = "", **options: Any) -> None:
        super().__init_subclass__(**options)
        if kind:
            cls.kind = kind
            register_config(cls)

    def __post_init__(self) -> None:
        """Check (and normalise) the fields shared by several methods."""
        fields = self._field_names()
        for name in fields:
            # numpy numbers (np.int64(500) from a grid, np.float32 from a computation) kept as
            # Python's: the configuration then compares, prints and saves (JSON) the same.
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
                object.__setattr__(self, name, int(value))
            elif isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
                object.__setattr__(self, name, float(value))
        if "seed" in fields:
            # A numpy integer is kept as a Python int: the configuration compares, prints and
            # saves (JSON) the same whatever form the seed was given in.
            object.__setattr__(self, "seed", check_seed(self.seed))  # type: ignore[attr-defined]
        if "num_threads" in fields and self.num_threads is not None:  # type: ignore[attr-defined]
            check_positive_int(self.num_threads, "num_threads")  # type: ignore[attr-defined]
        if "device" in fields:
            check_device(self.device)  # type: ignore[attr-defined]
        if "distributed" in fields:
            check_flag(self.distributed, "distributed")  # type: ignore[attr-defined]

    def label(self, model: Model | None = None) -> str:
        """A short name of the method for tables and figures: its kind, unless a method says more."""
        return self.kind

    def validate(self, model: Model, data: Dataset) -> None:
        """Raise ValueError if this configuration cannot fit ``model`` to ``data``; called before
        any work starts. Checks a batch larger than the data and a GPU that is not there."""
        batch_size = getattr(self, "batch_size", None)
        if batch_size is not None and batch_size > len(data):
            raise ValueError(f"batch_size={batch_size} is larger than the data ({len(data)} rows)")
        device = getattr(self, "device", None)
        if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r}, but torch finds no CUDA GPU here")
        # The draws a fit keeps, estimated from the model's sites before the fit (a fit that
        # cannot store them would fail only at its end, its work lost).
        per_draw = sum(math.prod(shape) for shape in global_site_shapes(model).values())
        kept, argument = self.kept_draws(model)
        check_memory(kept * per_draw * 4, f"{kept:,} posterior draws of {type(model).__name__}", argument)

    def kept_draws(self, model: Model) -> tuple[int, str]:
        """How many posterior draws a fit by this configuration keeps, and the argument(s)
        setting it."""
        return int(getattr(self, "num_posterior_samples", 1)), "num_posterior_samples"

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (tuples as lists): what a saved fit stores of its method."""
        values = {name: getattr(self, name) for name in self._field_names()}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    def _field_names(self) -> list[str]:
        return [field.name for field in dataclasses.fields(self)]  # type: ignore[arg-type]


@dataclass(frozen=True)
class SVI(MethodConfig, kind="svi"):
    """Stochastic variational inference.

    Parameters
    ----------
    guide : str or callable, optional
        "delta" (MAP), "normal" (mean-field), "mvn" (full-rank), "lowrank", "laplace", "iaf",
        a name the model offers itself, or a guide callable. Default: the model's default guide.
    num_steps : int
        Maximum number of optimisation steps.
    learning_rate : float, optional
        Step size; default 0.01 for Adam and 1.0 for L-BFGS.
    num_particles : int
        Monte Carlo samples per ELBO estimate.
    batch_size : int, optional
        Minibatch size (subsampling the data plate); default: the full data.
    tolerance : float
        Stop early when the relative change of the smoothed loss falls below this (0: never).
        The smoothed loss is the mean over a window of 50 steps for Adam, the change being taken
        between consecutive windows, three times in a row (noisy losses can agree by chance);
        for L-BFGS (deterministic) it is the change between consecutive steps, twice in a row.
    num_posterior_samples : int
        Draws taken from the trained guide (one chain). Ignored where the posterior is a single
        point: a point-mass guide ("delta", the MAP) or a model with no global latent site (a
        VAE, whose decoder is a point estimate and whose codes are per datum). Such a fit holds
        one draw, shaped (1, 1, ...), since any more would be copies of it that every answer
        (``log_prob``, ``to_arviz``, ``marginals``, ``sample``) would pay for again; ``sample(n)``
        still gives n data, all from that one point. (Ignored rather than refused: the value
        means nothing for a point mass, and a setting shared by several guides, or the command
        line's, should not fail for it.)
    optimizer : {"auto", "adam", "lbfgs"}
        "auto": L-BFGS for point-mass guides on full batches, Adam otherwise.
    num_threads : int, optional
        Torch threads while fitting; default: the model's ``num_threads``.
    seed : int
    progress : bool
        Show a progress bar (only when standard error is a terminal).
    num_epochs : int, optional
        Train for this many passes over the data instead of ``num_steps``: each epoch shuffles
        the data (a private generator seeded by ``seed``) and visits every datum once, in
        minibatches of ``batch_size`` (the last one may be smaller); the data plate's scaling
        keeps each step's ELBO unbiased. Steps per epoch: ceil(num_data / batch_size).
    learning_rate_schedule : {"constant", "cosine", "exponential"}
        How the step size moves from ``learning_rate`` to ``learning_rate *
        final_learning_rate_fraction`` over the run (cosine annealing, or geometric decay).
    final_learning_rate_fraction : float
        The last step's learning rate as a fraction of the first (for a schedule other than
        "constant").
    device : str
        Torch device to fit on ("cpu", "cuda", "cuda:1"): the fitted model stays there; draws
        come back to the CPU.
    distributed : bool
        Data-parallel training across the processes of a ``torch.distributed`` job (started by
        ``torchrun``; gloo on CPU, nccl on GPUs): every process takes its shard of each global
        minibatch and the gradients are averaged, so the run follows the single-process run on
        the same global batches. Needs ``num_epochs``.
    jit : bool, optional
        None (default): the model's declarations, for a guide named by string (off for a guide
        given as a callable, whose structure zoo cannot vouch for). A model declaring
        ``static_likelihood`` (the mixtures, Naive Bayes, the HMM, ...) fitted on all its data at
        every step (no ``batch_size`` or ``num_epochs``) with a random guide (not ``delta`` or
        ``laplace``, which L-BFGS fits in tens of evaluations) has its step *recorded*: the
        ELBO's forward and backward passes, the guide's random draws among them, are recorded
        once as one graph of tensor operations and replayed at every step, without Pyro's
        effect handlers or autograd's bookkeeping. The run is that of ``jit=False`` to the bit
        (the same gradients from the same draws; the loss to float rounding), checked for every
        registered model by the contract tests and, before each fit relies on it, by one replay
        against one eager step at the same random state (a fit whose two differ steps eagerly).
        On small models a step costs a third to a fifth of an eager one
        (``benchmarks/svi_steps.py``). ``fit.diagnostics["steps"]`` says which ran:
        "recorded", "compiled" or "eager". A model declaring ``jit_safe`` (the VAEs) gets Pyro's compiled ELBO, below.
        True / False: Pyro's compiled ELBO on / everything eager. Compile each step's ELBO (Pyro's ``JitTrace_ELBO``, or ``JitTraceEnum_ELBO`` where sites
        are enumerated): model and guide are traced once per minibatch size and the recorded
        tensor program is replayed on later steps, without Pyro's per-step Python (effect
        handlers, site bookkeeping, distribution objects). It pays where that Python is a visible
        part of a step: an epoch of a VAE on MNIST (784-400-16) takes about 12% less time
        (``benchmarks/vae.py``), one of a small VAE on 8x8 digits about a third less; compiling
        costs a fraction of a second per minibatch size. The same seed gives the same run. It is the run of
        ``jit=False``, to float rounding, wherever the compiled program makes its random draws in
        the eager order (compiling runs on a forked generator): tested for the VAEs' guides,
        AutoNormal, AutoDelta; torch may reorder independent draws of one step (seen with the
        low-rank autoguide), and the run is then another, equally valid one: the same in
        distribution, not draw for draw.
        For a model and guide of static structure only: no Python branch or loop on a tensor's
        value (the recording keeps the branch taken while tracing, silently: torch's warnings
        about it are silenced, since the shape checks of every model raise the same ones
        harmlessly), no sites that come and go, and every network registered with Pyro
        (``pyro.module``, or an attribute of a ``PyroModule``) so that its weights are inputs of
        the program (torch refuses to record them as constants; zoo says why). Each minibatch
        size compiles once (an epoch's smaller last batch is one more). Works with
        ``distributed`` (each process compiles its shard's ELBO; the gradients are averaged
        outside it). ``torch.jit.trace``, on which Pyro's jit rests, is deprecated by torch in
        favour of ``torch.compile``, which Pyro's effect handlers do not support yet: the option
        lasts as long as torch keeps it.

    checkpoint : str, optional
        A file that SVI (by Adam) rewrites every ``checkpoint_every`` steps with what it needs
        to go on: the parameters, Adam's moments, the random generators, the step and the loss
        record (zoo's safe record format, written to a temporary file and moved into place, so
        an interrupted write leaves the last checkpoint whole). ``zoo.fit(model, data,
        method, resume=path)`` continues from it, and the run is the one an uninterrupted run
        with the same settings would have made, step for step.
    checkpoint_every : int
        Steps between checkpoints.
    kl_weight : float
        For a model with local latents (a VAE's codes; M2's continuous code): the weight beta
        of their KL term in the training objective, ``E_q[log p(x | z)] - beta KL(q(z | x) ||
        p(z))`` (the beta-VAE of Higgins et al. 2017). It changes what is optimised, not the
        model: the density p(x), ``fit.log_prob`` and the reported ELBO stay those of the
        model (beta = 1). The default, 1, is the ELBO itself.
    kl_warmup_steps : int
        Steps over which the KL weight rises linearly from 0 to ``kl_weight`` (KL annealing,
        Bowman et al. 2016; scvi-tools warms up over 400 epochs): early steps fit the
        reconstruction first, which helps avoid posterior collapse. 0: no warm-up. Both
        settings run eagerly (no compiled steps: the weight changes from step to step).

    The per-epoch record is in ``fit.history``: "epoch_loss" (loss per datum, averaged over the
    epoch's steps), "learning_rate" (at the epoch's end) and, when ``zoo.fit`` is given
    ``held_out`` data, "held_out_loss" (negative ELBO per observation of the held-out data after
    each epoch).
    """

    guide: str | Callable[..., Any] | None = None
    num_steps: int = 1000
    learning_rate: float | None = None
    num_particles: int = 1
    batch_size: int | None = None
    tolerance: float = 1e-6
    num_posterior_samples: int = 1000
    optimizer: str = "auto"
    num_threads: int | None = None
    seed: int = 0
    progress: bool = True
    num_epochs: int | None = None
    learning_rate_schedule: str = "constant"
    final_learning_rate_fraction: float = 0.01
    device: str = "cpu"
    distributed: bool = False
    jit: bool | None = None
    checkpoint: str | None = None
    checkpoint_every: int = 100
    kl_weight: float = 1.0
    kl_warmup_steps: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(self.num_steps, "num_steps")
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            raise TypeError(f"checkpoint must be a file path (str), got {type(self.checkpoint).__name__}")
        check_positive_int(self.checkpoint_every, "checkpoint_every")
        check_positive_float(self.kl_weight, "kl_weight")
        if not isinstance(self.kl_warmup_steps, int) or isinstance(self.kl_warmup_steps, bool) or self.kl_warmup_steps < 0:
            raise ValueError(f"kl_warmup_steps must be an integer >= 0, got {self.kl_warmup_steps!r}")
        if self.learning_rate is not None:
            check_positive_float(self.learning_rate, "learning_rate")
        check_positive_int(self.num_particles, "num_particles")
        if self.batch_size is not None:
            check_positive_int(self.batch_size, "batch_size")
        check_positive_float(self.tolerance, "tolerance", allow_zero=True)
        check_positive_int(self.num_posterior_samples, "num_posterior_samples")
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        if self.guide is not None and not isinstance(self.guide, str) and not callable(self.guide):
            raise TypeError(f"guide must be a name or a callable, got {type(self.guide).__name__}")
        if self.num_epochs is not None:
            check_positive_int(self.num_epochs, "num_epochs")
        check_choice(self.learning_rate_schedule, "learning_rate_schedule", SCHEDULES)
        check_positive_float(self.final_learning_rate_fraction, "final_learning_rate_fraction")
        if self.distributed and self.num_epochs is None:
            raise ValueError("distributed=True trains by epochs: give num_epochs")
        check_flag(self.jit, "jit", allow_none=True)  # None: the model's declaration

    def guide_name(self, model: Model) -> str | Callable[..., Any]:
        """The guide to fit: the one named (or given), else the model's default."""
        return model.default_guide if self.guide is None else self.guide

    def num_draws(self, model: Model | None = None) -> int:
        """Draws a fit by this configuration holds: 1 for a point-mass guide (resolved against
        ``model`` when it is the default), else ``num_posterior_samples``. (A model with no
        global latent site holds one draw whatever the guide: only a fit knows that.)"""
        guide = self.guide_name(model) if model is not None else self.guide
        return 1 if isinstance(guide, str) and guide in POINT_MASS_GUIDES else self.num_posterior_samples

    def kept_draws(self, model: Model) -> tuple[int, str]:
        return self.num_draws(model), "num_posterior_samples"

    def label(self, model: Model | None = None) -> str:
        """"svi:GUIDE", the guide resolved against ``model`` when it is the default."""
        guide = self.guide_name(model) if model is not None else self.guide
        if guide is not None and not isinstance(guide, str):
            guide = "custom"
        return f"svi:{guide or 'default'}"

    def validate(self, model: Model, data: Dataset) -> None:
        super().validate(model, data)
        # Building the guide checks its name before any work starts.
        make_guide(model, self.guide_name(model))

    def to_dict(self) -> dict[str, Any]:
        if self.guide is not None and not isinstance(self.guide, str):
            raise ValueError("a Fit whose guide is a callable cannot be saved: name the guide")
        return super().to_dict()


@dataclass(frozen=True)
class NUTS(MethodConfig, kind="nuts"):
    """The No-U-Turn sampler (Pyro's kernel and adaptation).

    For a model stating the density contract, the sampler runs on a potential in plain torch
    derived from it (:mod:`zoo.infer.potential`): no Pyro trace per leapfrog step.

    Parameters
    ----------
    num_warmup : int
        Adaptation steps per chain (step size and mass matrix); discarded.
    num_samples : int
        Draws kept per chain.
    num_chains : int
        Independent chains.
    target_accept_prob : float
        Target of the step-size adaptation, in (0, 1).
    max_tree_depth : int
        At most 2**max_tree_depth leapfrog steps per draw.
    dense_mass : bool
        Adapt a dense mass matrix (every pair of coordinates) instead of a diagonal one: for
        posteriors with strong correlations, at O(P^2) memory and O(P^2) per leapfrog step.
    initialization : {"map", "model"}
        Where chains start. "map": every chain starts at the best (highest posterior density)
        of ``num_starts`` short optimisations of the potential, each from the model's
        data-driven start with its own seed, so that no chain starts in a minor local mode
        (each chain then draws its own momenta and adapts on its own; R-hat still compares
        them), and its warm-up starts from the curvature there (1 / diag of the potential's
        Hessian: each coordinate's posterior scale, rather than the identity).
        "model": chain c starts at the model's data-driven start with seed ``seed + c``.
    num_starts : int
        Optimisations tried by ``initialization="map"``.
    chain_method : {"sequential", "parallel"}
        "parallel" runs the chains in separate processes (spawned: each imports zoo, a few
        seconds, so it pays for long runs; parallel processes hang in some Jupyter set-ups,
        hence the default), with exactly the draws of the sequential run.
    jit_compile : bool, optional
        Record the potential and its gradient once as one graph of tensor operations and replay
        it at every leapfrog step (the same numbers, without Python per operation or autograd's
        bookkeeping). None (default): where the model
        declares ``static_likelihood`` (no Python branch on a tensor's value in its density).
        For a model without a collapsed likelihood, True compiles Pyro's own potential.
    num_threads : int, optional
        Torch threads while sampling; default: the model's ``num_threads`` (1 for the small
        models, whose many small operations several threads only slow down).
    seed : int
        Chain c uses seed + c.
    progress : bool
        Show a progress bar.
    """

    num_warmup: int = 500
    num_samples: int = 500
    num_chains: int = 2
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    dense_mass: bool = False
    initialization: str = "map"
    num_starts: int = 4
    chain_method: str = "sequential"
    jit_compile: bool | None = None
    num_threads: int | None = None
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(self.num_warmup, "num_warmup", minimum=0)
        check_positive_int(self.num_samples, "num_samples")
        check_positive_int(self.num_chains, "num_chains")
        object.__setattr__(self, "target_accept_prob", check_probability(self.target_accept_prob, "target_accept_prob"))
        check_positive_int(self.max_tree_depth, "max_tree_depth")
        check_flag(self.dense_mass, "dense_mass")
        check_choice(self.initialization, "initialization", INITIALIZATIONS)
        check_positive_int(self.num_starts, "num_starts")
        check_choice(self.chain_method, "chain_method", CHAIN_METHODS)
        check_flag(self.jit_compile, "jit_compile", allow_none=True)

    def kept_draws(self, model: Model) -> tuple[int, str]:
        return self.num_samples * self.num_chains, "num_samples * num_chains"


@dataclass(frozen=True)
class Exact(MethodConfig, kind="exact"):
    """The closed-form posterior of a conjugate model (e.g. Naive Bayes with every row labeled).

    Parameters
    ----------
    num_posterior_samples : int
        Exact posterior draws kept (one chain), drawn on the first read of ``fit.draws`` (see the
        module docs): a fit that is only used to predict never draws them.
    seed : int
        Seed of the draws.
    progress : bool
        Accepted for symmetry with the other methods; there is nothing to show.
    """

    num_posterior_samples: int = 1000
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(self.num_posterior_samples, "num_posterior_samples")

    def validate(self, model: Model, data: Dataset) -> None:
        """The model must offer ``exact_posterior`` (its data checks run in the runner, first)."""
        super().validate(model, data)
        if not callable(getattr(model, "exact_posterior", None)):
            raise ValueError(f"{type(model).__name__} has no closed-form posterior (exact_posterior)")
        check = getattr(model, "check_exact", None)  # the model's conditions on the data, if it states them
        if callable(check):
            check(data)


@dataclass(frozen=True)
class Adversarial(MethodConfig, kind="adversarial"):
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

    def __post_init__(self) -> None:
        super().__post_init__()
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
        super().validate(model, data)

    def total_steps(self, num_data: int) -> int:
        """Generator steps this configuration runs on ``num_data`` real data."""
        if self.num_epochs is None:
            return self.num_steps
        per_epoch = max(1, num_data // min(self.batch_size, num_data))
        return math.ceil(self.num_epochs * per_epoch / self.discriminator_steps)


def parse_method(spec: Any) -> Any:
    """A method configuration from an object or a short string.

    Parameters
    ----------
    spec : str or method configuration
        A configuration (``zoo.SVI(...)``, ``zoo.NUTS(...)``, ...) is returned as is. A string is
        ``KIND[:FIELD][:NAME=VALUE]...`` (commas may separate the ``NAME=VALUE`` pairs too):
        ``KIND`` is a key of :data:`CONFIGS` ("svi", "nuts", "exact", "adversarial"); a
        bare ``FIELD`` sets the configuration's first field (the guide, for SVI); values are
        Python literals (``num_steps=500``) or plain words. Examples: "svi:delta", "svi:mvn",
        "svi:iaf:num_steps=3000", "nuts:num_samples=200,num_chains=1", "exact". Progress bars
        are off unless the string asks for them.

    Returns
    -------
    The method configuration.

    Raises
    ------
    ValueError
        For an unknown kind, an unknown field or a value the configuration refuses.
    TypeError
        If ``spec`` is neither a string nor a method configuration.
    """
    if not isinstance(spec, str):
        kind = getattr(spec, "kind", None)
        if kind in CONFIGS and isinstance(spec, CONFIGS[kind]):
            return spec
        raise TypeError(f"method must be a method configuration or a string like 'svi:mvn', got {type(spec).__name__}")
    parts = [part.strip() for part in spec.replace(",", ":").split(":")]
    kind, fields = parts[0].lower(), parts[1:]
    if kind not in CONFIGS:
        raise ValueError(f"method {spec!r}: unknown kind {kind!r}; valid: {', '.join(CONFIGS)}")
    config = CONFIGS[kind]
    names = [field.name for field in dataclasses.fields(config)]
    options: dict[str, Any] = {}
    for position, field in enumerate(fields):
        if not field:
            raise ValueError(f"method {spec!r}: empty field")
        if "=" in field:
            name, text = (piece.strip() for piece in field.split("=", 1))
        elif position == 0:
            name, text = names[0], field
        else:
            raise ValueError(f"method {spec!r}: {field!r} must be NAME=VALUE")
        if name not in names:
            raise ValueError(f"method {spec!r}: {config.__name__} has no field {name!r}; fields: {', '.join(names)}")
        try:
            options[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[name] = text
    if "progress" in names:
        options.setdefault("progress", False)
    try:
        return config(**options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"method {spec!r}: {error}") from None
