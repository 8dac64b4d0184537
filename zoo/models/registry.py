"""The model registry: registry name -> model class. `zoo list` prints it; contract tests run over it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from zoo.models.base import Model

__all__ = ["register", "get", "names", "MODELS"]

MODELS: dict[str, type["Model"]] = {}

ModelClass = TypeVar("ModelClass", bound=type)


def register(name: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: register a model class under ``name``."""

    def decorate(cls: ModelClass) -> ModelClass:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"a model is already registered as {name!r}: {MODELS[name].__name__}")
        MODELS[name] = cls
        return cls

    return decorate


def get(name: str) -> type["Model"]:
    """The model class registered as ``name`` (or by its class name)."""
    for key, cls in MODELS.items():
        if name in (key, cls.__name__):
            return cls
    raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(MODELS))}")


def names() -> list[str]:
    return sorted(MODELS)
