"""The fit file format: a record of tensors and JSON metadata, written and read safely.

A fit file is written by ``torch.save`` and holds only tensors, strings and numbers::

    {"format": "zoo.fit", "version": 1, "metadata": "<JSON text>",
     "<group>": Tensor or {name: Tensor}, ...}

Reading uses ``torch.load(..., weights_only=True)``, which never unpickles arbitrary objects; a
file that is not a zoo fit, or is damaged, gets a ValueError that says so.

This module knows the format, not what a fit is: :meth:`zoo.Fit.save` decides what goes into the
record (the model's registry name and constructor arguments, the method's fields, the draws, the
losses, the training data...) and ``zoo.load`` rebuilds a Fit from it (:mod:`zoo.results`). That
keeps the file format below the Fit in the layers, so the Fit may use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["write_record", "read_record", "damaged", "FORMAT", "VERSION", "Tensors"]

FORMAT = "zoo.fit"
VERSION = 1

#: A record's tensors: each group is one tensor or a dict of named tensors.
Tensors = dict[str, "torch.Tensor | dict[str, torch.Tensor]"]


def write_record(path: str | Path, metadata: dict[str, Any], tensors: Tensors) -> Path:
    """Write a record: ``metadata`` (JSON-serialisable) and groups of ``tensors``, moved to the
    CPU and detached.

    Raises
    ------
    ValueError
        If a group is named like the header ("format", "version", "metadata").
    TypeError
        If ``metadata`` is not JSON-serialisable.
    """
    path = Path(path)
    clash = {"format", "version", "metadata"} & set(tensors)
    if clash:
        raise ValueError(f"tensor groups may not be named {sorted(clash)}: the header uses those names")
    payload: dict[str, Any] = {"format": FORMAT, "version": VERSION, "metadata": json.dumps(metadata)}
    for name, group in tensors.items():
        if isinstance(group, torch.Tensor):
            payload[name] = group.detach().cpu()
        else:
            payload[name] = {key: value.detach().cpu() for key, value in group.items()}
    torch.save(payload, path)
    return path


def damaged(path: str | Path, why: str) -> ValueError:
    """The error for a file that is not a zoo fit file, or is damaged, saying why."""
    return ValueError(f"{path} is not a zoo fit file, or it is damaged: {why}")


def read_record(path: str | Path) -> tuple[dict[str, Any], Tensors]:
    """Read a record written by :func:`write_record`: (metadata, tensor groups).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a zoo fit file, is damaged, or is of another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no fit file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign or damaged files
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise damaged(path, f"{type(error).__name__}: {first_line}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise damaged(path, "it has no zoo fit header")
    if payload.get("version") != VERSION:
        raise damaged(path, f"format version {payload.get('version')!r}, expected {VERSION}")
    try:
        metadata = json.loads(payload["metadata"])
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise damaged(path, f"{type(error).__name__}: {error}") from None
    if not isinstance(metadata, dict):
        raise damaged(path, "its metadata is not a JSON object")
    tensors = {name: value for name, value in payload.items() if name not in ("format", "version", "metadata")}
    return metadata, tensors
