"""A user's own data: a pandas DataFrame, a CSV file or a NumPy ``.npy`` file, read into the
fields of a `Dataset` (``zoo.Dataset.from_frame`` and ``zoo.Dataset.from_file`` build it).

>>> import pandas as pd, zoo
>>> frame = pd.DataFrame({"length": [5.1, 4.9, 6.3], "width": [3.5, 3.0, 3.3],
...                       "species": ["setosa", "setosa", "virginica"]})
>>> data = zoo.Dataset.from_frame(frame, label="species")
>>> data.feature_names, data.y.tolist()
(('length', 'width'), [0, 0, 1])

Rules, the same for the Python API and ``zoo fit MODEL --data FILE``:

* **Features**: the columns named in ``columns``, in that order; by default every column that is
  not the label, the sequence id or the time, all of which must then be numeric (booleans count
  as 0 / 1). A non-numeric column is refused with its name, never dropped silently. The column
  names become ``Dataset.feature_names``.
* **Label**: a column of class labels. Integers 0, 1, ... are kept as they are; any other labels
  (strings, categories, other numbers) become 0 .. C-1 in sorted order, and the
  ``Dataset.description`` says which is which. An empty cell (NaN, None) marks an unlabeled row
  (``-1``, ``zoo.datasets.UNLABELED``): semi-supervised Naive Bayes learns from it.
* **Sequences** (hidden Markov models): rows that share a ``sequence_id`` form one sequence,
  in the order of the ``time`` column when one is given (file order otherwise); the sequences
  are padded to the longest and their ``lengths`` recorded. A ``time`` column alone makes the
  whole table one sequence sorted by time. Sequences appear in order of first appearance.

This module knows pandas and numpy, not `Dataset` (which imports it): its functions return the
keyword arguments of a `Dataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["frame_fields", "file_fields"]


def _column_names(argument: str, names: Any) -> list[Any]:
    if names is None:
        return []
    if isinstance(names, str) or not isinstance(names, Sequence):
        names = [names]
    return list(names)


def _check_present(frame: pd.DataFrame, argument: str, names: list[Any]) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise ValueError(
            f"{argument} names column(s) {', '.join(map(repr, missing))}, which the table lacks; "
            f"its columns are: {', '.join(map(str, frame.columns))}"
        )


def _labels(column: pd.Series, unlabeled: int) -> tuple[np.ndarray, str]:
    """Integer codes (``unlabeled`` where empty) and a sentence saying what they stand for."""
    present = column.notna().to_numpy()
    values = column[present]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and len(values) and (values == values.round()).all() and values.min() >= 0:
        codes = np.full(len(column), unlabeled, dtype=np.int64)
        codes[present] = values.to_numpy().astype(np.int64)
        return codes, ""
    classes = sorted(values.unique(), key=lambda value: (str(type(value)), value))
    lookup = {value: code for code, value in enumerate(classes)}
    codes = np.full(len(column), unlabeled, dtype=np.int64)
    codes[present] = [lookup[value] for value in values]
    legend = ", ".join(f"{code} = {value}" for value, code in lookup.items())
    return codes, f"Label column {column.name!r}: {legend}."


def _features(frame: pd.DataFrame, names: list[Any]) -> np.ndarray:
    bad = [name for name in names if not (pd.api.types.is_numeric_dtype(frame[name]) or pd.api.types.is_bool_dtype(frame[name]))]
    if bad:
        raise ValueError(
            f"column(s) {', '.join(map(repr, bad))} are not numeric: choose the feature columns with "
            "columns=[...] (--columns on the command line), or name a class column as the label"
        )
    return frame[names].to_numpy(dtype=np.float32, copy=True)


def frame_fields(
    frame: pd.DataFrame,
    label: Any = None,
    columns: Sequence[Any] | None = None,
    sequence_id: Any = None,
    time: Any = None,
    *,
    unlabeled: int,
) -> dict[str, Any]:
    """The fields of a `Dataset` from a pandas DataFrame (see the module docs for the rules).

    Parameters
    ----------
    frame : pandas.DataFrame, shape (num_rows, num_columns)
        One row per datum, or per time step of a sequence.
    label : column name, optional
        The column of class labels (``Dataset.y``, shape (num_data,)).
    columns : sequence of column names, optional
        The feature columns, in order; default: every other column.
    sequence_id : column name, optional
        Rows sharing a value form one sequence (``Dataset.x`` then (num_sequences, max_length,
        num_features), with ``lengths``).
    time : column name, optional
        The order of the rows within a sequence.
    unlabeled : int
        The label of a row whose label cell is empty (``zoo.datasets.UNLABELED``).

    Returns
    -------
    dict
        ``x``: array of shape (num_rows, num_features), or padded sequences of shape
        (num_sequences, max_length, num_features) with ``lengths`` (num_sequences,); ``y`` of
        shape (num_rows,) or None; ``feature_names``, the chosen columns' names; and
        ``description``, what the labels or sequences are.

    Raises
    ------
    TypeError
        If ``frame`` is not a DataFrame.
    ValueError
        For a column named that the frame lacks, a non-numeric feature column, an empty
        selection, or a label with sequences (labels are per row, sequences have none).
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    for argument, value in (("label", label), ("sequence_id", sequence_id), ("time", time)):
        _check_present(frame, argument, _column_names(argument, value))
    special = [value for value in (label, sequence_id, time) if value is not None]
    if columns is None:
        chosen = [column for column in frame.columns if column not in special]
    else:
        chosen = _column_names("columns", columns)
        _check_present(frame, "columns", chosen)
        overlap = [column for column in chosen if column in special]
        if overlap:
            raise ValueError(f"columns must not include the label, sequence id or time column: {overlap}")
    if not chosen:
        raise ValueError("no feature column is left: name them with columns=[...]")
    if len(frame) == 0:
        raise ValueError("the table has no rows: at least one datum is needed")
    if label is not None and (sequence_id is not None or time is not None):
        raise ValueError("label is one class per row; sequences (sequence_id / time) take no label column")
    names = tuple(str(column) for column in chosen)
    if sequence_id is None and time is None:
        y, legend = (None, "") if label is None else _labels(frame[label], unlabeled)
        return {"x": _features(frame, chosen), "y": y, "feature_names": names, "description": legend}
    ordered = frame
    if time is not None:
        ordered = frame.sort_values(time, kind="stable")
    if sequence_id is None:
        groups = [ordered]
    else:
        if frame[sequence_id].isna().any():
            raise ValueError(f"sequence_id column {sequence_id!r} has empty cells: every row needs a sequence")
        order = pd.unique(frame[sequence_id])  # first appearance in the file
        grouped = dict(tuple(ordered.groupby(sequence_id, sort=False)))
        groups = [grouped[key] for key in order]
    lengths = [len(group) for group in groups]
    x = np.zeros((len(groups), max(lengths), len(chosen)), dtype=np.float32)
    for row, group in enumerate(groups):
        x[row, : len(group)] = _features(group, chosen)
    description = f"{len(groups)} sequence(s) of {min(lengths)} to {max(lengths)} steps."
    return {"x": x, "lengths": np.array(lengths), "feature_names": names, "description": description}


