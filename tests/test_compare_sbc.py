"""zoo.compare (method comparison), zoo.sbc (simulation-based calibration) and zoo.select."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import zoo  # noqa: E402
from zoo import comparison, plots, selection  # noqa: E402
from zoo.datasets import simulate  # noqa: E402
from zoo.sbc import SBCResult, chi_square_sf  # noqa: E402

NUM_DRAWS = 99  # L: ranks take the values 0..99, 100 of them, so 20 bins of 5 rank values each


@pytest.fixture(scope="module")
def pilot() -> zoo.Dataset:
    """Fixes Naive Bayes's empirical prior (prior_loc, prior_scale) once for every simulation."""
    return simulate.naive_bayes(num_data=20, num_classes=2, num_features=2, seed=0)


@pytest.fixture(autouse=True)
def close_figures() -> None:
    yield
    plt.close("all")


# ---------------------------------------------------------------------- SBC
def test_chi_square_survival_function_matches_closed_forms() -> None:
    x = torch.tensor([0.1, 1.0, 3.0, 10.0], dtype=torch.float64)
    # df = 2: an exponential with mean 2
    torch.testing.assert_close(chi_square_sf(x, 2), torch.exp(-x / 2))
    # df = 4: exp(-x/2) (1 + x/2)
    torch.testing.assert_close(chi_square_sf(x, 4), torch.exp(-x / 2) * (1 + x / 2))


def test_sbc_of_exact_on_conjugate_naive_bayes_passes_the_uniformity_test(pilot: zoo.Dataset) -> None:
    """The closed-form posterior is correct, so every scalar's ranks are uniform: with 200
    simulations in 20 bins the test passes at a family-wise 1% level (Bonferroni over the 10
    scalars), and the rank sd is within 4 standard errors of (L+1)/sqrt(12)."""
    result = zoo.sbc(
        zoo.models.NaiveBayes(2), zoo.Exact(num_posterior_samples=NUM_DRAWS), 200,
        num_data=20, num_draws=NUM_DRAWS, pilot=pilot,
    )
    assert isinstance(result, SBCResult)
    assert result.num_simulations == 200 and result.method == "exact"
    assert set(result.ranks) == {"weights", "precision", "loc"}
    assert result.ranks["loc"].shape == (200, 2, 2)
    assert int(result.ranks["loc"].min()) >= 0 and int(result.ranks["loc"].max()) <= NUM_DRAWS
    table = result.test()
    assert len(table) == 10 and (table["df"] == 19).all()
    assert result.passed(alpha=0.01), table
    uniform_sd = (NUM_DRAWS + 1) / math.sqrt(12)
    # sd of a sample sd of N uniform values ~ uniform_sd * sqrt(0.8 / (4 N)) (kurtosis 1.8)
    tolerance = 4 * uniform_sd * math.sqrt(0.8 / (4 * 200))
    assert (table["sd_rank"] - uniform_sd).abs().max() < tolerance


def test_sbc_flags_the_delta_guide_as_over_confident(pilot: zoo.Dataset) -> None:
    """A point mass puts every true value below or above all its draws: ranks pile at 0 and L
    (a U shape), so even 20 simulations fail the test, and the rank sd is near L/2, far above the
    uniform (L+1)/sqrt(12)."""
    result = zoo.sbc(zoo.models.NaiveBayes(2), "svi:delta", 20, num_data=20, num_draws=NUM_DRAWS, pilot=pilot)
    table = result.test()
    assert result.method == "svi:delta"
    assert not result.passed(alpha=0.01)
    assert (table["p_value"] < 0.01 / len(table)).all(), table
    assert (table["sd_rank"] > 1.3 * (NUM_DRAWS + 1) / math.sqrt(12)).all()
    flat = torch.cat([ranks.reshape(-1) for ranks in result.ranks.values()])
    assert bool(((flat == 0) | (flat == NUM_DRAWS)).all())
    axes = plots.plot_sbc_ranks(result, parameters=["loc[0,0]", "weights[0]"])
    assert len(axes) == 2 and "p=" in axes[0].get_title()


def test_sbc_gives_the_same_ranks_in_worker_processes(pilot: zoo.Dataset) -> None:
    method = zoo.Exact(num_posterior_samples=NUM_DRAWS)
    serial = zoo.sbc(zoo.models.NaiveBayes(2), method, 4, num_data=20, pilot=pilot, seed=3)
    parallel = zoo.sbc(zoo.models.NaiveBayes(2), method, 4, num_data=20, pilot=pilot, seed=3, processes=2)
    for name in serial.ranks:
        torch.testing.assert_close(serial.ranks[name], parallel.ranks[name])
        torch.testing.assert_close(serial.truth[name], parallel.truth[name])


def test_sbc_refuses_bad_input_before_any_work(pilot: zoo.Dataset) -> None:
    with pytest.raises(ValueError, match="pilot"):
        zoo.sbc(zoo.models.NaiveBayes(2), zoo.Exact(), 10)  # empirical prior not resolved
    with pytest.raises(ValueError, match="num_simulations"):
        zoo.sbc(zoo.models.NaiveBayes(2), zoo.Exact(), 1, pilot=pilot)
    with pytest.raises(ValueError, match="unknown kind"):
        zoo.sbc(zoo.models.NaiveBayes(2), "gibbs", 10, pilot=pilot)
    with pytest.raises(TypeError, match="model"):
        zoo.sbc("naive_bayes", zoo.Exact(), 10)
    with pytest.raises(ValueError, match="does not take"):
        zoo.sbc(zoo.models.GaussianMixture(2), zoo.Exact(), 10, pilot=pilot)


