"""Saving and loading fits in a safe format.

A fit file is written by ``torch.save`` and holds only tensors, strings and numbers: the model's
registry name and constructor arguments, the method's arguments, the draws, the loss history,
the statistics and the training data. Loading uses ``torch.load(..., weights_only=True)``, which
never unpickles arbitrary objects; a file that is not a zoo fit, or is damaged, gets a ValueError.
The trained guide itself is not saved (everything a Fit answers derives from its draws), so a
loaded Fit has ``guide=None``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from zoo.datasets.dataset import Dataset
from zoo.models import registry

__all__ = ["save_fit", "load"]

FORMAT = "zoo.fit"
VERSION = 1
#: Constructor arguments that models of this version no longer take, by registry name. Files
#: written before still load: the argument is dropped (what it chose, the training model's
#: form, is now derived by the runner from the model's collapsed likelihood).
RETIRED_ARGUMENTS = {"gmm": ("training_path",), "hmm": ("training_path",)}


def save_fit(fit: Any, path: str | Path) -> Path:
    """Write ``fit`` to ``path``; see the module docstring for the format."""
    path = Path(path)
    method = fit.method
    metadata = {
        "model": {"name": type(fit.model).registry_name, "config": fit.model.config()},
        "method": {"kind": method.kind, "config": method.to_dict()},
        "diagnostics": fit.diagnostics,
        "wall_time": fit.wall_time,
        "interrupted": fit.interrupted,
        "draws_shape": None if fit.draws_shape is None else list(fit.draws_shape),
        "train": {
            "name": fit.train.name,
            "description": fit.train.description,
            "source": fit.train.source,
            "feature_names": list(fit.train.feature_names) if fit.train.feature_names else None,
        },
    }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "metadata": json.dumps(metadata),
        "model_state": {name: value.detach().cpu() for name, value in fit.model.state_dict().items()},
        "draws": {name: value.detach().cpu() for name, value in fit.draws.items()},
        "point": {name: value.detach().cpu() for name, value in fit.point.items()},
        "losses": fit.losses.detach().cpu(),
        "sample_stats": {name: value.detach().cpu() for name, value in fit.sample_stats.items()},
        "history": {name: value.detach().cpu() for name, value in fit.history.items()},
        "train": {
            name: value.detach().cpu()
            for name, value in (("x", fit.train.x), ("y", fit.train.y), ("lengths", fit.train.lengths))
            if value is not None
        },
    }
    torch.save(payload, path)
    return path


def _damaged(path: Path, why: str) -> ValueError:
    return ValueError(f"{path} is not a zoo fit file, or it is damaged: {why}")


def load(path: str | Path) -> Any:
    """Load a Fit saved by ``Fit.save``.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a zoo fit file or is damaged.
    """
    from zoo.infer import METHODS
    from zoo.results import Fit

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no fit file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign or damaged files
        raise _damaged(path, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _damaged(path, "it has no zoo fit header")
    if payload.get("version") != VERSION:
        raise _damaged(path, f"format version {payload.get('version')!r}, expected {VERSION}")
    try:
        metadata = json.loads(payload["metadata"])
        name = metadata["model"]["name"]
        config = {
            key: value for key, value in metadata["model"]["config"].items() if key not in RETIRED_ARGUMENTS.get(name, ())
        }
        model = registry.get(name)(**config)
        model.load_state_dict(payload["model_state"])
        kind = metadata["method"]["kind"]
        method = METHODS[kind][0](**metadata["method"]["config"])
        train_meta = metadata["train"]
        train = Dataset(
            payload["train"]["x"],
            y=payload["train"].get("y"),
            lengths=payload["train"].get("lengths"),
            name=train_meta["name"],
            description=train_meta["description"],
            source=train_meta["source"],
            feature_names=train_meta["feature_names"],
        )
        fit = Fit(
            model=model,
            method=method,
            draws=dict(payload["draws"]),
            point=dict(payload["point"]),
            train=train,
            losses=payload["losses"],
            sample_stats=dict(payload["sample_stats"]),
            diagnostics=metadata["diagnostics"],
            wall_time=float(metadata["wall_time"]),
            interrupted=bool(metadata["interrupted"]),
            history=dict(payload.get("history", {})),
            draws_shape=None if metadata.get("draws_shape") is None else tuple(metadata["draws_shape"]),
        )
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as error:
        raise _damaged(path, f"{type(error).__name__}: {error}") from None
    return fit