def file_fields(path: str | Path, label: Any = None, *, unlabeled: int, **columns: Any) -> dict[str, Any]:
    """The fields of a `Dataset` from a CSV file (with a header row) or a NumPy ``.npy`` array.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (``.csv.gz`` too): columns by their header names. ``.npy``: an array of shape
        (num_rows, num_columns), whose columns are named by their index ("0", "1", ...), or
        (num_sequences, length, num_features): sequences of full length, taken as they are
        (no column options then).
    label, unlabeled
        As in :func:`frame_fields`.
    **columns
        ``columns``, ``sequence_id``, ``time``: as in :func:`frame_fields` (column names; for a
        ``.npy`` table, like ``label``, their indices, as ints or strings).

    Returns
    -------
    dict
        As :func:`frame_fields`, with ``name``: the file's name without its suffixes.

    Raises
    ------
    ValueError
        For a missing file, an unknown suffix, an array of another shape, or what
        :func:`frame_fields` refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    suffixes = "".join(path.suffixes[-2:]).lower()
    name = path.name.split(".")[0]
    if suffixes.endswith(".csv") or suffixes.endswith(".csv.gz"):
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
            raise ValueError(f"could not read {str(path)!r} as CSV: {error}") from None
        return {**frame_fields(frame, label, unlabeled=unlabeled, **columns), "name": name}
    if not suffixes.endswith(".npy"):
        raise ValueError(f"data file {str(path)!r}: expected a .csv or .npy file")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"could not read {str(path)!r} as a NumPy array: {error}") from None
    if array.ndim == 3:
        if label is not None or any(value is not None for value in columns.values()):
            raise ValueError("a 3-D .npy array is read as sequences as they are: it takes no column options")
        return {"x": array, "lengths": np.full(array.shape[0], array.shape[1]), "name": name}
    if array.ndim != 2:
        raise ValueError(f"{str(path)!r} holds an array of shape {array.shape}: expected (rows, columns) or (sequences, length, features)")

    def index(value: Any) -> Any:
        return None if value is None else str(value)

    frame = pd.DataFrame(array, columns=[str(column) for column in range(array.shape[1])])
    named = {argument: index(value) for argument, value in columns.items()}
    if columns.get("columns") is not None:
        named["columns"] = [index(column) for column in _column_names("columns", columns["columns"])]
    return {**frame_fields(frame, index(label), unlabeled=unlabeled, **named), "name": name}
