"""Matplotlib figures that more than one notebook or command uses.

Every function draws on a given ``matplotlib.axes.Axes`` (or on a new small figure when none is
given) and returns the axes, so figures compose into grids. Figures are kept small (5 x 4 inches
at 80 dpi) so that notebooks committed with their outputs stay small.

No arviz here: ArviZ's own plots are called directly on ``fit.to_arviz()`` (see
:mod:`zoo.diagnostics`). Matplotlib is imported when the first figure is drawn, not with this
module: ``zoo``'s command line imports this module, and pyplot takes seconds to import, which a
``zoo fit`` without ``--out`` (no figure) should not pay.

Functions
---------
plot_mixture
    Data, and the 2-sd covariance ellipses of each component of a Gaussian mixture fit: bold at
    the point estimate, faint for random posterior draws.
plot_density
    Filled contours of an explicit model's density over a 2-D grid, with the data (toy
    densities: mixtures, Naive Bayes, flows, VAEs, diffusion models).
plot_losses
    Loss per datum against step for several SVI fits.
plot_samples
    New samples from a fit drawn over the data.
plot_marginals
    Several fits' marginal posteriors of chosen scalars over a reference's (``zoo.compare``).
plot_sbc_ranks
    Rank histograms of simulation-based calibration (``zoo.sbc``) with a 99% band.
plot_model_selection
    LOO and held-out log-likelihood against the number of components or states (``zoo.select``).
"""

from __future__ import annotations

import functools
import math
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from zoo.checks import check_positive_float, check_positive_int
from zoo.datasets.dataset import Dataset, as_dataset
from zoo.results import Fit

if TYPE_CHECKING:  # for annotations only: matplotlib itself is imported on first use
    from matplotlib.axes import Axes
    from matplotlib.patches import Ellipse

__all__ = ["plot_mixture", "plot_density", "plot_losses", "plot_samples", "plot_marginals", "plot_sbc_ranks", "plot_model_selection", "FIGSIZE", "DPI"]

#: Default size (inches) and resolution of a figure made by this module.
FIGSIZE: tuple[float, float] = (5.0, 4.0)
DPI: int = 80

#: Colours of the data and of generated samples.
DATA_COLOR = "0.55"
SAMPLE_COLOR = "tab:orange"


@functools.cache
def _pyplot() -> ModuleType:
    """matplotlib.pyplot, imported on the first figure (see the module docs)."""
    import matplotlib.pyplot  # heavy (seconds): imported when a figure is first drawn

    return matplotlib.pyplot


def _axes(ax: Axes | None) -> Axes:
    """``ax``, or the axes of a new small figure."""
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=FIGSIZE, dpi=DPI)
    return ax


def _dataset(fit: Fit, data: Any) -> Dataset:
    """``data`` as a Dataset, defaulting to the fit's training data."""
    return fit.train if data is None else as_dataset(data)


def _numpy(value: torch.Tensor) -> np.ndarray:
    return value.detach().cpu().numpy()


def _feature_names(data: Dataset, fit: "Fit | None" = None) -> list[str]:
    names = data.feature_names or (fit.train.feature_names if fit is not None else None)
    if names:
        return [str(name) for name in names]
    return [f"feature {index}" for index in range(data.x.shape[-1])]


