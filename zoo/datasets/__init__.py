"""Data sets for the zoo: real data shipped with the package, and simulators with known truth.

Load any of them by name::

    from zoo import datasets
    data = datasets.load("jsb_chorales", split="test")
    fake = datasets.load("gaussian_mixture", num_data=500, seed=1)

`names()` lists the names, `describe(name)` gives a one-line summary.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from . import real, simulate
from .dataset import UNLABELED, Dataset, as_dataset

__all__ = ["Dataset", "as_dataset", "UNLABELED", "load", "names", "describe", "real", "simulate"]

#: name -> (loader, kind), kind "real" or "simulated".
_REGISTRY: dict[str, tuple[Callable[..., Dataset], str]] = {
    "old_faithful": (real.old_faithful, "real"),
    "old_faithful_sequence": (real.old_faithful_sequence, "real"),
    "iris": (real.iris, "real"),
    "wine": (real.wine, "real"),
    "breast_cancer": (real.breast_cancer, "real"),
    "digits": (real.digits, "real"),
    "mnist": (real.mnist, "real"),
    "earthquakes": (real.earthquakes, "real"),
    "galaxies": (real.galaxies, "real"),
    "jsb_chorales": (real.jsb_chorales, "real"),
    "gaussian_mixture": (simulate.gaussian_mixture, "simulated"),
    "hidden_markov": (simulate.hidden_markov, "simulated"),
    "naive_bayes": (simulate.naive_bayes, "simulated"),
    "ring": (simulate.ring, "simulated"),
    "two_moons": (simulate.two_moons, "simulated"),
}


def names() -> list[str]:
    """The names `load` accepts, in a fixed order (real data sets first)."""
    return list(_REGISTRY)


def _entry(name: str) -> tuple[Callable[..., Dataset], str]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"name must be one of {', '.join(_REGISTRY)}; got {name!r}")
    return _REGISTRY[name]


def load(name: str, **options: Any) -> Dataset:
    """Load a data set by name.

    Parameters
    ----------
    name : str
        One of `names()`.
    **options
        Keyword arguments of the loader, e.g. ``split="test"`` for "jsb_chorales" or
        ``num_data=500, seed=1`` for "gaussian_mixture".

    Returns
    -------
    Dataset
        See the loader in `zoo.datasets.real` or `zoo.datasets.simulate` for the shapes.

    Raises
    ------
    ValueError
        If ``name`` is unknown, an option is not an argument of the loader, or the loader
        rejects an option's value.
    """
    loader, _ = _entry(name)
    parameters = inspect.signature(loader).parameters
    unknown = [option for option in options if option not in parameters]
    if unknown:
        valid = ", ".join(parameters) or "none"
        raise ValueError(f"unknown option {', '.join(unknown)} for data set {name!r}; valid options: {valid}")
    return loader(**options)


def describe(name: str) -> str:
    """One line about the data set ``name`` with its default options: name, shape, kind.

    Loads the data set (fast for every one of them).
    """
    _, kind = _entry(name)
    data = load(name)
    parts = [f"x {tuple(data.x.shape)}"]
    if data.y is not None:
        parts.append(f"{int(data.y.max()) + 1} classes")
    if data.lengths is not None:
        parts.append(f"{len(data)} sequence{'s' if len(data) != 1 else ''}")
    return f"{name:<22} {kind:<9} {', '.join(parts)}"
