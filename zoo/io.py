"""The fit file format: a record of tensors and JSON metadata, written and read safely.

A fit file is written by ``torch.save`` and holds only tensors, strings and numbers::

    {"format": "zoo.fit", "version": 2, "checksum": "<sha256 hex>", "metadata": "<JSON text>",
     "<group>": Tensor or {name: Tensor}, ...}

Reading uses ``torch.load(..., weights_only=True)``, which never unpickles arbitrary objects; a
file that is not a zoo fit, or is damaged, gets a ValueError that says so. Three more checks
come before anything is built from the record:

* the checksum: SHA-256 of the metadata text and of every tensor (group, name, dtype, shape,
  bytes, in sorted order), so a flipped bit or an edited record is found, not loaded;
* the layout: every tensor is a plain, contiguous CPU tensor of a numeric dtype, and together
  they hold no more bytes than the file does. A tensor whose strides repeat its storage (an
  expanded tensor: a few bytes in the file, gigabytes once copied) is refused before anything
  copies it;
* the format version. Files of version 1 (written before the checksum) still load, with a
  warning: they were written by zoo itself, their records are still checked against the model
  they declare (:func:`zoo.load`), and refusing them would strand every fit saved so far.

This module knows the format, not what a fit is: :meth:`zoo.Fit.save` decides what goes into the
record (the model's registry name and constructor arguments, the method's fields, the draws, the
losses, the training data...) and ``zoo.load`` rebuilds a Fit from it (:mod:`zoo.results`),
checking each record against the model it declares. That keeps the file format below the Fit in
the layers, so the Fit may use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from zoo.checks import check_output_file

__all__ = ["write_record", "read_record", "damaged", "checksum", "FORMAT", "VERSION", "Tensors"]

FORMAT = "zoo.fit"
VERSION = 2
#: Versions read: 1 (no checksum; loaded with a warning) and the current one.
READABLE_VERSIONS = (1, 2)
HEADER = ("format", "version", "checksum", "metadata")

#: The dtypes a record may hold.
DTYPES = (
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
)

#: A record's tensors: each group is one tensor or a dict of named tensors.
Tensors = dict[str, "torch.Tensor | dict[str, torch.Tensor]"]


def _named_tensors(tensors: Tensors) -> list[tuple[str, torch.Tensor]]:
    """("group" or "group/name", tensor) for every tensor, in sorted order."""
    named = []
    for group in sorted(tensors):
        value = tensors[group]
        if isinstance(value, torch.Tensor):
            named.append((group, value))
        else:
            named.extend((f"{group}/{name}", value[name]) for name in sorted(value))
    return named


def checksum(metadata_text: str, tensors: Tensors) -> str:
    """SHA-256 (hex) of the metadata text and every tensor's name, dtype, shape and bytes.

    The tensors must be contiguous CPU tensors (as :func:`write_record` writes and
    :func:`read_record` checks before calling this)."""
    digest = hashlib.sha256(metadata_text.encode())
    for name, tensor in _named_tensors(tensors):
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_record(path: str | Path, metadata: dict[str, Any], tensors: Tensors) -> Path:
    """Write a record: ``metadata`` (JSON-serialisable) and groups of ``tensors``, moved to the
    CPU, detached and made contiguous, with their checksum.

    The file is written beside ``path`` and moved into place, so an interrupted save leaves the
    old file (or none), never half a file.

    Raises
    ------
    ValueError
        If a group is named like the header ("format", "version", "checksum", "metadata"), or
        ``path`` is a directory, lies under a file, or cannot be written.
    TypeError
        If ``metadata`` is not JSON-serialisable.
    """
    path = check_output_file(path, "path")
    clash = set(HEADER) & set(tensors)
    if clash:
        raise ValueError(f"tensor groups may not be named {sorted(clash)}: the header uses those names")
    metadata_text = json.dumps(metadata)
    stored: Tensors = {}
    for name, group in tensors.items():
        if isinstance(group, torch.Tensor):
            stored[name] = group.detach().cpu().contiguous()
        else:
            stored[name] = {key: value.detach().cpu().contiguous() for key, value in group.items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "checksum": checksum(metadata_text, stored),
        "metadata": metadata_text,
        **stored,
    }
    partial = path.with_name(f".{path.name}.partial")
    try:
        torch.save(payload, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def damaged(path: str | Path, why: str) -> ValueError:
    """The error for a file that is not a zoo fit file, or is damaged, saying why."""
    return ValueError(f"{path} is not a zoo fit file, or it is damaged: {why}")


def _check_layout(path: Path, tensors: dict[str, Any]) -> None:
    """Raise ``damaged`` unless every group is a tensor or a dict of str -> tensor, each a
    contiguous CPU tensor of a record dtype, holding together no more bytes than the file."""
    total = 0
    for group, value in tensors.items():
        members = {group: value} if isinstance(value, torch.Tensor) else value
        if not isinstance(members, dict):
            raise damaged(path, f"record {group!r} is a {type(value).__name__}, not a tensor or a dict of tensors")
        for name, tensor in members.items():
            label = name if members is not value else f"{group}/{name}"
            if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
                raise damaged(path, f"record {label!r} is a {type(tensor).__name__}, not a tensor")
            if tensor.dtype not in DTYPES or tensor.device.type != "cpu" or tensor.is_sparse:
                raise damaged(path, f"record {label!r} is a {tensor.dtype} tensor on {tensor.device}; "
                              "a fit file holds dense CPU tensors of real, integer or boolean dtype")
            if not tensor.is_contiguous():
                raise damaged(path, f"record {label!r} of shape {tuple(tensor.shape)} repeats its storage "
                              "(strides " f"{tensor.stride()}): zoo writes contiguous tensors only")
            total += tensor.numel() * tensor.element_size()
    size = path.stat().st_size
    if total > size:
        raise damaged(path, f"its tensors would take {total:,} bytes, more than the file's {size:,}: "
                      "they share storage, which zoo never writes")


def read_record(path: str | Path) -> tuple[dict[str, Any], Tensors]:
    """Read a record written by :func:`write_record`: (metadata, tensor groups).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a zoo fit file, is damaged (its checksum or layout is wrong), or is
        of a format version this zoo does not read.

    Warns
    -----
    UserWarning
        For a file of version 1, which has no checksum.
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
    version = payload.get("version")
    if version not in READABLE_VERSIONS:
        raise damaged(path, f"format version {version!r}; this zoo reads versions {READABLE_VERSIONS}")
    metadata_text = payload.get("metadata")
    if not isinstance(metadata_text, str):
        raise damaged(path, "its metadata is not JSON text")
    tensors = {name: value for name, value in payload.items() if name not in HEADER}
    _check_layout(path, tensors)
    if version == 1:
        warnings.warn(
            f"{path} is a fit file of format version 1, written before files carried a checksum: "
            "it is checked against its model but damage to its numbers cannot be detected. "
            "Save it again to add a checksum.",
            UserWarning,
            stacklevel=3,
        )
    elif payload.get("checksum") != checksum(metadata_text, tensors):
        raise damaged(path, "its checksum does not match its content (the file was changed or corrupted "
                      "after it was written)")
    try:
        metadata = json.loads(metadata_text)
    except json.JSONDecodeError as error:
        raise damaged(path, f"{type(error).__name__}: {error}") from None
    if not isinstance(metadata, dict):
        raise damaged(path, "its metadata is not a JSON object")
    return metadata, tensors
