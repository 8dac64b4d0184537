r"""What a family of K components states: the contract of :mod:`zoo.models.families`.

A mixture's components, an HMM's emissions and Naive Bayes' class-conditional columns are the
same thing: K parameter sets of one family, and a density for an observation given its
component. A :class:`Family` states, for K components (or states, or classes):

* :meth:`~Family.prior`: the ``pyro.sample`` statements of its parameter sites, inside a plate
  over components that the caller opens;
* :meth:`~Family.gather`: each datum's component parameters, picked with ``Vindex`` (works under
  enumeration and under a plate of posterior draws);
* :meth:`~Family.distribution`: the distribution of one observation given gathered parameters,
  what the enumerated definition observes;
* :meth:`~Family.log_density`: the per-component log-density table ``(S, *data, K)``, the fast
  path every collapsed likelihood (logsumexp over components, the forward algorithm over
  states) uses;
* :meth:`~Family.estimates`: weighted estimates from responsibilities (k-means start, EM step);
* :meth:`~Family.order_key`: what components are sorted by when relabelling draws;
* :meth:`~Family.in_support`, :meth:`~Family.validate`: whether data lie in the family's support;
* :meth:`~Family.dims`: the ArviZ dims of its sites;
* :meth:`Family.named`: the family of a given name, from a model's hyperparameters;
* :meth:`Family.guess`: the family that data look like (a model's ``emission="auto"``).

One density per family: the table is computed by the very distribution the enumerated
definition observes, built with a batch shape (S, 1, ..., K) and scoring the data with a
singleton component dim, ``(*data, 1, D)``, so the two cannot drift apart.

The contract is here, as a model's is in :mod:`zoo.models.base`; the families (Gaussian,
Poisson, categorical, Bernoulli, multinomial) are :mod:`zoo.models.families`.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar

import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

__all__ = ["Family", "Params", "not_counts", "refuse_values"]

#: A family's parameter sites by name, each a tensor.
Params = dict[str, torch.Tensor]

#: Every family class by its name; a subclass that defines a ``name`` joins on definition.
_BY_NAME: dict[str, type["Family"]] = {}


class Family:
    """K components of one family: priors, density, estimates, ordering and support.

    Subclasses are frozen dataclasses of their hyperparameters; see the module docstring.
    """

    #: The family's name, as models spell it (``emission="poisson"``).
    name: ClassVar[str] = ""
    #: Dims of the value one component's distribution scores: 1 (a vector of D features), or
    #: 0 for a categorical's category index.
    value_event_dims: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            _BY_NAME[cls.name] = cls

    @staticmethod
    def named(name: str, **hyperparameters: Any) -> "Family":
        """The family called ``name``, given those of ``hyperparameters`` that it takes.

        A model holds the hyperparameters of every family it offers (a prior centre, a
        concentration, a covariance form); each family takes the ones among its fields, e.g.
        ``Family.named("poisson", center=(2.0,), covariance="diag")`` is
        ``Poisson(center=(2.0,))``.

        Raises
        ------
        ValueError
            If no family is called ``name``.
        """
        if name not in _BY_NAME:
            raise ValueError(f"no family is called {name!r}; the families: {sorted(_BY_NAME)}")
        family = _BY_NAME[name]
        fields = {field.name for field in dataclasses.fields(family)}  # type: ignore[arg-type]
        return family(**{key: value for key, value in hyperparameters.items() if key in fields})

    @staticmethod
    def guess(x: torch.Tensor, model: str, argument: str) -> str:
        """The name of the family that observations x (M, D) look like: "bernoulli" if every
        value is 0 or 1, "poisson" if every value is a non-negative integer, else "gaussian".

        Integer data may be measurements (waiting times in whole minutes), so when the answer is
        not "gaussian" a UserWarning says what was read, naming the ``model`` and its
        ``argument`` that was "auto" (and it points at the caller of the model's ``prepare``).
        """
        chosen = next(name for name in ("bernoulli", "poisson", "gaussian") if Family.named(name).in_support(x))
        if chosen != "gaussian":
            reason = "0 or 1" if chosen == "bernoulli" else "a non-negative integer"
            warnings.warn(
                f"{model}: {argument}='auto' chose {chosen!r} because every value of x is {reason}; "
                f"pass {argument}='gaussian' if they are measurements, or {argument}={chosen!r} to say so",
                stacklevel=4,
            )
        return chosen

    # ------------------------------------------------------------------ declarations
    @property
    def sites(self) -> tuple[str, ...]:
        """The parameter sites, each shaped (K, ...), in the order :meth:`prior` samples them."""
        raise NotImplementedError

    def site_event_dims(self, name: str) -> int:
        """How many dims site ``name`` has right of its component dim (1, or 2 for matrices)."""
        return 1

    def dims(self, component: str = "component") -> dict[str, list[str]]:
        """ArviZ dims of the sites (without chain and draw), the component dim named ``component``."""
        return {name: [component, "feature"] for name in self.sites}

    # ------------------------------------------------------------------ the model
    def prior(self, dtype: torch.dtype) -> Params:
        """Sample the parameter sites from their priors.

        Call it inside a plate over the K components (dim -1) that the caller opens: every
        site's batch shape is that plate's, its event the per-component parameter.

        Parameters
        ----------
        dtype : torch.dtype
            Of the hyperparameter tensors (and so of the sampled values).

        Returns
        -------
        dict
            {site: value}, each value (*plates, K, ...) as ``pyro.sample`` returns it.
        """
        raise NotImplementedError

    def distribution(self, params: Params, validate_args: bool | None = None) -> dist.Distribution:
        """The distribution of one observation given its component's parameters.

        Parameters
        ----------
        params : dict
            The family's sites, each (*batch, ...) with the site's own event dims on the right:
            gathered for each datum (:meth:`gather`), or all K components (batch (*B, K)).
        validate_args : bool, optional
            As for every torch distribution (None: Pyro's global setting).

        Returns
        -------
        Distribution
            Batch shape ``*batch``; event shape (D,) (none for a categorical).
        """
        raise NotImplementedError

    def gather(self, params: Params, component: torch.Tensor) -> Params:
        """Each datum's component parameters: ``value[..., component, :]`` of every site.

        A singleton datum dim is put left of the component dim before indexing, so that
        ``Vindex`` broadcasts the parameters' batch dims against ``component``'s shape
        (..., N): under a plate of posterior draws at dim -2 a site is (S, K, ...), expanded
        to (S, 1, K, ...), and with ``component`` (N,) the result is (S, N, ...); under
        enumeration ``component`` is (K, 1) (its values in a dim of their own, left of the
        data plate) and the result (K, 1, ...); with neither, (N, ...).

        Parameters
        ----------
        params : dict
            The family's sites, each (*B, K, ...).
        component : LongTensor
            Each datum's component, any shape that broadcasts with ``*B`` and a data dim.

        Returns
        -------
        dict
            The sites, each (broadcast(*B, component.shape), ...).
        """
        gathered = {}
        for name in self.sites:
            event_dims = self.site_event_dims(name)
            expanded = params[name].unsqueeze(-(event_dims + 2))  # a singleton datum dim left of K
            gathered[name] = Vindex(expanded)[(..., component) + (slice(None),) * event_dims]
        return gathered

    def observation(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The value :meth:`distribution` scores, from data x (*data, D): x in ``dtype``."""
        return x.to(dtype)

    def log_density(self, params: Params, x: torch.Tensor, observed: torch.Tensor | None = None) -> torch.Tensor:
        """The per-component log-density table log p(x_i | component k, theta_s).

        Computed by :meth:`distribution` itself (not validating its arguments: the data are
        checked once by :meth:`validate`), with batch shape (S, 1, ..., K). With ``observed``,
        the density of each datum's observed entries (missing ones integrated out: for features
        independent given the component, their terms dropped).

        Parameters
        ----------
        params : dict
            The family's sites with one leading draw dim S: each (S, K, ...).
        x : Tensor, shape (*data, D)
            Observations, any number of data dims (N points, or N sequences by T steps).
        observed : BoolTensor, shape (*data, D), optional
            Which entries are observed (``Dataset.observed``); None: all.

        Returns
        -------
        Tensor, shape (S, *data, K)
        """
        broadcast = self._broadcast(params, data_dims=x.dim() - 1)
        value = self.observation(x, params[self.sites[0]].dtype)
        value = value.unsqueeze(-1 - self.value_event_dims)  # a singleton component dim
        distribution = self.distribution(broadcast, validate_args=False)
        if observed is None or bool(observed.all()):  # (a branch on the data, fixed for a fit)
            return distribution.log_prob(value)
        mask = observed.to(value.dtype if value.dtype.is_floating_point else params[self.sites[0]].dtype)
        if self.value_event_dims == 0:  # one column: the datum's one entry, observed or not
            return distribution.log_prob(value) * mask[..., 0].unsqueeze(-1)
        return (self.feature_log_density(distribution, value) * mask.unsqueeze(-2)).sum(-1)

    def feature_log_density(self, distribution: dist.Distribution, value: torch.Tensor) -> torch.Tensor:
        """Per-feature terms of ``distribution.log_prob(value)``, not summed over D: (..., D).

        Raises
        ------
        ValueError
            For a family whose features are not independent given the component (its missing
            entries cannot be dropped term by term).
        """
        if isinstance(distribution, dist.Independent):
            return distribution.base_dist.log_prob(value)
        feature_log_prob = getattr(distribution, "feature_log_prob", None)
        if callable(feature_log_prob):
            return feature_log_prob(value)
        raise ValueError(
            f"data has missing entries, which the {self.name} family cannot integrate out (its features "
            "are not independent given the component)"
        )

    def fill(self, params: Params, component: torch.Tensor, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """``x`` with its missing entries drawn from p(x_missing | x_observed, component, theta).

        Parameters
        ----------
        params : dict
            The family's sites, each (K, ...) (one draw).
        component : LongTensor, shape (*data,)
            Each datum's component.
        x : Tensor, shape (*data, D)
        observed : BoolTensor, shape (*data, D)

        Returns
        -------
        Tensor, shape (*data, D)
            Drawn with torch's global generator; observed entries as given. With features
            independent given the component a missing entry is a draw of its feature's
            distribution.
        """
        gathered = self.gather(params, component)
        draw = self.distribution(gathered).sample().to(x.dtype)
        if self.value_event_dims == 0:
            draw = draw.unsqueeze(-1)
        return torch.where(observed, x, draw)

    def _broadcast(self, params: Params, data_dims: int) -> Params:
        """The sites (S, K, ...) with singleton data dims between draw and component: (S, 1, ..., K, ...)."""
        return {
            name: value.reshape(value.shape[:1] + (1,) * data_dims + value.shape[1:])
            for name, value in params.items()
            if name in self.sites
        }

    # ------------------------------------------------------------------ starts and labels
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What k-means clusters and :meth:`estimates` average: x (M, D) itself by default."""
        return x

    def estimates(self, x: torch.Tensor, weights: torch.Tensor) -> Params:
        """Weighted maximum-likelihood parameters, smoothed and floored inside the support.

        Parameters
        ----------
        x : Tensor, shape (M, D)
            Observations (no padding).
        weights : Tensor, shape (M, K)
            Each observation's weight per component: one-hot cluster labels, or posterior
            probabilities (an EM step).

        Returns
        -------
        dict
            The sites, each (K, ...), inside the support even for a component without weight.
        """
        raise NotImplementedError

    def order_key(self, params: Params) -> torch.Tensor:
        """What components are sorted by: sites (*B, K, ...) -> (*B, K)."""
        raise NotImplementedError

    def in_support(self, x: torch.Tensor) -> bool:
        """Whether every value of x (*data, D) lies in the support: one or two passes over x
        (:mod:`zoo.ops.densities`), no bool temporary the size of x."""
        raise NotImplementedError

    def validate(self, x: torch.Tensor) -> None:
        """Raise ValueError, naming what is wrong and the first value outside the support, unless
        observations x (M, D) lie in it (:meth:`in_support`, which decides, and only then a pass
        to find that value)."""
        raise NotImplementedError


def refuse_values(x: torch.Tensor, bad: torch.Tensor, message: str) -> None:
    """Raise ValueError(message, and the first value where ``bad`` (x's shape) holds)."""
    raise ValueError(f"{message}, found {float(x[bad].reshape(-1)[0])}")


def not_counts(x: torch.Tensor) -> torch.Tensor:
    """Where x is not a non-negative integer (an infinite value included): x's shape, bool."""
    x = x.double()
    return (x < 0) | (x.frac() != 0)
