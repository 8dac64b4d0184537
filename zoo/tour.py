"""``zoo tour``: every model fitted on its bundled real data by its methods, in one report.

Each stop of the tour is a function ``(out, fast, progress) -> Section`` in :data:`STOPS`; a new
model adds its stop there (a function decorated ``@_stop``). :func:`run` runs them in order,
prints each comparison table, and writes ``index.md`` (tables and figures), ``summary.csv`` and
the figures into one folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import torch

from zoo.datasets import Dataset
from zoo.datasets import load as load_dataset
from zoo.infer import fit as run_fit
from zoo.infer.methods import NUTS, SVI, Adversarial, Exact
from zoo.infer.runtime import threads
from zoo.metrics import compare_samples, mode_coverage
from zoo.models import GAN, VAE, DirichletProcessMixture, FactorAnalysis, GaussianMixture, HiddenMarkovModel, Mixture, NaiveBayes
from zoo.models.dirichlet_process import clusters_in_use
from zoo.models.naive_bayes import predict
from zoo.models.vae import decode, reconstruct
from zoo.plots import plot_losses, plot_mixture
from zoo.report import comparison_table
from zoo.results import Fit, one_line

__all__ = [
    "Section",
    "STOPS",
    "run",
    "gaussian_mixture_stop",
    "naive_bayes_stop",
    "hidden_markov_stop",
    "variational_autoencoder_stop",
    "gan_stop",
    "classic_families_stop",
]


@dataclass
class Section:
    """One stop of the tour: a heading, a few sentences, a comparison table and figures."""

    title: str
    text: str
    table: pd.DataFrame
    figures: list[str] = field(default_factory=list)


def _pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend (the tour writes figures, shows none).

    Imported here, on the tour's first figure, not with the module: ``zoo``'s command line
    imports this module, and pyplot takes seconds to import.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def _save_figure(figure: Any, path: Path) -> None:
    """Lay ``figure`` out, write it to ``path`` (a small PNG, 80 dpi) and close it."""
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    _pyplot().close(figure)


def _markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' own needs the optional `tabulate`)."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
        return "" if value is pd.NA else str(value)

    header = [table.index.name or ""] + [str(column) for column in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in table.iterrows():
        lines.append("| " + " | ".join([str(label)] + [cell(value) for value in row]) + " |")
    return "\n".join(lines)


#: The stops of the tour, in order.
STOPS: list[Callable[[Path, bool, bool], Section]] = []


def _stop(function: Callable[[Path, bool, bool], Section]) -> Callable[[Path, bool, bool], Section]:
    """Add a stop to :data:`STOPS`, after those defined before it."""
    STOPS.append(function)
    return function


def _flag_note(fit: Fit) -> str:
    """Words for a section's text on whether ``fit``'s chains mixed, read off the fit."""
    if fit.convergence_problem():
        return ": its chains have not mixed, and its row says so (`flags`) rather than ranking it silently"
    return ""


@_stop
def gaussian_mixture_stop(out: Path, fast: bool, progress: bool) -> Section:
    """The Gaussian mixture on Old Faithful by MAP, mean-field, full-rank and NUTS."""
    plt = _pyplot()
    data = load_dataset("old_faithful")
    train, test = data.split(test_fraction=0.2, seed=0)
    model = GaussianMixture(num_components=2)
    steps = 300 if fast else 1500  # the guides converge well before; keeps the whole tour near 5 minutes
    methods = {
        "MAP (delta)": SVI(guide="delta", num_steps=200, progress=progress),
        "mean-field (normal)": SVI(guide="normal", num_steps=steps, learning_rate=0.02, progress=progress),
        "full-rank (mvn)": SVI(guide="mvn", num_steps=steps, learning_rate=0.02, progress=progress),
        "NUTS": NUTS(  # 2 x 500 draws mix (R-hat < 1.01); 2 x 300 were flagged at R-hat 1.02
            num_warmup=50 if fast else 300,
            num_samples=50 if fast else 500,
            num_chains=2,
            progress=progress,
        ),
    }
    fits = {label: run_fit(model, train, method) for label, method in methods.items()}
    table = comparison_table(fits, test)

    figure, axes = plt.subplots(2, 2, figsize=(9, 7.5), sharex=True, sharey=True)
    for ax, (label, fit) in zip(axes.ravel(), fits.items()):
        plot_mixture(fit, train, ax=ax, title=label)
    _save_figure(figure, out / "gmm_ellipses.png")
    figure, ax = plt.subplots(figsize=(5, 4))
    plot_losses({label: fit for label, fit in fits.items() if fit.losses.numel()}, ax=ax)
    _save_figure(figure, out / "gmm_losses.png")
    return Section(
        title="Gaussian mixture: Old Faithful (K = 2)",
        text=(
            f"{len(train)} eruptions for training, {len(test)} held out. Each method fits the same "
            "Pyro model with the assignment of each eruption summed out by enumeration. "
            "`test_log_lik` is the mean held-out log predictive density per eruption (higher is "
            "better); `final_loss` the negative ELBO per eruption."
        ),
        table=table,
        figures=["gmm_ellipses.png", "gmm_losses.png"],
    )


def _attempt_stop(stop: Callable[[Path, bool, bool], Section], out: Path, fast: bool, progress: bool) -> Section:
    """The stop's section or, if one of its fits fails (a ``FitError``), a section saying so:
    one failed stop does not lose the others."""
    try:
        return stop(out, fast, progress)
    except Exception as error:  # noqa: BLE001 - any failure of one stop is that stop's section
        title = stop.__name__.removesuffix("_stop").replace("_", " ")
        message = one_line(error)
        table = pd.DataFrame({"error": [message]}, index=pd.Index([title], name="fit"))
        return Section(title=f"{title} (failed)", text=f"This stop failed: {message}", table=table)


def run(out: Path, fast: bool = False, progress: bool = True) -> list[Section]:
    """Run every stop, print the tables, and write the report into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for stop in STOPS:
        section = _attempt_stop(stop, out, fast, progress)
        sections.append(section)
        print(f"\n== {section.title}\n")
        print(section.table.to_string(float_format=lambda value: f"{value:.4f}"))
    lines = ["# zoo tour", "", "Every model fitted on its bundled real data by each of its methods.", ""]
    if fast:
        lines += ["*Fast setting: small budgets, numbers are rough.*", ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.text, "", _markdown_table(section.table), ""]
        lines += [f"![{name}]({name})" for name in section.figures] + [""]
    (out / "index.md").write_text("\n".join(lines))
    combined = pd.concat({section.title: section.table for section in sections}, names=["section"])
    combined.to_csv(out / "summary.csv")
    return sections


