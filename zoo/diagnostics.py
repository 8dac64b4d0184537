"""Everything that touches ArviZ: Fit -> InferenceData, summaries, convergence, LOO, comparison.

This is the only module that imports arviz (0.23.x here; ArviZ 1.x needs Python 3.12), so moving
to ArviZ 1.x is this one file's work.

Why zoo has its own adapter: ArviZ's ``from_pyro`` computes the log-likelihood of an enumerated
model conditional on discrete values drawn from the prior, so LOO and WAIC of a mixture or an HMM
come out wrong with no error. zoo builds the InferenceData with ``az.from_dict`` and fills the
log_likelihood group with the exact marginal log p(x_i | theta_s), discrete latents summed out.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

with warnings.catch_warnings():  # arviz 0.23 warns on import about its coming 1.x refactor
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

# ArviZ logs a warning for every one-chain posterior (an SVI fit has one chain by design); the
# R-hat it cannot compute there is reported as NaN instead.
az._log.setLevel(logging.ERROR)  # arviz builds its logger itself, outside logging.getLogger

if TYPE_CHECKING:
    from zoo.results import Fit

__all__ = ["to_inference_data", "summary", "convergence", "loo", "compare", "to_netcdf"]


def _numpy(draws: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: value.detach().cpu().numpy() for name, value in draws.items()}


def to_inference_data(fit: "Fit", data: Any = None, posterior_predictive: bool = True) -> az.InferenceData:
    """The fit as an ``arviz.InferenceData``.

    Groups: ``posterior`` (the draws, named dims and coords), ``sample_stats`` (NUTS's per-draw
    statistics, or nothing for SVI), ``log_likelihood`` (exact marginal pointwise log-likelihood
    of ``data``, shaped (chain, draw, datum)), ``posterior_predictive`` (one replicate of
    ``data`` per draw) and ``observed_data``.

    Parameters
    ----------
    fit : zoo.Fit
    data : Dataset, optional
        The data whose likelihood is stored; default the training data.
    posterior_predictive : bool
        Include the posterior predictive group (one simulated data set per draw).
    """
    dataset = fit._data(data)
    model = fit.model
    observed = model.observed_site
    dims = dict(model.dims())
    coords = dict(model.coords(dataset))
    data_dims = dims.get(observed, ["datum"])
    coords.setdefault(data_dims[0], list(range(len(dataset))))
    stats = _numpy(fit.sample_stats)
    kwargs: dict[str, Any] = {
        "posterior": _numpy(fit.draws),
        "sample_stats": stats or None,
        "observed_data": {observed: dataset.x.cpu().numpy()},
        "coords": coords,
        "dims": {**dims, observed: data_dims},
    }
    if model.capability("log_prob"):
        log_likelihood = fit.log_likelihood(dataset).cpu().numpy()
        kwargs["log_likelihood"] = {observed: log_likelihood}
        kwargs["dims"][observed] = data_dims
    if posterior_predictive and model.capability("sample"):
        kwargs["posterior_predictive"] = {observed: fit.posterior_predictive(dataset).cpu().numpy()}
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.from_dict(**kwargs)


def summary(fit: "Fit", var_names: list[str] | None = None, **options: Any) -> pd.DataFrame:
    """ArviZ's summary of the posterior (mean, sd, HDI, ESS, R-hat) as a DataFrame."""
    idata = az.from_dict(
        posterior=_numpy(fit.draws), coords=fit.model.coords(fit.train), dims=fit.model.dims()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.summary(idata, var_names=var_names, **options)


def convergence(fit: "Fit") -> dict[str, float]:
    """Worst R-hat and smallest bulk / tail ESS over every scalar of every site.

    Scalars that do not vary (the unit diagonal and zero upper triangle of a correlation
    Cholesky factor, up to rounding) are left out: their R-hat is rounding noise.
    """
    draws = _numpy(fit.draws)
    idata = az.from_dict(posterior=draws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(idata)
        ess_bulk = az.ess(idata, method="bulk")
        ess_tail = az.ess(idata, method="tail")
    varies = {
        name: (value.std(axis=(0, 1)) > 1e-6 * (1 + np.abs(value.mean(axis=(0, 1))))).ravel()
        for name, value in draws.items()
    }

    def extreme(dataset: Any, reduce: Any) -> float:
        values = [np.asarray(dataset[name]).ravel()[varies[name]] for name in dataset.data_vars]
        values = np.concatenate(values) if values else np.array([np.nan])
        values = values[np.isfinite(values)]
        return float(reduce(values)) if values.size else float("nan")

    return {
        "max_rhat": extreme(rhat, np.max),
        "min_ess_bulk": extreme(ess_bulk, np.min),
        "min_ess_tail": extreme(ess_tail, np.min),
    }


def loo(fit: "Fit", data: Any = None) -> Any:
    """PSIS-LOO from the exact marginal pointwise log-likelihood (``az.loo``)."""
    idata = to_inference_data(fit, data, posterior_predictive=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.loo(idata, pointwise=True)


def compare(fits: dict[str, "Fit"], data: Any = None, **options: Any) -> pd.DataFrame:
    """``az.compare`` of several fits by LOO (exact marginal likelihoods)."""
    idatas = {name: to_inference_data(fit, data, posterior_predictive=False) for name, fit in fits.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.compare(idatas, **options)


def to_netcdf(idata: az.InferenceData, path: Any) -> None:
    """Write an InferenceData to a NetCDF file."""
    idata.to_netcdf(str(path))
