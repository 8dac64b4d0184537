"""``zoo tour``: every model fitted on its bundled real data by its methods, in one report.

Each stop of the tour is a function ``(out, fast, progress) -> Section`` in :data:`STOPS`; a new
model adds its stop there. :func:`run` runs them in order, prints each comparison table, and
writes ``index.md`` (tables and figures), ``summary.csv`` and the figures into one folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["Section", "STOPS", "run", "gaussian_mixture_stop", "hidden_markov_stop"]


@dataclass
class Section:
    """One stop of the tour: a heading, a few sentences, a comparison table and figures."""

    title: str
    text: str
    table: pd.DataFrame
    figures: list[str] = field(default_factory=list)


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


def gaussian_mixture_stop(out: Path, fast: bool, progress: bool) -> Section:
    """The Gaussian mixture on Old Faithful by MAP, mean-field, full-rank and NUTS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import zoo
    from zoo import plots, report

    data = zoo.datasets.load("old_faithful")
    train, test = data.split(test_fraction=0.2, seed=0)
    model = zoo.models.GaussianMixture(num_components=2)
    steps = 300 if fast else 3000
    methods = {
        "MAP (delta)": zoo.SVI(guide="delta", num_steps=200, progress=progress),
        "mean-field (normal)": zoo.SVI(guide="normal", num_steps=steps, learning_rate=0.02, progress=progress),
        "full-rank (mvn)": zoo.SVI(guide="mvn", num_steps=steps, learning_rate=0.02, progress=progress),
        "NUTS": zoo.NUTS(
            num_warmup=50 if fast else 500,
            num_samples=50 if fast else 500,
            num_chains=2,
            progress=progress,
        ),
    }
    fits = {label: zoo.fit(model, train, method) for label, method in methods.items()}
    table = report.comparison_table(fits, test)

    figure, axes = plt.subplots(2, 2, figsize=(9, 7.5), sharex=True, sharey=True)
    for ax, (label, fit) in zip(axes.ravel(), fits.items()):
        plots.plot_mixture(fit, train, ax=ax, title=label)
    figure.tight_layout()
    figure.savefig(out / "gmm_ellipses.png", dpi=80)
    plt.close(figure)
    figure, ax = plt.subplots(figsize=(5, 4))
    plots.plot_losses({label: fit for label, fit in fits.items() if fit.losses.numel()}, ax=ax)
    figure.tight_layout()
    figure.savefig(out / "gmm_losses.png", dpi=80)
    plt.close(figure)
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


#: The stops of the tour, in order.
STOPS: list[Callable[[Path, bool, bool], Section]] = [gaussian_mixture_stop]


def run(out: Path, fast: bool = False, progress: bool = True) -> list[Section]:
    """Run every stop, print the tables, and write the report into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for stop in STOPS:
        section = stop(out, fast, progress)
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


def naive_bayes_stop(out: Path, fast: bool, progress: bool) -> Section:
    """Naive Bayes on digits (pixel counts): Exact vs a mean-field guide vs NUTS at a small budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import zoo
    from zoo import report
    from zoo.models.naive_bayes import predict

    data = zoo.datasets.load("digits")
    train, test = data.split(test_fraction=0.2, seed=0)
    model = zoo.models.NaiveBayes(num_classes=10, features="multinomial")
    methods = {
        "Exact": zoo.Exact(progress=progress),
        "mean-field (normal)": zoo.SVI(
            guide="normal", num_steps=100 if fast else 1500, learning_rate=0.02, progress=progress
        ),
        "NUTS": zoo.NUTS(
            num_warmup=10 if fast else 100,
            num_samples=10 if fast else 100,
            num_chains=1,
            max_tree_depth=5 if fast else 6,
            progress=progress,
        ),
    }
    fits = {label: zoo.fit(model, train, method) for label, method in methods.items()}
    table = report.comparison_table(fits, test)
    table["test_accuracy"] = [float((predict(fit, test) == test.y).float().mean()) for fit in fits.values()]

    figure, axes = plt.subplots(3, 10, figsize=(10, 3.3))
    for c in range(10):
        samples = fits["Exact"].sample(3, y=c, seed=c)
        for r in range(3):
            axes[r, c].imshow(samples[r].reshape(8, 8).numpy(), cmap="gray_r")
            axes[r, c].axis("off")
        axes[0, c].set_title(str(c))
    figure.tight_layout()
    figure.savefig(out / "naive_bayes_samples.png", dpi=80)
    plt.close(figure)
    return Section(
        title="Naive Bayes: digits as pixel counts (10 classes)",
        text=(
            f"{len(train)} labeled digits for training, {len(test)} held out. A multinomial Naive "
            "Bayes with Dirichlet priors: `Exact` is its closed-form posterior, the reference for the "
            "guide and for NUTS (small budget). `test_log_lik` is the mean held-out log p(x, y) per "
            "digit (labels given); `test_accuracy` classifies the held-out digits from their pixels "
            "alone. The figure shows class-conditional samples, `fit.sample(3, y=c)`."
        ),
        table=table,
        figures=["naive_bayes_samples.png"],
    )


STOPS.append(naive_bayes_stop)


def hidden_markov_stop(out: Path, fast: bool, progress: bool) -> Section:
    """Poisson HMMs with 1-4 states on earthquakes (MAP, and NUTS for 3 states), and a Bernoulli
    HMM on the JSB chorales at a small budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import zoo
    from zoo import report

    earthquakes = zoo.datasets.load("earthquakes")
    train, test = earthquakes.split(test_fraction=0.2)  # one sequence: its last 21 years held out
    delta = zoo.SVI(guide="delta", num_steps=100 if fast else 500, progress=progress)
    fits = {
        f"earthquakes K={k} (delta)": zoo.fit(zoo.models.HiddenMarkovModel(k, emission="poisson"), train, delta)
        for k in range(1, 5)
    }
    fits["earthquakes K=3 (NUTS)"] = zoo.fit(
        zoo.models.HiddenMarkovModel(3, emission="poisson"),
        train,
        zoo.NUTS(num_warmup=20 if fast else 300, num_samples=20 if fast else 300, num_chains=1 if fast else 2,
                 max_tree_depth=6, progress=progress),
    )
    table = report.comparison_table(fits, test)
    jsb_train = zoo.datasets.load("jsb_chorales", split="train")
    jsb_test = zoo.datasets.load("jsb_chorales", split="test")
    jsb = zoo.fit(
        zoo.models.HiddenMarkovModel(4 if fast else 8, emission="bernoulli"),
        jsb_train,
        zoo.SVI(guide="delta", num_steps=10 if fast else 100, progress=progress),
    )
    jsb_table = report.comparison_table({f"JSB chorales K={jsb.model.num_states} (delta)": jsb}, jsb_test)
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
    figure.tight_layout()
    figure.savefig(out / "hmm_earthquakes.png", dpi=80)
    plt.close(figure)
    return Section(
        title="Hidden Markov models: earthquakes (Poisson) and JSB chorales (Bernoulli)",
        text=(
            f"Earthquakes: the first {int(train.lengths[0])} years train, the last {int(test.lengths[0])} "
            "years are held out as a sequence of their own; the states are summed out exactly "
            "(forward algorithm). `test_log_lik` is the held-out log predictive density per "
            "sequence, `test_log_lik_per_step` per year (per chord for JSB, trained on the "
            "published train split and scored on its test split); `final_loss` the negative "
            "ELBO per time step."
        ),
        table=table,
        figures=["hmm_earthquakes.png"],
    )


STOPS.append(hidden_markov_stop)