@_stop
def naive_bayes_stop(out: Path, fast: bool, progress: bool) -> Section:
    """Naive Bayes on digits (pixel counts): Exact vs a mean-field guide vs NUTS at a small budget."""
    plt = _pyplot()
    data = load_dataset("digits")
    train, test = data.split(test_fraction=0.2, seed=0)
    model = NaiveBayes(num_classes=10, features="multinomial")
    methods = {
        "Exact": Exact(progress=progress),
        "mean-field (normal)": SVI(
            guide="normal", num_steps=100 if fast else 1500, learning_rate=0.02, progress=progress
        ),
        "NUTS": NUTS(
            num_warmup=10 if fast else 100,
            num_samples=10 if fast else 100,
            num_chains=1,
            max_tree_depth=5 if fast else 6,
            progress=progress,
        ),
    }
    fits = {label: run_fit(model, train, method) for label, method in methods.items()}
    table = comparison_table(fits, test)
    table["test_accuracy"] = [float((predict(fit, test) == test.y).float().mean()) for fit in fits.values()]

    figure, axes = plt.subplots(3, 10, figsize=(10, 3.3))
    for c in range(10):
        samples = fits["Exact"].sample(3, y=c, seed=c)
        for r in range(3):
            axes[r, c].imshow(samples[r].reshape(8, 8).numpy(), cmap="gray_r")
            axes[r, c].axis("off")
        axes[0, c].set_title(str(c))
    _save_figure(figure, out / "naive_bayes_samples.png")
    return Section(
        title="Naive Bayes: digits as pixel counts (10 classes)",
        text=(
            f"{len(train)} labeled digits for training, {len(test)} held out. A multinomial Naive "
            "Bayes with Dirichlet priors: `Exact` is its closed-form posterior, the reference for the "
            f"guide and for NUTS (small budget{_flag_note(fits['NUTS'])}). `test_log_lik` "
            "is the mean held-out log p(x, y) per "
            "digit (labels given); `test_accuracy` classifies the held-out digits from their pixels "
            "alone. The figure shows class-conditional samples, `fit.sample(3, y=c)`."
        ),
        table=table,
        figures=["naive_bayes_samples.png"],
    )


