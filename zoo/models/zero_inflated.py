r"""Zero-inflated Poisson: counts with more zeros than a Poisson allows.

Some zeros are structural (a visitor who did not fish catches no fish, a machine that was off
reports no faults), the others are Poisson zeros of a process that was running. The structural
zero of each datum is a discrete latent that inference sums out.

This model is the worked example of :doc:`/add_a_model`: it is written against the contract of
:class:`zoo.models.Model` and nothing else, and the runner, ``Fit``, ArviZ, the CLI
(``zoo fit zero_inflated``) and the contract checks take it without change.

Generative story
----------------
For N counts::

    zero_probability       ~ Beta(zero_concentration1, zero_concentration0)
    rate                   ~ Gamma(rate_shape, rate_shape / rate_mean)           (mean rate_mean)
    for i in 1..N:
        structural_zero[i] ~ Bernoulli(zero_probability)                          (enumerated)
        x[i]               ~ 0 if structural_zero[i] else Poisson(rate)

``rate_mean`` defaults to the mean of the training counts (an empirical prior in the data's own
units); ``rate_shape = 1`` makes the Gamma an exponential, a weak prior.

Sample sites
------------
====================  ======  ===========================================
name                  shape   support
====================  ======  ===========================================
``zero_probability``  ()      (0, 1)
``rate``              ()      positive
``structural_zero``   (N,)    {0, 1}; enumerated, never seen by a guide
``x``                 (N, 1)  non-negative integers; observed
====================  ======  ===========================================
"""

from __future__ import annotations

import torch
import pyro
import pyro.distributions as dist

from zoo.checks import check_positive_float
from zoo.datasets.dataset import Dataset
from zoo.models.base import Model
from zoo.models.families import Poisson
from zoo.models.registry import register

__all__ = ["ZeroInflatedPoisson"]


