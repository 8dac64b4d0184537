"""What every zoo model states: its density, once, and what the runner needs to know about it.

A zoo model is a :class:`~pyro.nn.PyroModule` whose ``forward`` is p(x, z) written in Pyro
primitives. The runner derives everything else from three things the model states:

1. ``forward``: the whole generative story, discrete latents as enumerated sites. This is the
   definition; nothing switches it into a second body.
2. ``sample_globals()``: its global latent story, the priors over its parameters: the sample
   sites a guide or NUTS sees. ``forward`` begins by calling it.
3. ``log_likelihood(params, data)``: its collapsed likelihood, log p(x_i | theta) per datum with
   the discrete latents summed out exactly, for parameters with a leading draw dim.

From 2 and 3 :mod:`zoo.infer.collapse` builds, once per fit, the training model (the global
sites and one ``pyro.factor``) that SVI and NUTS fit; ``Fit.log_prob`` and ArviZ's
log_likelihood group use 3. One contract check (``tests/test_contract.py``) proves, for every
registered model, that 3 equals the enumerated marginal of 1 in value and gradient. A model
without 2 (a VAE, whose codes are continuous local latents no closed form sums out) is fitted on
``forward`` itself; a model without 3 gets the enumerated definition wherever a density is
needed. An objective that is not the density (the semi-supervised VAE's classifier term) is
declared as what it is: :meth:`Model.auxiliary_loss`.

Besides its story a model declares, as data:

========================  =====================================================================
``enumerated_sites``      discrete sample sites that inference sums out by enumeration
``max_plate_nesting``     how many plates nest at most (enumeration dims go to the left of them)
``data_plate``            the plate over independent data points (or sequences)
``observed_site``         the sample site that holds the data
``methods``               the inference methods it can take ("svi", "nuts", "exact", ...)
``refused_methods``       for a method it does not take, why (the runner's error says it)
``default_guide``         the guide ``zoo.SVI()`` uses when none is named
``local_sites``           per-datum latents (a VAE's codes) the Fit keeps no draws of
``sample_options``        the options ``fit.sample`` takes (``length`` of an HMM's sequences);
                          by default the keyword arguments ``model_kwargs`` names (``y``)
``integrated_sites``      per-datum continuous latents that the collapsed likelihood integrates
                          out in closed form (factor analysis's codes): no guide sees them, and
                          ``local_posterior`` gives their exact posterior (``Fit.transform``)
``num_threads``           torch threads inference should use (1 for models made of many small
                          tensor operations, where more threads only add contention; None
                          leaves torch's setting, for network models with large matrices)
``jit_safe``              its model and named guides are of static structure (no Python branch
                          on a tensor's value, every network registered with Pyro), so SVI
                          compiles their ELBO by default (``zoo.SVI(jit=None)``)
``static_likelihood``     no Python branch on a tensor's value in its global story and collapsed
                          likelihood: NUTS records its potential once and replays it, full-batch
                          SVI its step (``zoo.NUTS(jit_compile=None)``, ``zoo.SVI(jit=None)``)
========================  =====================================================================

A model whose own guides enumerate a discrete site (the semi-supervised VAE's class, summed
over the classifier's probabilities q(y | x)) declares it in ``guide_enumerated_sites``: SVI then
uses TraceEnum_ELBO, as for ``enumerated_sites``.

It holds no optimizer, no loop and no loss: those live in ``zoo.infer``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from pyro.nn import PyroModule

from zoo.datasets.dataset import UNLABELED, Dataset

__all__ = ["Model", "class_labels", "check_labels", "check_data_options", "no_relabelling"]


def no_relabelling(draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The draws as they are: the relabelling of a model some of whose sites are fixed."""
    return draws


