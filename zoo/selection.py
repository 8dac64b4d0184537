"""Model selection: how many components (mixture) or states (HMM), by LOO and by held-out data.

>>> import zoo
>>> train, test = zoo.datasets.load("old_faithful").split(test_fraction=0.3, seed=0)
>>> table = zoo.select(zoo.models.GaussianMixture, train, test, values=[1, 2, 3, 4])
>>> zoo.plots.plot_model_selection(table)

Two estimates of the same quantity, the expected log predictive density of new data:

* ``elpd_loo``: PSIS-LOO on the training data (``zoo.diagnostics.loo``), computed from the
  *exact marginal* pointwise log-likelihood (components / states summed out), with its standard
  error and the Pareto k diagnostic (``max_pareto_k`` > 0.7: the estimate is unreliable for some
  points);
* ``test_log_lik``: the mean held-out log predictive density per datum (per sequence for an HMM).

The ranking columns (``rank``, ``elpd_diff``, ``dse``, ``weight``) come from ``az.compare`` via
:func:`zoo.diagnostics.compare`. Use a method with posterior draws (NUTS, or an SVI guide that is
not a point mass): LOO needs the spread of the draws, and is meaningless for the delta guide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from zoo.datasets.dataset import as_dataset
from zoo.diagnostics import compare, loo
from zoo.infer import fit as run_fit
from zoo.infer.methods import parse_method
from zoo.models.base import Model
from zoo.results import Fit

__all__ = ["select", "COLUMNS"]

#: The columns of :func:`select`, in order.
COLUMNS: tuple[str, ...] = (
    "elpd_loo",
    "elpd_loo_se",
    "p_loo",
    "max_pareto_k",
    "rank",
    "elpd_diff",
    "dse",
    "weight",
    "test_log_lik",
    "num_train",
    "wall_time_s",
)


def select(
    model_factory: Callable[[Any], Model],
    train: Any,
    test: Any,
    values: Sequence[Any] = (1, 2, 3, 4),
    method: Any = "svi:mvn",
    name: str = "value",
    return_fits: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[Any, Fit]]:
    """Fit ``model_factory(value)`` for each value and compare them by LOO and held-out data.

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

    Returns
    -------
    pandas.DataFrame, or (DataFrame, dict)
        Indexed by value, with :data:`COLUMNS`: ``elpd_loo`` (sum over training points),
        ``elpd_loo_se``, ``p_loo`` (effective number of parameters), ``max_pareto_k``, ``rank``
        (0: best by LOO), ``elpd_diff`` and ``dse`` (difference from the best and its standard
        error), ``weight`` (stacking weight), ``test_log_lik`` (held-out, per datum),
        ``num_train`` and ``wall_time_s``.

    Raises
    ------
    TypeError, ValueError
        Before fitting, for a factory that is not callable, fewer than two values, or a method
        the models cannot take.
    """
    if not callable(model_factory):
        raise TypeError(f"model_factory must be callable (value -> model), got {type(model_factory).__name__}")
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) < 2:
        raise ValueError(f"values must list at least two values to compare, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"values must be distinct, got {list(values)}")
    train = as_dataset(train, "train")
    test = as_dataset(test, "test")
    method = parse_method(method)
    models = {}
    for value in values:
        model = model_factory(value)
        if not isinstance(model, Model):
            raise TypeError(f"model_factory({value!r}) must return a zoo model, got {type(model).__name__}")
        if method.kind not in model.methods or not model.capability("log_prob"):
            raise ValueError(f"method: {type(model).__name__} cannot be scored by LOO after {method.label(model)}")
        model.validate(train)
        models[value] = model

    fits = {value: run_fit(model, train, method) for value, model in models.items()}
    rows = []
    for value, result in fits.items():
        scores = loo(result)
        rows.append(
            {
                "elpd_loo": float(scores["elpd_loo"]),
                "elpd_loo_se": float(scores["se"]),
                "p_loo": float(scores["p_loo"]),
                "max_pareto_k": float(scores["pareto_k"].max()),
                "test_log_lik": float(result.log_prob(test).mean()),
                "num_train": len(train),
                "wall_time_s": float(result.wall_time),
            }
        )
    table = pd.DataFrame(rows, index=pd.Index(list(values), name=name))
    ranking = compare({str(value): result for value, result in fits.items()})
    for column in ("rank", "elpd_diff", "dse", "weight"):
        table[column] = [float(ranking.loc[str(value), column]) for value in values]
    table["rank"] = table["rank"].astype(int)
    table = table[list(COLUMNS)]
    return (table, fits) if return_fits else table