@register("zero_inflated")
class ZeroInflatedPoisson(Model):
    """Poisson counts mixed with structural zeros, the zero of each count summed out.

    Parameters
    ----------
    zero_concentration1, zero_concentration0 : float
        The Beta prior of ``zero_probability`` (1, 1 is uniform on (0, 1)).
    rate_shape : float
        Shape of the Gamma prior of ``rate``.
    rate_mean : float, optional
        Prior mean of ``rate``; default: the mean of the training counts.

    Examples
    --------
    >>> import zoo
    >>> model, data = zoo.models.ZeroInflatedPoisson.example()
    >>> fit = zoo.fit(model, data, zoo.SVI(guide="delta"))
    >>> fit.marginals(data).shape          # p(structural_zero = 0, 1 | x_i): (N, 2)
    torch.Size([60, 2])
    """

    enumerated_sites = ("structural_zero",)
    methods = ("svi", "nuts")
    default_guide = "normal"
    static_likelihood = True  # no Python branch on a tensor's value in its density

    def __init__(
        self,
        zero_concentration1: float = 1.0,
        zero_concentration0: float = 1.0,
        rate_shape: float = 1.0,
        rate_mean: float | None = None,
    ) -> None:
        super().__init__()
        self.zero_concentration1 = check_positive_float(zero_concentration1, "zero_concentration1")
        self.zero_concentration0 = check_positive_float(zero_concentration0, "zero_concentration0")
        self.rate_shape = check_positive_float(rate_shape, "rate_shape")
        self.rate_mean = None if rate_mean is None else check_positive_float(rate_mean, "rate_mean")

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["ZeroInflatedPoisson", Dataset]:
        """60 counts: 30 percent structural zeros, the rest Poisson with rate 4."""
        generator = torch.Generator().manual_seed(0)
        structural = torch.rand(60, generator=generator) < 0.3
        counts = torch.poisson(torch.full((60,), 4.0), generator=generator)
        return cls(), Dataset(x=torch.where(structural, 0.0, counts).unsqueeze(-1), name="zero-inflated counts")

    def validate(self, data: Dataset) -> None:
        if data.x.dim() != 2 or data.x.shape[1] != 1 or data.lengths is not None:
            raise ValueError(f"data.x must be one column of counts (num_data, 1), got shape {tuple(data.x.shape)}")
        Poisson().validate(data.x)  # non-negative integers, the shared family's check and message

    def prepare(self, data: Dataset) -> "ZeroInflatedPoisson":
        self.validate(data)
        config = self.config()
        if config["rate_mean"] is None:
            config["rate_mean"] = max(float(data.x.mean()), 0.1)
        return type(self)(**config)

    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """The mean of the non-zero counts as the rate; the zeros a Poisson cannot explain as
        structural ones."""
        counts = data.x[:, 0]
        positive = counts[counts > 0]
        rate = positive.mean() if len(positive) else torch.tensor(0.5)
        excess = (counts == 0).float().mean() - torch.exp(-rate)
        return {"rate": rate, "zero_probability": excess.clamp(0.05, 0.95)}

    # ------------------------------------------------------------------ the model
    def sample_globals(self) -> dict[str, torch.Tensor]:
        if self.rate_mean is None:
            raise ValueError("rate_mean is not set yet: fit the model with zoo.fit, or pass rate_mean")
        zero_prior = dist.Beta(torch.tensor(self.zero_concentration1), torch.tensor(self.zero_concentration0))
        rate_prior = dist.Gamma(torch.tensor(self.rate_shape), torch.tensor(self.rate_shape / self.rate_mean))
        return {
            "zero_probability": pyro.sample("zero_probability", zero_prior),
            "rate": pyro.sample("rate", rate_prior),
        }

    def forward(
        self,
        x: torch.Tensor | None = None,
        num_data: int | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """p(x, structural_zero, theta): conditions on ``x`` (N, 1) or generates ``num_data`` counts."""
        num_data = self.plate_size(x, num_data)
        params = self.sample_globals()
        # Under a plate of posterior draws (dim -2) the globals are (S, 1): a trailing event dim
        # of one count makes the rate (S, 1, 1), batch (S, 1) against the data plate (N).
        rate = params["rate"].unsqueeze(-1)
        with pyro.plate(self.data_plate, num_data, subsample_size=batch_size) as index:
            # Under enumeration structural_zero is (2, 1, ...): its own dim left of the plates.
            structural_zero = pyro.sample(
                "structural_zero", dist.Bernoulli(params["zero_probability"]), infer={"enumerate": "parallel"}
            )
            counts = dist.Poisson(rate).to_event(1)
            zeros = dist.Delta(torch.zeros(1), event_dim=1)
            distribution = dist.MaskedMixture(structural_zero.bool(), counts, zeros)  # zeros where True
            observed = None if x is None else x.index_select(0, index)
            return pyro.sample(self.observed_site, distribution, obs=observed)

    # ------------------------------------------------------------------ the collapsed density
    def log_joint(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log p(x_i, structural_zero_i = z | theta_s) for z = 0, 1: (S, N, 2)."""
        zero_probability = draws["zero_probability"].unsqueeze(-1)  # (S, 1)
        rate = draws["rate"].unsqueeze(-1)
        counts = data.x[:, 0]  # (N,)
        poisson = torch.xlogy(counts, rate) - rate - torch.lgamma(counts + 1)  # (S, N)
        from_poisson = torch.log1p(-zero_probability) + poisson
        structural = torch.where(counts == 0, zero_probability.log(), torch.tensor(-torch.inf))
        return torch.stack([from_poisson, structural.expand_as(from_poisson)], dim=-1)

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log p(x_i | theta_s), the structural zero summed out: (S, N)."""
        return self.log_joint(draws, data).logsumexp(-1)

    def marginals(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, torch.Tensor]:
        """p(structural_zero_i = 0, 1 | x_i, theta_s): {"structural_zero": (S, N, 2)}."""
        return {"structural_zero": self.log_joint(draws, data).softmax(-1)}
