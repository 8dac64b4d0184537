"""Compare inference methods on one model and one data set: one table, one row per method.

>>> import zoo
>>> data = zoo.datasets.load("iris")
>>> train, test = data.split(test_fraction=0.3, seed=0)
>>> table = zoo.compare(zoo.models.NaiveBayes(3), train, test, methods=["svi:delta", "svi:mvn:num_steps=100", "exact"])
>>> table.index.tolist()                  # one row per method; the reference is Exact
['svi:delta', 'svi:mvn', 'exact']
>>> float(table.loc["svi:delta", "sd_error"])   # a point mass has no spread: its sd error is 1
1.0

Every method is scored against a **reference posterior**: ``zoo.Exact()`` where the model takes
it (a conjugate model), otherwise NUTS (2 chains of 1000 draws after 500 warm-up steps: 2000
draws: the reference's own share of the Monte Carlo error below is about sqrt(1/ESS), 0.03 sd
at a bulk ESS of 1000; NUTS warns when its chains do not mix), or a reference ``Fit`` (or method) given by the
caller. The errors of posterior means and standard deviations are standardised by the
reference's standard deviations, so one number reads the same across sites of different scales:

* ``mean_error`` = sqrt(mean over scalars of ((mean - mean_ref) / sd_ref)**2): how many reference
  posterior sds the method's posterior mean is off, root-mean-squared over every scalar;
* ``sd_error`` = sqrt(mean over scalars of (sd / sd_ref - 1)**2): 1 for a point mass (the delta
  guide), about 0.3 for a mean-field guide that under-covers by 30 percent.

Scalars whose reference draws do not vary (the unit diagonal of a correlation Cholesky factor)
are left out. Both numbers carry Monte Carlo error: with S method draws and R reference draws,
about sqrt(1/S + 1/R) for ``mean_error`` and sqrt(1/(2S) + 1/(2R)) for ``sd_error`` (independent
draws; divide S by the autocorrelation time for MCMC). The table shows these noise floors in
columns of their own and flags an error beyond five of them.

Methods are objects (``zoo.SVI(guide="mvn")``) or short strings, parsed generically against
the method registry (see :func:`zoo.infer.methods.parse_method`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from zoo.datasets.dataset import as_dataset
from zoo.infer import fit as run_fit
from zoo.infer.methods import NUTS, Exact, parse_method  # parse_method: re-exported from its old home
from zoo.models.base import Model
from zoo.report import COLUMNS as _REPORT_COLUMNS
from zoo.report import comparison_table
from zoo.results import Fit, one_line

__all__ = [
    "compare",
    "compare_fits",
    "parse_method",
    "posterior_errors",
    "noise_floors",
    "reference_method",
    "COLUMNS",
    "NOISE_MULTIPLE",
]

#: The columns of :func:`compare`, in order.
COLUMNS: tuple[str, ...] = _REPORT_COLUMNS + ("mean_error", "sd_error", "ess_per_s", "mean_error_noise", "sd_error_noise")

#: How many noise floors an error must exceed to be flagged as beyond any plausible Monte
#: Carlo noise (a 5-sigma event for a Gaussian error).
NOISE_MULTIPLE = 5.0


def noise_floors(fit: Fit, reference: Fit) -> tuple[float, float]:
    """The Monte Carlo noise of ``mean_error`` and ``sd_error`` (module docs): about
    sqrt(1/S + 1/R) and sqrt(1/(2S) + 1/(2R)) for S effective draws of ``fit`` and R of the
    reference (a sampler's smallest bulk ESS, else its number of draws)."""

    def effective(result: Fit) -> float:
        ess = result.diagnostics.get("min_ess_bulk")
        if getattr(result.method, "kind", None) == "nuts" and ess is not None and math.isfinite(ess) and ess > 0:
            return float(ess)
        return float(result.num_chains * result.num_draws)

    draws, reference_draws = effective(fit), effective(reference)
    return math.sqrt(1 / draws + 1 / reference_draws), math.sqrt(0.5 / draws + 0.5 / reference_draws)


def reference_method(model: Model, progress: bool = True) -> Any:
    """The default reference: ``zoo.Exact(4000 draws)`` for a conjugate model, else NUTS with 2
    chains of 500 warm-up steps and 1000 draws (progress shown: it is the longest fit of a
    comparison)."""
    if "exact" in model.methods:
        return Exact(num_posterior_samples=4000, seed=1, progress=False)
    if "nuts" in model.methods:
        return NUTS(num_warmup=500, num_samples=1000, num_chains=2, seed=1, progress=progress)
    raise ValueError(
        f"{type(model).__name__} takes neither zoo.Exact nor zoo.NUTS: give a reference Fit (reference=...)"
    )


def _scalars(fit: Fit, sites: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sd of every scalar of ``sites`` over all draws, concatenated: two (P,) tensors."""
    means, sds = [], []
    for name in sites:
        value = fit.draws[name].detach().double()
        flat = value.reshape(value.shape[0] * value.shape[1], -1)  # (draws, scalars)
        means.append(flat.mean(0))
        sds.append(flat.std(0) if flat.shape[0] > 1 else torch.zeros(flat.shape[1], dtype=torch.float64))
    return torch.cat(means), torch.cat(sds)


def posterior_errors(fit: Fit, reference: Fit) -> tuple[float, float]:
    """Standardised errors of ``fit``'s posterior means and sds against ``reference``.

    Parameters
    ----------
    fit, reference : zoo.Fit
        Fits of the same model; the sites both hold draws of are compared.

    Returns
    -------
    (mean_error, sd_error) : (float, float)
        Root mean squares over scalars of (mean - mean_ref) / sd_ref and sd / sd_ref - 1 (see the
        module's docs); NaN when the fits share no varying scalar.
    """
    sites = [name for name in reference.draws if name in fit.draws and fit.draws[name].shape[2:] == reference.draws[name].shape[2:]]
    if not sites:
        return math.nan, math.nan
    mean, sd = _scalars(fit, sites)
    ref_mean, ref_sd = _scalars(reference, sites)
    varies = ref_sd > 1e-6 * (1 + ref_mean.abs())
    if not bool(varies.any()):
        return math.nan, math.nan
    z = (mean - ref_mean)[varies] / ref_sd[varies]
    ratio = sd[varies] / ref_sd[varies] - 1
    return float(z.pow(2).mean().sqrt()), float(ratio.pow(2).mean().sqrt())


def attempt_fit(model: Model, data: Any, method: Any) -> tuple[Fit | None, str | None]:
    """``zoo.fit``, or the error that stopped it as one line: a workflow over many fits
    (:func:`compare`, ``zoo.select``, ``zoo.sbc``, the tour) records a failed member and goes
    on. Ctrl-C is not an error of a member: it stops the workflow."""
    try:
        return run_fit(model, data, method), None
    except Exception as error:  # noqa: BLE001 - any failure of one member is that member's row
        return None, one_line(error)


def _with_failures(table: pd.DataFrame, failures: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """``table`` with an ``error`` column ("" for the fits that ran) and a row per failed member
    (its method, its error, NaN elsewhere), in the order given."""
    if not failures:
        return table
    table = table.copy()
    table["error"] = ""
    for label, (method, error) in failures.items():
        table.loc[label] = {**{column: math.nan for column in table.columns}, "method": method, "error": error}
    return table


def compare_fits(fits: dict[str, Fit], test: Any, reference: "Fit | None" = None) -> pd.DataFrame:
    """The comparison table of fits already made (see :func:`compare` for the columns)."""
    if not isinstance(fits, dict) or not fits:
        raise ValueError("fits must be a non-empty dict of label -> zoo.Fit")
    table = comparison_table(fits, test)
    mean_errors, sd_errors, ess_rates, mean_noises, sd_noises = [], [], [], [], []
    for label, fit in fits.items():
        if reference is None:
            mean_error = sd_error = mean_noise = sd_noise = math.nan
        else:
            mean_error, sd_error = posterior_errors(fit, reference)
            mean_noise, sd_noise = noise_floors(fit, reference)
        beyond = [
            f"{name} {error:.2f} > {NOISE_MULTIPLE:g} x its noise {noise:.2f}: a real difference from the reference, not noise"
            for name, error, noise in (("mean_error", mean_error, mean_noise), ("sd_error", sd_error, sd_noise))
            if error > NOISE_MULTIPLE * noise and not (name == "sd_error" and fit.posterior_kind == "point")
        ]
        if beyond:
            table.loc[label, "flags"] = "; ".join(([table.loc[label, "flags"]] if table.loc[label, "flags"] else []) + beyond)
        mean_errors.append(mean_error)
        sd_errors.append(sd_error)
        mean_noises.append(mean_noise)
        sd_noises.append(sd_noise)
        ess = fit.diagnostics.get("min_ess_bulk")
        mcmc = getattr(fit.method, "kind", None) == "nuts"
        ess_rates.append(float(ess) / fit.wall_time if mcmc and ess is not None and fit.wall_time > 0 else math.nan)
    table["mean_error"] = mean_errors
    table["sd_error"] = sd_errors
    table["ess_per_s"] = ess_rates
    table["mean_error_noise"] = mean_noises
    table["sd_error_noise"] = sd_noises
    extra = [column for column in table.columns if column not in COLUMNS]
    return table[list(COLUMNS) + extra]


def compare(
    model: Model,
    train: Any,
    test: Any,
    methods: Sequence[Any] = ("svi:delta", "svi:normal", "svi:mvn", "nuts"),
    reference: Any = None,
    return_fits: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, Fit], Fit]:
    """Fit ``model`` to ``train`` by every method and tabulate how each does.

    Parameters
    ----------
    model : zoo.models.Model
    train, test : Dataset, tensor or array
        Fitting data and held-out data.
    methods : sequence of str or method configurations
        Each parsed by :func:`parse_method` ("svi:delta", "svi:mvn", "nuts", "exact", or
        ``zoo.SVI(...)`` ...). Labels are ``fit.method_name``, numbered when repeated.
    reference : zoo.Fit, str or method configuration, optional
        The posterior the others are scored against; default :func:`reference_method`: Exact
        where the model is conjugate, otherwise NUTS with 2 chains of 1000 draws (with a progress
        bar).
    return_fits : bool
        Also return the fits and the reference fit (for :func:`zoo.plots.plot_marginals`).

    Returns
    -------
    pandas.DataFrame, or (DataFrame, dict of str to Fit, Fit)
        Indexed by label, with the columns of :func:`zoo.report.comparison_table`
        (``method``, ``wall_time_s``, ``final_loss`` per datum, ``test_log_lik`` per datum,
        ``max_rhat``, ``divergences``), then

        ``mean_error``, ``sd_error``
            Standardised errors of the posterior means and sds against the reference (module
            docs); exactly 0 for the reference method with the reference's settings.
        ``ess_per_s``
            Smallest bulk effective sample size over all scalars per second of wall time (MCMC
            only; NaN otherwise).
        ``mean_error_noise``, ``sd_error_noise``
            The Monte Carlo noise floor of each error column (:func:`noise_floors`): an error
            near it is noise, not a difference between methods. An error above
            :data:`NOISE_MULTIPLE` times its floor is beyond any plausible noise and the row's
            ``flags`` say so (except ``sd_error`` of a point mass, 1 by construction).

        ``table.attrs["reference"]`` is the reference's label.

        A method whose fit fails (a ``FitError``: its loss became NaN) does not stop the others:
        it gets a row of its own, NaN but for ``method`` and an ``error`` column holding the
        error in one line (the column is there only when a fit failed; "" for the fits that
        ran). A failed reference leaves ``mean_error`` and ``sd_error`` NaN and its error in
        ``table.attrs["reference_error"]``.

    Raises
    ------
    TypeError, ValueError
        For a bad model, data, method or reference, before any fitting.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be a zoo model, got {type(model).__name__}")
    train = as_dataset(train, "train")
    test = as_dataset(test, "test")
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise ValueError("methods must be a non-empty list of methods or strings like 'svi:mvn'")
    configs = [parse_method(method) for method in methods]
    for config in configs:
        if config.kind not in model.methods:
            raise ValueError(f"methods: {type(model).__name__} does not take {config.label(model)}; it takes {', '.join(model.methods)}")
    if reference is None:
        reference = reference_method(model)
    elif not isinstance(reference, Fit):
        reference = parse_method(reference)
        if reference.kind not in model.methods:
            raise ValueError(f"reference: {type(model).__name__} does not take {reference.label(model)}")
    model.validate(train)
    model.validate(test)

    reference_error = None
    if isinstance(reference, Fit):
        reference_fit = reference
    else:  # a failed reference leaves the errors against it NaN; the fits go on
        reference_fit, reference_error = attempt_fit(model, train, reference)
    fits: dict[str, Fit] = {}
    failures: dict[str, tuple[str, str]] = {}
    order: list[str] = []
    for config in configs:
        result, error = attempt_fit(model, train, config)
        name = config.label(model) if result is None else result.method_name
        label, number = name, 2
        while label in fits or label in failures:
            label, number = f"{name}#{number}", number + 1
        order.append(label)
        if result is None:
            failures[label] = (name, str(error))
        else:
            fits[label] = result
    if fits:
        table = _with_failures(compare_fits(fits, test, reference_fit), failures)
    else:
        table = _with_failures(pd.DataFrame(columns=list(COLUMNS), index=pd.Index([], name="fit")), failures)
    table = table.loc[order]  # the methods' order, failed ones in their place
    table.attrs["reference"] = reference_fit.method_name if reference_fit is not None else reference.label(model)
    if reference_error is not None:
        table.attrs["reference_error"] = reference_error
    return (table, fits, reference_fit) if return_fits else table