@_stop
def hidden_markov_stop(out: Path, fast: bool, progress: bool) -> Section:
    """Poisson HMMs with 1-4 states on earthquakes (MAP, and NUTS for 3 states), and a Bernoulli
    HMM on the JSB chorales at a small budget."""
    plt = _pyplot()
    earthquakes = load_dataset("earthquakes")
    train, test = earthquakes.split(test_fraction=0.2)  # one sequence: its last 21 years held out
    delta = SVI(guide="delta", num_steps=100 if fast else 500, progress=progress)
    fits = {
        f"earthquakes K={k} (delta)": run_fit(HiddenMarkovModel(k, emission="poisson"), train, delta)
        for k in range(1, 5)
    }
    fits["earthquakes K=3 (NUTS)"] = run_fit(
        HiddenMarkovModel(3, emission="poisson"),
        train,
        NUTS(num_warmup=20 if fast else 200, num_samples=20 if fast else 200, num_chains=1 if fast else 2,
                 max_tree_depth=6, progress=progress),
    )
    table = comparison_table(fits, test)
    jsb_train = load_dataset("jsb_chorales", split="train")
    jsb_test = load_dataset("jsb_chorales", split="test")
    jsb = run_fit(
        HiddenMarkovModel(4 if fast else 8, emission="bernoulli"),
        jsb_train,
        SVI(guide="delta", num_steps=10 if fast else 100, progress=progress),
    )
    jsb_table = comparison_table({f"JSB chorales K={jsb.model.num_states} (delta)": jsb}, jsb_test)
    table = pd.concat([table, jsb_table])

    map_fit = fits["earthquakes K=3 (delta)"]
    path = map_fit.discrete(earthquakes)[0]
    years = list(range(1900, 1900 + earthquakes.x.shape[1]))
    figure, ax = plt.subplots(figsize=(7, 2.8))
    ax.plot(years, earthquakes.x[0, :, 0].numpy(), "k.-", lw=0.8, label="count")
    ax.step(years, map_fit.point["rates"][path, 0].numpy(), where="mid", color="C3", label="Viterbi state rate")
    ax.axvline(years[int(train.lengths[0])] - 0.5, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="year", ylabel="earthquakes (M >= 7)", title="3-state Poisson HMM (MAP), Viterbi path")
    ax.legend(loc="upper right", fontsize=8)
    _save_figure(figure, out / "hmm_earthquakes.png")
    return Section(
        title="Hidden Markov models: earthquakes (Poisson) and JSB chorales (Bernoulli)",
        text=(
            f"Earthquakes: the first {int(train.lengths[0])} years train, the last {int(test.lengths[0])} "
            "years are held out as a sequence of their own; the states are summed out exactly "
            "(forward algorithm). `test_log_lik` is the held-out log predictive density per "
            "sequence, `test_log_lik_per_step` per year (per chord for JSB, trained on the "
            "published train split and scored on its test split); `final_loss` the negative "
            f"ELBO per time step. NUTS at a tour's budget{_flag_note(fits['earthquakes K=3 (NUTS)'])}."
        ),
        table=table,
        figures=["hmm_earthquakes.png"],
    )


