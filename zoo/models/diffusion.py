r"""Diffusion model (DDPM): a hierarchical latent-variable model whose ELBO is a sum of Gaussian KLs.

Generative story
----------------
For N data of D values, T steps and a fixed noise schedule beta_1..beta_T (Ho et al.'s linear
one over 1000 steps, respaced to T; alpha_t = 1 - beta_t, abar_t = alpha_1 ... alpha_t)::

    network weights  W      point estimates (maximum marginal likelihood, through the ELBO)
    for i in 1..N:
        z_T[i]      ~ Normal(0, I_D)
        for t = T..2:
            z_{t-1}[i] ~ Normal(mu_W(z_t[i], t), beta_t I_D)                 (learned reverse process)
        x[i]        ~ decoder(mu_W(z_1[i], 1), beta_1)                        (t = 0)

with ``mu_W(z, t) = (z - beta_t / sqrt(1 - abar_t) eps_W(z, t)) / sqrt(alpha_t)`` and eps_W a
network of z and a sinusoidal embedding of t. The decoder is Normal(mu, sqrt(beta_1)) for
continuous data (``num_levels=None``), and for discrete data of K levels 0..K-1 (mapped to
[-1, 1] by ``2 x / (K - 1) - 1``) the **discretised Gaussian** of Ho et al.: the Normal's mass
over each level's bin (the outer bins reach to infinity), so the bound is in nats of the discrete
data, comparable with an exact discrete likelihood.

The guide is the fixed forward noising process, written in the order that makes every KL term
closed form: ``z_T ~ q(z_T | x_0) = Normal(sqrt(abar_T) x_0, (1 - abar_T) I)`` then, for
t = T..2, ``z_{t-1} ~ q(z_{t-1} | z_t, x_0)``, the Gaussian posterior of the forward process. It
has no parameters. The ELBO (SVI with ``TraceMeanField_ELBO``: the model declares
``analytic_kl``) is then ``E_q[log p(x_0 | z_1)] - KL(q(z_T | x_0) || p(z_T)) - sum_t E_q[
KL(q(z_{t-1} | z_t, x_0) || p(z_{t-1} | z_t))]``, one chain of z per datum and step, minibatches
over data (``batch_size``, ``num_epochs``). Every step runs the whole chain (T network passes);
DDPM's one random t per datum would be cheaper per step but is not a trace of this model and
guide, so it is not what zoo's runner fits.

Sample sites
------------
===========  ================================  =============================================
name         shape                             support
===========  ================================  =============================================
``data``     (batch,)                          subsample indices of the data plate
``z_T`` ...  (N, D), T sites ``z_T..z_1``      real; local (per datum)
``x``        (N, D)                            real, or levels 0..K-1; observed
===========  ================================  =============================================

``fit.log_prob(data)`` is the ELBO per datum, averaged over ``num_particles`` chains (a
**lower bound** on log p(x), labelled so in :mod:`zoo.units` tables);
``fit.log_prob(data, num_particles=K, estimator="iwae")`` is the importance-weighted bound with
the forward process as proposal (a tighter lower bound); ``fit.sample(n)`` runs the reverse chain
from noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.distributions import constraints
from pyro.distributions.kl import kl_divergence
from torch import nn

from zoo.checks import check_choice, check_integer_levels, check_positive_float, check_positive_int
from zoo.datasets import simulate
from zoo.datasets.dataset import Dataset
from zoo.models.nets import MLP
from zoo.models.network_model import ShapedNetworkModel
from zoo.models.registry import register

__all__ = ["Diffusion", "DiscretizedNormal"]

_EMBEDDING = 16  # sinusoidal features of the time step


@register("diffusion")
class Diffusion(ShapedNetworkModel):
    """Denoising diffusion probabilistic model: learned reverse process = model, forward noising = guide.

    Parameters
    ----------
    num_timesteps : int
        T, the diffusion steps (>= 1).
    hidden_sizes : sequence of int
        Hidden layer sizes of the noise predictor eps_W (empty: a linear reverse process).
    num_levels : int, optional
        K for discrete data of levels 0..K-1 (discretised decoder); None for continuous data
        (Gaussian decoder; scale the data to about unit spread).
    beta_start, beta_end : float
        First and last beta of a linear schedule over 1000 steps (Ho et al.'s defaults), respaced
        to T steps: abar_t at T evenly spaced steps of it (the first kept step is step 1, so
        beta_1 = ``beta_start`` and the decoder's scale is sqrt(beta_start)).
    image_shape : sequence of int, optional
        ``[D]``; default: taken from the training data by ``zoo.fit``.
    init_seed : int

    Examples
    --------
    >>> import zoo
    >>> ring = zoo.datasets.load("ring", num_data=200)
    >>> fit = zoo.fit(zoo.models.Diffusion(num_timesteps=10, hidden_sizes=[32]), ring,
    ...               zoo.SVI(batch_size=100, num_epochs=2, progress=False))
    >>> fit.log_prob(ring).shape         # the ELBO per datum: a lower bound on log p(x)
    torch.Size([200])
    >>> fit.sample(4).shape
    torch.Size([4, 2])
    """

    methods = ("svi",)
    default_guide = "forward_process"
    num_threads = 1  # small networks, many small operations: one thread, no contention
    analytic_kl = True
    unsupported_guides = ("delta", "normal", "mvn", "lowrank", "laplace", "iaf")
    unsupported_guides_reason = (
        "a Diffusion model's guide is its fixed forward noising process ('forward_process'); the "
        "latent chain is not fitted by a free guide"
    )

    def __init__(
        self,
        num_timesteps: int = 20,
        hidden_sizes: Sequence[int] = (128, 128),
        num_levels: int | None = None,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        image_shape: Sequence[int] | None = None,
        init_seed: int = 0,
    ) -> None:
        check_positive_int(num_timesteps, "num_timesteps")
        if num_levels is not None:
            check_positive_int(num_levels, "num_levels", minimum=2)
        check_positive_float(beta_start, "beta_start")
        check_positive_float(beta_end, "beta_end")
        if not beta_start <= beta_end < 1:
            raise ValueError(f"need beta_start <= beta_end < 1, got {beta_start} and {beta_end}")
        super().__init__(hidden_sizes, init_seed)
        self.num_timesteps = num_timesteps
        self.num_levels = num_levels
        self.beta_start = beta_start
        self.beta_end = beta_end
        if image_shape is not None:
            self._build(image_shape)

    @property
    def local_sites(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"z_{step}" for step in range(self.num_timesteps, 0, -1))

    def check_shape(self, shape: list[int]) -> None:
        if len(shape) != 1:
            raise ValueError(
                f"a Diffusion model takes data shaped (num_data, D), got {tuple(shape)} per datum: flatten images"
            )

    def build_networks(self, shape: list[int]) -> None:
        self.noise_predictor = _NoisePredictor(shape[0], self.hidden_sizes, self.num_timesteps)
        # Ho et al.'s linear schedule over 1000 steps, respaced to T (Nichol and Dhariwal, 2021):
        # abar at T evenly spaced steps of it, and the betas that give those abar.
        fine = torch.cumprod(1.0 - torch.linspace(self.beta_start, self.beta_end, 1000, dtype=torch.float64), 0)
        alpha_bars = fine[torch.linspace(0, 999, self.num_timesteps, dtype=torch.float64).round().long()]
        previous = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        betas = 1.0 - alpha_bars / previous
        self.register_buffer("betas", betas.float())
        self.register_buffer("alpha_bars", alpha_bars.float())
        # (beta_t, alpha_t, abar_t) of each step as Python floats, read by :meth:`_schedule`
        self._schedule_floats = [(beta, 1.0 - beta, alpha_bar) for beta, alpha_bar in zip(self.betas.tolist(), self.alpha_bars.tolist())]

    def validate(self, data: Dataset) -> None:
        """Raise ValueError unless ``data`` are rows of the built width, with integer levels
        0..K-1 when ``num_levels`` is set."""
        if data.lengths is not None:
            raise ValueError("a Diffusion model takes independent data, not sequences (lengths given)")
        if data.x.dim() != 2:
            raise ValueError(f"data.x must be (num_data, D) for a Diffusion model, got shape {tuple(data.x.shape)}")
        if self.image_shape is not None and list(data.x.shape[1:]) != list(self.image_shape):
            raise ValueError(f"data have {data.x.shape[1]} values per datum but the model was built for {self.image_shape[0]}")
        if self.num_levels is not None:
            check_integer_levels(
                data.x, self.num_levels, "data.x", f"a Diffusion model with num_levels={self.num_levels}",
                "num_levels=None for continuous data",
            )

    # ------------------------------------------------------------------ the processes
    def _schedule(self, step: int) -> tuple[float, float, float]:
        """beta_t, alpha_t, abar_t of step t (1-based), as Python floats (read from the buffers
        once: a tensor's element to a float costs microseconds, and every step of every chain
        asks)."""
        return self._schedule_floats[step - 1]

    def reverse_mean(self, z: torch.Tensor, step: int, network: nn.Module | None = None) -> torch.Tensor:
        """mu_W(z_t, t) of p(z_{t-1} | z_t): (..., D) -> (..., D)."""
        beta, alpha, alpha_bar = self._schedule(step)
        predicted = (network or self.noise_predictor)(z, step)
        return (z - beta / math.sqrt(1.0 - alpha_bar) * predicted) / math.sqrt(alpha)

    def posterior(self, z: torch.Tensor, x0: torch.Tensor, step: int) -> tuple[torch.Tensor, float]:
        """Mean (..., D) and standard deviation of q(z_{t-1} | z_t, x_0), t = ``step`` >= 2."""
        beta, alpha, alpha_bar = self._schedule(step)
        previous_bar = self._schedule(step - 1)[2]
        mean = (math.sqrt(previous_bar) * beta * x0 + math.sqrt(alpha) * (1.0 - previous_bar) * z) / (1.0 - alpha_bar)
        return mean, math.sqrt(beta * (1.0 - previous_bar) / (1.0 - alpha_bar))

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Data in the diffusion's space: levels mapped to [-1, 1], continuous data unchanged."""
        return x if self.num_levels is None else 2.0 * x / (self.num_levels - 1) - 1.0

    def decoder(self, mean: torch.Tensor) -> dist.Distribution:
        """p(x_0 | z_1) with mean ``mean`` (..., D) and scale sqrt(beta_1); event shape (D,)."""
        scale = torch.full_like(mean, math.sqrt(float(self.betas[0])))
        if self.num_levels is None:
            return dist.Normal(mean, scale).to_event(1)
        return DiscretizedNormal(mean, scale, self.num_levels)

    def forward(
        self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size: int | None = None
    ) -> torch.Tensor:
        """p(x, z_1..z_T): ``x`` (N, D) to condition on, or ``num_data`` to generate.

        Returns
        -------
        Tensor, shape (batch, D)
        """
        self._check_ready()
        size = self.plate_size(x, num_data)
        network = self.noise_predictor  # one lookup: each registers the weights with Pyro
        device = self.betas.device
        width = self.event_shape[0]
        with pyro.plate(self.data_plate, size, subsample_size=batch_size, device=device) as index:
            z = pyro.sample(f"z_{self.num_timesteps}", dist.Normal(torch.zeros(width, device=device), 1.0).to_event(1))
            for step in pyro.markov(range(self.num_timesteps, 1, -1)):
                scale = math.sqrt(self._schedule(step)[0])
                z = pyro.sample(f"z_{step - 1}", dist.Normal(self.reverse_mean(z, step, network), scale).to_event(1))
            observed = None if x is None else x.index_select(0, index)
            return pyro.sample(self.observed_site, self.decoder(self.reverse_mean(z, 1, network)), obs=observed)

    def forward_process(
        self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size: int | None = None
    ) -> None:
        """The guide: q(z_T | x_0), then q(z_{t-1} | z_t, x_0) for t = T..2 (no parameters)."""
        self._check_ready()
        if x is None:
            raise ValueError("the forward process noises data: give x")
        with pyro.plate(self.data_plate, x.shape[0], subsample_size=batch_size, device=self.betas.device) as index:
            x0 = self.to_unit(x.index_select(0, index))
            alpha_bar = float(self.alpha_bars[-1])
            z = pyro.sample(
                f"z_{self.num_timesteps}", dist.Normal(math.sqrt(alpha_bar) * x0, math.sqrt(1.0 - alpha_bar)).to_event(1)
            )
            for step in pyro.markov(range(self.num_timesteps, 1, -1)):
                mean, scale = self.posterior(z, x0, step)
                z = pyro.sample(f"z_{step - 1}", dist.Normal(mean, scale).to_event(1))

    def guides(self) -> dict[str, Any]:
        """"forward_process": the fixed forward noising process."""
        return {"forward_process": self.forward_process}

    # ------------------------------------------------------------------ the bound
    def _traces(self, x: torch.Tensor, seed: int) -> tuple[poutine.Trace, poutine.Trace]:
        """One forward-process chain per datum (the guide's trace) and the model replayed on it."""
        with torch.random.fork_rng(devices=[]), poutine.block():
            pyro.set_rng_seed(seed)
            guide_trace = poutine.trace(self.forward_process).get_trace(x=x)
            model_trace = poutine.trace(poutine.replay(self, trace=guide_trace)).get_trace(x=x)
        return guide_trace, model_trace

    def elbo_terms(self, x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
        """One chain from the forward process per datum and each term of the ELBO at it.

        Parameters
        ----------
        x : Tensor, shape (N, D)
        seed : int
            Seed of the chain (Pyro's random state, restored afterwards).

        Returns
        -------
        dict of str to Tensor, each shaped (N,)
            ``"x"``: log p(x_0 | z_1); ``"z_t"``: minus KL(q || p) of that site (given the chain's
            values upstream); ``"elbo"``: their sum. The chain's values are under ``"value_z_t"``,
            shaped (N, D).
        """
        guide_trace, model_trace = self._traces(x, seed)
        terms: dict[str, torch.Tensor] = {}
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or name == self.data_plate:
                continue
            if site["is_observed"]:
                terms[name] = site["fn"].log_prob(site["value"])
            else:
                terms[name] = -kl_divergence(guide_trace.nodes[name]["fn"], site["fn"])
                terms[f"value_{name}"] = site["value"]
        terms["elbo"] = sum(value for key, value in terms.items() if not key.startswith("value_"))
        return terms

    def log_weight(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """``log p(x, z_1..z_T) - log q(z_1..z_T | x)`` at one forward-process chain per datum: (N,).

        Its expectation under q is the ELBO (whose KL terms :meth:`elbo_terms` takes in closed
        form); the log-mean-exp of K of them is the importance-weighted bound (Burda et al.,
        2016), which is a lower bound on log p(x) in expectation and tightens with K.

        Parameters
        ----------
        x : Tensor, shape (N, D)
        seed : int
            Seed of the chain (Pyro's random state, restored afterwards).
        """
        guide_trace, model_trace = self._traces(x, seed)
        total = torch.zeros(x.shape[0], device=x.device)
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or name == self.data_plate:
                continue
            total = total + site["fn"].log_prob(site["value"])
            if not site["is_observed"]:
                total = total - guide_trace.nodes[name]["fn"].log_prob(site["value"])
        return total

    def log_likelihood(
        self, draws: dict[str, torch.Tensor], data: Dataset, num_particles: int = 1, estimator: str = "elbo", seed: int = 0
    ) -> torch.Tensor:
        """A lower bound on log p(x_i) per datum from ``num_particles`` forward-process chains.

        Parameters
        ----------
        draws : dict
            Empty (the networks' weights are point estimates).
        data : Dataset
        num_particles : int
            K, the chains per datum.
        estimator : {"elbo", "iwae"}
            "elbo": the mean over the K chains of the ELBO (KL terms in closed form); "iwae":
            ``log (1/K) sum_k p(x, z^k) / q(z^k | x)``, the importance-weighted bound with the
            forward process as proposal, no lower than the ELBO in expectation and tighter with K
            (equal to it in expectation at K = 1). Both are lower bounds on log p(x_i).
        seed : int
            Seed of the first chain (chain k uses ``seed + k``).

        Returns
        -------
        Tensor, shape (1, num_data)
        """
        self.validate(data)
        check_positive_int(num_particles, "num_particles")
        check_choice(estimator, "estimator", ("elbo", "iwae"))
        x = data.x.to(self.betas.device)
        with torch.no_grad():
            if estimator == "elbo":
                bounds = [self.elbo_terms(x, seed=seed + particle)["elbo"] for particle in range(num_particles)]
                return torch.stack(bounds).mean(0).unsqueeze(0).cpu()
            weights = torch.stack([self.log_weight(x, seed=seed + particle) for particle in range(num_particles)])
            return (weights.logsumexp(0) - math.log(num_particles)).unsqueeze(0).cpu()

    # ------------------------------------------------------------------ declarations
    def dims(self) -> dict[str, list[str]]:
        return {"x": ["datum", "feature"]}

    def capability(self, name: str) -> bool:
        return name in ("log_prob", "sample")

    @classmethod
    def example(cls) -> tuple["Diffusion", Dataset]:
        return cls(num_timesteps=4, hidden_sizes=[8]), simulate.ring(num_data=40, seed=0)

    @classmethod
    def examples(cls) -> list[tuple["Diffusion", Dataset]]:
        ring = simulate.ring(num_data=40, seed=0)
        levels = Dataset(x=((ring.x + 3.0).clamp(0, 6)).round())
        return [cls.example(), (cls(num_timesteps=4, hidden_sizes=[8], num_levels=7), levels)]


class DiscretizedNormal(dist.TorchDistribution):
    """A Normal's mass over the bins of K levels on [-1, 1]: level k covers
    [c_k - 1/(K-1), c_k + 1/(K-1)] around c_k = 2 k / (K - 1) - 1, the first and last bins
    reaching to -inf and +inf. Values are the levels 0..K-1 (as floats); event shape (D,).

    Parameters
    ----------
    loc, scale : Tensor, shape (..., D)
    num_levels : int
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, num_levels: int) -> None:
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        self.num_levels = num_levels
        super().__init__(self.loc.shape[:-1], self.loc.shape[-1:], validate_args=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.integer_interval(0, self.num_levels - 1), 1)

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> "DiscretizedNormal":
        shape = torch.Size(batch_shape) + self.event_shape
        return DiscretizedNormal(self.loc.expand(shape), self.scale.expand(shape), self.num_levels)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        half_bin = 1.0 / (self.num_levels - 1)
        centre = 2.0 * value / (self.num_levels - 1) - 1.0
        upper = (centre + half_bin - self.loc) / self.scale
        lower = (centre - half_bin - self.loc) / self.scale
        log_upper = torch.special.log_ndtr(upper)  # log P(below the bin's top)
        log_above_lower = torch.special.log_ndtr(-lower)  # log P(above the bin's bottom)
        # middle bins: log(Phi(upper) - Phi(lower)), computed on the side away from the tails
        middle = torch.where(
            lower > 0,
            log_above_lower + torch.log1p(-torch.exp(torch.special.log_ndtr(-upper) - log_above_lower).clamp(max=1 - 1e-12)),
            log_upper + torch.log1p(-torch.exp(torch.special.log_ndtr(lower) - log_upper).clamp(max=1 - 1e-12)),
        )
        first, last = value <= 0, value >= self.num_levels - 1
        per_value = torch.where(first, log_upper, torch.where(last, log_above_lower, middle))
        return per_value.sum(-1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            continuous = self.loc.expand(shape) + self.scale.expand(shape) * torch.randn(shape, device=self.loc.device)
            return ((continuous + 1.0) * (self.num_levels - 1) / 2.0).round().clamp(0, self.num_levels - 1)


class _NoisePredictor(nn.Module):
    """eps_W(z, t): an MLP of z and sinusoidal features of t. Maps (..., D) and an integer t to
    (..., D). Without hidden layers it is affine in z (a linear reverse process)."""

    def __init__(self, width: int, hidden_sizes: Sequence[int], num_timesteps: int) -> None:
        super().__init__()
        self.num_timesteps = num_timesteps
        self.mlp = MLP([width + _EMBEDDING, *hidden_sizes, width])
        self.register_buffer("frequencies", torch.exp(torch.linspace(0.0, math.log(max(2, num_timesteps)), _EMBEDDING // 2)))
        # the features of every step 0..T, computed once (not per network pass); derived from
        # ``frequencies``, so not saved with the weights
        angles = [step * math.pi / num_timesteps / self.frequencies for step in range(num_timesteps + 1)]
        self.register_buffer("step_features", torch.stack([torch.cat([angle.sin(), angle.cos()]) for angle in angles]),
                             persistent=False)

    def forward(self, z: torch.Tensor, step: int) -> torch.Tensor:
        features = self.step_features[step].expand(*z.shape[:-1], _EMBEDDING)
        return self.mlp(torch.cat([z, features], -1))
