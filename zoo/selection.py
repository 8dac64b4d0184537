"""Model selection: how many components (mixture) or states (HMM), by criteria that fit the fit.

>>> import zoo
>>> train, test = zoo.datasets.load("old_faithful").split(test_fraction=0.3, seed=0)
>>> table = zoo.select(zoo.models.GaussianMixture, train, test, values=[1, 2, 3], method="svi:delta", criterion="bic")
>>> int(table["bic"].idxmin())             # the number of components BIC prefers
2
>>> axes = zoo.plots.plot_model_selection(table)

Which criterion ranks the rows (``criterion=``) depends on what the fits are:

* ``"loo"`` (default; fits with a posterior: NUTS, exact, an SVI guide with spread): PSIS-LOO
  on the training data (:func:`zoo.diagnostics.loo`), from the *exact marginal* pointwise
  log-likelihood (components / states summed out), importance-weighted by p / q for a
  variational fit, with its standard error and the Pareto k diagnostic; ranked by
  ``az.compare`` (``rank``, ``elpd_diff``, ``dse``, ``weight``). Refused for point-mass fits
  (MAP: ``svi:delta``), whose "LOO" is the in-sample log-likelihood and always prefers the
  biggest model, and for one datum (an HMM fitted to a single sequence).
* ``"bic"``, ``"aic"`` (MAP fits): ``k log n - 2 log L`` and ``2 k - 2 log L`` at the MAP, with
  k the free parameters (unconstrained dimensions of the global sites) and n the
  observations (points; time steps for sequences). Lower is better. The MAP is not the
  maximum-likelihood estimate these criteria assume; with weak priors the two are close.
* ``"test"`` (any fit): the held-out log predictive density, higher is better.

``test_log_lik`` (the mean held-out log predictive density per datum) is in every table, with
``datum`` saying what a datum is ("point", or "sequence" for an HMM: then
``test_log_lik_per_step`` divides the held-out total by the time steps), and ``flags`` saying
what a row cannot vouch for (Pareto k above 0.7, chains that did not mix, SVI that did not
converge).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import pyro.poutine as poutine
import torch
from torch.distributions import biject_to

from zoo.checks import check_choice
from zoo.comparison import attempt_fit
from zoo.datasets.dataset import as_dataset
from zoo.diagnostics import PointMassError, compare, loo, point_mass_message
from zoo.infer.guides import POINT_MASS_GUIDES
from zoo.infer.methods import parse_method
from zoo.models.base import Model
from zoo.report import fit_flags
from zoo.results import Fit

__all__ = ["select", "COLUMNS", "CRITERIA", "num_free_parameters"]

#: The criteria :func:`select` ranks by.
CRITERIA = ("loo", "bic", "aic", "test")

_COMMON = ("test_log_lik", "datum", "num_train", "wall_time_s", "flags")
#: The columns of :func:`select` by criterion, in order (sequences add ``test_log_lik_per_step``).
COLUMNS: dict[str, tuple[str, ...]] = {
    "loo": ("elpd_loo", "elpd_loo_se", "p_loo", "max_pareto_k", "rank", "elpd_diff", "dse", "weight") + _COMMON,
    "bic": ("bic", "num_parameters", "log_lik", "rank") + _COMMON,
    "aic": ("aic", "num_parameters", "log_lik", "rank") + _COMMON,
    "test": ("rank",) + _COMMON,
}


def num_free_parameters(model: Model) -> int:
    """The free parameters of ``model``: the unconstrained dimensions of its global sites (a
    simplex of K weights counts K - 1, a D x D correlation Cholesky factor D (D - 1) / 2).

    ``model`` must be prepared for its data (a fit's ``fit.model``) and state its global story
    (``sample_globals``)."""
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(model.sample_globals).get_trace()
    total = 0
    for site in trace.nodes.values():
        if site["type"] != "sample" or site["is_observed"] or type(site["fn"]).__name__ == "_Subsample":
            continue
        total += biject_to(site["fn"].support).inv(site["value"]).numel()
    return total


def select(
    model_factory: Callable[[Any], Model],
    train: Any,
    test: Any,
    values: Sequence[Any] = (1, 2, 3, 4),
    method: Any = "svi:mvn",
    name: str = "value",
    return_fits: bool = False,
    criterion: str = "loo",
) -> pd.DataFrame | tuple[pd.DataFrame, dict[Any, Fit]]:
    """Fit ``model_factory(value)`` for each value and rank them by ``criterion``.

    Parameters
    ----------
    model_factory : callable
        value -> zoo model, e.g. ``zoo.models.GaussianMixture`` (its first argument is the number
        of components) or ``lambda k: zoo.models.HMM(k, ...)``.
    train, test : Dataset, tensor or array
    values : sequence
        The values to try (numbers of components or states), at least two.
    method : str or method configuration
        How each model is fitted (see :func:`zoo.infer.methods.parse_method`); default "svi:mvn".
    name : str
        Name of the table's index ("num_components", "num_states").
    return_fits : bool
        Also return the fits, keyed by value.
    criterion : {"loo", "bic", "aic", "test"}
        What ranks the rows (module docs): "loo" for fits with a posterior, "bic" or "aic"
        for MAP fits, "test" for any.

    Returns
    -------
    pandas.DataFrame, or (DataFrame, dict)
        Indexed by value, with :data:`COLUMNS` of the criterion. For "loo": ``elpd_loo`` (sum
        over training data), ``elpd_loo_se``, ``p_loo`` (effective number of parameters),
        ``max_pareto_k``, ``rank`` (0: best), ``elpd_diff`` and ``dse`` (difference from the
        best and its standard error), ``weight`` (stacking weight). For "bic"/"aic": the
        criterion, ``num_parameters`` and ``log_lik`` (the training log-likelihood at the
        MAP). Then ``test_log_lik`` (held-out, mean per datum), ``datum`` (what a datum is),
        ``num_train``, ``wall_time_s`` and ``flags``; ``test_log_lik_per_step`` for
        sequences. ``table.attrs["criterion"]`` names the criterion.
        A value whose fit fails (a ``FitError``) does not stop the others: its row is NaN,
        with the error in one line in an ``error`` column (present only when a fit failed);
        the others are ranked among themselves, and the fits returned are those that ran.

    Raises
    ------
    TypeError, ValueError
        Before fitting, for a factory that is not callable, fewer than two values, a method the
        models cannot take, an unknown criterion, LOO of point-mass fits
        (:class:`zoo.diagnostics.PointMassError`) or of one datum, or BIC/AIC of fits that
        are not MAP fits.
    """
    if not callable(model_factory):
        raise TypeError(f"model_factory must be callable (value -> model), got {type(model_factory).__name__}")
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) < 2:
        raise ValueError(f"values must list at least two values to compare, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"values must be distinct, got {list(values)}")
    check_choice(criterion, "criterion", CRITERIA)
    train = as_dataset(train, "train")
    test = as_dataset(test, "test")
    method = parse_method(method)
    models = {}
    for value in values:
        model = model_factory(value)
        if not isinstance(model, Model):
            raise TypeError(f"model_factory({value!r}) must return a zoo model, got {type(model).__name__}")
        if method.kind not in model.methods or not model.capability("log_prob"):
            raise ValueError(f"method: {type(model).__name__} cannot be scored after {method.label(model)}")
        model.validate(train)
        models[value] = model
    first = next(iter(models.values()))
    point_mass = method.kind == "svi" and method.num_draws(first) == 1
    if criterion == "loo" and point_mass:
        raise PointMassError(point_mass_message(method.label(first)))
    if criterion == "loo" and len(train) < 2:
        raise ValueError(
            f"criterion='loo': train holds one {first.datum}; a LOO over one datum is meaningless "
            "(leaving it out leaves no data). Use criterion='test' with a held-out stretch "
            "(train.split_time()), or fit several sequences."
        )
    if criterion in ("bic", "aic") and not (point_mass and isinstance(method.guide_name(first), str) and method.guide_name(first) in POINT_MASS_GUIDES):
        raise ValueError(
            f"criterion={criterion!r} is for MAP fits (method 'svi:delta'); {method.label(first)} gives a "
            "posterior: use criterion='loo' or 'test'"
        )

    fits: dict[Any, Fit] = {}
    failures: dict[Any, str] = {}
    for value, model in models.items():  # a failed fit is a row with its error; the others go on
        result, error = attempt_fit(model, train, method)
        if result is None:
            failures[value] = str(error)
        else:
            fits[value] = result
    if not failures:
        table = _table(fits, train, test, criterion)
    else:
        ranked = criterion if criterion != "loo" or len(fits) >= 2 else "test"  # LOO ranks two fits or more
        columns = list(COLUMNS[criterion]) + (["test_log_lik_per_step"] if test.lengths is not None else [])
        table = _table(fits, train, test, ranked) if fits else pd.DataFrame(columns=columns)
        if ranked != criterion:
            table["rank"] = math.nan
        table = table.reindex(index=list(values), columns=columns)
        table["num_train"] = len(train)
        table["error"] = [failures.get(value, "") for value in values]
    table.index = pd.Index(list(values), name=name)
    table.attrs["criterion"] = criterion
    return (table, fits) if return_fits else table


def _table(fits: dict[Any, Fit], train: Any, test: Any, criterion: str) -> pd.DataFrame:
    """The rows of :func:`select` for fits already made."""
    sequences = test.lengths is not None
    rows = []
    scores = {value: loo(fit, name=f"{value}") for value, fit in fits.items()} if criterion == "loo" else {}
    for value, fit in fits.items():
        held_out = fit.log_prob(test)
        flags = fit_flags(fit)
        row: dict[str, Any] = {
            "test_log_lik": float(held_out.mean()),
            "datum": fit.model.datum,
            "num_train": len(train),
            "wall_time_s": float(fit.wall_time),
        }
        if sequences:
            row["test_log_lik_per_step"] = float(held_out.sum()) / test.num_observations
        if criterion == "loo":
            result = scores[value]
            max_k = float(result["pareto_k"].max())
            row.update(
                elpd_loo=float(result["elpd_loo"]),
                elpd_loo_se=float(result["se"]),
                p_loo=float(result["p_loo"]),
                max_pareto_k=max_k,
            )
            if max_k > float(result["good_k"]):
                flags.append(f"Pareto k {max_k:.2f} > {float(result['good_k']):.2f}: LOO unreliable")
        elif criterion in ("bic", "aic"):
            log_lik = float(fit.log_prob(train).double().sum())
            parameters = num_free_parameters(fit.model)
            penalty = parameters * math.log(train.num_observations) if criterion == "bic" else 2.0 * parameters
            row.update({criterion: penalty - 2.0 * log_lik, "num_parameters": parameters, "log_lik": log_lik})
        row["flags"] = "; ".join(flags)
        rows.append(row)
    table = pd.DataFrame(rows, index=list(fits))
    if criterion == "loo":
        ranking = compare({str(value): scores[value] for value in fits})
        for column in ("rank", "elpd_diff", "dse", "weight"):
            table[column] = [float(ranking.loc[str(value), column]) for value in fits]
    elif criterion == "test":
        table["rank"] = (-table["test_log_lik"]).rank(method="first") - 1
    else:
        table["rank"] = table[criterion].rank(method="first") - 1
    table["rank"] = table["rank"].astype(int)
    columns = list(COLUMNS[criterion]) + (["test_log_lik_per_step"] if sequences else [])
    return table[columns]
