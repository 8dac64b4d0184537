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

__all__ = ["Section", "STOPS", "run", "gaussian_mixture_stop"]


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