@_stop
def variational_autoencoder_stop(out: Path, fast: bool, progress: bool) -> Section:
    """VAEs (latent dimensions 2 and 8) on binarised 8x8 digits by amortized SVI; held-out IWAE and
    ELBO per image, and a figure of reconstructions and samples."""
    plt = _pyplot()
    data = load_dataset("digits", binarize=True)
    train, test = data.split(test_fraction=0.2, seed=0)
    images = Dataset(train.x, name="digits")  # the VAE never sees the labels
    epochs = 10 if fast else 60
    particles = 100 if fast else 1000
    fits = {
        f"VAE L={latent} (amortized)": run_fit(
            VAE(latent_dim=latent, hidden_sizes=[128]),
            images,
            SVI(batch_size=64, num_epochs=epochs, learning_rate=3e-3, num_posterior_samples=1, seed=0,
                    num_threads=1, progress=progress),  # small networks: 2 threads are 2x slower here
        )
        for latent in (2, 8)
    }
    with threads(1):
        table = comparison_table(fits, Dataset(test.x, name="digits"))
        table = table.drop(columns=["max_rhat", "divergences"])
        table[f"test_iwae_k{particles}"] = [
            float(fit.log_prob(test.x, num_particles=particles).mean()) for fit in fits.values()
        ]
        table["test_elbo"] = [
            float(fit.log_prob(test.x, num_particles=100, estimator="elbo").mean()) for fit in fits.values()
        ]

    fit = fits["VAE L=8 (amortized)"]
    originals = test.x[:12]
    rows = {
        "held-out digits": originals,
        "reconstructions": reconstruct(fit, originals),
        "samples (means)": decode(fit, torch.randn(12, 8, generator=torch.Generator().manual_seed(1))),
        "samples (pixels)": fit.sample(12, seed=2).float(),
    }
    figure, axes = plt.subplots(len(rows), 12, figsize=(9, 3.4))
    for r, (label, values) in enumerate(rows.items()):
        for c in range(12):
            axes[r, c].imshow(values[c].reshape(8, 8).detach().numpy(), cmap="gray_r", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    _save_figure(figure, out / "vae_digits.png")
    return Section(
        title="Variational autoencoder: digits (8x8, binarised)",
        text=(
            f"{len(train)} digits for training (labels unused), {len(test)} held out. The decoder is the "
            "Pyro model (Bernoulli pixels), the encoder its amortized guide, fitted by minibatch SVI "
            f"for {epochs} epochs. `test_log_lik` is the held-out IWAE bound with 100 particles, "
            f"`test_iwae_k{particles}` with {particles} and `test_elbo` the ELBO, all per image in "
            "nats (lower bounds on log p(x); higher is better). The figure (L = 8): held-out digits, "
            "their reconstructions, decoder means at codes from the prior, and `fit.sample` pixels."
        ),
        table=table,
        figures=["vae_digits.png"],
    )


@_stop
def gan_stop(out: Path, fast: bool, progress: bool) -> Section:
    """A GAN (adversarial training) against a Gaussian mixture with 8 components on the ring of 8
    Gaussians, compared by sample-based metrics only (the GAN has no density)."""
    plt = _pyplot()
    ring = load_dataset("ring", num_data=2000)
    held_out = load_dataset("ring", num_data=1000, seed=1)
    locs, scale = ring.truth["locs"], ring.truth["scale"]
    fits = {
        "GMM K=8 (laplace)": run_fit(
            GaussianMixture(8),
            ring,
            SVI(guide="laplace", num_steps=300, num_posterior_samples=200, seed=0, progress=progress),
        ),
        "GAN (adversarial)": run_fit(
            GAN(latent_dim=2, hidden_sizes=[128, 128]),
            ring,
            Adversarial(num_steps=400 if fast else 2000, batch_size=256, generator_learning_rate=1e-3,
                            discriminator_learning_rate=1e-3, seed=0, progress=progress),
        ),
    }
    samples = {label: fit.sample(len(held_out), seed=1) for label, fit in fits.items()}
    with threads(1):  # the two-sample classifier is a small network: 1 thread is ~10x faster than 2 here
        table = compare_samples(samples, held_out, num_permutations=50 if fast else 200, seed=0)
    table.index.name = "fit"
    coverage = {label: mode_coverage(values, locs, scale) for label, values in samples.items()}
    table.insert(0, "method", [fit.method_name for fit in fits.values()])
    table.insert(1, "wall_time_s", [float(fit.wall_time) for fit in fits.values()])
    table["modes_covered"] = [result.num_covered for result in coverage.values()]
    table["high_quality"] = [result.high_quality for result in coverage.values()]
    table["test_log_lik"] = [
        float(fit.log_prob(held_out).mean()) if fit.model.capability("log_prob") else float("nan")
        for fit in fits.values()
    ]

    figure, axes = plt.subplots(1, 3, figsize=(9.5, 3.3), sharex=True, sharey=True)
    panels = {"held-out data": held_out.x, **samples}
    for ax, (label, values) in zip(axes, panels.items()):
        ax.scatter(*values[:1000].T.numpy(), s=2, alpha=0.5, color="0.4" if label == "held-out data" else "C3")
        if label in coverage:
            missed = locs[~coverage[label].covered]
            ax.scatter(*missed.T.numpy(), s=120, facecolors="none", edgecolors="k", lw=1)
            label = f"{label}: {coverage[label].num_covered}/8 modes"
        ax.set_title(label, fontsize=9)
        ax.set_aspect("equal")
    _save_figure(figure, out / "gan_ring.png")
    return Section(
        title="GAN vs Gaussian mixture: ring of 8 Gaussians",
        text=(
            f"{len(ring)} simulated points for training, {len(held_out)} fresh ones held out. The GAN "
            "is an implicit model (it samples but has no density), so both are judged on "
            f"{len(held_out)} samples each: `mmd2` the unbiased kernel MMD^2 to the held-out points "
            "(0 is a perfect match), `c2st_accuracy` a classifier two-sample test (0.5: samples and "
            "data cannot be told apart), `modes_covered` of 8 and `high_quality` the share of samples "
            "within 3 standard deviations of a mode. `test_log_lik` exists for the mixture only. "
            "Circled modes in the figure are missed."
        ),
        table=table,
        figures=["gan_ring.png"],
    )


@_stop
def classic_families_stop(out: Path, fast: bool, progress: bool) -> Section:
    """Mixtures of independent Poisson components (1 to 4) on the earthquake counts, the years taken
    as independent, by MAP; probabilistic PCA and factor analysis on wine (MAP); a
    Dirichlet-process mixture on the galaxies' velocities (mean-field SVI), its clusters in use."""
    counts = load_dataset("earthquakes").x.reshape(-1, 1)
    train, test = Dataset(counts, name="earthquakes", feature_names=("count",)).split(test_fraction=0.2, seed=0)
    delta = SVI(guide="delta", num_steps=100 if fast else 500, progress=progress)
    fits = {f"Poisson mixture K={k}": run_fit(Mixture(k, family="poisson"), train, delta) for k in range(1, 5)}
    table = comparison_table(fits, test)

    wine = load_dataset("wine").x
    wine_train, wine_test = Dataset((wine - wine.mean(0)) / wine.std(0), name="wine").split(test_fraction=0.25, seed=0)
    linear = {
        noise: float(run_fit(FactorAnalysis(2, noise=noise), wine_train, delta).log_prob(wine_test).mean())
        for noise in ("isotropic", "diagonal")
    }
    velocities = load_dataset("galaxies").x
    galaxies = Dataset((velocities - velocities.mean(0)) / velocities.std(0), name="galaxies")
    dp_method = SVI(guide="normal", num_steps=200 if fast else 1500, learning_rate=0.05, num_posterior_samples=100, progress=progress)
    in_use = clusters_in_use(run_fit(DirichletProcessMixture(10, concentration=1.0), galaxies, dp_method))
    return Section(
        title="Mixtures of any family, factor analysis, a Dirichlet-process mixture",
        text=(
            f"Earthquake counts: {len(train)} years for training, {len(test)} held out, the years taken as "
            "independent (the hidden Markov stop models their order). Zucchini and MacDonald (2009, section "
            "1.2.3) fit the same mixtures by maximum likelihood to all 107 years; the tests reproduce their "
            "likelihoods. `test_log_lik` is the mean held-out log predictive density per year.\n\n"
            f"Wine (13 standardised measurements, {len(wine_test)} wines held out), two latent factors by MAP: "
            f"held-out log-likelihood per wine {linear['isotropic']:.3f} for probabilistic PCA (one noise "
            f"variance) and {linear['diagonal']:.3f} for factor analysis (one per measurement); the codes are "
            "integrated out exactly, `fit.transform` gives their posterior.\n\n"
            "Galaxies (82 velocities), a Dirichlet-process mixture truncated at 10 components, mean-field "
            f"SVI: clusters in use, posterior mode {int(torch.bincount(in_use).argmax())}, range "
            f"{int(in_use.min())} to {int(in_use.max())} (published fully Bayesian analyses put most mass on "
            "5 to 7; notebook 11 sets it beside scikit-learn's variational DP)."
        ),
        table=table,
        figures=[],
    )