# ---------------------------------------------------------------------- compare
def test_parse_method_reads_short_strings_generically() -> None:
    assert comparison.parse_method("svi:mvn") == zoo.SVI(guide="mvn", progress=False)
    assert comparison.parse_method("svi:iaf:num_steps=300") == zoo.SVI(guide="iaf", num_steps=300, progress=False)
    assert comparison.parse_method("nuts:num_samples=200,num_chains=1") == zoo.NUTS(
        num_samples=200, num_chains=1, progress=False
    )
    assert comparison.parse_method("exact") == zoo.Exact(progress=False)
    given = zoo.SVI(guide="delta")
    assert comparison.parse_method(given) is given
    with pytest.raises(ValueError, match="unknown kind"):
        comparison.parse_method("gibbs")
    with pytest.raises(ValueError, match="no field 'steps'"):
        comparison.parse_method("svi:mvn:steps=3")
    with pytest.raises(ValueError, match="num_steps"):
        comparison.parse_method("svi:mvn:num_steps=0")
    with pytest.raises(TypeError, match="method"):
        comparison.parse_method(3)


def test_comparison_table_has_its_columns_and_exact_scores_zero_against_itself() -> None:
    data = simulate.naive_bayes(num_data=60, num_classes=2, num_features=2, seed=1)
    train, test = data.split(test_fraction=0.25, seed=0)
    model = zoo.models.NaiveBayes(2)
    methods = ["exact", "svi:delta", zoo.NUTS(num_warmup=50, num_samples=100, num_chains=1, progress=False)]
    table, fits, reference = zoo.compare(model, train, test, methods=methods, reference="exact", return_fits=True)
    assert tuple(table.columns) == comparison.COLUMNS
    assert list(table.index) == ["exact", "svi:delta", "nuts"]
    assert table.attrs["reference"] == "exact"
    # the same method with the same seed: the same draws, so exactly zero
    assert table.loc["exact", "mean_error"] == 0.0 and table.loc["exact", "sd_error"] == 0.0
    # a point mass has sd 0: its sd error is exactly 1
    assert table.loc["svi:delta", "sd_error"] == pytest.approx(1.0)
    assert math.isnan(table.loc["exact", "ess_per_s"]) and table.loc["nuts", "ess_per_s"] > 0
    assert table["test_log_lik"].notna().all() and (table["wall_time_s"] > 0).all()
    axes = plots.plot_marginals(fits, ["loc[0,0]", "weights[1]"], reference=reference)
    assert len(axes) == 2


def test_default_reference_of_a_conjugate_model_is_a_longer_exact_run() -> None:
    """Against Exact with 4000 other draws, Exact's 1000 draws differ by Monte Carlo error only:
    about sqrt(1/1000 + 1/4000) = 0.035 sds for means, sqrt(1/2000 + 1/8000) = 0.025 for sds."""
    data = simulate.naive_bayes(num_data=60, num_classes=2, num_features=2, seed=1)
    table = zoo.compare(zoo.models.NaiveBayes(2), data, data, methods=["exact"])
    assert table.attrs["reference"] == "exact"
    assert table.loc["exact", "mean_error"] < 4 * math.sqrt(1 / 1000 + 1 / 4000)
    assert table.loc["exact", "sd_error"] < 4 * math.sqrt(1 / 2000 + 1 / 8000)


def test_compare_refuses_bad_input_before_fitting() -> None:
    data = simulate.naive_bayes(num_data=30, num_classes=2, num_features=2, seed=1)
    with pytest.raises(ValueError, match="methods"):
        zoo.compare(zoo.models.NaiveBayes(2), data, data, methods=[])
    with pytest.raises(ValueError, match="does not take exact"):
        zoo.compare(zoo.models.GaussianMixture(2), data, data, methods=["exact"])
    with pytest.raises(TypeError, match="model"):
        zoo.compare("naive_bayes", data, data, methods=["exact"])


# ---------------------------------------------------------------------- select
def test_select_prefers_the_true_number_of_components() -> None:
    data = simulate.gaussian_mixture(num_data=150, num_components=2, seed=0, separation=6.0)
    train, test = data.split(test_fraction=0.3, seed=0)
    table = zoo.select(
        zoo.models.GaussianMixture, train, test, values=[1, 2], method="svi:mvn:num_steps=300", name="num_components"
    )
    assert tuple(table.columns) == selection.COLUMNS and table.index.name == "num_components"
    assert table["rank"].idxmin() == 2
    assert table.loc[2, "test_log_lik"] > table.loc[1, "test_log_lik"]
    assert table.loc[2, "elpd_loo"] > table.loc[1, "elpd_loo"]
    ax = plots.plot_model_selection(table)
    assert ax.get_xlabel() == "num_components"
    with pytest.raises(ValueError, match="values"):
        zoo.select(zoo.models.GaussianMixture, train, test, values=[2])
