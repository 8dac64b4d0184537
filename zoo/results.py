"""`Fit`: what every inference method returns.

A `Fit` is a value. It holds the fitted model (the runner's own copy, with data-dependent settings
resolved), the method that produced it, posterior draws shaped (chain, draw, ...), the loss
history, timings and diagnostics. Every answer derives from the draws and the model's one core
density, ``log p(x | theta)`` with discrete latents summed out:

* :meth:`Fit.log_prob` — per-datum log predictive density, log mean_s p(x | theta_s);
* :meth:`Fit.sample` — new data from the posterior predictive;
* :meth:`Fit.discrete` — MAP (or sampled) values of the enumerated sites;
* :meth:`Fit.to_arviz` — an ``arviz.InferenceData`` whose log_likelihood group is the exact
  marginal pointwise log-likelihood.

Lazy draws. A method whose posterior is cheap to keep but costly to sample (``zoo.Exact``: a
conjugate posterior is a handful of parameters, while 1000 joint draws of MNIST's Beta
posteriors take about a second) may give ``Fit(draws=...)`` a zero-argument callable in place of
the dict. The Fit calls it once, on the first read of ``fit.draws`` (by anything: a summary,
``to_arviz``, ``log_prob``, ``marginals``, ``sample``, ``save``, equality), and keeps the result;
the callable must be deterministic (seed its own generator), so a lazy Fit is the same value
whenever its draws are read. Answers that do not read the draws (``fit.point``,
``fit.discrete(temperature=0)``, ``zoo.models.naive_bayes.predict``, ``repr``) never cause them
to be drawn.

Where this module sits. ``zoo`` is layered so that no module imports one above it (a test,
``tests/test_architecture.py``, holds the table)::

    checks, datasets < ops < models
      < infer.runtime, .evaluate, .collapse, .guides, .distributed, .methods
      < diagnostics, io < results < infer.svi, .mcmc, .exact, .adversarial < infer (zoo.fit)
      < plots, report, metrics < comparison, sbc, selection, tour < cli

A ``Fit`` is built by the runners above it, from what they computed; it holds a method
configuration (:mod:`zoo.infer.methods`, below it) and answers through the model, the
evaluation functions of :mod:`zoo.infer.evaluate`, the ArviZ adapter (:mod:`zoo.diagnostics`,
which takes plain values and knows no Fit) and the file format (:mod:`zoo.io`, a record of
tensors and JSON: :meth:`Fit.save` fills it, :func:`load` rebuilds a Fit from it with the model
registry and the method configurations). Nothing edits a Fit after it is built: it is a frozen
dataclass, and a runner computes everything a Fit reports (NUTS's R-hat included) first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.checks import check_count, check_memory, check_options, check_output_file, check_positive_int, check_seed
from zoo.datasets.dataset import Dataset, as_dataset
from zoo.diagnostics import DATUM, METHOD, POSTERIOR_KIND, TRAINING_DATA, inference_data
from zoo.diagnostics import summary as arviz_summary
from zoo.diagnostics import summary_options
from zoo.infer.evaluate import (
    declared_state,
    discrete_values,
    flatten_draws,
    global_site_shapes,
    num_draws as count_draws,
    pointwise_log_likelihood,
    posterior_marginals,
    select_draw,
    simulate,
)
from zoo.infer.methods import CONFIGS
from zoo.infer.runtime import isolated, threads
from zoo.io import damaged, read_record, write_record
from zoo.models.base import Model, check_data_options
from zoo.models.registry import get as registered_model

__all__ = ["Fit", "FitError", "DrawsSource", "load"]

#: Constructor arguments that models of this version no longer take, by registry name. Files
#: written before still load: the argument is dropped (what it chose, the training model's
#: form, is now derived by the runner from the model's collapsed likelihood).
RETIRED_ARGUMENTS = {"gmm": ("training_path",), "hmm": ("training_path",)}

#: A zero-argument callable returning draws {site: Tensor (chain, draw, *site_shape)}: what a
#: method may give ``Fit(draws=...)`` to have them drawn on first use.
DrawsSource = Callable[[], dict[str, torch.Tensor]]


class _Draws:
    """The ``Fit.draws`` field: a dict of tensors, or a :data:`DrawsSource` called on first read.

    A data descriptor rather than a property, so that the dataclass machinery still sees an
    ordinary required field named ``draws``: the generated ``__init__`` assigns through
    :meth:`__set__`, the generated ``__eq__`` reads through :meth:`__get__` (materialising both
    sides, as equality of draws needs), and ``copy.deepcopy`` and pickling copy the instance
    ``__dict__``, where the dict or the pending source lives under ``_draws``.
    """

    def __get__(self, fit: "Fit | None", owner: type | None = None) -> dict[str, torch.Tensor]:
        if fit is None:
            # Class access: dataclasses asks for the field's default this way; there is none.
            raise AttributeError("draws")
        value = fit.__dict__["_draws"]
        if callable(value):
            drawn = value()
            if not isinstance(drawn, dict):
                raise TypeError(f"the draws source of this Fit returned {type(drawn).__name__}, not a dict")
            # Cache: the source runs once; a failing source leaves the fit pending, to retry.
            fit.__dict__["_draws"] = value = drawn
        return value

    def __set__(self, fit: "Fit", value: "dict[str, torch.Tensor] | DrawsSource") -> None:
        if not isinstance(value, dict) and not callable(value):
            raise TypeError(
                f"draws must be a dict of tensors or a callable returning one, got {type(value).__name__}"
            )
        fit.__dict__["_draws"] = value


@dataclass(frozen=True)
class Fit:
    """The result of ``zoo.fit``.

    Attributes
    ----------
    model : zoo.models.Model
        The fitted model (a copy of the one given to ``zoo.fit``).
    method : zoo.SVI or zoo.NUTS or ...
        The method configuration.
    draws : dict of str to Tensor
        Posterior draws of each continuous latent site, shaped (chain, draw, *site_shape); a
        point-mass fit (``SVI(guide="delta")``) holds one, shaped (1, 1, *site_shape). May be
        given as a :data:`DrawsSource` (a zero-argument callable returning that dict), which is
        called on the first read of ``fit.draws`` and its result kept (see the module docs);
        :attr:`draws_ready` tells whether that has happened.
    point : dict of str to Tensor
        One representative value per site (site shapes): the guide's median for SVI (the MAP for
        ``guide="delta"``), the draw of highest posterior density for MCMC.
    losses : Tensor, shape (num_steps,)
        Loss per datum (negative ELBO divided by the number of observations) at each step; empty
        for MCMC.
    sample_stats : dict of str to Tensor
        Per-draw statistics shaped (chain, draw): NUTS's ``diverging``, ``acceptance_rate``,
        ``step_size`` and ``lp`` (log density).
    diagnostics : dict
        Summary numbers: e.g. ``num_divergences``, ``max_rhat``, ``min_ess_bulk``, ``converged``.
    wall_time : float
        Seconds spent fitting.
    train : Dataset
        The data the model was fitted to.
    guide : callable or None
        The trained guide (SVI); None for MCMC and after ``zoo.load``.
    interrupted : bool
        True if the fit was stopped by Ctrl-C (or by a non-finite loss) before it finished.
    history : dict of str to Tensor
        Per-epoch records of SVI, each shaped (num_epochs,): "epoch_loss", "learning_rate",
        "epoch_time" (seconds) and, with held-out data, "held_out_loss" (negative ELBO per
        observation). For a model with local latents (a VAE), the ELBO's two terms per
        observation, "reconstruction" (E_q[log p(x | z)]) and "kl" (KL(q(z | x) || p(z))), and
        the "kl_weight" the objective gave the KL term (``zoo.SVI(kl_weight=...)``): a KL near 0
        is posterior collapse. With a KL weight, losses are those of the weighted objective;
        reconstruction - kl is the ELBO.
    draws_shape : (int, int), optional
        (chains, draws) of a fit whose model has no global latent site (a VAE: the decoder is a
        point estimate, its codes are local), so ``draws`` is empty: every draw is the same
        point, and per-draw quantities repeat. (1, 1) for SVI, which keeps no copies of a point;
        the adversarial runner's ``num_posterior_samples`` sets it (replicates for ArviZ).
    """

    model: Model
    method: Any
    draws: _Draws = _Draws()  # read: dict of tensors; assign: that dict or a DrawsSource
    point: dict[str, torch.Tensor]
    train: Dataset
    losses: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    sample_stats: dict[str, torch.Tensor] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    wall_time: float = 0.0
    guide: Callable[..., Any] | None = None
    param_state: dict[str, Any] | None = field(default=None, repr=False)
    interrupted: bool = False
    history: dict[str, torch.Tensor] = field(default_factory=dict)
    draws_shape: tuple[int, int] | None = None

    # Equal fits compare equal (as before), but a fit holds dicts of tensors and is no dict key.
    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ shapes
    @property
    def draws_ready(self) -> bool:
        """False while the draws of a lazy fit (draws given as a callable) are yet to be drawn."""
        return not callable(self.__dict__["_draws"])

    @property
    def num_chains(self) -> int:
        if not self.draws:
            return int((self.draws_shape or (1, 1))[0])
        return int(next(iter(self.draws.values())).shape[0])

    @property
    def num_draws(self) -> int:
        """Draws per chain."""
        if not self.draws:
            return int((self.draws_shape or (1, 1))[1])
        return int(next(iter(self.draws.values())).shape[1])

    @property
    def method_name(self) -> str:
        """A short label: "svi:mvn", "nuts", ..."""
        label = getattr(self.method, "label", None)
        return label(self.model) if callable(label) else type(self.method).__name__.lower()

    def posterior_mean(self) -> dict[str, torch.Tensor]:
        """Mean of the draws of each site over chains and draws."""
        return {name: value.mean((0, 1)) for name, value in self.draws.items()}

    # ------------------------------------------------------------------ densities
    def log_likelihood(self, data: Any = None, **options: Any) -> torch.Tensor:
        """log p(x_i | theta) for every draw: shape (chain, draw, num_data), latents summed out.

        Parameters
        ----------
        data : Dataset, tensor or array, optional
            Defaults to the training data.
        **options
            Passed to the model's ``log_likelihood`` (e.g. a VAE's ``num_particles``).

        Raises
        ------
        TypeError
            If ``options`` names a keyword the model's density does not take (the message
            lists those it takes).
        """
        self._check_density_options(options, "fit.log_likelihood")
        data = self._data(data)
        if not self.draws:  # no global latents: one point, the same for every draw
            with self._context():
                row = self.model.log_likelihood({}, data, **options)
            return row.reshape(1, 1, -1).expand(self.num_chains, self.num_draws, -1)
        with self._context():
            flat = pointwise_log_likelihood(
                self.model, flatten_draws(self.draws), data, **options
            )
        return flat.reshape(self.num_chains, self.num_draws, -1)

    def log_prob(self, data: Any = None, **options: Any) -> torch.Tensor:
        """Per-datum log predictive density: log of the mean over draws of p(x_i | theta).

        Parameters
        ----------
        data : Dataset, tensor or array, optional
            Defaults to the training data.
        **options
            Passed to the model's density (e.g. ``num_particles=K`` for a VAE's importance-
            weighted estimate, ``estimator="elbo"`` for its ELBO); a keyword the density does not
            take is refused with a TypeError that lists those it takes.

        Returns
        -------
        Tensor, shape (num_data,)
            For sequence models, one number per sequence.

        Examples
        --------
        >>> import zoo
        >>> train, test = zoo.datasets.load("old_faithful").split(test_fraction=0.2, seed=0)
        >>> fit = zoo.fit(zoo.models.GaussianMixture(2), train, "svi:delta")
        >>> fit.log_prob(test).shape          # one held-out log density per eruption, in nats
        torch.Size([54])
        """
        self._require("log_prob")
        self._check_density_options(options, "fit.log_prob")
        # on the model's thread count, as the likelihood itself: a reduction on torch's default
        # threads waits for a second thread on a busy machine (7 ms where 0.3 ms will do)
        with threads(self.model.num_threads):
            per_draw = self.log_likelihood(data, **options)
            per_draw = per_draw.reshape(per_draw.shape[0] * per_draw.shape[1], -1)
            if per_draw.shape[0] == 1:  # one point (a MAP, or a model with no global latent)
                return per_draw[0].clone()
            return per_draw.logsumexp(0) - math.log(per_draw.shape[0])

    # ------------------------------------------------------------------ generation
    def sample(self, num_samples: int, seed: int | None = None, **options: Any) -> torch.Tensor:
        """New data from the posterior predictive: each sample from its own posterior draw.

        Parameters
        ----------
        num_samples : int
        seed : int, optional
            Seed of a private generator; the same seed gives the same samples.
        **options
            Model-specific options (e.g. ``length`` for sequences).

        Returns
        -------
        Tensor, shape (num_samples, ...)
            One datum per row, shaped like a row of the training data.

        Examples
        --------
        >>> import torch, zoo
        >>> fit = zoo.fit(zoo.models.GaussianMixture(2), zoo.datasets.load("old_faithful"), "svi:delta")
        >>> fit.sample(100, seed=0).shape     # 100 new eruptions (duration, waiting time)
        torch.Size([100, 2])
        >>> torch.equal(fit.sample(100, seed=0), fit.sample(100, seed=0))
        True
        """
        self._require("sample")
        num_samples = check_count(num_samples, "num_samples")
        seed = 0 if seed is None else check_seed(seed)
        check_options(options, self.model.generation_options(), f"fit.sample of {type(self.model).__name__}")
        flat = flatten_draws(self.draws)
        total = count_draws(flat) if flat else 1
        # each sample: a row of data (an HMM's rows of ``length`` steps) and the draw it comes from
        row = self.train.x[0].numel()
        length = options.get("length")
        if isinstance(length, int) and self.train.lengths is not None and self.train.x.dim() > 1:
            row = row // max(1, self.train.x.shape[1]) * length
        per_draw = sum(value[0, 0].numel() for value in self.draws.values())
        check_memory(num_samples * (row + per_draw) * 4 * 2, f"{num_samples:,} samples", "num_samples")
        with self._context(seed=seed):
            chosen = torch.randint(total, (num_samples,))
            draws = {name: value[chosen] for name, value in flat.items()}
            kwargs = self.model.model_kwargs(None, num_samples=1, **options)
            simulated = simulate(self.model, draws, kwargs, total=num_samples)
        return simulated.reshape((num_samples,) + simulated.shape[2:])

    def posterior_predictive(self, data: Any = None, seed: int = 0) -> torch.Tensor:
        """One replicate of the data per posterior draw: shape (chain, draw, *data.x.shape)."""
        seed = check_seed(seed)
        data = self._data(data)
        kwargs = self.model.model_kwargs(None, num_samples=len(data), template=data)
        with self._context(seed=seed):
            simulated = simulate(
                self.model, flatten_draws(self.draws), kwargs, total=self.num_chains * self.num_draws
            )
        return simulated.reshape((self.num_chains, self.num_draws) + simulated.shape[1:])

    # ------------------------------------------------------------------ discrete latents
    def discrete(self, data: Any = None, temperature: int = 0, seed: int | None = None) -> Any:
        """Values of the enumerated sites given data (cluster labels, Viterbi paths, classes).

        Parameters
        ----------
        data : Dataset, tensor or array, optional
            Defaults to the training data.
        temperature : {0, 1}
            0: the jointly most probable values under the point estimate ``fit.point`` (for an
            HMM, the Viterbi path). 1: one exact sample from p(z | x, theta), theta being a
            posterior draw chosen at random, i.e. a sample from p(z | x).
        seed : int, optional
            Seed for temperature 1.

        Returns
        -------
        Tensor, or dict of str to Tensor when the model has several enumerated sites
            Shaped like the site: (num_data,) for a mixture.
        """
        self._require("discrete")
        if temperature not in (0, 1):
            raise ValueError(f"temperature must be 0 (MAP) or 1 (sample), got {temperature!r}")
        seed = 0 if seed is None else check_seed(seed)
        data = self._data(data)
        with self._context(seed=seed):
            if temperature == 0:
                params = self.point
            else:
                flat = flatten_draws(self.draws)
                # no global latents (a semi-supervised VAE): every draw is the same point
                params = select_draw(flat, int(torch.randint(count_draws(flat), ()))) if flat else {}
            try:
                values = self.model.discrete(params, data, temperature)
            except NotImplementedError:
                values = discrete_values(self.model, params, data, temperature)
        return self.model.collect_discrete(values)

    def marginals(self, data: Any = None, num_draws: int | None = 100, seed: int = 0) -> Any:
        """Posterior probabilities of the enumerated sites' values, p(z | x).

        Averaged over posterior draws (``num_draws`` chosen at random; None for all), so the
        parameters' uncertainty is included: responsibilities for a mixture, state marginals
        (forward-backward) for an HMM, class probabilities for a classifier.

        Returns
        -------
        Tensor, or dict of str to Tensor when the model has several enumerated sites
            Probabilities shaped (*site_shape, num_values): (num_data, K) for a mixture.
        """
        self._require("discrete")
        if num_draws is not None:
            check_positive_int(num_draws, "num_draws")
        seed = check_seed(seed)
        data = self._data(data)
        with self._context(seed=seed):
            flat = self._chosen_draws(num_draws)
            try:
                per_draw = self.model.marginals(flat, data)
            except NotImplementedError:
                rows = [
                    posterior_marginals(self.model, select_draw(flat, s), data)
                    for s in range(count_draws(flat))
                ]
                per_draw = {name: torch.stack([row[name] for row in rows]) for name in rows[0]}
        averaged = {name: value.mean(0) for name, value in per_draw.items()}
        return self.model.collect_discrete(averaged)

    def impute(self, data: Any = None, num_draws: int = 100, seed: int = 0) -> dict[str, torch.Tensor]:
        """Posterior-predictive imputations of the missing entries of ``data``
        (``Dataset(missing="mask")``): draws from p(x_missing | x_observed, training data).

        Each imputation takes a posterior draw theta (chosen at random), draws the discrete
        latents from p(z | x_observed, theta) (a component, a class, a state path that respects
        known states) and the missing entries from p(x_missing | x_observed, z, theta) (the
        conditional Gaussian for a full covariance).

        Parameters
        ----------
        data : Dataset, optional
            Default: the training data.
        num_draws : int
            Imputations drawn.
        seed : int

        Returns
        -------
        dict
            "draws": Tensor ``(num_draws, *data.x.shape)``, observed entries as given; "mean":
            their average, shaped like ``data.x``, a Monte Carlo estimate of
            ``E[x_missing | x_observed]`` (its error falls as ``1 / sqrt(num_draws)``);
            "observed": ``data.observed``.

        Raises
        ------
        ValueError
            If the model does not integrate out missing entries, or ``data`` has none.
        """
        check_positive_int(num_draws, "num_draws")
        seed = check_seed(seed)
        dataset = self._data(data)
        if dataset.observed is None:
            raise ValueError("data has no missing entries to impute: make it with zoo.Dataset(x, missing='mask'), NaN where missing")
        flat = flatten_draws(self.draws)
        total = count_draws(flat) if flat else 1
        rows = torch.arange(len(dataset))
        with self._context(seed=seed), torch.no_grad():
            chosen, counts = torch.randint(total, (num_draws,)).unique(return_counts=True)
            # a draw chosen c times imputes c copies of the data at once (one call for a MAP fit)
            parts = [
                self.model.impute(select_draw(flat, int(s)) if flat else {}, dataset.rows(rows.repeat(int(c)))).reshape((int(c),) + dataset.x.shape)
                for s, c in zip(chosen, counts)
            ]
            draws = torch.cat(parts)[torch.randperm(num_draws)]
        return {"draws": draws, "mean": draws.mean(0), "observed": dataset.observed}

    def transform(self, data: Any = None, num_draws: int | None = 100, seed: int = 0) -> Any:
        """Posterior mean and covariance of the continuous local latents, p(z | x).

        For a model that integrates its codes out in closed form (``integrated_sites``: factor
        analysis and probabilistic PCA), averaged over posterior draws (``num_draws`` chosen at
        random; None for all) by the law of total covariance, so the parameters' uncertainty
        is included: ``cov = E_theta[cov(z | x, theta)] + Var_theta[E(z | x, theta)]``.

        Returns
        -------
        (Tensor, Tensor), or dict of str to that pair when the model has several such sites
            The mean (num_data, L) and the covariance (num_data, L, L).
        """
        self._require("transform")
        if num_draws is not None:
            check_positive_int(num_draws, "num_draws")
        seed = check_seed(seed)
        data = self._data(data)
        with self._context(seed=seed):
            per_draw = self.model.local_posterior(self._chosen_draws(num_draws), data)
        moments = {}
        for name, (means, covariances) in per_draw.items():  # (S, N, L), (S, N, L, L)
            mean = means.mean(0)
            spread = means - mean
            between = (spread.unsqueeze(-1) * spread.unsqueeze(-2)).mean(0)
            moments[name] = (mean, covariances.mean(0) + between)
        return next(iter(moments.values())) if len(moments) == 1 else moments

    # ------------------------------------------------------------------ ArviZ and files
    def to_arviz(self, data: Any = None, posterior_predictive: bool = True) -> Any:
        """The fit as an ``arviz.InferenceData``.

        Groups: ``posterior`` (the draws, named dims and coords), ``sample_stats`` (NUTS's
        per-draw statistics; for a variational fit, each draw's ``log_prior`` and
        ``log_guide``, which with the log-likelihood give the importance weight
        ``log p(theta, x) - log q(theta)`` that PSIS-LOO needs), ``log_likelihood`` (exact marginal pointwise
        log-likelihood of ``data``, shaped (chain, draw, datum)), ``posterior_predictive`` (one
        replicate of ``data`` per draw) and ``observed_data``; see :mod:`zoo.diagnostics`.
        Every group carries attributes that :func:`zoo.diagnostics.loo` reads: the kind of
        posterior (:attr:`posterior_kind`), the method, what a datum is (``model.datum``) and
        whether ``data`` is the training data.

        Parameters
        ----------
        data : Dataset, tensor or array, optional
            The data whose likelihood is stored; default the training data.
        posterior_predictive : bool
            Include the posterior predictive group (one simulated data set per draw).
        """
        dataset = self._data(data)
        model = self.model
        observed = model.observed_site
        dims = dict(model.dims())
        coords = dict(model.coords(dataset))
        data_dims = dims.get(observed, ["datum"])
        coords.setdefault(data_dims[0], list(range(len(dataset))))
        log_likelihood = predictive = None
        if model.capability("log_prob"):
            log_likelihood = {observed: self.log_likelihood(dataset)}
        if posterior_predictive and model.capability("sample"):
            predictive = {observed: self.posterior_predictive(dataset)}
        return inference_data(
            self.draws,
            # missing entries (Dataset(missing="mask")) as NaN, as the user gave them
            observed={observed: dataset.x if dataset.observed is None else dataset.x.masked_fill(~dataset.observed, math.nan)},
            sample_stats=self.sample_stats,
            log_likelihood=log_likelihood,
            posterior_predictive=predictive,
            coords=coords,
            dims={**dims, observed: data_dims},
            attrs={
                POSTERIOR_KIND: self.posterior_kind,
                METHOD: self.method_name,
                DATUM: model.datum,
                TRAINING_DATA: int(dataset is self.train),
            },
        )

    @property
    def posterior_kind(self) -> str:
        """What the draws are: "point" (one point: a MAP, ``guide="delta"``; a model whose
        parameters are point estimates, such as a VAE's decoder; replicates of one point),
        "approximate" (draws of a variational or Laplace approximation q, which LOO
        importance-weights) or "draws" (posterior draws: NUTS, the exact conjugate posterior)."""
        if not self.draws or self.num_chains * self.num_draws == 1:
            return "point"
        return "approximate" if self.method.kind == "svi" else "draws"

    def summary(self, **options: Any) -> Any:
        """ArviZ's summary table (pandas DataFrame) of the posterior draws; ``options`` go to
        ``arviz.summary`` (e.g. ``kind="stats"``, ``var_names=[...]``).

        A point-mass fit holds one draw: its mean is the point (as are both HDI bounds), and
        what one draw cannot measure (sd, ESS, R-hat) is NaN.

        The fit's convergence comes with it: ``table.attrs["convergence"]`` holds the line
        the fit's repr shows (R-hat, ESS and divergences of a sampler; for SVI, whether its
        loss stopped trending, see ``fit.diagnostics["convergence_test"]``), and a fit that did
        not converge or mix says so in a ``UserWarning``. A fit with user priors
        (``zoo.fit(..., priors=...)``) names them in ``table.attrs["priors"]``."""
        if not self.draws:
            raise ValueError(
                f"this {type(self.model).__name__} fit holds no posterior draws (the model has no global latent "
                "site: its networks are point estimates), so there is no posterior to summarise; see fit.losses"
            )
        check_options(options, summary_options(), "fit.summary (options of arviz.summary)")
        table = arviz_summary(self.draws, self.model.coords(self.train), self.model.dims(), **options)
        problem = self.convergence_problem()
        table.attrs["convergence"] = self._mixing().lstrip(", ") or "converged"
        if self.diagnostics.get("priors"):
            table.attrs["priors"] = dict(self.diagnostics["priors"])
        if problem:
            warnings.warn(f"{self.method_name} on {type(self.model).__name__}: {problem}", UserWarning, stacklevel=2)
        return table

    def convergence_problem(self) -> str:
        """What makes this fit's convergence doubtful, in words; empty when nothing does.

        For SVI by Adam, a late loss window that still trends (the fitted change over it, and
        its t statistic); for L-BFGS, a run that hit its step budget; for a sampler, chains that
        did not mix (``diagnostics["mixing_problems"]``)."""
        problems = self.diagnostics.get("mixing_problems")
        if problems:
            return "chains did not mix: " + "; ".join(problems)
        if self.method.kind != "svi" or "converged" not in self.diagnostics or self.diagnostics["converged"]:
            return ""
        if self.interrupted:
            return "SVI stopped before the end (interrupted or a non-finite loss)"
        change = self.diagnostics.get("loss_change")
        if change is None:
            return "SVI (L-BFGS) used its whole step budget without meeting its tolerance"
        if not math.isfinite(change):
            return "SVI ran too few steps to tell whether its loss stopped moving"
        return (
            f"SVI not converged: its loss still moves by {change:+.4f} nats per datum over the last "
            f"steps (t = {self.diagnostics.get('loss_trend_t', math.nan):.1f}); run more steps"
        )

    def save(self, path: str | Path) -> Path:
        """Save to ``path`` (a safe, tensor-only file, :mod:`zoo.io`); ``zoo.load`` restores it.

        The trained guide itself is not saved (everything a Fit answers derives from its draws),
        so a loaded Fit has ``guide=None``. Nor are user priors (``zoo.fit(..., priors=...)``):
        the file holds tensors only, and unpickling a distribution object could run any code.
        Their description in ``fit.diagnostics["priors"]`` is kept, and the draws and the
        importance weights' ``log_prior`` were made with them; the loaded ``fit.model``
        carries the model's own priors (pass ``priors=`` again to refit it).

        Raises
        ------
        ValueError
            If the method cannot be saved (an SVI guide given as a callable).
        """
        path = check_output_file(path, "path")  # before anything is gathered
        train = self.train
        metadata = {
            "model": {"name": type(self.model).registry_name, "config": self.model.config()},
            "method": {"kind": self.method.kind, "config": self.method.to_dict()},
            "diagnostics": self.diagnostics,
            "wall_time": self.wall_time,
            "interrupted": self.interrupted,
            "draws_shape": None if self.draws_shape is None else list(self.draws_shape),
            "train": {
                "name": train.name,
                "description": train.description,
                "source": train.source,
                "feature_names": list(train.feature_names) if train.feature_names else None,
            },
        }
        columns = (
            ("x", train.x),
            ("y", train.y),
            ("lengths", train.lengths),
            ("weights", train.weights),
            ("observed", train.observed),
            ("states", train.states),
        )
        return write_record(
            path,
            metadata,
            {
                "model_state": dict(self.model.state_dict()),
                "draws": self.draws,
                "point": self.point,
                "losses": self.losses,
                "sample_stats": self.sample_stats,
                "history": self.history,
                "train": {name: value for name, value in columns if value is not None},
            },
        )

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _context(self, seed: int | None = None) -> Iterator[None]:
        """Evaluate in the fit's own parameter store, with its model's thread count."""
        with isolated(self.param_state, seed=seed), threads(self.model.num_threads):
            yield

    def _chosen_draws(self, num_draws: int | None) -> dict[str, torch.Tensor]:
        """The flat draws, ``num_draws`` of them chosen at random (by the global generator, which
        the caller seeds) when there are more; all of them for None."""
        flat = flatten_draws(self.draws)
        total = count_draws(flat) if flat else 1  # no global latents: one point
        if num_draws is not None and num_draws < total:
            chosen = torch.randperm(total)[:num_draws]
            flat = {name: value[chosen] for name, value in flat.items()}
        return flat

    def _data(self, data: Any) -> Dataset:
        if data is None:
            return self.train
        dataset = as_dataset(data)
        self.model.validate(dataset)
        check_data_options(self.model, dataset)
        return dataset

    def _check_density_options(self, options: dict[str, Any], where: str) -> None:
        """Raise TypeError, listing the valid ones, if ``options`` holds a keyword the model's
        ``log_likelihood`` does not take (rather than the model's bare signature error)."""
        valid = density_options(self.model)
        if valid is not None:
            check_options(options, valid, f"{where} of {type(self.model).__name__}")

    def _require(self, capability: str) -> None:
        if not self.model.capability(capability):
            message = getattr(self.model, "capability_message", lambda name: None)(capability)
            raise ValueError(
                message or f"{type(self.model).__name__} does not support {capability}"
            )

    def replace(self, **changes: Any) -> "Fit":
        """A copy with some fields changed (pending lazy draws stay pending in the copy)."""
        if "draws" not in changes and not self.draws_ready:
            # dataclasses.replace would read self.draws and so draw them; hand the copy the source
            # (deterministic, so both fits get the same draws when each first reads them).
            changes["draws"] = self.__dict__["_draws"]
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        flags = " interrupted" if self.interrupted else ""
        if self.diagnostics.get("priors"):
            flags += f", user priors on {', '.join(self.diagnostics['priors'])}"
        if not self.draws_ready:  # a repr should not cost the sampling
            return (
                f"Fit({type(self.model).__name__}, {self.method_name}, draws drawn on first use, "
                f"{self.wall_time:.2f}s{flags})"
            )
        sites = ", ".join(f"{name}{tuple(value.shape[2:])}" for name, value in self.draws.items())
        return (
            f"Fit({type(self.model).__name__}, {self.method_name}, chains={self.num_chains}, "
            f"draws={self.num_draws}, sites=[{sites}], {self.wall_time:.2f}s{flags}{self._mixing()})"
        )

    def _mixing(self) -> str:
        """", R-hat 1.003, ESS 812" for a sampler's fit, with what is wrong when its chains did
        not mix; ", converged" or ", NOT CONVERGED: ..." for SVI; empty for a fit that has no
        such diagnostics."""
        if "max_rhat" not in self.diagnostics:
            if self.method.kind != "svi" or "converged" not in self.diagnostics:
                return ""
            problem = self.convergence_problem()
            return f", NOT CONVERGED: {problem}" if problem else ", converged"
        rhat, bulk = self.diagnostics["max_rhat"], self.diagnostics.get("min_ess_bulk", math.nan)
        text = f", R-hat {rhat:.3f}, ESS {bulk:.0f}, divergences {self.diagnostics.get('num_divergences', 0)}"
        problems = self.diagnostics.get("mixing_problems")
        return text + (f", NOT MIXED: {'; '.join(problems)}" if problems else "")


def density_options(model: Model) -> tuple[str, ...] | None:
    """The keyword options of ``model.log_likelihood`` after its draws and data (e.g. a VAE's
    ``num_particles``, ``estimator``, ``seed``, ``batch_size``), read from its signature as
    :meth:`zoo.models.base.Model.generation_options` reads ``model_kwargs``; None when it takes
    any (``**options``: the GAN's, which refuses every call itself)."""
    parameters = list(inspect.signature(model.log_likelihood).parameters.values())[2:]
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return tuple(parameter.name for parameter in parameters if parameter.kind is not parameter.VAR_POSITIONAL)


class FitError(RuntimeError):
    """A fit that could not go on (e.g. its loss became NaN).

    Attributes
    ----------
    fit : zoo.Fit or None
        The partial fit, holding the last parameters whose loss was finite.
    step : int or None
        The step at which the fit stopped.
    """

    def __init__(self, message: str, fit: Fit | None = None, step: int | None = None) -> None:
        super().__init__(message)
        self.fit = fit
        self.step = step


def one_line(error: BaseException) -> str:
    """An error as one line, for a table cell or a command line: its message's lines joined,
    its type named where the message alone would not say what went wrong (anything but a
    ValueError or TypeError: "FitError: the loss became NaN ...")."""
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or repr(error)
    if isinstance(error, (ValueError, TypeError)) and not isinstance(error, FitError):
        return message
    return f"{type(error).__name__}: {message}"


def load(path: str | Path) -> Fit:
    """Load a Fit saved by :meth:`Fit.save` (``zoo.load``).

    The model is rebuilt from its registry name and constructor arguments (arguments that models
    no longer take are dropped: :data:`RETIRED_ARGUMENTS`), with its saved state; the method from
    its kind and fields. The guide is not saved: the loaded Fit has ``guide=None``. User priors
    are not either (:meth:`Fit.save` says why): ``fit.diagnostics["priors"]`` names them, and
    the loaded ``fit.model`` has the model's own.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a zoo fit file or is damaged.
    """
    metadata, tensors = read_record(path)
    try:
        name = metadata["model"]["name"]
        model_class = registered_model(name)
        retired = RETIRED_ARGUMENTS.get(name, ())
        config = {key: value for key, value in metadata["model"]["config"].items() if key not in retired}
        method = CONFIGS[metadata["method"]["kind"]](**metadata["method"]["config"])
        described = metadata["train"]
        _check_records(path, tensors)
        checked = _check_state(path, model_class, config, tensors, declared_state)
        # Built for real only now: its state matches the file's, so it takes no more memory.
        model = model_class(**config)
        if not checked:  # a constructor that reads numbers off its tensors cannot run on the meta device
            _check_state(path, model_class, config, tensors, lambda *_: _state_of(model))
        model.load_state_dict(tensors["model_state"])
        _check_draws(path, model, tensors)
        train = Dataset(
            tensors["train"]["x"],
            y=tensors["train"].get("y"),
            lengths=tensors["train"].get("lengths"),
            weights=tensors["train"].get("weights"),
            observed=tensors["train"].get("observed"),
            states=tensors["train"].get("states"),
            name=described["name"],
            description=described["description"],
            source=described["source"],
            feature_names=described["feature_names"],
        )
        return Fit(
            model=model,
            method=method,
            draws=dict(tensors["draws"]),
            point=dict(tensors["point"]),
            train=train,
            losses=tensors["losses"],
            sample_stats=dict(tensors["sample_stats"]),
            diagnostics=metadata["diagnostics"],
            wall_time=float(metadata["wall_time"]),
            interrupted=bool(metadata["interrupted"]),
            history=dict(tensors.get("history", {})),
            draws_shape=None if metadata.get("draws_shape") is None else tuple(metadata["draws_shape"]),
        )
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, NotImplementedError) as error:
        if str(error).startswith(f"{path} is not a zoo fit file"):
            raise
        raise damaged(path, f"{type(error).__name__}: {error}") from None


