"""Everything that touches ArviZ: InferenceData from draws, summaries, convergence, LOO, comparison.

This is the only module that imports arviz (0.23.x here; ArviZ 1.x needs Python 3.12), so moving
to ArviZ 1.x is this one file's work.

Why zoo has its own adapter: ArviZ's ``from_pyro`` computes the log-likelihood of an enumerated
model conditional on discrete values drawn from the prior, so LOO and WAIC of a mixture or an HMM
come out wrong with no error. zoo builds the InferenceData with ``az.from_dict`` and fills the
log_likelihood group with the exact marginal log p(x_i | theta_s), discrete latents summed out.

Where this module sits. It is below :mod:`zoo.results` (``Fit.to_arviz`` and ``Fit.summary``
call it, and the NUTS runner computes a fit's convergence numbers with it before the Fit is
built), so it knows no ``Fit``: it takes plain values (dicts of draws, coordinates, dims), and
:func:`loo` and :func:`compare` take anything with a ``to_arviz`` method (:class:`ToArviz`: a
``Fit``) or an InferenceData.

ArviZ is imported on first use (:func:`_arviz`), not with this module: it takes seconds to
import, and ``import zoo`` (which reaches this module through ``zoo.results``) should not pay
for it in a program that never asks for a diagnostic.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from zoo.ops import convergence as convergence_ops

__all__ = ["inference_data", "summary", "convergence", "loo", "compare", "to_netcdf", "ToArviz"]


class ToArviz(Protocol):
    """What :func:`loo` and :func:`compare` accept besides an InferenceData: a ``zoo.Fit``."""

    def to_arviz(self, data: Any = None, posterior_predictive: bool = True) -> Any: ...


@functools.cache
def _arviz() -> ModuleType:
    """The arviz module, imported (and quietened) once, on first use."""
    with warnings.catch_warnings():  # arviz 0.23 warns on import about its coming 1.x refactor
        warnings.simplefilter("ignore", FutureWarning)
        import arviz  # heavy (seconds): imported when a diagnostic is first asked for

    # ArviZ logs a warning for every one-chain posterior (an SVI fit has one chain by design);
    # the R-hat it cannot compute there is reported as NaN instead. (arviz builds its logger
    # itself, outside logging.getLogger, so only its own handle reaches it.)
    arviz._log.setLevel(logging.ERROR)
    return arviz


def _numpy(values: dict[str, Any] | None) -> dict[str, np.ndarray]:
    return {name: value.detach().cpu().numpy() for name, value in (values or {}).items()}


def inference_data(
    posterior: dict[str, torch.Tensor],
    *,
    observed: dict[str, torch.Tensor] | None = None,
    sample_stats: dict[str, torch.Tensor] | None = None,
    log_likelihood: dict[str, torch.Tensor] | None = None,
    posterior_predictive: dict[str, torch.Tensor] | None = None,
    coords: dict[str, list[Any]] | None = None,
    dims: dict[str, list[str]] | None = None,
) -> Any:
    """An ``arviz.InferenceData`` from tensors (``Fit.to_arviz`` gathers them).

    Parameters
    ----------
    posterior : dict of str to Tensor
        Draws of each site, shaped (chain, draw, *site_shape).
    observed : dict of str to Tensor, optional
        The observed site's data, shaped (num_data, ...).
    sample_stats : dict of str to Tensor, optional
        Per-draw statistics shaped (chain, draw) (NUTS's); an empty dict or None: no group.
    log_likelihood : dict of str to Tensor, optional
        log p(x_i | theta) of each observed site, shaped (chain, draw, num_data).
    posterior_predictive : dict of str to Tensor, optional
        Replicates of each observed site, shaped (chain, draw, num_data, ...).
    coords, dims : dict, optional
        ArviZ coordinates and dims (without the chain and draw dims).

    Returns
    -------
    arviz.InferenceData
    """
    groups = {
        "posterior": _numpy(posterior),
        "observed_data": _numpy(observed),
        "sample_stats": _numpy(sample_stats),
        "log_likelihood": _numpy(log_likelihood),
        "posterior_predictive": _numpy(posterior_predictive),
    }
    arviz = _arviz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arviz.from_dict(
            **{name: values for name, values in groups.items() if values},
            coords=_arrays(coords),
            dims=dims or {},
        )


def _arrays(coords: dict[str, Any] | None) -> dict[str, np.ndarray]:
    """Coordinates as numpy arrays: ArviZ deep-copies the coordinates once per variable, and a
    list of 10,000 data indices costs it a Python object per element each time (0.2 s of a 0.3 s
    ``to_arviz``); an array is one copy. The values (and xarray's dtypes) are the same."""
    return {name: np.asarray(values) for name, values in (coords or {}).items()}


def summary(
    draws: dict[str, torch.Tensor],
    coords: dict[str, list[Any]] | None = None,
    dims: dict[str, list[str]] | None = None,
    var_names: list[str] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """ArviZ's summary of posterior draws (mean, sd, HDI, ESS, R-hat) as a DataFrame.

    Parameters
    ----------
    draws : dict of str to Tensor
        Each site shaped (chain, draw, *site_shape).
    coords, dims : dict, optional
        ArviZ coordinates and dims of the sites.
    var_names : list of str, optional
        The sites to summarise; default all.
    **options
        Passed to ``arviz.summary`` (e.g. ``kind="stats"``).
    """
    arviz = _arviz()
    idata = arviz.from_dict(posterior=_numpy(draws), coords=_arrays(coords), dims=dims or {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arviz.summary(idata, var_names=var_names, **options)


def convergence(draws: dict[str, torch.Tensor]) -> dict[str, float]:
    """Worst R-hat and smallest bulk / tail ESS over every scalar of every site.

    Computed by :mod:`zoo.ops.convergence` (the same numbers as ArviZ's ``rhat`` and ``ess``,
    tested against them), so that a NUTS fit reports them without importing ArviZ. Scalars that
    do not vary (the unit diagonal and zero upper triangle of a correlation Cholesky factor, up
    to rounding) are left out: their R-hat is rounding noise.

    Parameters
    ----------
    draws : dict of str to Tensor
        Each site shaped (chain, draw, *site_shape).

    Returns
    -------
    dict
        ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` (NaN where nothing varies, and R-hat
        NaN for one chain, as ArviZ).
    """
    rhats, bulks, tails = [], [], []
    for value in draws.values():
        scalars = value.detach().double().reshape(value.shape[0], value.shape[1], -1)
        for index in range(scalars.shape[-1]):
            chains = scalars[..., index]
            if not chains.std() > 1e-6 * (1 + chains.mean().abs()):
                continue
            rhats.append(convergence_ops.rhat(chains))
            bulks.append(convergence_ops.ess_bulk(chains))
            tails.append(convergence_ops.ess_tail(chains))

    def extreme(values: list[float], reduce: Any) -> float:
        finite = [value for value in values if math.isfinite(value)]
        return float(reduce(finite)) if finite else float("nan")

    return {"max_rhat": extreme(rhats, max), "min_ess_bulk": extreme(bulks, min), "min_ess_tail": extreme(tails, min)}


#: How many copies of a one-draw log-likelihood PSIS-LOO is given (see :func:`_as_inference_data`).
POINT_MASS_COPIES = 4


def _as_inference_data(result: "ToArviz | Any", data: Any = None) -> Any:
    """``result`` if it is an InferenceData, else its ``to_arviz(data)`` without replicates;
    ready for PSIS-LOO.

    A point-mass fit (``guide="delta"``) holds one draw. PSIS-LOO over identical draws is the
    plug-in log-likelihood log p(x_i | theta) (equal weights: ``p_loo`` 0, every Pareto k
    infinite, the fit flagged), but ArviZ computes it only from several draws (one raises an
    IndexError), so the one draw's log-likelihood is repeated (:data:`POINT_MASS_COPIES`
    times, in a new InferenceData): the numbers are those of any number of identical draws.
    """
    if not isinstance(result, _arviz().InferenceData):
        result = result.to_arviz(data, posterior_predictive=False)
    group = getattr(result, "log_likelihood", None)
    if group is None or group.sizes.get("chain", 1) * group.sizes.get("draw", 1) != 1:
        return result

    def repeated(dataset: Any) -> Any:
        copies = dataset.isel(chain=[0], draw=[0] * POINT_MASS_COPIES)
        return copies.assign_coords(draw=np.arange(POINT_MASS_COPIES))

    return result.map(repeated, groups="log_likelihood", inplace=False)


def loo(result: "ToArviz | Any", data: Any = None) -> Any:
    """PSIS-LOO (``az.loo``, pointwise) from the exact marginal pointwise log-likelihood.

    Parameters
    ----------
    result : zoo.Fit or arviz.InferenceData
    data : Dataset, optional
        The data to score (a Fit's training data by default).
    """
    idata = _as_inference_data(result, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _arviz().loo(idata, pointwise=True)


def compare(results: dict[str, "ToArviz | Any"], data: Any = None, **options: Any) -> pd.DataFrame:
    """``az.compare`` of several fits (or InferenceData) by LOO on exact marginal likelihoods."""
    idatas = {name: _as_inference_data(result, data) for name, result in results.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _arviz().compare(idatas, **options)


def to_netcdf(idata: Any, path: Any) -> None:
    """Write an InferenceData to a NetCDF file."""
    idata.to_netcdf(str(path))
