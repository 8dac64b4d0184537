"""Smoke tests of zoo.plots and zoo.report on small, quick fits of Old Faithful."""

from __future__ import annotations

import math
from collections.abc import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

import zoo  # noqa: E402
from zoo import plots, report  # noqa: E402

Split = tuple[zoo.Dataset, zoo.Dataset]


@pytest.fixture(scope="module")
def split() -> Split:
    return zoo.datasets.load("old_faithful").split(test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def map_fit(split: Split) -> zoo.Fit:
    train, _ = split
    method = zoo.SVI(guide="delta", num_steps=10, num_posterior_samples=20, progress=False)
    return zoo.fit(zoo.models.GaussianMixture(2), train, method)


@pytest.fixture(scope="module")
def normal_fit(split: Split) -> zoo.Fit:
    train, _ = split
    method = zoo.SVI(guide="normal", num_steps=20, num_posterior_samples=30, progress=False)
    return zoo.fit(zoo.models.GaussianMixture(2, covariance="diag"), train, method)


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def ellipses(ax: Axes) -> list[Ellipse]:
    return [patch for patch in ax.patches if isinstance(patch, Ellipse)]


# --------------------------------------------------------------------------- plot_mixture
def test_plot_mixture_map_has_one_ellipse_per_component(map_fit: zoo.Fit) -> None:
    ax = plots.plot_mixture(map_fit, num_draws=5)
    assert isinstance(ax, Axes)
    # A MAP fit's draws all equal its point: no faint ellipses.
    assert len(ellipses(ax)) == 2
    assert len(ax.collections) == 1 and len(ax.collections[0].get_offsets()) == len(map_fit.train)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert sum("w = " in label for label in labels) == 2
    assert ax.get_xlabel() == "eruptions" and ax.get_ylabel() == "waiting"
    assert ax.get_title() == "svi:delta"


def test_plot_mixture_draws_and_diag_covariance(normal_fit: zoo.Fit, split: Split) -> None:
    _, test = split
    fig, ax = plt.subplots()
    returned = plots.plot_mixture(normal_fit, test, ax=ax, num_draws=4, title="diag")
    assert returned is ax and ax.get_title() == "diag"
    assert len(ellipses(ax)) == 2 + 4 * 2
    assert len(ax.collections[0].get_offsets()) == len(test)
    for patch in ellipses(ax):  # a diagonal covariance has axis-aligned ellipses
        assert math.sin(math.radians(2 * patch.angle)) == pytest.approx(0, abs=1e-6)


def test_plot_mixture_refuses_data_it_cannot_draw(map_fit: zoo.Fit) -> None:
    with pytest.raises(ValueError, match=r"one or two features, shape \(N, 1\) or \(N, 2\)"):
        plots.plot_mixture(map_fit, torch.zeros(10, 3))
    with pytest.raises(ValueError, match="data have 1 feature.* fitted to 2"):
        plots.plot_mixture(map_fit, torch.zeros(10, 1))


def test_plot_mixture_of_one_feature_draws_weighted_densities() -> None:
    """1-D data: a histogram, one weighted density per component and their sum, which integrates
    to about 1 over the plotted range (the data's range widened by 10% each side)."""
    data = zoo.datasets.load("galaxies")
    fit = zoo.fit(zoo.models.GaussianMixture(3), data, zoo.SVI(guide="delta", progress=False))
    ax = plots.plot_mixture(fit)
    lines = ax.get_lines()
    assert len(lines) == 4 and lines[-1].get_label() == "mixture"
    grid, total = lines[-1].get_xdata(), lines[-1].get_ydata()
    assert sum(line.get_ydata() for line in lines[:3]) == pytest.approx(total)
    assert float(((total[1:] + total[:-1]) / 2 * (grid[1:] - grid[:-1])).sum()) == pytest.approx(1.0, abs=0.02)
    assert len(ax.patches) > 0  # the histogram's bars


# --------------------------------------------------------------------------- plot_losses
# --------------------------------------------------------------------------- plot_density
def test_plot_density_draws_the_mixture_density_over_the_data(map_fit: zoo.Fit) -> None:
    """The contours' top is the density's maximum over the drawn grid, computed here from the
    point estimate with torch's own mixture distribution; the box covers the data (nearly all
    of the mass: the grid's Riemann sum is between 0.95 and 1)."""
    ax = plots.plot_density(map_fit, grid_size=60)
    contours = ax.collections[0]
    (left, right), (bottom, top) = ax.get_xlim(), ax.get_ylim()
    first, second = torch.linspace(left, right, 60), torch.linspace(bottom, top, 60)
    grid = torch.cartesian_prod(first, second)
    point = map_fit.point
    covariance_root = point["scales"].unsqueeze(-1) * point["corr_cholesky"]
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(point["weights"]),
        torch.distributions.MultivariateNormal(point["locs"], scale_tril=covariance_root))
    density = mixture.log_prob(grid).exp()
    assert contours.zmax == pytest.approx(float(density.max()), rel=1e-4)
    cell = float((first[1] - first[0]) * (second[1] - second[0]))
    assert 0.95 < float(density.sum()) * cell <= 1.0
    x = map_fit.train.x
    assert left < float(x[:, 0].min()) and right > float(x[:, 0].max())
    assert len(ax.collections[-1].get_offsets()) == len(map_fit.train)


