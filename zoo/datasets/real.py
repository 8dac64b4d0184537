"""Loaders for the real data sets shipped inside the package (``zoo/datasets/data/``).

Every loader reads its file with `importlib.resources`, so it works from an installed package
and never touches the network. Sources and licences are in ``zoo/datasets/data/README.md``.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
from importlib.resources import files

import numpy as np
import torch

from .dataset import Dataset

__all__ = [
    "old_faithful",
    "old_faithful_sequence",
    "iris",
    "wine",
    "breast_cancer",
    "digits",
    "mnist",
    "earthquakes",
    "galaxies",
    "jsb_chorales",
]

JSB_SPLITS: tuple[str, ...] = ("train", "valid", "test")

_UCI = "UCI Machine Learning Repository (CC BY 4.0), via the copy bundled with scikit-learn"


# --------------------------------------------------------------------------- file access
def _read_bytes(filename: str) -> bytes:
    """The bytes of ``data/filename``, decompressed if the name ends in ``.gz``."""
    raw = (files("zoo.datasets") / "data" / filename).read_bytes()
    return gzip.decompress(raw) if filename.endswith(".gz") else raw


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=None)
def _read_csv(filename: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Header and float64 values, shape (num_rows, num_columns), of a numeric CSV file."""
    reader = csv.reader(io.StringIO(_read_bytes(filename).decode("utf-8")))
    header = tuple(next(reader))
    values = np.array([[float(value) for value in row] for row in reader if row], dtype=np.float64)
    return header, _read_only(values)


def _tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """A fresh tensor (never a view of a cached array)."""
    return torch.tensor(np.asarray(array), dtype=dtype)


def _labelled_csv(filename: str) -> tuple[tuple[str, ...], torch.Tensor, torch.Tensor]:
    """Feature names, x (num_data, num_features) float32 and y (num_data,) int64 of a CSV
    whose last column ``target`` holds the class."""
    header, values = _read_csv(filename)
    if header[-1] != "target":
        raise ValueError(f"{filename}: the last column should be 'target', got {header[-1]!r}")
    return header[:-1], _tensor(values[:, :-1], torch.float32), _tensor(values[:, -1], torch.int64)


