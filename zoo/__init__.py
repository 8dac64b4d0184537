"""zoo: classic generative models in Pyro, one runner for any inference method, ArviZ results.

>>> import zoo
>>> data = zoo.datasets.load("old_faithful")
>>> fit = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="delta"))
>>> fit.log_prob(data).mean()     # held-in log density, nats per eruption
tensor(-4.1...)
"""

# In layer order, lowest first; zoo.infer before zoo.results, which the runners that zoo.infer
# imports reach themselves (see the zoo.infer docstring).
from zoo import datasets, models  # isort: skip
from zoo.datasets import Dataset  # isort: skip
from zoo.infer import NUTS, SVI, Adversarial, Exact, FitError, fit  # isort: skip
from zoo.results import Fit, load  # isort: skip
from zoo import metrics  # isort: skip
from zoo import units  # isort: skip
from zoo import plots  # isort: skip  (matplotlib itself is imported by the first figure)
from zoo.amortization import amortization_gap
from zoo.comparison import compare
from zoo.leaderboard import leaderboard
from zoo.sbc import SBCResult, sbc  # the function zoo.sbc shadows the module: from zoo.sbc import ...
from zoo.selection import select

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``zoo.sklearn`` (scikit-learn style estimators) is imported on first use: it needs
    scikit-learn, an optional dependency (``pip install 'zoo[sklearn]'``)."""
    if name == "sklearn":
        import importlib

        return importlib.import_module("zoo.sklearn")
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


__all__ = ["fit", "load", "Fit", "FitError", "SVI", "NUTS", "Exact", "Adversarial", "Dataset", "datasets", "metrics", "units", "plots", "models", "compare", "leaderboard", "sbc", "SBCResult", "select", "amortization_gap"]