def test_plot_density_refuses_models_without_density_and_other_shapes(map_fit: zoo.Fit) -> None:
    gan = zoo.fit(zoo.models.GAN(latent_dim=2, hidden_sizes=[4]), torch.randn(20, 2),
                  zoo.Adversarial(num_steps=1, batch_size=10, progress=False))
    with pytest.raises(ValueError, match="GAN has none"):
        plots.plot_density(gan)
    with pytest.raises(ValueError, match=r"two features, shape \(N, 2\)"):
        plots.plot_density(map_fit, torch.zeros(10, 3))
    with pytest.raises(ValueError, match="grid_size"):
        plots.plot_density(map_fit, grid_size=1)


def test_plot_losses_one_line_per_svi_fit(map_fit: zoo.Fit, normal_fit: zoo.Fit) -> None:
    no_losses = map_fit.replace(losses=torch.zeros(0))  # as an MCMC fit has
    ax = plots.plot_losses({"map": map_fit, "normal": normal_fit, "mcmc": no_losses})
    assert len(ax.get_lines()) == 2
    assert len(ax.get_lines()[1].get_xdata()) == len(normal_fit.losses)
    assert ax.get_xscale() == "log"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0].startswith("map") and labels[1].startswith("normal")


def test_plot_losses_with_no_svi_fit(map_fit: zoo.Fit) -> None:
    ax = plots.plot_losses({"mcmc": map_fit.replace(losses=torch.zeros(0))})
    assert len(ax.get_lines()) == 0


# --------------------------------------------------------------------------- plot_samples
def test_plot_samples_two_scatters(map_fit: zoo.Fit, split: Split) -> None:
    train, _ = split
    ax = plots.plot_samples(map_fit, train, num_samples=50, seed=1)
    sizes = [len(collection.get_offsets()) for collection in ax.collections]
    assert sizes == [len(train), 50]
    colors = {tuple(collection.get_facecolor()[0][:3]) for collection in ax.collections}
    assert len(colors) == 2


# --------------------------------------------------------------------------- comparison_table
def test_comparison_table_rows_and_columns(
    map_fit: zoo.Fit, normal_fit: zoo.Fit, split: Split
) -> None:
    _, test = split
    mcmc = map_fit.replace(
        losses=torch.zeros(0), diagnostics={"max_rhat": 1.01, "num_divergences": 3}
    )
    table = report.comparison_table({"map": map_fit, "normal": normal_fit, "nuts": mcmc}, test)
    assert list(table.index) == ["map", "normal", "nuts"]
    assert tuple(table.columns) == report.COLUMNS
    assert table.loc["map", "method"] == "svi:delta"
    assert table.loc["map", "final_loss"] == pytest.approx(float(map_fit.losses[-1]))
    window = max(1, len(normal_fit.losses) // 10)
    expected = float(normal_fit.losses[-window:].mean())
    assert table.loc["normal", "final_loss"] == pytest.approx(expected, rel=1e-6)
    assert math.isnan(table.loc["nuts", "final_loss"])
    expected = float(normal_fit.log_prob(test).mean())
    assert table.loc["normal", "test_log_lik"] == pytest.approx(expected)
    assert math.isnan(table.loc["map", "max_rhat"]) and table.loc["nuts", "max_rhat"] == 1.01
    assert table.loc["nuts", "divergences"] == 3
    assert table["divergences"].isna().sum() == 2
    assert (table["wall_time_s"] > 0).all()
