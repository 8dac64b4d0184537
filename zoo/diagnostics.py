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
import inspect
import logging
import math
import warnings
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from zoo.ops import convergence as convergence_ops

__all__ = [
    "inference_data",
    "summary",
    "convergence",
    "loo",
    "compare",
    "to_netcdf",
    "ToArviz",
    "ParetoKWarning",
    "PointMassError",
    "PARETO_K_THRESHOLD",
]


class ToArviz(Protocol):
    """What :func:`loo` and :func:`compare` accept besides an InferenceData: a ``zoo.Fit``."""

    def to_arviz(self, data: Any = None, posterior_predictive: bool = True) -> Any: ...


@functools.cache
def _arviz() -> ModuleType:
    """The arviz module, imported (and quietened) once, on first use."""
    with warnings.catch_warnings():  # arviz 0.23 warns on import about its coming 1.x refactor
        warnings.simplefilter("ignore", FutureWarning)
        import arviz  # heavy (seconds): imported when a diagnostic is first asked for

    # ArviZ logs "Shape validation failed" for every one-chain posterior's R-hat (an SVI fit
    # has one chain by design), which zoo reports as NaN instead; only that message is dropped,
    # every other ArviZ message still reaches the user. (arviz builds its logger itself,
    # outside logging.getLogger, so only its own handle reaches it.)
    arviz._log.addFilter(_drop_shape_validation)
    return arviz


def _drop_shape_validation(record: logging.LogRecord) -> bool:
    """False (drop) for ArviZ's one-chain "Shape validation failed" log record only."""
    return not str(record.msg).startswith("Shape validation failed")


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
    attrs: dict[str, Any] | None = None,
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
    attrs : dict, optional
        Attributes of every group; :func:`loo` reads :data:`POSTERIOR_KIND`, :data:`METHOD`,
        :data:`DATUM` and :data:`TRAINING_DATA` from them.

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
    idata = _arviz().from_dict(
        **{name: values for name, values in groups.items() if values},
        coords=_arrays(coords),
        dims=dims or {},
    )
    for group in idata.groups():  # from_dict's attrs= reaches only observed_data
        getattr(idata, group).attrs.update(attrs or {})
    return idata


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
        # One draw (a point-mass fit): numpy warns that the sd of one value divides by zero;
        # the sd, ESS and R-hat it cannot have are NaN, as documented in Fit.summary.
        warnings.filterwarnings("ignore", message="Degrees of freedom <= 0", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="invalid value encountered", category=RuntimeWarning)
        return arviz.summary(idata, var_names=var_names, **options)


def summary_options() -> tuple[str, ...]:
    """The keyword options :func:`summary` passes on to ``arviz.summary``: its arguments but the
    data and ``coords`` (:func:`summary`'s own, for the conversion)."""
    return tuple(name for name in inspect.signature(_arviz().summary).parameters if name not in ("data", "coords"))


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


#: Pareto k above which PSIS estimates of a datum are not to be trusted (Vehtari, Simpson,
#: Gelman, Yao and Gabry 2024, "Pareto smoothed importance sampling", JMLR 25(72), section 3:
#: above 0.7 the importance-sampling estimate's error is large and not reliably estimated);
#: with few draws, ArviZ's lower sample-size bound ``1 - 1 / log10(S)`` applies.
PARETO_K_THRESHOLD = 0.7

#: The keys of ``to_arviz``'s group attributes that tell LOO what kind of posterior a fit holds.
POSTERIOR_KIND = "zoo_posterior"  # "draws" (NUTS, exact), "approximate" (SVI, Laplace), "point"
METHOD = "zoo_method"  # the fit's method label, for messages
DATUM = "zoo_datum"  # what one datum is: "point", "sequence"
TRAINING_DATA = "zoo_training_data"  # 1 when the log_likelihood group is of the training data


class ParetoKWarning(UserWarning):
    """PSIS-LOO's Pareto k exceeds :data:`PARETO_K_THRESHOLD` for some data: their LOO terms
    (and so ``elpd_loo``) are unreliable. Filter it by this class, not by silencing ArviZ."""


class PointMassError(ValueError):
    """LOO was asked of a point-mass fit (a MAP), where it means nothing (see :func:`loo`)."""


def point_mass_message(method: str) -> str:
    """Why LOO (and any posterior-spread criterion) refuses a point-mass fit, and what to use."""
    return (
        f"PSIS-LOO refuses a point-mass fit ({method}): with one point in place of a posterior, "
        "every 'leave-one-out' posterior is that same point, so elpd_loo equals the in-sample "
        "log-likelihood (p_loo 0) and always ranks the biggest model first. Use the held-out "
        "log-likelihood (fit.log_prob(test), or zoo.select(..., criterion='test')), BIC or AIC for "
        "MAP fits (zoo.select(..., criterion='bic')), or fit a posterior for LOO: zoo.NUTS, or an "
        "SVI guide with spread such as 'mvn' (its draws are importance-weighted)."
    )


