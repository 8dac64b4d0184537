"""The `Dataset`: the tensors a model is fitted to, with a description of where they come from."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas
import torch

from zoo.checks import check_seed
from zoo.datasets.frames import file_fields, frame_fields

__all__ = ["Dataset", "as_dataset", "UNLABELED"]

#: The label that marks a row whose class is unknown (semi-supervised learning).
UNLABELED = -1


def _as_tensor(value: Any, argument: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.device.type == "meta":
            raise ValueError(f"{argument} is a tensor on the meta device, which holds shapes but no values: give real data")
    elif isinstance(value, (np.ndarray, list, tuple)) or np.isscalar(value):
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{argument} must be a numeric array (torch tensor, numpy array or nested list); "
                f"could not convert it: {error}"
            ) from None
    else:
        raise TypeError(
            f"{argument} must be a torch.Tensor or numpy array, got {type(value).__name__}"
        )
    if tensor.dtype in (torch.uint16, torch.uint32, torch.uint64):
        # torch computes little on wide unsigned integers: as int64 where every value fits, else as float64
        fits = tensor.dtype != torch.uint64 or not tensor.numel() or int(tensor.numpy().max()) <= torch.iinfo(torch.int64).max
        tensor = tensor.to(torch.int64 if fits else torch.float64)
    if not (tensor.dtype.is_floating_point or tensor.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)):
        raise TypeError(f"{argument} must hold real numbers, integers or booleans, got dtype {tensor.dtype}")
    if dtype is not None:
        tensor = tensor.to(dtype)
    return tensor


@dataclass(frozen=True)
class Dataset:
    """Data for a model: features ``x``, optional labels ``y`` and sequence ``lengths``.

    Parameters
    ----------
    x : array-like, shape (num_data, ...)
        The observations, one row per datum. Tabular data is ``(num_data, num_features)``;
        padded sequences are ``(num_sequences, max_length, num_features)`` with ``lengths``;
        images are ``(num_data, height, width)``. Stored as float32.
    y : array-like of int, shape (num_data,), optional
        Class labels in ``0 .. num_classes - 1``; ``-1`` (``zoo.datasets.UNLABELED``) marks a
        row whose label is unknown.
    lengths : array-like of int, shape (num_sequences,), optional
        The true length of each padded sequence in ``x``; steps beyond it are padding.
    name : str, optional
        A short name, shown in tables and figures.
    description : str
        What the data are.
    source : str
        Where the data come from (citation, licence).
    feature_names : tuple of str, optional
        One name per feature (the last axis of ``x``).
    truth : dict, optional
        The true parameters, for simulated data.

    Raises
    ------
    ValueError
        If ``x`` is empty, holds NaN or infinite values, or ``y`` / ``lengths`` do not match it.
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    name: str | None = None
    description: str = ""
    source: str = ""
    feature_names: tuple[str, ...] | None = None
    truth: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        x = _as_tensor(self.x, "x")
        if x.dim() == 0:
            raise ValueError("x must have at least one dimension (one row per datum), got a scalar")
        if x.shape[0] == 0 or x.numel() == 0:
            raise ValueError(f"x is empty (shape {tuple(x.shape)}): at least one datum is needed")
        if x.dtype == torch.float64:
            finite = x[torch.isfinite(x)]
            if finite.numel() and finite.abs().max() > torch.finfo(torch.float32).max:
                raise ValueError(
                    f"x holds values up to {float(finite.abs().max()):.3g}, beyond float32's range "
                    f"({torch.finfo(torch.float32).max:.3g}), in which zoo computes: they would become "
                    "infinite. Rescale the data (e.g. standardise each feature)"
                )
        x = x.to(torch.get_default_dtype()) if not x.dtype.is_floating_point else x.float()
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).nonzero()[0].tolist()
            raise ValueError(
                f"x holds NaN or infinite values (first at index {tuple(bad)}); "
                "remove or impute them before fitting"
            )
        object.__setattr__(self, "x", x)
        if self.y is not None:
            y = _as_tensor(self.y, "y")
            if y.dtype.is_floating_point:
                if not torch.isfinite(y).all() or (y != y.round()).any():
                    raise ValueError("y must hold integer class labels (or -1 for unlabeled)")
            y = y.long()
            if y.shape != (x.shape[0],):
                raise ValueError(
                    f"y must have shape (num_data,) = ({x.shape[0]},) to match x, got {tuple(y.shape)}"
                )
            if (y < UNLABELED).any():
                raise ValueError(
                    f"y holds {int(y.min())}: labels must be 0, 1, ... or -1 for an unlabeled row"
                )
            object.__setattr__(self, "y", y)
        if self.lengths is not None:
            lengths = _as_tensor(self.lengths, "lengths")
            if lengths.dtype.is_floating_point and (lengths != lengths.round()).any():
                raise ValueError("lengths must hold integers")
            lengths = lengths.long()
            if x.dim() < 2:
                raise ValueError(
                    "lengths were given, so x must be padded sequences of shape "
                    f"(num_sequences, max_length, ...), got shape {tuple(x.shape)}"
                )
            if lengths.shape != (x.shape[0],):
                raise ValueError(
                    f"lengths must have shape (num_sequences,) = ({x.shape[0]},), got {tuple(lengths.shape)}"
                )
            if (lengths < 1).any():
                raise ValueError(
                    f"lengths must be at least 1, got {int(lengths.min())} "
                    f"(sequence {int(lengths.argmin())})"
                )
            if (lengths > x.shape[1]).any():
                raise ValueError(
                    f"lengths must not exceed the padded length x.shape[1] = {x.shape[1]}, "
                    f"got {int(lengths.max())} (sequence {int(lengths.argmax())})"
                )
            object.__setattr__(self, "lengths", lengths)
        if self.feature_names is not None:
            object.__setattr__(self, "feature_names", tuple(self.feature_names))

    @classmethod
    def from_frame(
        cls, frame: Any, label: Any = None, *, name: str | None = None, description: str = "", source: str = "", **columns: Any
    ) -> "Dataset":
        """A `Dataset` from a pandas DataFrame: numeric columns as features (their names kept as
        ``feature_names``), ``label`` the column of class labels; ``columns``, ``sequence_id``
        and ``time`` choose the features and make sequences (see :mod:`zoo.datasets.frames`).

        >>> import pandas as pd, zoo
        >>> frame = pd.DataFrame({"a": [0.5, 1.5, 2.0], "b": [1.0, 0.0, 2.0], "kind": ["x", "y", "x"]})
        >>> zoo.Dataset.from_frame(frame, label="kind")
        Dataset(x=(3, 2), y=(3,))
        """
        fields = frame_fields(frame, label, unlabeled=UNLABELED, **columns)
        found = fields.pop("description")
        return cls(**fields, name=name, description=" ".join(part for part in (description, found) if part), source=source)

    @classmethod
    def from_file(cls, path: Any, label: Any = None, **columns: Any) -> "Dataset":
        """A `Dataset` from a CSV file (with a header row) or a ``.npy`` array, named after the
        file; ``label``, ``columns``, ``sequence_id``, ``time`` as in :meth:`from_frame` (see
        :func:`zoo.datasets.frames.file_fields`)."""
        return cls(**file_fields(path, label, unlabeled=UNLABELED, **columns))

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_data(self) -> int:
        """Number of rows (data points, or sequences)."""
        return len(self)

    @property
    def num_features(self) -> int:
        """Size of the last axis of ``x``."""
        return int(self.x.shape[-1]) if self.x.dim() > 1 else 1

    @property
    def num_observations(self) -> int:
        """Number of observed data points: rows, or time steps summed over sequences."""
        if self.lengths is not None:
            return int(self.lengths.sum())
        return len(self)

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> "Dataset":
        """The rows ``index`` of this data set, with the same description."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return replace(
            self,
            x=self.x[index],
            y=None if self.y is None else self.y[index],
            lengths=None if self.lengths is None else self.lengths[index],
        )

    def rows(self, index: torch.Tensor) -> "Dataset":
        """The rows ``index`` (a LongTensor), without checking them again.

        They were checked when this data set was made, so this costs one ``index_select`` per
        tensor field: cheap enough for every minibatch step of a fit. Use :meth:`subset` for
        anything a user hands in.
        """
        view = object.__new__(Dataset)
        for field_ in fields(self):
            value = getattr(self, field_.name)
            if isinstance(value, torch.Tensor):
                value = value.index_select(0, index.to(value.device))
            object.__setattr__(view, field_.name, value)
        return view

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """Split at random into a training and a test set.

        Parameters
        ----------
        test_fraction : float
            Fraction of rows in the test set, in (0, 1).
        seed : int
            Seed of the random permutation.

        Returns
        -------
        train, test : Dataset
        """
        if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
        seed = check_seed(seed)
        if len(self) == 1 and (self.lengths is not None or self.x.dim() >= 3):
            # one sequence cannot be split by rows: hold out its end instead
            return self.split_time(test_fraction)
        num_test = int(round(len(self) * float(test_fraction)))
        if num_test < 1 or num_test >= len(self):
            raise ValueError(
                f"test_fraction={test_fraction} of {len(self)} rows leaves an empty training or test set"
            )
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=generator)
        test_index, train_index = order[:num_test].sort().values, order[num_test:].sort().values
        return self.subset(train_index), self.subset(test_index)

    def split_time(self, test_fraction: float = 0.2) -> tuple["Dataset", "Dataset"]:
        """Split every sequence in time: its last ``test_fraction`` of steps are held out.

        What ``split`` does for a data set of one sequence (e.g. earthquakes): the test set is
        the end of the series as a sequence of its own (a model scores it from its initial
        distribution, not from the state the training part ended in).

        Returns
        -------
        train, test : Dataset
            Each with one sequence per sequence of this data set, left-aligned and zero-padded.
        """
        if self.lengths is None and self.x.dim() < 3:
            raise ValueError(
                "split_time needs sequences: a Dataset with lengths, or x shaped (num_sequences, "
                f"length, num_features); got x of shape {tuple(self.x.shape)}"
            )
        if not isinstance(test_fraction, (int, float)) or not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
        # no lengths on 3-D x: every sequence runs the full length (as zoo.fit reads it)
        lengths = self.lengths if self.lengths is not None else torch.full((len(self),), self.x.shape[1])
        if (lengths < 2).any():
            raise ValueError("split_time needs every sequence to have at least 2 steps")
        cut = (lengths.double() * (1.0 - float(test_fraction))).round().long().clamp(1)
        cut = torch.minimum(cut, lengths - 1)
        test_lengths = lengths - cut
        train_x = torch.zeros((len(self), int(cut.max())) + tuple(self.x.shape[2:]), dtype=self.x.dtype)
        test_x = torch.zeros((len(self), int(test_lengths.max())) + tuple(self.x.shape[2:]), dtype=self.x.dtype)
        for row, (c, length) in enumerate(zip(cut.tolist(), lengths.tolist())):
            train_x[row, :c] = self.x[row, :c]
            test_x[row, : length - c] = self.x[row, c:length]
        return replace(self, x=train_x, lengths=cut), replace(self, x=test_x, lengths=test_lengths)

    def __repr__(self) -> str:
        parts = [f"x={tuple(self.x.shape)}"]
        if self.y is not None:
            parts.append(f"y={tuple(self.y.shape)}")
        if self.lengths is not None:
            parts.append(f"lengths={tuple(self.lengths.shape)}")
        name = f"{self.name!r}, " if self.name else ""
        return f"Dataset({name}{', '.join(parts)})"


#: The largest magnitude of data zoo fits: its square times a million data stays well inside
#: float32 (3.4e38), so k-means++ distances, Gaussian densities and sums of squares are finite.
MAX_MAGNITUDE = 1e15


def check_scale(data: Dataset, argument: str = "data") -> None:
    """Raise ValueError if ``data.x`` reaches beyond :data:`MAX_MAGNITUDE`, suggesting
    standardisation: at that scale squares overflow float32 and a fit or a density would come
    out infinite or NaN with no error."""
    finite = data.x[torch.isfinite(data.x)]
    largest = float(finite.abs().max()) if finite.numel() else 0.0
    if largest > MAX_MAGNITUDE:
        raise ValueError(
            f"{argument}.x reaches {largest:.3g}: beyond {MAX_MAGNITUDE:.0e}, squares overflow float32 (in which zoo "
            "computes), so distances and densities would be infinite. Standardise the data (subtract each "
            "feature's mean, divide by its standard deviation), or change its units"
        )


def as_dataset(data: Any, argument: str = "data") -> Dataset:
    """Accept a `Dataset`, a tensor, a numpy array or a pandas DataFrame (its columns the
    features, see `Dataset.from_frame`) and return a `Dataset`, whose scale is checked
    (:func:`check_scale`)."""
    dataset = _as_dataset(data, argument)
    check_scale(dataset, argument)
    return dataset


def _as_dataset(data: Any, argument: str) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, pandas.DataFrame):
        return Dataset.from_frame(data)
    if isinstance(data, (torch.Tensor, np.ndarray, list, tuple)):
        return Dataset(data)
    if isinstance(data, (int, float, np.number)):
        raise TypeError(f"{argument} must be an array of data (one row per datum), got the single number {data!r}")
    raise TypeError(
        f"{argument} must be a zoo.Dataset, a torch.Tensor, a numpy array or a pandas DataFrame, "
        f"got {type(data).__name__}"
    )
