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

Padded steps (t >= L_n) observe nothing and copy the last real state, so they change no
likelihood, gradient, MAP path or posterior sample of the real steps. Posterior draws are
relabelled (states sorted by the emission family's key), so label switching does not inflate
R-hat. The model's docs page says more: padding, label switching, the exact fast paths (what SVI
and NUTS train), the data it takes as it comes (missing values, known states, weights, known
parameters) and where a fit starts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from zoo.checks import check_choice, check_count, check_positive_float, check_positive_int
from zoo.datasets import simulate
from zoo.datasets.dataset import Dataset
from zoo.models.base import Model, no_relabelling
from zoo.models.chain import MarkovChainPaths
from zoo.models.families import Family, Gaussian, Poisson
from zoo.models.registry import register
from zoo.ops.baum_welch import baum_welch
from zoo.ops.clustering import kmeans_labels
from zoo.ops.markov import safe_log

__all__ = ["HiddenMarkovModel", "EMISSIONS"]

EMISSIONS = ("auto", "gaussian", "categorical", "poisson", "bernoulli")


@register("hmm")
class HiddenMarkovModel(MarkovChainPaths, Model):
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
    initial_concentration, transition_concentration, emission_concentration : float
        Symmetric Dirichlet concentrations of the initial distribution, of each transition row
        and of categorical emission probabilities (Beta for bernoulli ones). Default 1.1, just
        above uniform, so that a MAP fit stays inside the simplex (see the docs page).
    location_scale, scale_log_sd, correlation_concentration : float
        Gaussian emissions: prior sd of each location in units of ``prior_spread``, sd of
        log(scale) under its LogNormal prior, and LKJ concentration (full covariance).
    rate_log_sd : float
        Poisson: sd of log(rate) under its LogNormal prior, centred on the mean count.
    initial_em_steps : int
        Baum-Welch (EM) iterations refining the k-means start of every fit
        (:meth:`initial_values`); they move the start, not the result.
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
    # no Python branch on a tensor's value in its density: the forward pass is the log-space
    # scan while torch.jit.trace records it (zoo.ops.markov.forward_log_likelihood)
    static_likelihood = True
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
        check_choice(emission, "emission", EMISSIONS)
        check_choice(covariance, "covariance", Gaussian.COVARIANCES)
        check_count(initial_em_steps, "initial_em_steps", minimum=0)
        optional_counts = (("num_categories", num_categories, 2), ("num_features", num_features, 1), ("length", length, 1))
        for name, value, minimum in optional_counts:
            if value is not None:
                check_count(value, name, minimum)
        if emission not in ("categorical", "auto") and num_categories is not None:
            raise ValueError("num_categories is for categorical emissions only")
        if emission == "categorical" and num_features not in (None, 1):
            raise ValueError(f"categorical emissions take one category per step (num_features=1), got {num_features}")
        if prior_spread is not None and any(not s > 0 for s in prior_spread):
            raise ValueError(f"prior_spread must be positive, got {prior_spread}")
        if prior_center is not None and num_features is not None and len(prior_center) != num_features:
            raise ValueError("prior_center must have one entry per feature")
        self.num_states, self.emission, self.covariance, self.num_categories = num_states, emission, covariance, num_categories
        for name, value in (
            ("initial_concentration", initial_concentration), ("transition_concentration", transition_concentration),
            ("emission_concentration", emission_concentration), ("location_scale", location_scale),
            ("scale_log_sd", scale_log_sd), ("correlation_concentration", correlation_concentration),
            ("rate_log_sd", rate_log_sd),
        ):
            setattr(self, name, check_positive_float(value, name))
        self.initial_em_steps = initial_em_steps
        self.prior_center = None if prior_center is None else [float(c) for c in prior_center]
        self.prior_spread = None if prior_spread is None else [float(s) for s in prior_spread]
        self.num_features, self.length = num_features, length

    # ------------------------------------------------------------------ the model
    def sample_globals(self) -> dict[str, torch.Tensor]:
        """initial (K,) and transition (K, K) (for K > 1), and the emission sites (K, ...)."""
        self._check_ready()
        K, dtype = self.num_states, torch.get_default_dtype()
        params: dict[str, torch.Tensor] = {}
        if K > 1:
            params["initial"] = pyro.sample("initial", dist.Dirichlet(torch.full((K,), self.initial_concentration, dtype=dtype)))
        with pyro.plate("states", K, dim=-1):
            if K > 1:
                concentration = torch.full((K,), self.transition_concentration, dtype=dtype)
                params["transition"] = pyro.sample("transition", dist.Dirichlet(concentration))
            params.update(self.family.prior(dtype))
        return params

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
                    observed = observed.to(dtype)
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
                emission = self.family.distribution(self.family.gather(params, state))
                if x is not None:
                    pyro.sample(f"x_{t}", emission.mask(mask[:, t]), obs=observed[:, t])
                else:
                    outputs.append(pyro.sample(f"x_{t}", emission))
            if x is None:  # (N, T, D); a category index is one column, as data holds it
                categorical = self.emission == "categorical"
                generated = torch.stack(outputs, -1).unsqueeze(-1).to(dtype) if categorical else torch.stack(outputs, -2)
                return pyro.deterministic(self.observed_site, generated, event_dim=2)
        return None

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["HiddenMarkovModel", Dataset]:
        """Two Gaussian states, 6 short sequences of unequal lengths (padding exercised)."""
        return cls.examples()[0]

    @classmethod
    def examples(cls) -> list[tuple["HiddenMarkovModel", Dataset]]:
        """Every emission family (padded sequences), and full-covariance Gaussian emissions."""
        variants = []
        for emission, num_features, covariance in (("gaussian", 1, "diag"), ("poisson", 1, "diag"), ("categorical", 3, "diag"),
                                                    ("bernoulli", 2, "diag"), ("gaussian", 2, "full")):
            data = simulate.hidden_markov(
                num_sequences=6, length=10, num_states=2, emission=emission, num_features=num_features, seed=0
            )
            data = dataclasses.replace(data, lengths=torch.tensor([10, 7, 10, 5, 10, 8]))
            variants.append((cls(num_states=2, emission=emission, covariance=covariance), data))
        return variants

    @property
    def enumerated_sites(self) -> tuple[str, ...]:  # type: ignore[override]
        """``state_0`` .. ``state_{length-1}``: one enumerated site per time step."""
        return tuple(f"state_{t}" for t in range(self.length or 1))

    @functools.cached_property
    def family(self) -> Family:
        """The emission family with this model's hyperparameters (:mod:`zoo.models.families`),
        built once (:meth:`prepare` makes a new model); a ValueError while emission is "auto"."""
        if self.emission == "auto":
            raise ValueError("emission='auto' has no family until prepare() resolves it from the data")
        taken = ("num_features", "covariance", "num_categories", "location_scale", "scale_log_sd", "correlation_concentration",
                 "rate_log_sd")
        return Family.named(
            self.emission,
            center=None if self.prior_center is None else tuple(self.prior_center),
            spread=None if self.prior_spread is None else tuple(self.prior_spread),
            concentration=self.emission_concentration,
            **{name: getattr(self, name) for name in taken},
        )

    @property
    def has_correlations(self) -> bool:
        return self.emission == "gaussian" and self.covariance == "full" and (self.num_features or 0) >= 2

    @property
    def emission_sites(self) -> tuple[str, ...]:
        """The state-indexed emission parameter sites, first dim K (none while "auto")."""
        return () if self.emission == "auto" else self.family.sites

    # ------------------------------------------------------------------ data
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

    def prepare(self, data: Dataset) -> "HiddenMarkovModel":
        """A copy with the emission, empirical prior, D, C and default length set from ``data``."""
        config = self.config()
        if self.emission == "auto":
            config["emission"] = Family.guess(data.x[self._mask(data)], "HiddenMarkovModel", "emission")
        HiddenMarkovModel(**config).validate(data)
        real = data.x[self._mask(data)]  # (M, D): the real steps
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
        length: int | None = None,
        template: Dataset | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Arguments of ``forward``: ``data``'s padded x (padding inside the support, category
        indices as integers) and lengths; or ``num_samples`` sequences of ``length`` steps (else
        as long as ``template``'s, a data set to imitate; else the model's default length)."""
        if data is not None:
            x = torch.where(self._mask(data).unsqueeze(-1), data.x, torch.zeros((), dtype=data.x.dtype))
            if self.emission == "categorical":
                x = x[..., 0].long()
            return {"x": x, "lengths": self._lengths(data), "batch_size": batch_size}
        if length is None and template is not None:
            length = int(template.x.shape[1])
        if length is not None:
            check_count(length, "length")
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
        states = list(range(self.num_states))
        coords: dict[str, list[Any]] = {"state": states, "state_to": states, "feature": names, "feature_bis": names}
        if self.num_categories is not None:
            coords["category"] = list(range(self.num_categories))
        if data is not None and data.x.dim() == 3:
            coords["time"] = list(range(int(data.x.shape[1])))
        return coords

    # ------------------------------------------------------------------ where a fit starts
    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """Where every fit starts: k-means on the observed steps (time ignored; clusters named
        after the known states, if any), then ``initial_em_steps`` Baum-Welch iterations
        (:func:`zoo.ops.baum_welch.baum_welch`; the pseudo-counts of the Dirichlet priors,
        floored at 0.01, keep the chain inside the simplex). States are ordered as
        :meth:`relabel` orders them.

        Returns
        -------
        dict
            One value per latent site (constrained), no draw dims: ``initial`` (K,),
            ``transition`` (K, K) (K >= 2) and the emission sites (K, ...), in the data's dtype.
        """
        self._check_ready()
        K, mask = self.num_states, self._mask(data)
        real = data.x[mask]  # (M, D): the observed steps, time ignored
        known = None if data.states is None else data.states[mask]  # known steps start as what they are
        labels = torch.full(mask.shape, -1, dtype=torch.long)  # (N, T), -1 at padding
        labels[mask] = kmeans_labels(self.family.features(real), K, seed=seed, known=known)
        values = baum_welch(
            labels, K,
            lambda emission: self._messages({name: value[None] for name, value in emission.items()}, data)[2],
            lambda weights: self.family.estimates(real, weights),
            self.initial_em_steps if K > 1 else 0,
            max(self.initial_concentration - 1.0, 0.01), max(self.transition_concentration - 1.0, 0.01), real.dtype,
        )
        if K == 1:  # a chain of one state has no sites
            del values["initial"], values["transition"]
        ordered = self.relabel({name: value[None, None] for name, value in values.items()})
        return {name: value[0, 0] for name, value in ordered.items()}