def _attributes(idata: Any) -> dict[str, Any]:
    group = getattr(idata, "log_likelihood", None)
    return dict(group.attrs) if group is not None else {}


def _pointwise(idata: Any) -> np.ndarray:
    """The log-likelihood group as one (draws, data) array (chains and draws stacked, one
    observed variable's data flattened)."""
    group = getattr(idata, "log_likelihood", None)
    if group is None or not group.data_vars:
        raise ValueError("LOO needs a log_likelihood group: this result has none (a model with no density?)")
    if len(group.data_vars) != 1:
        raise ValueError(f"LOO takes one observed variable, this result has {sorted(group.data_vars)}")
    values = next(iter(group.data_vars.values())).values
    return values.reshape(values.shape[0] * values.shape[1], -1).astype(np.float64)


def _is_point_mass(idata: Any, log_likelihood: np.ndarray) -> bool:
    if _attributes(idata).get(POSTERIOR_KIND) == "point":
        return True
    # An InferenceData from elsewhere: every draw gives every datum the same log-likelihood.
    return bool(log_likelihood.shape[0] == 1 or np.ptp(log_likelihood, axis=0).max() == 0.0)


def loo(result: "ToArviz | Any", data: Any = None, name: str | None = None) -> Any:
    """PSIS-LOO (pointwise) from the exact marginal pointwise log-likelihood, honestly.

    * NUTS and exact posteriors (and any InferenceData of posterior draws): ArviZ's
      ``az.loo``.
    * Variational and Laplace fits: their draws come from q, not the posterior, so each is
      importance-weighted by ``log p(theta, x) - log q(theta)`` (the log prior and the guide's
      log density that the fit keeps per draw, plus the training log-likelihood), and the LOO
      ratios ``log p(theta, x) - log q(theta) - log p(x_i | theta)`` are Pareto-smoothed
      (``az.psislw``): PSIS-LOO for approximate posteriors, as ``loo_approximate_posterior``
      of the R package loo and of arviz-stats (Magnusson, Andersen, Jonasson and Vehtari
      2019, "Bayesian leave-one-out cross-validation for large data", ICML). ``p_loo`` is the
      importance-weighted in-sample log predictive density minus ``elpd_loo`` (the R
      package's takes the unweighted mean, which is biased for a q that is not the posterior).
    * Point-mass fits (a MAP: ``guide="delta"``, a model whose parameters are point estimates,
      such as a VAE's decoder): refused (:class:`PointMassError`, with what to use instead).
      One point in place of a posterior makes LOO the in-sample log-likelihood.
    * One datum (one sequence fitted alone): refused; leaving out the only datum leaves no
      data, and a LOO "over one datum" ranks nothing.

    Data whose Pareto k exceeds :data:`PARETO_K_THRESHOLD` are reported by a
    :class:`ParetoKWarning` naming how many and the largest k.

    Parameters
    ----------
    result : zoo.Fit or arviz.InferenceData
    data : Dataset, optional
        The data to score (a Fit's training data by default; a variational fit is refused
        other data, since its importance weights are of its training data).
    name : str, optional
        How warnings name the result (its method label by default).

    Returns
    -------
    arviz.ELPDData
        ``elpd_loo``, ``se``, ``p_loo``, ``n_samples``, ``n_data_points``, ``warning``,
        ``loo_i`` (data,), ``pareto_k`` (data,), ``scale`` ("log"), ``good_k``.

    Raises
    ------
    PointMassError
        For a point-mass fit.
    ValueError
        For one datum, a variational fit without its importance terms, or one scored on data
        other than its training data.
    """
    idata = _as_inference_data(result, data)
    attributes = _attributes(idata)
    label = name or attributes.get(METHOD, "this result")
    log_likelihood = _pointwise(idata)  # (S, N)
    if _is_point_mass(idata, log_likelihood):
        raise PointMassError(point_mass_message(label))
    datum = attributes.get(DATUM, "datum")
    if log_likelihood.shape[1] < 2:
        raise ValueError(
            f"PSIS-LOO of {label} over {log_likelihood.shape[1]} {datum}: leaving out the only {datum} "
            f"leaves no data, so there is nothing to cross-validate or rank. For one long "
            "sequence, compare models by the log-likelihood of a held-out stretch of it "
            "(data.split_time(), then fit.log_prob(test)), or fit several sequences."
        )
    arviz = _arviz()
    if attributes.get(POSTERIOR_KIND) == "approximate":
        scores = _approximate_loo(idata, log_likelihood, label)
    else:
        with warnings.catch_warnings():
            # zoo warns itself below, naming the fit and counting the data (ParetoKWarning).
            warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto", category=UserWarning)
            scores = arviz.loo(idata, pointwise=True)
    _warn_pareto(scores, label, datum)
    return scores