def _covariances(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Covariance matrices (..., K, D, D) from ``scales`` and, if present, ``corr_cholesky``."""
    scales = params["scales"]
    if "corr_cholesky" in params:
        tril = scales.unsqueeze(-1) * params["corr_cholesky"]
        return tril @ tril.transpose(-1, -2)
    return torch.diag_embed(scales**2)


def _ellipse(loc: np.ndarray, covariance: np.ndarray, num_sd: float, **style: Any) -> Ellipse:
    """The ellipse {x : (x - loc)^T covariance^-1 (x - loc) = num_sd^2} as a patch."""
    from matplotlib.patches import Ellipse  # matplotlib on first use (module docs)

    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    angle = math.degrees(math.atan2(eigenvectors[1, -1], eigenvectors[0, -1]))
    width, height = 2 * num_sd * np.sqrt(eigenvalues[::-1])
    return Ellipse(tuple(loc), width=width, height=height, angle=angle, fill=False, **style)


def plot_mixture(
    fit: Fit,
    data: Any = None,
    ax: Axes | None = None,
    num_draws: int = 20,
    title: str | None = None,
    num_sd: float = 2.0,
    seed: int = 0,
) -> Axes:
    """Data and the covariance ellipses of each component of a 2-D Gaussian mixture fit; for
    1-D data, a histogram and the weighted component densities.

    Each component k is drawn as the ellipse at ``num_sd`` standard deviations (Mahalanobis
    distance) around its location: a bold one for the point estimate ``fit.point`` and faint
    ones for ``num_draws`` posterior draws chosen at random, whose spread shows the posterior
    uncertainty (a MAP fit's draws all coincide with its point, so it has none). The legend gives
    each component's weight at the point estimate.

    Parameters
    ----------
    fit : zoo.Fit
        A fit of ``zoo.models.GaussianMixture`` (full or diagonal covariance).
    data : Dataset, tensor or array, optional
        The points to scatter, shape (N, 2), or to histogram, shape (N, 1); default the fit's
        training data.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new 5 x 4 inch figure.
    num_draws : int
        Posterior draws whose ellipses (1-D: mixture densities) are drawn faintly (0 for none).
    title : str, optional
        Axes title; default the fit's method name.
    num_sd : float
        Size of the ellipses in standard deviations.
    seed : int
        Seed for choosing the draws.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        If the data are not points of one or two features (shape (N, 1) or (N, 2)) or the fit
        is not of a Gaussian mixture.
    """
    dataset = _dataset(fit, data)
    if dataset.x.dim() != 2 or dataset.x.shape[-1] not in (1, 2):
        raise ValueError(
            f"plot_mixture draws points of one or two features, shape (N, 1) or (N, 2); got shape {tuple(dataset.x.shape)}"
        )
    if not {"weights", "locs", "scales"} <= set(fit.point):
        raise ValueError(
            "plot_mixture needs a Gaussian mixture fit (sites weights, locs, scales); "
            f"this fit has sites {sorted(fit.point)}"
        )
    if fit.point["locs"].shape[-1] != dataset.x.shape[-1]:
        raise ValueError(
            f"data have {dataset.x.shape[-1]} feature(s) but the mixture was fitted to {fit.point['locs'].shape[-1]}"
        )
    if num_draws < 0:
        raise ValueError(f"num_draws must be non-negative, got {num_draws}")
    ax = _axes(ax)
    if dataset.x.shape[-1] == 1:
        return _plot_mixture_1d(fit, dataset, ax, num_draws, title, seed)
    x = _numpy(dataset.x)
    ax.scatter(x[:, 0], x[:, 1], s=8, color=DATA_COLOR, alpha=0.7, linewidths=0, label="data")

    point = {name: value.detach() for name, value in fit.point.items()}
    locs = _numpy(point["locs"])
    weights = _numpy(point["weights"])
    covariances = _numpy(_covariances(point))
    num_components = locs.shape[0]
    colors = [f"C{k % 10}" for k in range(num_components)]

    if num_draws:
        flat = {
            name: value.detach().reshape((-1,) + value.shape[2:])
            for name, value in fit.draws.items()
        }
        total = flat["locs"].shape[0]
        generator = torch.Generator().manual_seed(int(seed))
        chosen = torch.randperm(total, generator=generator)[: min(num_draws, total)]
        draws = {name: value[chosen] for name, value in flat.items()}
        draw_locs = _numpy(draws["locs"])
        draw_covariances = _numpy(_covariances(draws))
        varies = not (np.allclose(draw_locs, locs) and np.allclose(draw_covariances, covariances))
        if varies:
            for s in range(draw_locs.shape[0]):
                for k in range(num_components):
                    ax.add_patch(
                        _ellipse(draw_locs[s, k], draw_covariances[s, k], num_sd,
                                 color=colors[k], linewidth=0.6, alpha=0.25)
                    )

    for k in range(num_components):
        ax.add_patch(
            _ellipse(locs[k], covariances[k], num_sd, color=colors[k], linewidth=2.0,
                     label=f"component {k}: w = {weights[k]:.2f}")
        )
        ax.plot(locs[k, 0], locs[k, 1], marker="x", color=colors[k], markersize=7, mew=2)

    names = _feature_names(dataset, fit)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(fit.method_name if title is None else title)
    ax.legend(loc="best", fontsize="small", frameon=False)
    ax.autoscale_view()
    return ax


def _plot_mixture_1d(fit: Fit, dataset: Dataset, ax: Axes, num_draws: int, title: str | None, seed: int) -> Axes:
    """:func:`plot_mixture` for one feature: a density histogram of the data, each component's
    weighted density ``w_k N(x | mu_k, sigma_k)`` at the point estimate, their sum (the mixture),
    and faint mixture densities of ``num_draws`` posterior draws."""
    x = _numpy(dataset.x)[:, 0]
    ax.hist(x, bins=min(40, max(10, len(x) // 5)), density=True, color=DATA_COLOR, alpha=0.5, label="data")
    span = x.max() - x.min() or 1.0
    grid = np.linspace(x.min() - 0.1 * span, x.max() + 0.1 * span, 400)

    def weighted_densities(weights: np.ndarray, locs: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """(..., K) parameters -> (..., K, 400) weighted component densities on the grid."""
        standardised = (grid - locs[..., None]) / scales[..., None]
        return weights[..., None] * np.exp(-0.5 * standardised**2) / (scales[..., None] * math.sqrt(2 * math.pi))

    if num_draws:
        flat = {name: _numpy(value.detach().reshape((-1,) + value.shape[2:])) for name, value in fit.draws.items()}
        generator = torch.Generator().manual_seed(int(seed))
        chosen = torch.randperm(len(flat["locs"]), generator=generator)[: min(num_draws, len(flat["locs"]))].numpy()
        totals = weighted_densities(flat["weights"][chosen], flat["locs"][chosen, :, 0], flat["scales"][chosen, :, 0]).sum(-2)
        if not np.allclose(totals, totals[0]):  # a point mass's draws coincide: nothing to show
            for total in totals:
                ax.plot(grid, total, color="black", linewidth=0.6, alpha=0.2)
    point = {name: _numpy(value.detach()) for name, value in fit.point.items()}
    components = weighted_densities(point["weights"], point["locs"][:, 0], point["scales"][:, 0])
    for k, density in enumerate(components):
        ax.plot(grid, density, color=f"C{k % 10}", linewidth=1.5, label=f"component {k}: w = {point['weights'][k]:.2f}")
    ax.plot(grid, components.sum(0), color="black", linewidth=2.0, label="mixture")
    ax.set_xlabel(_feature_names(dataset, fit)[0])
    ax.set_ylabel("density")
    ax.set_title(fit.method_name if title is None else title)
    ax.legend(loc="best", fontsize="small", frameon=False)
    return ax


def plot_density(
    fit: Fit,
    data: Any = None,
    ax: Axes | None = None,
    grid_size: int = 80,
    margin: float = 0.15,
    title: str | None = None,
    **options: Any,
) -> Axes:
    """Filled contours of ``exp(fit.log_prob)`` over a 2-D grid that covers the data, the data on top.

    For a model whose ``log_prob`` is a lower bound (a VAE's IWAE estimate, a diffusion model's
    ELBO), the contours are those of ``exp(bound)``, which integrates to at most 1; say so in
    ``title``.

    Parameters
    ----------
    fit : zoo.Fit
        A fit of an explicit model (``fit.model.capability("log_prob")``) to data of two features.
    data : Dataset, tensor or array, optional
        Points drawn over the contours and whose range (widened by ``margin`` of its span on each
        side) the grid covers, shape (N, 2); default: the training data.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new 5 x 4 inch figure.
    grid_size : int
        Grid points per axis: ``fit.log_prob`` is evaluated at ``grid_size ** 2`` points.
    margin : float
        Fraction of the data's span added on each side.
    title : str, optional
        Default: the model's name and the method.
    **options
        Passed to ``fit.log_prob`` (e.g. ``num_particles=K``).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        If the model has no density (a GAN), or the data do not have two features.
    """
    check_positive_int(grid_size, "grid_size", minimum=2)
    check_positive_float(margin, "margin", allow_zero=True)
    if not fit.model.capability("log_prob"):
        raise ValueError(f"plot_density needs a model with a density; {type(fit.model).__name__} has none "
                         "(draw its samples with plot_samples)")
    dataset = _dataset(fit, data)
    if dataset.x.dim() != 2 or dataset.x.shape[1] != 2:
        raise ValueError(f"plot_density draws data of two features, shape (N, 2); got shape {tuple(dataset.x.shape)}")
    x = _numpy(dataset.x)
    low, high = x.min(0), x.max(0)
    low, high = low - margin * (high - low), high + margin * (high - low)
    first, second = (torch.linspace(float(low[axis]), float(high[axis]), grid_size) for axis in range(2))
    grid = torch.cartesian_prod(first, second)  # (grid_size ** 2, 2), the second feature fastest
    with torch.no_grad():
        density = fit.log_prob(grid, **options).exp().reshape(grid_size, grid_size).T  # (second, first)
    ax = _axes(ax)
    ax.contourf(_numpy(first), _numpy(second), _numpy(density), levels=12, cmap="Blues")
    ax.scatter(x[:, 0], x[:, 1], s=2, color="black", alpha=0.3, linewidths=0)
    names = _feature_names(dataset, fit)
    ax.set(xlabel=names[0], ylabel=names[1], xlim=(low[0], high[0]), ylim=(low[1], high[1]))
    ax.set_title(title if title is not None else f"{type(fit.model).__name__} density ({fit.method_name})")
    return ax


def plot_losses(fits: dict[str, Fit], ax: Axes | None = None) -> Axes:
    """Loss per datum against optimisation step, one line per SVI fit.

    Fits with no loss history (MCMC, exact posteriors) are skipped. The step axis is
    logarithmic, so a fast start and a slow finish are both visible.

    Parameters
    ----------
    fits : dict of str to zoo.Fit
        Label -> fit.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new 5 x 4 inch figure.

    Returns
    -------
    matplotlib.axes.Axes
        With one line per fit that has a loss history.
    """
    ax = _axes(ax)
    ends, starts = [], []
    for label, fit in fits.items():
        losses = _numpy(fit.losses).reshape(-1)
        if losses.size == 0:
            continue
        steps = np.arange(1, losses.size + 1)
        ax.plot(steps, losses, linewidth=1.2, label=f"{label} ({losses.size} steps)")
        ends.append(losses[-50:])
        starts.append(losses[0])
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss per datum (-ELBO / N)")
    ax.set_title("SVI loss")
    if not ends:
        ax.text(0.5, 0.5, "no loss history (no SVI fit)", ha="center", va="center",
                transform=ax.transAxes)
        return ax
    ax.legend(fontsize="small", frameon=False)
    # Early losses can be orders of magnitude above the final ones: frame the ends of the
    # curves and let the start run off the top of the axes.
    end = np.concatenate(ends)
    end = end[np.isfinite(end)]
    if end.size:
        low, high = float(end.min()), float(end.max())
        span = max(high - low, 0.05 * max(abs(high), 1e-3))
        top = float(np.nanmax(starts)) if np.isfinite(np.nanmax(starts)) else high
        ax.set_ylim(low - 0.5 * span, max(min(top, high + 4 * span), high + 0.5 * span))
    return ax


def plot_samples(
    fit: Fit,
    data: Any,
    num_samples: int = 500,
    ax: Axes | None = None,
    seed: int = 0,
) -> Axes:
    """New samples from the fitted model drawn over the data.

    Two features or more: a scatter of the first two. One feature: overlaid histograms.

    Parameters
    ----------
    fit : zoo.Fit
        Any fit that can ``sample``.
    data : Dataset, tensor or array
        The data to compare with, shape (N, D).
    num_samples : int
        Samples drawn with ``fit.sample(num_samples, seed=seed)``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new 5 x 4 inch figure.
    seed : int

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        If the data are not tabular (shape (N, D)).
    """
    dataset = as_dataset(data)
    if dataset.x.dim() != 2:
        raise ValueError(
            f"plot_samples draws tabular data, shape (N, D); got shape {tuple(dataset.x.shape)}"
        )
    samples = _numpy(fit.sample(num_samples, seed=seed)).reshape(num_samples, -1)
    x = _numpy(dataset.x)
    names = _feature_names(dataset, fit)
    ax = _axes(ax)
    if x.shape[1] == 1:
        bins = np.histogram_bin_edges(np.concatenate([x[:, 0], samples[:, 0]]), bins=30)
        ax.hist(x[:, 0], bins=bins, density=True, color=DATA_COLOR, alpha=0.6,
                label=f"data ({len(x)})")
        ax.hist(samples[:, 0], bins=bins, density=True, histtype="step", color=SAMPLE_COLOR,
                linewidth=1.5, label=f"samples ({num_samples})")
        ax.set_xlabel(names[0])
        ax.set_ylabel("density")
    else:
        ax.scatter(x[:, 0], x[:, 1], s=10, color=DATA_COLOR, alpha=0.8, linewidths=0,
                   label=f"data ({len(x)})")
        ax.scatter(samples[:, 0], samples[:, 1], s=6, color=SAMPLE_COLOR, alpha=0.5,
                   linewidths=0, label=f"samples ({num_samples})")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    ax.set_title(f"new data from {fit.method_name}")
    ax.legend(fontsize="small", frameon=False, markerscale=2)
    return ax


def _scalar_draws(fit: Fit, parameter: str) -> np.ndarray:
    """All draws of one scalar named like "loc[0,1]" (or "sigma"): a flat array."""
    name, _, rest = parameter.partition("[")
    if name not in fit.draws:
        raise ValueError(f"parameters: {parameter!r} names no site of this fit; sites: {', '.join(fit.draws)}")
    value = fit.draws[name].detach()
    value = value.reshape((-1,) + value.shape[2:])
    index = tuple(int(i) for i in rest.rstrip("]").split(",") if i.strip()) if rest else ()
    if len(index) != value.dim() - 1:
        raise ValueError(f"parameters: {parameter!r} needs {value.dim() - 1} indices for site {name!r} of shape {tuple(value.shape[1:])}")
    return _numpy(value[(slice(None),) + index]).astype(float)


def plot_marginals(
    fits: dict[str, Fit],
    parameters: list[str],
    reference: "Fit | None" = None,
    axes: Any = None,
    bins: int = 40,
) -> np.ndarray:
    """Each fit's marginal posterior of chosen scalars, overlaid on a reference's.

    Parameters
    ----------
    fits : dict of str to zoo.Fit
        Label -> fit (e.g. the fits of ``zoo.compare(..., return_fits=True)``).
    parameters : list of str
        Scalars named "site[i,j]" ("loc[0,1]", "weights[2]"), or "site" for a scalar site.
    reference : zoo.Fit, optional
        Drawn as a filled grey histogram under the others.
    axes : array of Axes, optional
        One per parameter; default a row of new small axes.
    bins : int
        Histogram bins, shared by every fit on one axes.

    Returns
    -------
    numpy array of Axes, shape (len(parameters),)
        Step histograms (density) per fit; a fit whose draws do not vary (a point mass, the
        delta guide) is a vertical line.
    """
    if not parameters:
        raise ValueError("parameters must name at least one scalar, e.g. ['loc[0,0]']")
    if axes is None:
        _, axes = _pyplot().subplots(1, len(parameters), figsize=(3.2 * len(parameters), 2.8), dpi=DPI, squeeze=False)
    axes = np.asarray(axes).reshape(-1)
    if len(axes) != len(parameters):
        raise ValueError(f"axes: got {len(axes)} axes for {len(parameters)} parameters")
    colors = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, parameter in zip(axes, parameters):
        series = {label: _scalar_draws(fit, parameter) for label, fit in fits.items()}
        pooled = np.concatenate(list(series.values()) + ([_scalar_draws(reference, parameter)] if reference is not None else []))
        low, high = np.quantile(pooled, [0.002, 0.998])
        edges = np.linspace(low, high, bins + 1) if high > low else bins
        if reference is not None:
            ax.hist(_scalar_draws(reference, parameter), bins=edges, density=True, color="0.8", label=f"reference ({reference.method_name})")
        for number, (label, values) in enumerate(series.items()):
            color = colors[number % len(colors)]
            if np.ptp(values) <= 1e-9 * (1 + abs(values[0])):
                ax.axvline(values[0], color=color, lw=1.5, label=label)
            else:
                ax.hist(values, bins=edges, density=True, histtype="step", color=color, lw=1.3, label=label)
        ax.set_title(parameter, fontsize="medium")
        ax.set_yticks([])
    axes[0].legend(fontsize="x-small", frameon=False)
    return axes


def plot_sbc_ranks(result: Any, parameters: list[str] | None = None, num_bins: int | None = None, axes: Any = None, columns: int = 4) -> np.ndarray:
    """Rank histograms of simulation-based calibration (:func:`zoo.sbc`), with a 99% band.

    Parameters
    ----------
    result : zoo.sbc.SBCResult
    parameters : list of str, optional
        Scalars to draw ("loc[0,1]"); default all.
    num_bins : int, optional
        Default ``result.default_bins()``.
    axes : array of Axes, optional
        One per parameter; default a grid of ``columns`` columns.
    columns : int

    Returns
    -------
    numpy array of Axes, shape (len(parameters),)
        The grey band is where each bin's count falls with probability 0.99 under uniform ranks
        (normal approximation to the binomial); a U shape means an over-confident method, a hump
        an under-confident one, a slope a biased one. The title carries the chi-square p-value.
    """
    counts, expected = result.histogram(num_bins)
    p_values = result.test(num_bins)["p_value"]
    names = list(counts) if parameters is None else list(parameters)
    unknown = [name for name in names if name not in counts]
    if unknown:
        raise ValueError(f"parameters: no scalars {unknown}; valid: {', '.join(counts)}")
    if axes is None:
        rows = math.ceil(len(names) / columns)
        width = min(columns, len(names))
        _, axes = _pyplot().subplots(rows, width, figsize=(2.4 * width, 2.0 * rows), dpi=DPI, squeeze=False)
        for ax in np.asarray(axes).reshape(-1)[len(names):]:
            ax.set_visible(False)
    axes = np.asarray(axes).reshape(-1)[: len(names)]
    expected_np = _numpy(expected)
    probability = expected_np / result.num_simulations
    half = 2.576 * np.sqrt(result.num_simulations * probability * (1 - probability))
    positions = np.arange(len(expected_np))
    for ax, name in zip(axes, names):
        ax.fill_between(positions, expected_np - half, expected_np + half, step="mid", color="0.85", lw=0)
        ax.bar(positions, _numpy(counts[name]), width=1.0, color="tab:blue", alpha=0.8)
        ax.set_title(f"{name}  p={p_values[name]:.2g}", fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    return axes


def plot_model_selection(table: Any, ax: Axes | None = None) -> Axes:
    """ELPD-LOO per datum (with its standard error; for a table ranked by LOO) and held-out
    log-likelihood per datum against the number of components / states, from
    :func:`zoo.select`'s table; a dotted line marks the row ranked first."""
    ax = _axes(ax)
    values = np.asarray(table.index, dtype=float)
    num_data = np.asarray(table["num_train"], dtype=float)
    datum = table["datum"].iloc[0] if "datum" in table else "datum"
    if "elpd_loo" in table:
        ax.errorbar(values, table["elpd_loo"] / num_data, yerr=table["elpd_loo_se"] / num_data, marker="o", capsize=3, label=f"LOO (train), per {datum}")
    ax.plot(values, table["test_log_lik"], marker="s", label=f"held-out, per {datum}")
    best = table["rank"].idxmin()
    ax.axvline(float(best), color="0.6", ls=":", lw=1)
    ax.set_xlabel(table.index.name or "value")
    ax.set_ylabel("log predictive density per datum")
    ax.set_xticks(values)
    ax.legend(fontsize="small", frameon=False)
    return ax
