"""The model registry: registry name -> model class. `zoo list` prints it; contract tests run over it.

The name is given once, in the decorator: ``@register("gmm")`` registers the class and sets its
``registry_name`` (what a saved fit records, and the command line's ``zoo fit gmm``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from zoo.models.base import Model

__all__ = ["register", "get", "names", "MODELS"]

MODELS: dict[str, type[Model]] = {}

ModelClass = TypeVar("ModelClass", bound=type[Model])


def register(name: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: register a model class under ``name`` and set its ``registry_name``.

    Raises
    ------
    ValueError
        If another class is registered under ``name``, or the class states a different
        ``registry_name`` of its own.
    """

    def decorate(cls: ModelClass) -> ModelClass:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"a model is already registered as {name!r}: {MODELS[name].__name__}")
        # Tolerated while some models still state the name twice: it must agree.
        stated = cls.__dict__.get("registry_name")
        if stated is not None and stated != name:
            raise ValueError(f"{cls.__name__} states registry_name = {stated!r} but is registered as {name!r}")
        cls.registry_name = name
        MODELS[name] = cls
        return cls

    return decorate


def get(name: str) -> type[Model]:
    """The model class registered as ``name`` (or by its class name)."""
    for key, cls in MODELS.items():
        if name in (key, cls.__name__):
            return cls
    raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))}")


def names() -> list[str]:
    """The registered names, sorted."""
    return sorted(MODELS)