class Model(PyroModule):
    """Base class of zoo models. Subclasses write ``forward`` and override what applies."""

    #: The name in the registry and on the command line (``zoo fit gmm``), set by
    #: ``@zoo.models.register("gmm")``.
    registry_name: ClassVar[str] = ""
    enumerated_sites: ClassVar[tuple[str, ...]] = ()
    max_plate_nesting: ClassVar[int] = 1
    data_plate: ClassVar[str] = "data"
    observed_site: ClassVar[str] = "x"
    methods: ClassVar[tuple[str, ...]] = ("svi", "nuts")
    refused_methods: ClassVar[dict[str, str]] = {}
    default_guide: ClassVar[str] = "normal"
    num_threads: ClassVar[int | None] = 1
    #: SVI with ``jit=None`` compiles this model's ELBO (Pyro's JitTrace_ELBO) when it fits a
    #: guide named by string: declare it only where the model and its guides have static
    #: structure, and where the compiled steps are measurably shorter (a network model's
    #: minibatch steps; for the other models' L-BFGS full-batch steps the recording costs more
    #: than it saves). A contract test checks that compiled and eager steps agree.
    jit_safe: ClassVar[bool] = False
    #: NUTS (``jit_compile=None``) records this model's potential, and full-batch SVI
    #: (``jit=None``) its step: declare it only where ``sample_globals`` and ``log_likelihood``
    #: take no Python branch on a tensor's value (a recording keeps the branch of the point it
    #: was made at). Contract tests check both recordings against the eager computations.
    static_likelihood: ClassVar[bool] = False
    #: SVI fits this model with ``TraceMeanField_ELBO``: the KL term of each latent site in
    #: closed form (given the values upstream of it), where the guide and model distributions of
    #: every latent site are pairs Pyro has a KL divergence for (a diffusion model's Gaussians).
    analytic_kl: ClassVar[bool] = False
    #: Names of the guides this model cannot take (e.g. autoguides too big for a network).
    unsupported_guides: ClassVar[tuple[str, ...]] = ()
    #: Why it cannot take them, added to the error when one is asked for (e.g. a flow, whose
    #: weights are parameters and which has no latent site for a posterior).
    unsupported_guides_reason: ClassVar[str] = ""
    #: Latent sites local to each datum (a VAE's codes; M2's class too): the guide infers them,
    #: but a Fit keeps no draws of them (they are not parameters of p(x)), and ``log_likelihood``
    #: integrates them out (for a VAE, by importance sampling).
    local_sites: ClassVar[tuple[str, ...]] = ()
    #: Discrete latent sites that the model's own guides enumerate (``infer={"enumerate":
    #: "parallel"}`` in the guide), unlike ``enumerated_sites``, which the model sums out and no
    #: guide sees: the ELBO is then an exact sum over their values under the guide's
    #: probabilities (TraceEnum_ELBO), e.g. q(y | x) of the semi-supervised VAE.
    guide_enumerated_sites: ClassVar[tuple[str, ...]] = ()
    #: The options ``fit.sample(n, **options)`` takes (any other is refused, naming these);
    #: None: the keyword-only arguments ``model_kwargs`` names, but ``num_samples`` and
    #: ``batch_size`` (a classifier's ``y``).
    sample_options: ClassVar[tuple[str, ...] | None] = None
    #: Its collapsed likelihood integrates out the entries that ``Dataset(missing="mask")``
    #: marks missing (``data.observed``), exactly: the marginal density of the observed entries.
    handles_missing: ClassVar[bool] = False
    #: Its collapsed likelihood clamps the hidden states that ``Dataset(states=...)`` gives.
    takes_states: ClassVar[bool] = False
    #: Global sites held at given values (``zoo.fit(..., fixed=...)``), set by :meth:`fix`.
    fixed: dict[str, torch.Tensor] = {}
    #: User priors of global sites (``zoo.fit(..., priors=...)``), set by :meth:`set_priors`:
    #: site name -> distribution replacing the model's own in its global story.
    priors: dict[str, Any] = {}
    #: What one datum (one row of the data, one number of ``log_likelihood``) is, as tables
    #: and LOO name it: "point", or "sequence" for a model whose rows are whole sequences.
    datum: ClassVar[str] = "point"
    #: Continuous latent sites local to each datum that ``log_likelihood`` integrates out in
    #: closed form (a linear-Gaussian model's codes): like ``enumerated_sites`` no guide and no
    #: NUTS sees them; :meth:`local_posterior` states their exact posterior, and a contract check
    #: proves ``log p(x | theta) = log p(x, z | theta) - log p(z | x, theta)`` at any z.
    integrated_sites: ClassVar[tuple[str, ...]] = ()

    # ----------------------------------------------------------------- identity
    @classmethod
    def example(cls) -> tuple["Model", Dataset]:
        """A small instance and data set it fits in seconds: what the contract tests run on."""
        raise NotImplementedError(f"{cls.__name__} must define example() to join the registry")

    @classmethod
    def examples(cls) -> list[tuple["Model", Dataset]]:
        """Small instances covering each option that changes the density (a covariance form, an
        emission family), for the contract checks of the density. Default: ``[example()]``."""
        return [cls.example()]

    def config(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serialisable) that rebuild this model:
        ``type(model)(**model.config())`` is an equal model.

        Derived from the constructor's signature: each parameter's value is read from the
        attribute of the same name (a tuple as a list, as JSON keeps it). A model that stores
        an argument under another name, or transformed so that the constructor would not take
        it back, overrides this.

        Raises
        ------
        TypeError
            If the constructor takes ``*args`` or ``**kwargs`` (no name to read), or a parameter
            has no attribute of its name (the model must override ``config``).
        """
        config = {}
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if name == "self":
                continue
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(f"{type(self).__name__}.__init__ takes *{name}: override config() to name its arguments")
            try:
                value = getattr(self, name)
            except AttributeError:
                raise TypeError(
                    f"{type(self).__name__} keeps no attribute {name!r} for its constructor argument: "
                    "store it under that name, or override config()"
                ) from None
            config[name] = list(value) if isinstance(value, tuple) else value
        return config

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.config().items() if value is not None)
        return f"{type(self).__name__}({arguments})"

    # ---------------------------------------------------------------- data
    def validate(self, data: Dataset) -> None:
        """Raise ValueError if this model cannot take ``data``. Called before any work starts."""

    def prepare(self, data: Dataset) -> "Model":
        """Return the model to fit to ``data``: a copy, with data-dependent settings resolved.

        The runner never mutates the user's model: it fits the copy this returns, which the
        `Fit` keeps. Override to resolve empirical priors from the training data.
        """
        self.validate(data)
        return copy.deepcopy(self)

    def model_kwargs(
        self,
        data: Dataset | None = None,
        *,
        num_samples: int | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Keyword arguments of ``forward``: to condition on ``data``, or to generate ``num_samples``.

        ``batch_size`` asks for a random subsample of the data plate of that size (minibatch SVI).
        ``template=data`` (an option the runner may pass when generating) asks for data shaped
        like ``data`` (e.g. its sequence length).
        """
        if data is not None:
            return {"x": data.x, "batch_size": batch_size}
        return {"x": None, "num_data": num_samples}

    def generation_options(self) -> tuple[str, ...]:
        """The options ``fit.sample`` takes: :attr:`sample_options`, or the keyword-only
        arguments of :meth:`model_kwargs` (but ``num_samples`` and ``batch_size``)."""
        if self.sample_options is not None:
            return self.sample_options
        parameters = inspect.signature(self.model_kwargs).parameters.values()
        return tuple(
            parameter.name
            for parameter in parameters
            if parameter.kind is parameter.KEYWORD_ONLY and parameter.name not in ("num_samples", "batch_size")
        )

    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """Data-driven starting values of (some of) the continuous latent sites."""
        return {}

    @staticmethod
    def plate_size(x: torch.Tensor | None, num_data: int | None) -> int:
        """The size of ``forward``'s data plate: the rows of ``x`` (to condition on), else
        ``num_data`` (to generate).

        Raises
        ------
        ValueError
            If neither is given.
        """
        if x is not None:
            return x.shape[0]
        if num_data is None:
            raise ValueError("give x (to condition on) or num_data (to generate)")
        return num_data

    def fix(self, values: dict[str, torch.Tensor]) -> None:
        """Hold the global sites ``values`` names at those values (``zoo.fit(..., fixed=...)``).

        The training model and NUTS's potential then condition ``sample_globals`` on them
        (:mod:`zoo.infer.collapse`): they are observed, not sampled, and no guide or sampler sees
        them. A fixed site tied to the component labels (a location, a weight) breaks the
        symmetry that :meth:`relabel` undoes, so draws of a model with fixed sites are not
        relabelled. Called by the runner on its own copy of the model, never on the user's.
        """
        self.fixed = dict(values)
        if values:
            self.relabel = no_relabelling  # type: ignore[method-assign]

    def set_priors(self, priors: dict[str, Any], label_symmetric: bool = True) -> None:
        """Put the distributions ``priors`` names in place of the model's own priors of those
        global sites (``zoo.fit(..., priors=...)``; the training model and NUTS's potential run
        ``sample_globals`` under a handler that swaps them, :mod:`zoo.infer.collapse`). A prior
        not symmetric in the labels (``label_symmetric`` False) breaks the symmetry that
        :meth:`relabel` undoes, so draws are then not relabelled. Called by the runner on its own
        copy of the model, never on the user's."""
        self.priors = dict(priors)
        if priors and not label_symmetric:
            self.relabel = no_relabelling  # type: ignore[method-assign]

    # ---------------------------------------------------------------- the density contract
    def sample_globals(self) -> dict[str, torch.Tensor]:
        """The global latent story: one ``pyro.sample`` per parameter site, under its plates.

        Returns
        -------
        dict of str to Tensor
            The value of every global sample site, by site name (constants the likelihood needs
            may be added). Its priors must not depend on the data.
        """
        raise NotImplementedError

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """The collapsed likelihood: exact log p(x_i | theta_s) per draw and datum.

        Discrete latents are summed out. Parameters come with one leading draw dim S (the
        runner flattens whatever batch dims a fit has: posterior draws, vectorised ELBO
        particles); ``data`` may be any rows of the training data (a minibatch).

        Parameters
        ----------
        draws : dict of str to Tensor
            Each global site shaped (S, *site_shape).
        data : Dataset

        Returns
        -------
        Tensor, shape (S, num_data)
        """
        raise NotImplementedError

    def auxiliary_loss(self, data: Dataset) -> torch.Tensor | None:
        """A training term that is not part of the density p(x, z), or None (the default).

        For an objective such as the semi-supervised VAE's classifier term (Kingma et al.,
        2014: alpha * -log q(y | x) on labeled rows), which trains a network that the density
        does not contain. SVI adds it to every step's loss on the same rows as the ELBO
        (``data`` is the step's minibatch), scaled as the ELBO is (num_data / batch rows, then per
        observation); held-out losses, ``Fit.log_prob`` and ArviZ leave it out.

        Returns
        -------
        Tensor, shape ()
            The term summed over the rows of ``data``.
        """
        return None

    # ---------------------------------------------------------------- results
    def dims(self) -> dict[str, list[str]]:
        """ArviZ dims of each site, without the (chain, draw) dims."""
        return {}

    def coords(self, data: Dataset | None = None) -> dict[str, list[Any]]:
        """ArviZ coordinates for the dims named in :meth:`dims`."""
        return {}

    def relabel(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Undo label switching in posterior draws shaped (chain, draw, ...). Default: none."""
        return draws

    def marginals(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, torch.Tensor]:
        """p(z | x, theta_s) of each enumerated site per draw: (num_draws, *site_shape, values).

        Optional fast path (forward-backward for an HMM, responsibilities for a mixture); the
        generic one runs Pyro's exact marginal computation on ``forward``.
        """
        raise NotImplementedError

    def discrete(
        self, params: dict[str, torch.Tensor], data: Dataset, temperature: int = 0
    ) -> dict[str, torch.Tensor]:
        """MAP (temperature 0) or sampled (1) values of the enumerated sites given one parameter
        value (site shapes): {site: value}. Optional fast path (Viterbi for an HMM); the generic
        one runs ``infer_discrete`` on ``forward``."""
        raise NotImplementedError

    def impute(self, params: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """One draw of ``data.x`` with its missing entries (``data.observed`` False) drawn from
        p(x_missing | x_observed, theta) at one parameter value (site shapes), the discrete
        latents drawn from their posterior given the observed entries: what ``Fit.impute``
        averages. Models that declare ``handles_missing`` implement it.

        Returns
        -------
        Tensor, shape of ``data.x``
        """
        raise NotImplementedError(f"{type(self).__name__} cannot impute missing entries")

    def local_posterior(
        self, draws: dict[str, torch.Tensor], data: Dataset
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The exact Gaussian posterior p(z_i | x_i, theta_s) of each of ``integrated_sites``.

        Parameters
        ----------
        draws : dict of str to Tensor
            Each global site shaped (S, *site_shape).
        data : Dataset

        Returns
        -------
        dict of str to (Tensor, Tensor)
            Per site: the mean (S, num_data, L) and the covariance (S, num_data, L, L).
        """
        raise NotImplementedError

    def collect_discrete(self, values: dict[str, torch.Tensor]) -> Any:
        """What ``Fit.discrete`` and ``Fit.marginals`` return, from per-site values.

        ``values`` maps each enumerated site to its values (or its probabilities, with a trailing
        dim of values). Default: the one site's tensor, or the dict when there are several. A
        model with one site per time step stacks them (an HMM: paths (N, T), marginals (N, T, K)).
        """
        return next(iter(values.values())) if len(values) == 1 else values

    def guides(self) -> dict[str, Callable[..., Any]]:
        """Guides this model offers by name (e.g. an amortized encoder), built for this model."""
        return {}

    def capability(self, name: str) -> bool:
        """Whether the model can do ``name`` ("log_prob", "sample", "discrete", "transform")."""
        if name == "discrete":
            return bool(self.enumerated_sites)
        if name == "transform":
            return bool(self.integrated_sites)
        return True


def check_data_options(model: "Model", data: Dataset) -> None:
    """Raise ValueError, before any work, if ``data`` carries what ``model`` cannot take: missing
    entries (``Dataset(missing="mask")``) or known hidden states (``Dataset(states=...)``)."""
    if data.observed is not None and not model.handles_missing:
        raise ValueError(
            f"data has missing entries (missing='mask'), but {type(model).__name__} cannot integrate "
            "them out; models that can: GaussianMixture, NaiveBayes, HiddenMarkovModel"
        )
    if data.states is not None and not model.takes_states:
        raise ValueError(f"data gives hidden states (states=...), but {type(model).__name__} has no hidden states to clamp")


def class_labels(y: Any, num_classes: int, num_samples: int | None) -> torch.Tensor | None:
    """The labels to generate ``num_samples`` data of class ``y`` with (a class-conditional
    model's ``model_kwargs``): None for no class, else a (num_samples or 1,) long tensor.

    Raises ValueError unless ``y`` is one class in 0..num_classes - 1 (an int, or a one-element
    tensor).
    """
    if y is None:
        return None
    if isinstance(y, torch.Tensor) and y.numel() == 1:
        y = int(y)
    if isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < num_classes:
        raise ValueError(f"y must be a class in 0..{num_classes - 1}, got {y!r}")
    return torch.full((num_samples or 1,), y, dtype=torch.long)


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Raise ValueError, naming the first offending row, unless every label of a class-conditional
    model's data is a class in 0..num_classes - 1 or ``UNLABELED`` (-1).

    Parameters
    ----------
    labels : LongTensor, shape (N,)
    num_classes : int
    """
    if labels.numel() == 0:
        return
    low, high = torch.aminmax(labels)  # one reduction; the offending row only on failure
    if low < UNLABELED or high >= num_classes:
        index = int(((labels < UNLABELED) | (labels >= num_classes)).nonzero()[0, 0])
        raise ValueError(
            f"y holds label {int(labels[index])} (row {index}): labels must be in 0..{num_classes - 1}, "
            f"or {UNLABELED} for an unlabeled row"
        )
