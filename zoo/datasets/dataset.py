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

#: How ``Dataset(missing=...)`` may treat NaN in ``x``: None refuses it, "mask" marks it missing.
MISSING = (None, "mask")


def _fill_missing(x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """x with each missing entry set to its column's mean over the observed entries (the column
    is the last axis), rounded where every observed entry of that column is an integer, so the
    filled x stays in every family's support (counts, 0/1, category indices).

    Parameters
    ----------
    x : Tensor, shape (num_data, ..., D)
        NaN where ``observed`` is False.
    observed : BoolTensor, shape of x

    Returns
    -------
    Tensor, shape of x
    """
    columns, seen = x.reshape(-1, x.shape[-1]), observed.reshape(-1, x.shape[-1])
    zero = torch.zeros((), dtype=x.dtype)
    counts = seen.sum(0).clamp(min=1)
    means = torch.where(seen, columns, zero).sum(0) / counts  # (D,)
    integral = torch.where(seen, columns.frac() == 0, torch.ones((), dtype=torch.bool)).all(0)
    means = torch.where(integral, means.round(), means)
    return torch.where(observed, x, means.expand_as(x))


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
    """Data for a model: features ``x``, optional labels ``y``, sequence ``lengths``, per-datum
    ``weights``, missing entries (``missing="mask"``) and known HMM ``states``.

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
    weights : array-like of float, shape (num_data,), optional
        A non-negative weight per row (per sequence for sequences): a fit's log-likelihood is
        sum_i weights[i] * log p(x_i | theta), so an integer weight counts a row that many
        times. ``Fit.log_prob`` and ArviZ's log_likelihood group stay per datum, unweighted.
        Models with a collapsed likelihood take them (every method but ``zoo.Exact`` for Naive
        Bayes, which weighs its counts itself).
    missing : {None, "mask"}
        None (default): NaN in ``x`` is refused. "mask": NaN marks a missing entry, which the
        models that declare ``handles_missing`` (mixture, Naive Bayes, HMM) integrate out
        exactly (the marginal density of the observed entries). Every row (every sequence)
        needs at least one observed entry; an HMM step with none is a step whose emission is
        unobserved.
    observed : BoolTensor, shape of x, optional
        Which entries of ``x`` are observed: set from the NaN of ``x`` when ``missing="mask"``
        (None when nothing is missing). ``x`` then holds each missing entry filled with its
        column's observed mean (rounded for integer columns), a value inside every family's
        support that no masked density reads; ``fit.impute`` gives model-based values.
    states : array-like of int, shape (num_sequences, max_length), optional
        Known hidden states of an HMM's steps, -1 where unknown (and at every padded step):
        the forward algorithm clamps the known ones (partially labelled sequences).

    Raises
    ------
    ValueError
        If ``x`` is empty, holds infinite values or NaN (unless ``missing="mask"``), or ``y`` /
        ``lengths`` / ``weights`` / ``states`` do not match it.

    Examples
    --------
    >>> import torch, zoo
    >>> data = zoo.Dataset(torch.randn(100, 2), y=torch.randint(0, 3, (100,)), name="toy")
    >>> data
    Dataset('toy', x=(100, 2), y=(100,))
    >>> train, test = data.split(test_fraction=0.2, seed=0)
    >>> train.num_data, test.num_data
    (80, 20)
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    name: str | None = None
    description: str = ""
    source: str = ""
    feature_names: tuple[str, ...] | None = None
    truth: dict[str, Any] | None = field(default=None, compare=False)
    weights: torch.Tensor | None = None
    missing: str | None = None
    observed: torch.Tensor | None = None
    states: torch.Tensor | None = None

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
        if self.missing not in MISSING:
            raise ValueError(f"missing must be None (NaN refused) or 'mask' (NaN marks a missing entry), got {self.missing!r}")
        if self.observed is not None:
            x = self._check_observed(x)
        elif not torch.isfinite(x).all():
            bad_values = torch.isinf(x) if self.missing == "mask" else ~torch.isfinite(x)
            if bad_values.any():
                bad = bad_values.nonzero()[0].tolist()
                raise ValueError(
                    f"x holds NaN or infinite values (first at index {tuple(bad)}); remove or impute "
                    "them before fitting, or mark NaN as missing with missing='mask'"
                )
            observed = ~torch.isnan(x)
            object.__setattr__(self, "observed", observed)
            x = self._check_observed(torch.where(observed, x, torch.zeros((), dtype=x.dtype)))
            x = _fill_missing(x, observed)
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
        if self.observed is not None:
            self._check_rows_observed()
        if self.weights is not None:
            object.__setattr__(self, "weights", self._check_weights(x))
        if self.states is not None:
            object.__setattr__(self, "states", self._check_states(x))

    def _check_observed(self, x: torch.Tensor) -> torch.Tensor:
        """x, after checking ``observed`` (x's shape, bool) and that no row lacks an observed entry."""
        observed = _as_tensor(self.observed, "observed")
        if observed.shape != x.shape:
            raise ValueError(f"observed must have x's shape {tuple(x.shape)}, got {tuple(observed.shape)}")
        observed = observed.bool()
        object.__setattr__(self, "observed", observed)
        if not torch.isfinite(x[observed]).all():
            raise ValueError("x holds NaN or infinite values at observed entries")
        return x

    def _check_rows_observed(self) -> None:
        """Raise ValueError unless every row (every sequence's real steps) has an observed entry."""
        x, observed = self.x, self.observed
        assert observed is not None
        real = observed.reshape(len(x), -1)
        if self.lengths is not None:
            steps = torch.arange(x.shape[1], device=x.device) < self.lengths.unsqueeze(-1)
            real = (observed.reshape(x.shape[0], x.shape[1], -1) & steps.unsqueeze(-1)).reshape(len(x), -1)
        empty = ~real.any(1)
        if empty.any():
            row = int(empty.nonzero()[0, 0])
            raise ValueError(
                f"x has no observed entry in row {row} (missing='mask'): a row with every entry missing "
                "carries no information about it; drop it (an HMM step with every entry missing is fine)"
            )

    def _check_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The weights as a float tensor (num_data,), after checking them."""
        weights = _as_tensor(self.weights, "weights").to(x.dtype)
        if weights.shape != (x.shape[0],):
            raise ValueError(
                f"weights must have shape (num_data,) = ({x.shape[0]},), one per row of x, got {tuple(weights.shape)}"
            )
        if not torch.isfinite(weights).all():
            raise ValueError(f"weights must be finite, got {float(weights[~torch.isfinite(weights)][0])} (row {int((~torch.isfinite(weights)).nonzero()[0, 0])})")
        if (weights < 0).any():
            row = int((weights < 0).nonzero()[0, 0])
            raise ValueError(f"weights must be non-negative, got {float(weights[row])} (row {row})")
        if not (weights > 0).any():
            raise ValueError("weights are all zero: at least one row must have a positive weight")
        return weights

    def _check_states(self, x: torch.Tensor) -> torch.Tensor:
        """The known states as a long tensor (num_sequences, max_length), after checking them."""
        states = _as_tensor(self.states, "states")
        if states.dtype.is_floating_point and (~torch.isfinite(states) | (states != states.round())).any():
            raise ValueError("states must hold integer state labels, or -1 where the state is unknown")
        states = states.long()
        if x.dim() < 3 or states.shape != x.shape[:2]:
            raise ValueError(
                "states must have shape (num_sequences, max_length) to match sequences x of shape "
                f"(num_sequences, max_length, num_features), got states {tuple(states.shape)} for x {tuple(x.shape)}"
            )
        if (states < UNLABELED).any():
            raise ValueError(f"states holds {int(states.min())}: states must be 0, 1, ... or -1 where unknown")
        if self.lengths is not None:
            padded = torch.arange(x.shape[1], device=x.device) >= self.lengths.unsqueeze(-1)
            if (states[padded] != UNLABELED).any():
                sequence, step = (padded & (states != UNLABELED)).nonzero()[0].tolist()
                raise ValueError(
                    f"states labels padded step {step} of sequence {sequence} (its length is "
                    f"{int(self.lengths[sequence])}): padded steps must be -1"
                )
        return states

    @classmethod
    def from_frame(
        cls,
        frame: Any,
        label: Any = None,
        *,
        name: str | None = None,
        description: str = "",
        source: str = "",
        missing: str | None = None,
        **columns: Any,
    ) -> "Dataset":
        """A `Dataset` from a pandas DataFrame: numeric columns as features (their names kept as
        ``feature_names``), ``label`` the column of class labels; ``columns``, ``sequence_id``
        and ``time`` choose the features and make sequences (see :mod:`zoo.datasets.frames`);
        ``missing="mask"`` takes empty feature cells as missing entries (see :class:`Dataset`).

        >>> import pandas as pd, zoo
        >>> frame = pd.DataFrame({"a": [0.5, 1.5, 2.0], "b": [1.0, 0.0, 2.0], "kind": ["x", "y", "x"]})
        >>> zoo.Dataset.from_frame(frame, label="kind")
        Dataset(x=(3, 2), y=(3,))
        """
        fields = frame_fields(frame, label, unlabeled=UNLABELED, **columns)
        found = fields.pop("description")
        return cls(**fields, name=name, description=" ".join(part for part in (description, found) if part), source=source, missing=missing)

    @classmethod
    def from_file(cls, path: Any, label: Any = None, *, missing: str | None = None, **columns: Any) -> "Dataset":
        """A `Dataset` from a CSV file (with a header row) or a ``.npy`` array, named after the
        file; ``label``, ``columns``, ``sequence_id``, ``time``, ``missing`` as in
        :meth:`from_frame` (see :func:`zoo.datasets.frames.file_fields`)."""
        return cls(**file_fields(path, label, unlabeled=UNLABELED, **columns), missing=missing)

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
            weights=None if self.weights is None else self.weights[index],
            observed=None if self.observed is None else self.observed[index],
            states=None if self.states is None else self.states[index],
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
        def cut_in_time(values: torch.Tensor | None, padding: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
            """values (N, T, ...) cut at each sequence's ``cut``: (N, max cut, ...), (N, max rest, ...)."""
            if values is None:
                return None, None
            before = torch.full((len(self), int(cut.max())) + tuple(values.shape[2:]), padding, dtype=values.dtype)
            after = torch.full((len(self), int(test_lengths.max())) + tuple(values.shape[2:]), padding, dtype=values.dtype)
            for row, (c, length) in enumerate(zip(cut.tolist(), lengths.tolist())):
                before[row, :c] = values[row, :c]
                after[row, : length - c] = values[row, c:length]
            return before, after

        train_x, test_x = cut_in_time(self.x, 0)
        train_observed, test_observed = cut_in_time(self.observed, True)
        train_states, test_states = cut_in_time(self.states, UNLABELED)
        return (
            replace(self, x=train_x, lengths=cut, observed=train_observed, states=train_states),
            replace(self, x=test_x, lengths=test_lengths, observed=test_observed, states=test_states),
        )

    def __repr__(self) -> str:
        parts = [f"x={tuple(self.x.shape)}"]
        if self.y is not None:
            parts.append(f"y={tuple(self.y.shape)}")
        if self.lengths is not None:
            parts.append(f"lengths={tuple(self.lengths.shape)}")
        if self.weights is not None:
            parts.append(f"weights={tuple(self.weights.shape)}")
        if self.observed is not None:
            parts.append(f"missing={int((~self.observed).sum())} entries")
        if self.states is not None:
            parts.append(f"states={int((self.states != UNLABELED).sum())} known")
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