def _check_records(path: str | Path, tensors: dict[str, Any]) -> None:
    """Raise ``damaged`` unless the file has every record group a fit file has."""
    for group in ("model_state", "draws", "point", "sample_stats", "train"):
        if not isinstance(tensors.get(group), dict):
            raise damaged(path, f"its record {group!r} is missing or not a group of named tensors")
    if not isinstance(tensors.get("losses"), torch.Tensor):
        raise damaged(path, "its record 'losses' is missing or not a tensor")
    if "x" not in tensors["train"]:
        raise damaged(path, "its training data (record 'train/x') is missing")


def _state_of(model: Model) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {name: (tuple(value.shape), value.dtype) for name, value in model.state_dict().items()}


def _check_state(
    path: str | Path,
    model_class: type[Model],
    config: dict[str, Any],
    tensors: dict[str, Any],
    declared: Callable[[type[Model], dict[str, Any]], dict[str, tuple[tuple[int, ...], torch.dtype]]],
) -> bool:
    """Raise ``damaged`` unless the file's model state is the state of the model it declares,
    as ``declared`` gives it: read off a copy built on the meta device
    (:func:`~zoo.infer.evaluate.declared_state`), before anything is allocated. Return False
    (nothing checked) where the model's constructor cannot run on the meta device (it reads a
    number off a tensor): the caller then checks the real model's state once built."""
    try:
        state = declared(model_class, config)
    except Exception as error:  # the model's constructor refuses the configuration, in its words
        if "meta" in str(error):
            return False
        raise damaged(path, f"its model configuration is refused: {type(error).__name__}: {error}") from None
    found = {name: (tuple(value.shape), value.dtype) for name, value in tensors["model_state"].items()}
    if found != state:
        wrong = sorted(name for name in set(found) | set(state) if found.get(name) != state.get(name))
        raise damaged(path, f"its model state does not match the model it declares ({model_class.__name__}"
                      f"({config})): entries {wrong[:5]} differ in name, shape or dtype")
    for name, value in tensors["model_state"].items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise damaged(path, f"model_state {name!r} holds NaN or infinite values")
    return True


