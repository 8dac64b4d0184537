r"""The families of probabilities, written once for every model with K discrete components:
categorical (one category index per observation), Bernoulli (D binary features) and
multinomial (D counts). Their sites, shapes and priors are in :mod:`zoo.models.families`'
table; what every family states is :class:`zoo.models.family.Family`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch

from zoo.checks import check_positive_float, check_positive_int
from zoo.models.family import Family, Params, not_counts, refuse_values
from zoo.ops.densities import (
    IndependentBernoulli,
    MultinomialCounts,
    all_binary,
    all_counts,
)
from zoo.ops.markov import safe_log
from zoo.ops.moments import weighted_means

__all__ = ["Categorical", "Bernoulli", "Multinomial"]


@dataclass(frozen=True)
class Categorical(Family):
    """One category index in 0..C-1 per observation (a single column of x).

    Parameters
    ----------
    num_categories : int, optional
        C >= 2; None while unknown (needed by :meth:`prior`, :meth:`features`, :meth:`estimates`).
    concentration : float
        Of the symmetric Dirichlet prior on each component's probabilities.
    """

    num_categories: int | None = None
    concentration: float = 1.0

    name: ClassVar[str] = "categorical"
    value_event_dims: ClassVar[int] = 0

    def __post_init__(self) -> None:
        check_positive_float(self.concentration, "concentration")
        if self.num_categories is not None:
            check_positive_int(self.num_categories, "num_categories", minimum=2)

    @property
    def sites(self) -> tuple[str, ...]:
        return ("probs",)

    def dims(self, component: str = "component") -> dict[str, list[str]]:
        return {"probs": [component, "category"]}

    def _size(self) -> int:
        if self.num_categories is None:
            raise ValueError("the categorical family needs num_categories")
        return self.num_categories

    def prior(self, dtype: torch.dtype) -> Params:
        concentration = torch.full((self._size(),), self.concentration, dtype=dtype)
        return {"probs": pyro.sample("probs", dist.Dirichlet(concentration))}

    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        return dist.Categorical(logits=safe_log(params["probs"]), validate_args=validate_args)

    def observation(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The category index, x[..., 0] as integers: (*data,)."""
        return x[..., 0].long()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The categories one-hot: (M, C)."""
        return torch.nn.functional.one_hot(x[:, 0].long(), self._size()).to(x.dtype)

    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        """Weighted category frequencies with half a pseudo-count per category."""
        counts, sums, _ = weighted_means(self.features(x), weights)
        return {"probs": (sums + 0.5) / (counts.unsqueeze(-1) + 0.5 * sums.shape[1])}

    def order_key(self, params: Params) -> torch.Tensor:
        """The expected category index."""
        probs = params["probs"]
        return (probs * torch.arange(probs.shape[-1], dtype=probs.dtype)).sum(-1)

    def in_support(self, x: torch.Tensor) -> bool:
        """Whether x holds category indices (of the alphabet, where its size is known); any
        number of columns."""
        return all_counts(x) and (self.num_categories is None or x.numel() == 0 or bool(x.max() < self.num_categories))

    def validate(self, x: torch.Tensor) -> None:
        if x.shape[-1] != 1:
            raise ValueError(
                f"data.x must have one feature (the category index) for the categorical family, got {x.shape[-1]}"
            )
        if not all_counts(x):
            refuse_values(x, not_counts(x), "data.x must hold category indices 0, 1, ... (integers) for the categorical family")
        if self.num_categories is not None and not self.in_support(x):
            raise ValueError(
                f"data.x holds category {int(x.max())}, outside the alphabet 0..{self.num_categories - 1} "
                f"(num_categories={self.num_categories})"
            )


@dataclass(frozen=True)
class Bernoulli(Family):
    """D independent binary features per component.

    Parameters
    ----------
    num_features : int, optional
        D; None while unknown (needed by :meth:`prior`).
    concentration : float
        Both parameters of the symmetric Beta prior on each probability.
    """

    num_features: int | None = None
    concentration: float = 1.0

    name: ClassVar[str] = "bernoulli"

    def __post_init__(self) -> None:
        check_positive_float(self.concentration, "concentration")
        if self.num_features is not None:
            check_positive_int(self.num_features, "num_features")

    @property
    def sites(self) -> tuple[str, ...]:
        return ("probs",)

    def prior(self, dtype: torch.dtype) -> Params:
        concentration = torch.full((self.num_features or 1,), self.concentration, dtype=dtype)
        return {"probs": pyro.sample("probs", dist.Beta(concentration, concentration).to_event(1))}

    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        return IndependentBernoulli(params["probs"], validate_args=validate_args)

    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        """Weighted frequencies of 1 with half a pseudo-count each for 0 and 1."""
        counts, sums, _ = weighted_means(x, weights)
        return {"probs": (sums + 0.5) / (counts.unsqueeze(-1) + 1.0)}

    def order_key(self, params: Params) -> torch.Tensor:
        """The mean probability over features."""
        return params["probs"].mean(-1)

    def in_support(self, x: torch.Tensor) -> bool:
        return all_binary(x)

    def validate(self, x: torch.Tensor) -> None:
        if not self.in_support(x):
            refuse_values(x, (x != 0) & (x != 1), "data.x must hold only 0 and 1 for the Bernoulli family")


@dataclass(frozen=True)
class Multinomial(Family):
    """Counts over D categories per observation (any total), e.g. word counts.

    Parameters
    ----------
    num_features : int, optional
        D; None while unknown (needed by :meth:`prior`).
    concentration : float
        Of the symmetric Dirichlet prior on each component's probabilities.
    total_count : int
        Trials per generated observation (the density scores any total).
    """

    num_features: int | None = None
    concentration: float = 1.0
    total_count: int = 1

    name: ClassVar[str] = "multinomial"

    def __post_init__(self) -> None:
        check_positive_float(self.concentration, "concentration")
        check_positive_int(self.total_count, "total_count")
        if self.num_features is not None:
            check_positive_int(self.num_features, "num_features", minimum=2)

    @property
    def sites(self) -> tuple[str, ...]:
        return ("probs",)

    def prior(self, dtype: torch.dtype) -> Params:
        if self.num_features is None:
            raise ValueError("the multinomial family needs num_features")
        concentration = torch.full((self.num_features,), self.concentration, dtype=dtype)
        return {"probs": pyro.sample("probs", dist.Dirichlet(concentration))}

    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        return MultinomialCounts(self.total_count, probs=params["probs"], validate_args=validate_args)

    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        """Weighted column totals normalised, with half a pseudo-count per column."""
        _, sums, _ = weighted_means(x, weights)
        return {"probs": (sums + 0.5) / (sums.sum(-1, keepdim=True) + 0.5 * sums.shape[1])}

    def order_key(self, params: Params) -> torch.Tensor:
        """The expected column index of one trial."""
        probs = params["probs"]
        return (probs * torch.arange(probs.shape[-1], dtype=probs.dtype)).sum(-1)

    def in_support(self, x: torch.Tensor) -> bool:
        return all_counts(x)

    def validate(self, x: torch.Tensor) -> None:
        if not self.in_support(x):
            refuse_values(x, not_counts(x), "data.x must hold non-negative integer counts for the multinomial family")
