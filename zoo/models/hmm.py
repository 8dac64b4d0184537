r"""Hidden Markov models: a chain of discrete states, each emitting one observation.

Generative story
----------------
For N sequences, sequence n of length L_n (padded to T), K hidden states and observations of D
features (C categories for categorical emissions)::

    initial            ~ Dirichlet(initial_concentration * 1_K)                (K >= 2)
    for k in 1..K:
        transition[k]  ~ Dirichlet(transition_concentration * 1_K)             (K >= 2)
        gaussian:    locs[k]   ~ Normal(prior_center, location_scale * prior_spread)   (per feature)
                     scales[k] ~ LogNormal(log(prior_spread), scale_log_sd)            (per feature)
                     corr_cholesky[k] ~ LKJCholesky(D, correlation_concentration)      (full, D >= 2)
        poisson:     rates[k]  ~ LogNormal(log(prior_center), rate_log_sd)             (per feature)
        categorical: probs[k]  ~ Dirichlet(emission_concentration * 1_C)
        bernoulli:   probs[k]  ~ Beta(emission_concentration, emission_concentration)  (per feature)
    for n in 1..N:
        state_0[n]     ~ Categorical(initial)                                   (enumerated)
        state_t[n]     ~ Categorical(transition[state_{t-1}[n]])   for 0 < t < L_n   (enumerated)
        state_t[n]     = state_{t-1}[n]                            for t >= L_n (padding)
        x_t[n]         ~ emission(state_t[n])                      for t < L_n  (observed)

With K = 1 there is nothing to learn about the chain: ``initial`` and ``transition`` are the
constants [1] and [[1]] and are not sample sites (the model is then i.i.d.).

``prior_center`` and ``prior_spread`` default to the mean and standard deviation of the
observed training steps (an empirical prior, as for :class:`~zoo.models.GaussianMixture`);
for Poisson emissions ``prior_center`` is the mean count. ``emission="auto"`` (the default)
picks the emission from the training data: ``"bernoulli"`` if every value is 0 or 1,
``"poisson"`` if every value is a non-negative integer, ``"gaussian"`` otherwise (categorical
data must be asked for by name).

Sample sites
------------
====================== ===============  =====================================================
name                   shape            support
====================== ===============  =====================================================
``initial``            (K,)             simplex (K >= 2)
``transition``         (K, K)           each row a simplex (K >= 2)
``locs``               (K, D)           real (gaussian)
``scales``             (K, D)           positive (gaussian)
``corr_cholesky``      (K, D, D)        Cholesky factor of a correlation (gaussian, full, D >= 2)
``rates``              (K, D)           positive (poisson)
``probs``              (K, C) / (K, D)  simplex (categorical) / [0, 1] (bernoulli)
``state_0`` ..         (N,)             {0, ..., K-1}; enumerated, never seen by a guide
``state_{T-1}``
``x_0`` .. ``x_{T-1}``  (N, D) / (N,)   observed (D features, or a category index)
``x``                  (N, T, D)        the generated sequences (only when generating)
====================== ===============  =====================================================

Padding
-------
Padded steps (t >= L_n) observe nothing and copy the last real state, so they change no
likelihood, gradient, MAP path or posterior sample of the real steps (tests prove it); at
padded steps :meth:`Fit.discrete` and :meth:`Fit.marginals` repeat the last real step.

Exact fast paths, and what is trained
-------------------------------------
The enumerated model above is the definition. The same numbers come much faster from the
forward algorithm (:mod:`zoo.ops.markov`), this model's collapsed likelihood: SVI and NUTS fit
the global sites and one factor of it (:mod:`zoo.infer.collapse`), the same density as the
enumerated chain (the contract tests check value and gradient) and much cheaper to
differentiate than TraceEnum_ELBO's contraction over T sites. Forward-backward gives
``marginals``, Viterbi and forward-filtering backward-sampling ``discrete``. The table of
log p(x_t | state k) they take is the emission family's (:mod:`zoo.models.families`), computed
from the same density the enumerated model observes. (Pyro's ``DiscreteHMM`` is not used: its
``initial_logits`` describe the state *before* the first step, and it takes no per-sequence
lengths.)

Data as it comes
----------------
* **Missing values**: ``zoo.Dataset(x, lengths=..., missing="mask")``: each step's emission
  density is that of its observed entries (a step with none observed still moves the chain), so
  the forward algorithm integrates the missing ones out exactly; ``fit.impute(data)`` draws them
  from a backward-sampled path and each state's (conditional) emission.
* **Partially labelled sequences**: ``zoo.Dataset(x, lengths=..., states=s)``, ``s`` of shape
  (num_sequences, max_length) holding a state where it is known and -1 elsewhere (and at every
  padded step). Known steps clamp the emission table (every other state gets log-probability
  ``zoo.ops.markov.IMPOSSIBLE``), so the forward algorithm gives log p(x, known states), and
  ``marginals``, ``discrete`` (Viterbi) and backward sampling keep the known states. The labels
  name the states: such fits start from them and are not relabelled.
* **Sample weights**: ``zoo.Dataset(x, lengths=..., weights=w)``, one weight per sequence.
* **Known parameters**: ``zoo.fit(model, data, method, fixed={"transition": ...})`` holds sites
  at given values; with every site fixed, ``fit.log_likelihood()`` is the log-likelihood at
  those parameters (tested against hmmlearn's ``score`` and the Wikipedia umbrella example's
  published -3.3725). ``priors={"transition": dist.Dirichlet(...)}`` puts a prior of your own
  in a site's place (a sticky transition prior, say), for SVI, MAP and NUTS.

Label switching
---------------
The likelihood is unchanged by any permutation of the states. zoo starts every fit from a
k-means initialisation refined by a few Baum-Welch iterations (``initial_em_steps``, see
:meth:`HiddenMarkovModel.initial_values`), whose states are ordered, and relabels every
posterior draw the same way: states sorted by the first feature's emission mean
(``locs[:, 0]`` for gaussian, ``rates[:, 0]`` for poisson), by the mean of ``probs`` over
features (bernoulli), or by the expected category index (categorical). The permutation is
applied to the rows *and* columns of ``transition``, to ``initial`` and to every emission
parameter, so each draw describes the same chain. When two states share that key the
ordering is ambiguous and relabelling cannot help.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from zoo.checks import check_positive_float, check_positive_int
from zoo.datasets import simulate
from zoo.datasets.dataset import Dataset
from zoo.models.base import Model, no_relabelling
from zoo.models.families import Bernoulli, Categorical, Family, Gaussian, Poisson
from zoo.models.registry import register
from zoo.ops.markov import clamp_states
from zoo.ops.baum_welch import chain_estimates, expected_counts, label_counts, sequence_mask
from zoo.ops.chunks import over_draw_chunks
from zoo.ops.clustering import kmeans_plus_plus, reorder_components
from zoo.ops.markov import backward_sample, forward_backward, forward_log_likelihood, safe_log, viterbi

__all__ = ["HiddenMarkovModel", "EMISSIONS"]

EMISSIONS = ("auto", "gaussian", "categorical", "poisson", "bernoulli")
COVARIANCES = ("diag", "full")


@register("hmm")
class HiddenMarkovModel(Model):
    """Bayesian hidden Markov model with its hidden states summed out by enumeration.

    Parameters
    ----------
    num_states : int
        K, the number of hidden states (>= 1).
    emission : {"auto", "gaussian", "categorical", "poisson", "bernoulli"}
        The distribution of each step's observation given its state. Gaussian: D real features
        (diagonal or full covariance); categorical: one category index in 0..C-1 per step;
        poisson: D counts; bernoulli: D binary features (e.g. the 51 notes of a piano roll).
        "auto" picks one from the training data (see the module docstring).
    covariance : {"diag", "full"}
        Gaussian emissions only: diagonal covariance, or scales and an LKJ correlation.
    num_categories : int, optional
        C for categorical emissions; default: the largest category in the training data + 1.
    initial_concentration, transition_concentration : float
        Symmetric Dirichlet concentrations of the initial distribution and of each transition row.
        Default 1.1, just above uniform: with 1 the prior density is flat up to the edge of the
        simplex, where a MAP fit often lands (a transition never seen), reaching a probability of
        exactly 0 in floating point and a NaN log density (0 * log 0); above 1 the density
        vanishes at the edge, so the MAP stays inside.
    emission_concentration : float
        Dirichlet (categorical) or Beta (bernoulli) concentration of the emission probabilities
        (default 1.1, for the same reason).
    location_scale : float
        Gaussian: prior sd of each location, in units of ``prior_spread``.
    scale_log_sd : float
        Gaussian: sd of log(scale) under its LogNormal prior.
    correlation_concentration : float
        Gaussian, full: LKJ concentration.
    rate_log_sd : float
        Poisson: sd of log(rate) under its LogNormal prior, centred on the mean count.
    initial_em_steps : int
        Baum-Welch (EM) iterations refining the k-means start of every fit (see
        :meth:`initial_values`); 0 starts from k-means alone. They move the start, not the
        result: the fit then optimises its own objective.
    prior_center, prior_spread : list of float, optional
        Per-feature centre and spread of the emission priors; default: from the training data.
    num_features : int, optional
        D; default: from the training data.
    length : int, optional
        Default length of generated sequences; default: the training data's padded length.

    Examples
    --------
    >>> import zoo
    >>> data = zoo.datasets.load("earthquakes")
    >>> fit = zoo.fit(zoo.models.HiddenMarkovModel(3, emission="poisson"), data, zoo.SVI(guide="delta"))
    >>> fit.discrete(data).shape  # the Viterbi path: one state per year of the one sequence
    torch.Size([1, 107])
    """

    max_plate_nesting = 1
    data_plate = "sequences"
    handles_missing = True
    takes_states = True
    datum = "sequence"  # one row of the data, one number of log_likelihood: a whole sequence
    observed_site = "x"
    methods = ("svi", "nuts")
    default_guide = "normal"
    sample_options = ("length",)

    def __init__(
        self,
        num_states: int,
        emission: str = "auto",
        covariance: str = "diag",
        num_categories: int | None = None,
        initial_concentration: float = 1.1,
        transition_concentration: float = 1.1,
        emission_concentration: float = 1.1,
        location_scale: float = 2.0,
        scale_log_sd: float = 1.0,
        correlation_concentration: float = 2.0,
        rate_log_sd: float = 1.0,
        initial_em_steps: int = 3,
        prior_center: list[float] | None = None,
        prior_spread: list[float] | None = None,
        num_features: int | None = None,
        length: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(num_states, "num_states", minimum=1)
        if emission not in EMISSIONS:
            raise ValueError(f"emission must be one of {EMISSIONS}, got {emission!r}")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if isinstance(initial_em_steps, bool) or not isinstance(initial_em_steps, int) or initial_em_steps < 0:
            raise ValueError(f"initial_em_steps must be a non-negative integer, got {initial_em_steps!r}")
        for name, value in [("num_categories", num_categories), ("num_features", num_features), ("length", length)]:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_categories is not None and num_categories < 2:
            raise ValueError(f"num_categories must be at least 2, got {num_categories}")
        if emission not in ("categorical", "auto") and num_categories is not None:
            raise ValueError("num_categories is for categorical emissions only")
        if emission == "categorical" and num_features not in (None, 1):
            raise ValueError(f"categorical emissions take one category per step (num_features=1), got {num_features}")
        self.num_states = num_states
        self.emission = emission
        self.covariance = covariance
        self.num_categories = num_categories
        self.initial_concentration = check_positive_float(initial_concentration, "initial_concentration")
        self.transition_concentration = check_positive_float(transition_concentration, "transition_concentration")
        self.emission_concentration = check_positive_float(emission_concentration, "emission_concentration")
        self.location_scale = check_positive_float(location_scale, "location_scale")
        self.scale_log_sd = check_positive_float(scale_log_sd, "scale_log_sd")
        self.correlation_concentration = check_positive_float(correlation_concentration, "correlation_concentration")
        self.rate_log_sd = check_positive_float(rate_log_sd, "rate_log_sd")
        self.initial_em_steps = initial_em_steps
        if prior_spread is not None and any(not s > 0 for s in prior_spread):
            raise ValueError(f"prior_spread must be positive, got {prior_spread}")
        if prior_center is not None and num_features is not None and len(prior_center) != num_features:
            raise ValueError("prior_center must have one entry per feature")
        self.prior_center = None if prior_center is None else [float(c) for c in prior_center]
        self.prior_spread = None if prior_spread is None else [float(s) for s in prior_spread]
        self.num_features = num_features
        self.length = length

    # ------------------------------------------------------------------ the model
    def sample_globals(self) -> dict[str, torch.Tensor]:
        """initial (K,) and transition (K, K) (for K > 1), and the emission sites (K, ...)."""
        self._check_ready()
        K, dtype = self.num_states, torch.get_default_dtype()
        params: dict[str, torch.Tensor] = {}
        if K > 1:
            params["initial"] = pyro.sample(
                "initial", dist.Dirichlet(torch.full((K,), self.initial_concentration, dtype=dtype))
            )
        with pyro.plate("states", K, dim=-1):
            if K > 1:
                params["transition"] = pyro.sample(
                    "transition", dist.Dirichlet(torch.full((K,), self.transition_concentration, dtype=dtype))
                )
            params.update(self.family.prior(dtype))
        return params

    def _emission(self, params: dict[str, torch.Tensor], state: torch.Tensor) -> dist.Distribution:
        """The emission distribution of ``state`` (any batch shape, under enumeration or draws)."""
        family = self.family
        return family.distribution(family.gather(params, state))

    def forward(
        self,
        x: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        num_sequences: int | None = None,
        length: int | None = None,
        batch_size: int | None = None,
    ) -> torch.Tensor | None:
        """p(x, z): see the module docstring. Conditions on padded ``x`` (with ``lengths``) or
        generates ``num_sequences`` sequences of ``length`` steps (returned, (N, T, D))."""
        params = self.sample_globals()
        dtype = params[self.emission_sites[0]].dtype
        if x is not None:
            num_sequences, length = x.shape[0], x.shape[1]
            if lengths is None:
                lengths = torch.full((num_sequences,), length, dtype=torch.long)
        elif num_sequences is None:
            raise ValueError("give x (to condition on) or num_sequences (to generate)")
        length = int(length or self.length or 1)
        # one state: it starts there and stays (no site: nothing to infer)
        initial = params.get("initial", torch.ones(1, dtype=dtype))
        transition = params.get("transition", torch.ones(1, 1, dtype=dtype))

        with pyro.plate(self.data_plate, num_sequences, subsample_size=batch_size, dim=-1) as index:
            if x is not None:
                observed, observed_lengths = x.index_select(0, index), lengths.index_select(0, index)
                if observed.dtype.is_floating_point:  # the parameters' precision (float64 in tests)
                    observed = observed.to(params[self.emission_sites[0]].dtype)
                mask = torch.arange(length) < observed_lengths.unsqueeze(-1)  # (n, T)
            outputs = []
            state = None
            for t in pyro.markov(range(length)):
                if t == 0:
                    logits = safe_log(initial)
                else:
                    logits = Vindex(safe_log(transition).unsqueeze(-3))[..., state, :]
                    if x is not None:
                        # padding: the state stays where it was (probability one), so padded
                        # steps change no likelihood, MAP path or sample of the real ones
                        stay = torch.full_like(logits, -math.inf).scatter(-1, state.unsqueeze(-1).expand(logits.shape[:-1] + (1,)), 0.0)
                        logits = torch.where(mask[:, t].unsqueeze(-1), logits, stay)
                state = pyro.sample(f"state_{t}", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
                emission = self._emission(params, state)
                if x is not None:
                    pyro.sample(f"x_{t}", emission.mask(mask[:, t]), obs=observed[:, t])
                else:
                    outputs.append(pyro.sample(f"x_{t}", emission))
            if x is not None:
                return None
            if self.emission == "categorical":
                generated = torch.stack(outputs, -1).unsqueeze(-1).to(dtype)
            else:
                generated = torch.stack(outputs, -2)
            return pyro.deterministic(self.observed_site, generated, event_dim=2)

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["HiddenMarkovModel", Dataset]:
        """Two Gaussian states, 6 short sequences of unequal lengths (padding exercised)."""
        data = simulate.hidden_markov(num_sequences=6, length=10, num_states=2, emission="gaussian", seed=0)
        return cls(num_states=2, emission="gaussian"), dataclasses.replace(data, lengths=torch.tensor([10, 7, 10, 5, 10, 8]))

    @classmethod
    def examples(cls) -> list[tuple["HiddenMarkovModel", Dataset]]:
        """Every emission family (padded sequences), and full-covariance Gaussian emissions."""
        lengths = torch.tensor([10, 7, 10, 5, 10, 8])
        variants = [cls.example()]
        for emission, num_features in (("poisson", 1), ("categorical", 3), ("bernoulli", 2)):
            data = simulate.hidden_markov(
                num_sequences=6, length=10, num_states=2, emission=emission, num_features=num_features, seed=0
            )
            variants.append((cls(num_states=2, emission=emission), dataclasses.replace(data, lengths=lengths)))
        data = simulate.hidden_markov(num_sequences=6, length=10, num_states=2, emission="gaussian", num_features=2, seed=0)
        variants.append((cls(num_states=2, emission="gaussian", covariance="full"), dataclasses.replace(data, lengths=lengths)))
        return variants

    @property
    def enumerated_sites(self) -> tuple[str, ...]:  # type: ignore[override]
        """``state_0`` .. ``state_{length-1}``: one enumerated site per time step."""
        return tuple(f"state_{t}" for t in range(self.length or 1))

    @functools.cached_property
    def family(self) -> Family:
        """The emission family, with this model's hyperparameters (see :mod:`zoo.models.families`).

        Built once per model (its hyperparameters are fixed at construction: :meth:`prepare`
        makes a new model), as the training path asks for it several times per step.

        Raises
        ------
        ValueError
            While the emission is still "auto" (:meth:`prepare` resolves it from the data).
        """
        if self.emission == "gaussian":
            return Gaussian(
                num_features=self.num_features,
                covariance=self.covariance,
                center=None if self.prior_center is None else tuple(self.prior_center),
                spread=None if self.prior_spread is None else tuple(self.prior_spread),
                location_scale=self.location_scale,
                scale_log_sd=self.scale_log_sd,
                correlation_concentration=self.correlation_concentration,
            )
        if self.emission == "poisson":
            center = None if self.prior_center is None else tuple(self.prior_center)
            return Poisson(center=center, rate_log_sd=self.rate_log_sd)
        if self.emission == "categorical":
            return Categorical(num_categories=self.num_categories, concentration=self.emission_concentration)
        if self.emission == "bernoulli":
            return Bernoulli(num_features=self.num_features, concentration=self.emission_concentration)
        raise ValueError("emission='auto' has no family until prepare() resolves it from the data")

    @property
    def has_correlations(self) -> bool:
        return self.emission == "gaussian" and self.covariance == "full" and (self.num_features or 0) >= 2

    @property
    def emission_sites(self) -> tuple[str, ...]:
        """The state-indexed emission parameter sites, first dim K (none while "auto")."""
        return () if self.emission == "auto" else self.family.sites

    # ------------------------------------------------------------------ data
    @staticmethod
    def _lengths(data: Dataset) -> torch.Tensor:
        if data.lengths is not None:
            return data.lengths
        return torch.full((len(data),), int(data.x.shape[1]), dtype=torch.long)

    @classmethod
    def _mask(cls, data: Dataset) -> torch.Tensor:
        """True at real steps: (N, T)."""
        return sequence_mask(cls._lengths(data), data.x.shape[1])

    def validate(self, data: Dataset) -> None:
        """Refuse data this model cannot take, naming the argument; nothing is computed."""
        if data.x.dim() != 3:
            raise ValueError(
                "data.x must be 3-D padded sequences (num_sequences, length, num_features) for a hidden "
                f"Markov model, got shape {tuple(data.x.shape)}"
            )
        if data.x.shape[1] < 1 or data.x.shape[2] < 1:
            raise ValueError(f"data.x is empty: shape {tuple(data.x.shape)}")
        if self.emission != "auto":
            self.family.validate(data.x[self._mask(data)])  # the real steps: (num_observations, D)
        if self.num_features is not None and data.x.shape[2] != self.num_features:
            raise ValueError(f"data has {data.x.shape[2]} features but the model was set up for {self.num_features}")
        if data.states is not None and int(data.states.max()) >= self.num_states:
            sequence, step = (data.states >= self.num_states).nonzero()[0].tolist()
            raise ValueError(
                f"states holds state {int(data.states[sequence, step])} (sequence {sequence}, step {step}): "
                f"states must be in 0..{self.num_states - 1} (num_states={self.num_states}), or -1 where unknown"
            )

    def _resolve_emission(self, data: Dataset) -> str:
        if self.emission != "auto":
            return self.emission
        real = data.x[self._mask(data)]
        chosen = next(family.name for family in (Bernoulli(), Poisson(), Gaussian()) if family.in_support(real))
        if chosen != "gaussian":
            # Integer data may be measurements (waiting times in whole minutes): say what was read.
            reason = "0 or 1" if chosen == "bernoulli" else "a non-negative integer"
            warnings.warn(
                f"HiddenMarkovModel: emission='auto' chose {chosen!r} because every value of x is {reason}; "
                f"pass emission='gaussian' if they are measurements, or emission={chosen!r} to say so",
                stacklevel=4,
            )
        return chosen

    def prepare(self, data: Dataset) -> "HiddenMarkovModel":
        """A copy with the emission, empirical prior, D, C and default length set from ``data``."""
        config = self.config()
        config["emission"] = self._resolve_emission(data)
        resolved = HiddenMarkovModel(**config)
        resolved.validate(data)
        real = data.x[self._mask(data)]
        config["num_features"] = int(data.x.shape[2])
        config["length"] = config["length"] or int(data.x.shape[1])
        if config["emission"] == "categorical" and config["num_categories"] is None:
            config["num_categories"] = max(2, int(real.max()) + 1)
        if config["prior_center"] is None and config["emission"] == "gaussian":
            config["prior_center"], config["prior_spread"] = Gaussian.empirical_prior(real)
        if config["prior_center"] is None and config["emission"] == "poisson":
            config["prior_center"] = Poisson.empirical_prior(real)
            config["prior_spread"] = [1.0] * len(config["prior_center"])  # unused by Poisson emissions
        prepared = HiddenMarkovModel(**config)
        if data.states is not None and bool((data.states >= 0).any()):
            # known states name the states: sorting them by their emissions would undo that
            prepared.relabel = no_relabelling  # type: ignore[method-assign]
        return prepared

    def _check_ready(self) -> None:
        if self.emission == "auto" or self.num_features is None or self.length is None:
            raise ValueError(
                "this HiddenMarkovModel is not set up for data yet: fit it with zoo.fit (which sets the "
                "emission, num_features and length from the data), or pass them to the constructor"
            )
        if self.emission in ("gaussian", "poisson") and self.prior_center is None:
            raise ValueError("prior_center (and prior_spread) are needed for gaussian / poisson emissions")
        if self.emission == "categorical" and self.num_categories is None:
            raise ValueError("num_categories is needed for categorical emissions")

    def model_kwargs(
        self,
        data: Dataset | None = None,
        *,
        num_samples: int | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Arguments of ``forward``.

        With ``data``: the padded observations (padding replaced by a value inside the
        support; category indices as integers) and the lengths. Without: ``num_samples``
        sequences of ``length`` steps (option ``length``; else the length of ``template``, a
        data set to imitate; else the model's default length).
        """
        if data is not None:
            x = torch.where(self._mask(data).unsqueeze(-1), data.x, torch.zeros((), dtype=data.x.dtype))
            if self.emission == "categorical":
                x = x[..., 0].long()
            return {
                "x": x,
                "lengths": self._lengths(data),
                "batch_size": batch_size,
            }
        length = options.get("length")
        template = options.get("template")
        if length is None and template is not None:
            length = int(template.x.shape[1])
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise ValueError(f"length must be a positive integer, got {length!r}")
        return {"x": None, "num_sequences": num_samples, "length": length}

    # ------------------------------------------------------------------ results
    def dims(self) -> dict[str, list[str]]:
        dims = {"x": ["sequence", "time", "feature"]}
        if self.num_states > 1:
            dims["initial"] = ["state"]
            dims["transition"] = ["state", "state_to"]
        if self.emission != "auto":
            dims.update(self.family.dims("state"))
        return dims

    def coords(self, data: Dataset | None = None) -> dict[str, list[Any]]:
        num_features = self.num_features or (data.num_features if data is not None else 1)
        names = list(data.feature_names) if data is not None and data.feature_names else list(range(num_features))
        coords: dict[str, list[Any]] = {
            "state": list(range(self.num_states)),
            "state_to": list(range(self.num_states)),
            "feature": names,
            "feature_bis": names,
        }
        if self.num_categories is not None:
            coords["category"] = list(range(self.num_categories))
        if data is not None and data.x.dim() == 3:
            coords["time"] = list(range(int(data.x.shape[1])))
        return coords

    # ------------------------------------------------------------------ fast exact paths
    def _flat_parameters(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Parameters with one leading draw dim S: initial (S, K), transition (S, K, K), ..."""
        reference = draws[self.emission_sites[0]]
        num_draws, dtype = reference.shape[0], reference.dtype
        K = self.num_states
        flat = {name: draws[name] for name in self.emission_sites}
        flat["initial"] = draws["initial"] if "initial" in draws else torch.ones(num_draws, 1, dtype=dtype)
        flat["transition"] = draws["transition"] if "transition" in draws else torch.ones(num_draws, 1, 1, dtype=dtype)
        if K > 1 and flat["initial"].dim() != 2:
            raise ValueError(f"draws['initial'] must have shape (num_draws, {K}), got {tuple(flat['initial'].shape)}")
        return flat

    def log_emission(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, observed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(x_{n,t} | state k, theta_s) for parameters with a leading draw dim.

        Parameters
        ----------
        params : dict
            Emission sites shaped (S, K, ...).
        x : Tensor, shape (N, T, D)
            Padded observations (padding inside the support).
        observed : BoolTensor, shape (N, T, D), optional
            Observed entries (``Dataset(missing="mask")``): the density of a step is that of its
            observed entries (0 for a step with none: its emission is unobserved).

        Returns
        -------
        Tensor, shape (S, N, T, K)
        """
        return self.family.log_density(params, x, observed)

    def _elements_per_draw(self, data: Dataset) -> int:
        """The largest temporary of the forward pass per draw: N T K max(K, D)."""
        num_sequences, length, num_features = data.x.shape
        return num_sequences * length * self.num_states * max(self.num_states, num_features)

    def _messages(self, draws: dict[str, torch.Tensor], data: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        self._check_ready()
        flat = self._flat_parameters(draws)
        mask = self._mask(data)
        # padding replaced by a value inside every emission's support
        x = torch.where(mask.unsqueeze(-1), data.x, torch.zeros((), dtype=data.x.dtype))  # (N, T, D)
        log_emission = self.log_emission(flat, x, data.observed)
        if data.states is not None:
            log_emission = log_emission + clamp_states(data.states, self.num_states, log_emission.dtype)
        return (*self._log_chain(flat), log_emission, mask)

    @staticmethod
    def _log_chain(flat: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """log initial and log transition, normalised as ``Categorical`` normalises them (so
        values *and* gradients equal the enumerated model's, also off the simplex)."""
        return safe_log(flat["initial"]).log_softmax(-1), safe_log(flat["transition"]).log_softmax(-1)

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log p(x_n | theta_s) by the forward algorithm: (S, num_sequences)."""
        return over_draw_chunks(lambda chunk: forward_log_likelihood(*self._messages(chunk, data)), draws, self._elements_per_draw(data))

    def marginals(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, torch.Tensor]:
        """p(state_t = k | x_n, theta_s) by forward-backward: {"state_t": (S, N, K)} for each t."""
        probs = over_draw_chunks(lambda chunk: forward_backward(*self._messages(chunk, data)), draws, self._elements_per_draw(data))
        return {f"state_{t}": probs[:, :, t] for t in range(probs.shape[2])}

    def discrete(self, params: dict[str, torch.Tensor], data: Dataset, temperature: int = 0) -> dict[str, torch.Tensor]:
        """Viterbi path (temperature 0) or a forward-filtering backward-sampling draw (1).

        Returns
        -------
        dict
            {"state_t": LongTensor (N,)} for each t.
        """
        batched = {name: value.unsqueeze(0) for name, value in params.items()}
        messages = self._messages(batched, data)
        paths = (viterbi if temperature == 0 else backward_sample)(*messages)[0]
        return {f"state_{t}": paths[:, t] for t in range(paths.shape[1])}

    def impute(self, params: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """One draw of the missing entries of ``data`` from p(x_missing | x_observed, theta) given
        one parameter value (site shapes): a path drawn by forward-filtering backward-sampling
        (respecting known states), then each step's missing entries from its state's emission
        given its observed ones. Returns x's shape (N, T, D); padded steps as they are."""
        path = self.collect_discrete(self.discrete(params, data, temperature=1))  # (N, T)
        observed = data.observed if data.observed is not None else torch.ones_like(data.x, dtype=torch.bool)
        observed = observed | ~self._mask(data).unsqueeze(-1)
        emission = {name: params[name] for name in self.emission_sites}
        return self.family.fill(emission, path, data.x, observed)

    def collect_discrete(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The per-step values as one tensor, time second: (N, T) paths or (N, T, K) probabilities."""
        steps = sorted((int(name.split("_")[1]), value) for name, value in values.items() if name.startswith("state_"))
        return torch.stack([value for _, value in steps], 1)

    # ------------------------------------------------------------------ initialisation, labels
    def relabel(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sort the states of every draw (chain, draw, K, ...) by their emission key; permute
        ``initial``, the rows and columns of ``transition`` and the emission sites alike."""
        if self.num_states == 1 or self.emission_sites[0] not in draws:
            return draws
        order = self.family.order_key(draws).argsort(-1)  # (c, d, K)
        sites = [name for name in ("initial", "transition") + self.emission_sites if name in draws]
        relabelled = {name: reorder_components(draws[name], order, dims=2 if name == "transition" else 1) for name in sites}
        return draws | relabelled

    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """Where every fit starts: k-means, then ``initial_em_steps`` Baum-Welch iterations.

        k-means on the observed steps (ignoring time) gives each state's emission parameters
        (from its cluster) and the chain's (from the cluster labels' counts, smoothed towards
        staying). k-means knows nothing of the chain, so Baum-Welch (EM) iterations then
        refine the start (see :meth:`_em_step`). Each costs about one evaluation of the
        training objective and its gradient, where an L-BFGS step costs two or more, and the
        first few EM iterations from k-means gain more than several L-BFGS steps (on the
        5-state benchmark in ``benchmarks/hmm.py``: 3 EM iterations bring the start within
        1e-6 nats per observation of the optimum; L-BFGS from k-means alone stops after some
        25 steps, 5e-6 away). The fit itself then optimises its exact objective (the MAP, the
        ELBO, or NUTS's posterior) from there. States are ordered as :meth:`relabel` orders
        them.

        Returns
        -------
        dict
            One value per latent site (constrained), no draw dims: ``initial`` (K,),
            ``transition`` (K, K) (K >= 2) and the emission sites (K, ...), in the data's dtype.
        """
        self._check_ready()
        K = self.num_states
        mask = self._mask(data)
        real = data.x[mask]  # (M, D): the observed steps, time ignored
        features = self.family.features(real)
        centres = kmeans_plus_plus(features, K, seed=seed)
        label = torch.cdist(features, centres).argmin(-1)  # (M,)
        if data.states is not None:
            # k-means names its clusters at random: name them after the known states they hold
            # most of, and start the known steps as what they are
            known = data.states[mask]
            label = _name_clusters(label, known, features, centres)
            label = torch.where(known >= 0, known, label)
        values = self.family.estimates(real, torch.nn.functional.one_hot(label, K).to(real.dtype))
        if K > 1:
            labels = torch.full(mask.shape, -1, dtype=torch.long)  # (N, T), -1 at padding
            labels[mask] = label
            first, transitions = (counts.to(real.dtype) for counts in label_counts(labels, K))
            first = first + 1.0
            # smoothed: one pseudo-count everywhere, and 10% of the row's steps for staying
            stay = 0.1 * transitions.sum(-1, keepdim=True).clamp(min=1)
            transitions = transitions + 1.0 + torch.eye(K, dtype=real.dtype) * stay
            values["initial"] = first / first.sum()
            values["transition"] = transitions / transitions.sum(-1, keepdim=True)
            for _ in range(self.initial_em_steps):
                values = self._em_step(values, data, real)
        ordered = self.relabel({name: value[None, None] for name, value in values.items()})
        return {name: value[0, 0] for name, value in ordered.items()}

    def _em_step(
        self, values: dict[str, torch.Tensor], data: Dataset, real: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One Baum-Welch (EM) iteration from ``values`` (K-indexed sites, no draw dims).

        E-step: expected starts, transitions and state posteriors (:mod:`zoo.ops.baum_welch`,
        by the gradient of the forward pass the fast training path runs). M-step: the chain
        from the counts plus the Dirichlet priors' pseudo-counts (floored at 0.01, so the start
        stays inside the simplex), the emissions as in :meth:`Family.estimates
        <zoo.models.families.Family.estimates>` with the posterior state probabilities as weights.
        """
        batched = {name: value[None] for name, value in values.items()}
        with torch.no_grad():
            *chain, mask = self._messages(batched, data)
        counts = expected_counts(*chain, mask)  # draw dim 1
        if not (torch.isfinite(counts.log_likelihood).all() and torch.isfinite(counts.posterior).all()):
            return values  # a start this poor is left to the optimiser
        updated = self.family.estimates(real, counts.posterior[0][mask])  # weights (M, K)
        pseudo_counts = (max(self.initial_concentration - 1.0, 0.01), max(self.transition_concentration - 1.0, 0.01))
        initial, transition = chain_estimates(counts, *pseudo_counts)
        updated["initial"], updated["transition"] = initial[0], transition[0]
        return updated


def _name_clusters(label: torch.Tensor, known: torch.Tensor, features: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Cluster labels renamed after the known states: cluster c becomes the state whose known
    steps' mean feature lies nearest its centre, the renaming (a permutation) chosen to make the
    total distance least (every permutation for K <= 7, else greedily, nearest pair first).
    Clustering overlapping emissions splits a state's steps across clusters, so the clusters'
    centres, not their shares of known steps, identify the states.

    Parameters
    ----------
    label : LongTensor, shape (M,)
        Cluster of each observed step.
    known : LongTensor, shape (M,)
        Known state of each step, -1 where unknown.
    features : Tensor, shape (M, F)
        What was clustered.
    centres : Tensor, shape (K, F)
        The clusters' centres.

    Returns
    -------
    LongTensor, shape (M,)
    """
    num_states = centres.shape[0]
    labelled = known >= 0
    counts = torch.zeros(num_states, dtype=features.dtype).index_add_(0, known[labelled], torch.ones_like(known[labelled], dtype=features.dtype))
    sums = torch.zeros_like(centres).index_add_(0, known[labelled], features[labelled])
    state_means = sums / counts.clamp(min=1).unsqueeze(-1)
    cost = torch.cdist(centres, state_means) * (counts > 0)  # [cluster, state]; a state with no label costs nothing
    if num_states <= 7:
        orders = torch.tensor(list(itertools.permutations(range(num_states))))  # (K!, K): cluster c -> orders[:, c]
        totals = cost[torch.arange(num_states), orders].sum(-1)
        name = orders[int(totals.argmin())]
    else:
        name = torch.full((num_states,), -1, dtype=torch.long)
        taken: set[int] = set()
        for flat in cost.flatten().argsort().tolist():
            cluster, state = divmod(flat, num_states)
            if name[cluster] < 0 and state not in taken:
                name[cluster] = state
                taken.add(state)
    return name[label]