def _approximate_loo(idata: Any, log_likelihood: np.ndarray, label: str) -> Any:
    """PSIS-LOO of importance-weighted draws of an approximate posterior (see :func:`loo`)."""
    attributes = _attributes(idata)
    stats = getattr(idata, "sample_stats", None)
    if stats is None or any(term not in stats for term in ("log_prior", "log_guide")):
        raise ValueError(
            f"PSIS-LOO of {label}: its draws come from a variational approximation q, not the "
            "posterior, and it holds no importance weights log p - log q to correct them (a "
            "guide zoo cannot trace under a plate of draws, or a fit saved before they were "
            "kept). Refit, use NUTS, or compare by held-out log-likelihood."
        )
    if not attributes.get(TRAINING_DATA):
        raise ValueError(
            f"PSIS-LOO of {label}: a variational fit's importance weights are those of its "
            "training data; LOO is of the training data (call it with data=None)."
        )
    arviz = _arviz()
    log_prior = stats["log_prior"].values.reshape(-1).astype(np.float64)  # (S,)
    log_guide = stats["log_guide"].values.reshape(-1).astype(np.float64)
    log_weight = log_prior + log_likelihood.sum(1) - log_guide  # (S,) log p(theta, x) - log q(theta)
    num_draws, num_data = log_likelihood.shape
    # (N, S): ArviZ smooths along the last axis; shifting each row by its max changes nothing
    # after normalisation and keeps the exponentials finite.
    ratios = log_weight[None, :] - log_likelihood.T
    ratios = ratios - ratios.max(1, keepdims=True)
    smoothed, pareto_k = arviz.psislw(ratios, reff=1.0)
    loo_i = _logsumexp(smoothed + log_likelihood.T)  # (N,)
    posterior_weights, _ = arviz.psislw((log_weight - log_weight.max())[None, :], reff=1.0)
    lppd = float(_logsumexp(posterior_weights + log_likelihood.T).sum())
    elpd = float(loo_i.sum())
    good_k = min(1 - 1 / math.log10(num_draws), PARETO_K_THRESHOLD)
    coordinates = {"datum": np.arange(num_data)}
    return arviz.ELPDData(
        data=[
            elpd,
            float((num_data * np.var(loo_i)) ** 0.5),
            lppd - elpd,
            num_draws,
            num_data,
            bool((pareto_k > good_k).any()),
            _data_array(loo_i, coordinates, "loo_i"),
            _data_array(np.asarray(pareto_k), coordinates, "pareto_shape"),
            "log",
            good_k,
        ],
        index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning", "loo_i", "pareto_k", "scale", "good_k"],
    )


def _logsumexp(values: np.ndarray) -> np.ndarray:
    """log sum exp over the last axis."""
    top = values.max(-1, keepdims=True)
    return (top + np.log(np.exp(values - top).sum(-1, keepdims=True)))[..., 0]


def _data_array(values: np.ndarray, coordinates: dict[str, np.ndarray], name: str) -> Any:
    import xarray  # installed with arviz; a DataArray as az.loo returns its pointwise values

    return xarray.DataArray(values, coords=coordinates, dims=["datum"], name=name)


def _warn_pareto(scores: Any, label: str, datum: str) -> None:
    pareto_k = np.asarray(scores["pareto_k"]).reshape(-1)
    threshold = float(scores["good_k"])
    high = int((pareto_k > threshold).sum())
    if high:
        warnings.warn(
            f"PSIS-LOO of {label}: Pareto k > {threshold:.2f} for {high} of {pareto_k.size} {datum}s "
            f"(max {np.nanmax(pareto_k):.2f}); their LOO terms, and elpd_loo, are unreliable. Use "
            "more draws, a posterior closer to the truth (NUTS, a richer guide), K-fold or "
            "held-out scoring.",
            ParetoKWarning,
            stacklevel=3,
        )


def _as_inference_data(result: "ToArviz | Any", data: Any = None) -> Any:
    """``result`` if it is an InferenceData, else its ``to_arviz(data)`` without replicates."""
    if not isinstance(result, _arviz().InferenceData):
        result = result.to_arviz(data, posterior_predictive=False)
    return result


def compare(results: dict[str, "ToArviz | Any"], data: Any = None, **options: Any) -> pd.DataFrame:
    """``az.compare`` of several fits (or InferenceData) by LOO on exact marginal likelihoods.

    Each is scored by :func:`loo` (so a point-mass fit is refused, a variational fit is
    importance-weighted, and a high Pareto k is warned of, naming the fit), unless given as
    the ``ELPDData`` that :func:`loo` returns, then ranked by ``az.compare``; ``options`` go
    to it.
    """
    arviz = _arviz()
    scores = {
        name: result if isinstance(result, arviz.ELPDData) else loo(result, data, name=name)
        for name, result in results.items()
    }
    return arviz.compare(scores, **options)


def to_netcdf(idata: Any, path: Any) -> None:
    """Write an InferenceData to a NetCDF file."""
    idata.to_netcdf(str(path))