def _check_flag(value: object, argument: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{argument} must be True or False, got {value!r}")
    return bool(value)


# --------------------------------------------------------------------------- Old Faithful
_FAITHFUL_SOURCE = (
    "R datasets::faithful; Härdle, W. (1991) Smoothing Techniques with Implementation in S, "
    "Springer; Azzalini, A. and Bowman, A. W. (1990) A look at some data on the Old Faithful "
    "geyser, Applied Statistics 39, 357-365."
)


def old_faithful() -> Dataset:
    """Old Faithful geyser eruptions: durations and waiting times.

    Returns
    -------
    Dataset
        ``x`` of shape (272, 2), float32: columns ``eruptions`` (duration of the eruption,
        minutes) and ``waiting`` (minutes to the next eruption), rows in time order.
        No labels.
    """
    header, values = _read_csv("faithful.csv")
    return Dataset(
        x=_tensor(values, torch.float32),
        name="old_faithful",
        description=(
            "272 consecutive eruptions of the Old Faithful geyser in Yellowstone National Park, "
            "in time order. Column 'eruptions' is the duration of the eruption and 'waiting' the "
            "time until the next eruption, both in minutes. The data fall into two clear groups "
            "(short and long eruptions), the classic example of a two-component bivariate "
            "Gaussian mixture."
        ),
        source=_FAITHFUL_SOURCE,
        feature_names=header,
    )


def old_faithful_sequence() -> Dataset:
    """Old Faithful eruptions as one time series.

    Returns
    -------
    Dataset
        ``x`` of shape (1, 272, 2), float32: one sequence of 272 steps, each step
        (``eruptions``, ``waiting``) in minutes; ``lengths`` = tensor([272]).
    """
    eruptions = old_faithful()
    return Dataset(
        x=eruptions.x.unsqueeze(0),
        lengths=torch.tensor([len(eruptions)]),
        name="old_faithful_sequence",
        description=(
            "The 272 Old Faithful eruptions as a single sequence of 272 time steps (in the order "
            "they were recorded). Each step holds the eruption duration ('eruptions') and the "
            "waiting time to the next eruption ('waiting'), both in minutes. Short and long "
            "eruptions tend to alternate, so a two-state hidden Markov model fits better than "
            "an independent mixture."
        ),
        source=eruptions.source,
        feature_names=eruptions.feature_names,
    )


# --------------------------------------------------------------------------- UCI tables
def iris() -> Dataset:
    """Fisher's iris flowers.

    Returns
    -------
    Dataset
        ``x`` of shape (150, 4), float32 (sepal length, sepal width, petal length,
        petal width, in cm); ``y`` of shape (150,), int64 in {0, 1, 2}.
    """
    names, x, y = _labelled_csv("iris.csv")
    return Dataset(
        x=x,
        y=y,
        name="iris",
        description=(
            "150 iris flowers, 50 of each of three species (y: 0 setosa, 1 versicolor, "
            "2 virginica). The four columns are sepal length, sepal width, petal length and "
            "petal width, in centimetres."
        ),
        source=(
            "Fisher, R. A. (1936) The use of multiple measurements in taxonomic problems, "
            f"Annals of Eugenics 7(2), 179-188. {_UCI}."
        ),
        feature_names=names,
    )


def wine() -> Dataset:
    """Italian wines from three cultivars.

    Returns
    -------
    Dataset
        ``x`` of shape (178, 13), float32 chemical measurements; ``y`` of shape (178,),
        int64 in {0, 1, 2}.
    """
    names, x, y = _labelled_csv("wine.csv")
    return Dataset(
        x=x,
        y=y,
        name="wine",
        description=(
            "178 wines grown in the same region of Italy from three cultivars (y: 0, 1, 2; "
            "59, 71 and 48 wines). The 13 columns are results of chemical analysis: alcohol (%), "
            "malic acid, ash, alcalinity of ash, magnesium, total phenols, flavanoids, "
            "nonflavanoid phenols, proanthocyanins, colour intensity, hue, OD280/OD315 of "
            "diluted wines and proline. The columns have very different scales; standardise "
            "them before fitting."
        ),
        source=f"Aeberhard, S. and Forina, M. (1991) Wine. {_UCI}.",
        feature_names=names,
    )


def breast_cancer() -> Dataset:
    """Breast Cancer Wisconsin (Diagnostic).

    Returns
    -------
    Dataset
        ``x`` of shape (569, 30), float32 features of cell nuclei; ``y`` of shape (569,),
        int64: 0 malignant, 1 benign.
    """
    names, x, y = _labelled_csv("breast_cancer.csv.gz")
    return Dataset(
        x=x,
        y=y,
        name="breast_cancer",
        description=(
            "569 digitised images of fine-needle aspirates of breast masses (y: 0 malignant, "
            "212 rows; 1 benign, 357 rows). For ten properties of the cell nuclei (radius, "
            "texture, perimeter, area, smoothness, compactness, concavity, concave points, "
            "symmetry, fractal dimension) the 30 columns give the mean, the standard error and "
            "the 'worst' (mean of the three largest) value over the nuclei of the image; "
            "lengths are in image units. The columns have very different scales."
        ),
        source=(
            "Wolberg, W., Mangasarian, O., Street, N. and Street, W. (1995) Breast Cancer "
            f"Wisconsin (Diagnostic). {_UCI}."
        ),
        feature_names=names,
    )


def digits(binarize: bool = False, images: bool = False) -> Dataset:
    """Small 8x8 handwritten digits (the UCI optical digits bundled with scikit-learn).

    Parameters
    ----------
    binarize : bool
        If True, pixels are 1.0 where the count is >= 8 and 0.0 otherwise.
    images : bool
        If True, ``x`` has shape (1797, 8, 8) instead of (1797, 64).

    Returns
    -------
    Dataset
        ``x`` of shape (1797, 64) (or (1797, 8, 8)), float32 in 0..16 (or 0/1);
        ``y`` of shape (1797,), int64 digits 0..9.
    """
    binarize = _check_flag(binarize, "binarize")
    images = _check_flag(images, "images")
    names, x, y = _labelled_csv("digits.csv.gz")
    if binarize:
        x = (x >= 8).float()
    if images:
        x = x.reshape(-1, 8, 8)
        names = tuple(str(column) for column in range(8))
    return Dataset(
        x=x,
        y=y,
        name="digits",
        description=(
            "1,797 handwritten digits (y: 0..9) as 8x8 images. Each pixel counts the 'on' pixels "
            "of a 4x4 block of the original 32x32 bitmap, so values are integers 0..16"
            + (", here binarised (1 where the count is at least 8)" if binarize else "")
            + ". x is "
            + ("(num_data, 8, 8), row by column" if images else "(num_data, 64), pixels in row-major order")
            + "."
        ),
        source=f"Alpaydin, E. and Kaynak, C. (1998) Optical Recognition of Handwritten Digits. {_UCI}.",
        feature_names=names,
    )


# --------------------------------------------------------------------------- MNIST
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049


@functools.lru_cache(maxsize=None)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The raw MNIST t10k images (10000, 28, 28) uint8 and labels (10000,) uint8."""
    images = _read_bytes("t10k-images-idx3-ubyte.gz")
    labels = _read_bytes("t10k-labels-idx1-ubyte.gz")
    magic, count, rows, columns = (int(value) for value in np.frombuffer(images, dtype=">u4", count=4))
    if magic != _IMAGES_MAGIC:
        raise ValueError(
            f"t10k-images-idx3-ubyte.gz is not an IDX image file: magic number {magic}, "
            f"expected {_IMAGES_MAGIC}"
        )
    label_magic, label_count = (int(value) for value in np.frombuffer(labels, dtype=">u4", count=2))
    if label_magic != _LABELS_MAGIC:
        raise ValueError(
            f"t10k-labels-idx1-ubyte.gz is not an IDX label file: magic number {label_magic}, "
            f"expected {_LABELS_MAGIC}"
        )
    if count != label_count or len(images) != 16 + count * rows * columns or len(labels) != 8 + count:
        raise ValueError("the MNIST IDX files are truncated or do not match each other")
    pixels = np.frombuffer(images, dtype=np.uint8, offset=16).reshape(count, rows, columns)
    return _read_only(pixels), _read_only(np.frombuffer(labels, dtype=np.uint8, offset=8))


def mnist(binarize: bool = False, images: bool = False) -> Dataset:
    """The 10,000 MNIST test images (28x28 handwritten digits).

    The parsed files are cached, so a second call does not read them again.

    Parameters
    ----------
    binarize : bool
        If True, pixels are 1.0 where the grey level is >= 0.5 and 0.0 otherwise.
    images : bool
        If True, ``x`` has shape (10000, 28, 28) instead of (10000, 784).

    Returns
    -------
    Dataset
        ``x`` of shape (10000, 784) (or (10000, 28, 28)), float32 grey levels in [0, 1]
        (or 0/1); ``y`` of shape (10000,), int64 digits 0..9.

    Raises
    ------
    ValueError
        If the bundled IDX files have the wrong magic numbers (2051 images, 2049 labels).
    """
    binarize = _check_flag(binarize, "binarize")
    images = _check_flag(images, "images")
    pixels, labels = _mnist_arrays()
    x = torch.from_numpy(pixels.astype(np.float32) / np.float32(255.0))
    if binarize:
        x = (x >= 0.5).float()
    if not images:
        x = x.reshape(len(x), -1)
    return Dataset(
        x=x,
        y=_tensor(labels, torch.int64),
        name="mnist",
        description=(
            "The 10,000 images of the official MNIST test split: handwritten digits (y: 0..9) "
            "written by 500 writers, size-normalised and centred in 28x28 pixels. Each pixel is "
            "a grey level scaled from 0..255 to [0, 1] (0 background, 1 ink)"
            + (", here binarised at 0.5" if binarize else "")
            + ". x is "
            + ("(num_data, 28, 28), row by column" if images else "(num_data, 784), pixels in row-major order")
            + ". Split it (e.g. Dataset.split) for training and testing."
        ),
        source=(
            "LeCun, Y., Cortes, C. and Burges, C. J. C., The MNIST database of handwritten digits "
            "(test set, CC BY-SA 3.0); LeCun, Y. et al. (1998) Gradient-based learning applied to "
            "document recognition, Proc. IEEE 86(11), 2278-2324."
        ),
        feature_names=tuple(str(column) for column in range(28)) if images else tuple(
            f"pixel_{row}_{column}" for row in range(28) for column in range(28)
        ),
    )


# --------------------------------------------------------------------------- earthquakes
def earthquakes() -> Dataset:
    """Annual counts of major earthquakes, 1900-2006, as one sequence.

    Returns
    -------
    Dataset
        ``x`` of shape (1, 107, 1), float32 counts; ``lengths`` = tensor([107]).
    """
    header, values = _read_csv("earthquakes.csv")
    counts = _tensor(values[:, header.index("count")], torch.float32)
    return Dataset(
        x=counts.reshape(1, -1, 1),
        lengths=torch.tensor([len(counts)]),
        name="earthquakes",
        description=(
            "The number of earthquakes of magnitude 7 or more in the world in each year from "
            "1900 to 2006 (107 years, one time step per year, in order), as a single sequence "
            "of counts. The counts are overdispersed and serially correlated, the running "
            "example of Poisson hidden Markov models in Zucchini and MacDonald (2009)."
        ),
        source=(
            "U.S. Geological Survey earthquake counts, as in Zucchini, W. and MacDonald, I. L. "
            "(2009) Hidden Markov Models for Time Series: An Introduction Using R, Chapman & Hall."
        ),
        feature_names=("count",),
    )


# --------------------------------------------------------------------------- JSB chorales
@functools.lru_cache(maxsize=None)
def galaxies() -> Dataset:
    """Velocities of 82 galaxies of the Corona Borealis region (km/s).

    Returns
    -------
    Dataset
        ``x`` of shape (82, 1), float32 velocities in km/s (mean 20,828, sd 4,564).
    """
    header, values = _read_csv("galaxies.csv")
    return Dataset(
        x=_tensor(values[:, header.index("velocity")], torch.float32).reshape(-1, 1),
        name="galaxies",
        description=(
            "Recession velocities (km/s) of 82 galaxies in six well-separated conic sections of "
            "an unfilled survey of the Corona Borealis region. Multimodality in the velocities "
            "is evidence of voids and superclusters; the classic data set for choosing the "
            "number of components of a mixture (Roeder 1990; Escobar and West 1995; Richardson "
            "and Green 1997)."
        ),
        source=(
            "Postman, M., Huchra, J. P. and Geller, M. J. (1986) Astronomical Journal 92, 1238-1247; "
            "Roeder, K. (1990) JASA 85, 617-624; as distributed in R's MASS package (galaxies)."
        ),
        feature_names=("velocity",),
    )


def _jsb_json() -> dict[str, list[list[list[int]]]]:
    return json.loads(_read_bytes("jsb-chorales-quarter.json").decode("utf-8"))


def jsb_chorales(split: str = "train") -> Dataset:
    """Bach chorales as binary piano rolls (the Boulanger-Lewandowski JSB split).

    Parameters
    ----------
    split : {"train", "valid", "test"}
        Which part of the fixed split to load (229, 76 and 77 chorales).

    Returns
    -------
    Dataset
        ``x`` of shape (num_sequences, max_length, 51), float32 0/1, zero-padded after each
        chorale's end; ``lengths`` of shape (num_sequences,) the true lengths;
        ``feature_names`` the 51 MIDI pitches (as strings) that occur in the train split.

    Raises
    ------
    ValueError
        If ``split`` is not one of "train", "valid", "test".
    """
    if split not in JSB_SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, JSB_SPLITS))}; got {split!r}")
    data = _jsb_json()
    pitches = sorted({pitch for chorale in data["train"] for step in chorale for pitch in step})
    column = {pitch: index for index, pitch in enumerate(pitches)}
    chorales = data[split]
    lengths = [len(chorale) for chorale in chorales]
    rolls = np.zeros((len(chorales), max(lengths), len(pitches)), dtype=np.float32)
    for sequence, chorale in enumerate(chorales):
        for step, notes in enumerate(chorale):
            for pitch in notes:
                if pitch in column:
                    rolls[sequence, step, column[pitch]] = 1.0
    return Dataset(
        x=torch.from_numpy(rolls),
        lengths=torch.tensor(lengths),
        name=f"jsb_chorales_{split}",
        description=(
            f"The {split} split of the JSB chorales: {len(chorales)} four-part chorales by J. S. "
            "Bach, quantised to quarter notes. Each chorale is a sequence of time steps (one per "
            "quarter note), zero-padded to the longest; each step is a binary piano roll over "
            f"the {len(pitches)} MIDI pitches ({pitches[0]}..{pitches[-1]}) that occur in the "
            "train split, 1 where the pitch sounds. Pitches of the valid and test splits that "
            "never occur in train are dropped. Steps may be silent (all zero)."
        ),
        source=(
            "Boulanger-Lewandowski, N., Bengio, Y. and Vincent, P. (2012) Modeling temporal "
            "dependencies in high-dimensional sequences, ICML; JSON from "
            "github.com/czhuang/JSB-Chorales-dataset. The music is in the public domain."
        ),
        feature_names=tuple(str(pitch) for pitch in pitches),
    )
