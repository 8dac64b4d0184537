"""zoo's models: one file per family, each p(x, z) in Pyro primitives."""

from zoo.models.base import Model
from zoo.models.mixture import GaussianMixture
from zoo.models.registry import MODELS, get, names, register

__all__ = ["Model", "GaussianMixture", "MODELS", "get", "names", "register"]