def _check_draws(path: str | Path, model: Model, tensors: dict[str, Any]) -> None:
    """Raise ``damaged`` unless the draws hold exactly the model's global sites, shaped (chain,
    draw, *site shape), real and finite, and the point one finite value of each. The sites'
    shapes are read off the model's story without sampling, refusing any site larger than
    the file's point record before allocating it."""
    draws, point = tensors["draws"], tensors["point"]
    limit = sum(value.numel() for value in point.values())
    try:
        sites = global_site_shapes(model, max_elements=limit)
    except ValueError as error:
        raise damaged(path, f"its model declares sites larger than its records: {error}") from None
    if set(draws) != set(sites) or set(point) != set(sites):
        raise damaged(path, f"its draws hold sites {sorted(draws)} and its point {sorted(point)}; "
                      f"{type(model).__name__} declares {sorted(sites)}")
    leading = {tuple(value.shape[:2]) for value in draws.values()}
    if len(leading) > 1:
        raise damaged(path, f"its draws' (chain, draw) dimensions differ between sites: {sorted(leading)}")
    for name, shape in sites.items():
        value = draws[name]
        if value.dim() != len(shape) + 2 or tuple(value.shape[2:]) != shape or tuple(point[name].shape) != shape:
            raise damaged(path, f"draws of {name!r} are shaped {tuple(value.shape)} (point {tuple(point[name].shape)}); "
                          f"the model declares (chain, draw) + {shape}")
    for group in ("draws", "point"):
        for name, value in tensors[group].items():
            if not value.is_floating_point():
                raise damaged(path, f"{group} {name!r} holds {value.dtype}, not real numbers")
            if not bool(torch.isfinite(value).all()):
                raise damaged(path, f"{group} {name!r} holds NaN or infinite values")
