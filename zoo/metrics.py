"""Sample-based metrics: compare any model's samples with held-out data, density or not.

A GAN has no density, so held-out likelihood, LOO and WAIC cannot rank it against a mixture or a
VAE. These metrics need only samples, so every model that can ``sample`` sits on the same table:

* :func:`mmd`: the unbiased kernel maximum mean discrepancy (Gretton et al., 2012) with a Gaussian
  kernel (median-heuristic bandwidth), its standard error and a permutation p-value;
* :func:`classifier_two_sample_test`: the held-out accuracy of a small classifier trained to tell
  samples from data (Lopez-Paz and Oquab, 2017); 0.5 means it cannot, which is perfect;
* for labelled images, in the feature space of a small classifier zoo trains on the data set
  itself (:func:`train_classifier`; no downloaded network): :func:`frechet_distance` (the FID
  recipe, Heusel et al., 2017, with zoo's own features in place of Inception's) and
  :func:`class_coverage`, the fraction of classes the classifier finds among the samples, which
  exposes mode collapse;
* :func:`mode_coverage`: for data with known modes (``zoo.datasets.load("ring")``), how many
  modes the samples cover and how many samples are of high quality;
* :func:`compare_samples`: all of the above, one row per model.

Every function draws its randomness from a private ``torch.Generator`` seeded by ``seed`` (the
global random state is untouched), works in torch (scikit-learn is not needed), and takes
tensors, numpy arrays or Datasets shaped (N, ...) (each datum is flattened).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from zoo.datasets.dataset import Dataset
from zoo.checks import check_positive_float, check_positive_int, check_probability
from zoo.infer.optimizers import Adam

__all__ = [
    "MMD",
    "ClassifierTest",
    "Coverage",
    "ModeCoverage",
    "FeatureClassifier",
    "mmd",
    "classifier_two_sample_test",
    "train_classifier",
    "frechet_distance",
    "class_coverage",
    "mode_coverage",
    "compare_samples",
]


# ---------------------------------------------------------------------- helpers
def _matrix(value: Any, argument: str) -> torch.Tensor:
    """A Dataset, tensor or array shaped (N, ...) as a float tensor (N, D), checked."""
    if isinstance(value, Dataset):
        value = value.x
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{argument} must be a Dataset, torch.Tensor or numpy array, got {type(value).__name__}")
    value = value.detach().cpu().float()
    if value.dim() == 0 or value.shape[0] < 2:
        raise ValueError(f"{argument} needs at least 2 data (rows), got shape {tuple(value.shape)}")
    value = value.reshape(value.shape[0], -1)
    if not torch.isfinite(value).all():
        raise ValueError(f"{argument} holds NaN or infinite values")
    return value


def _same_width(samples: torch.Tensor, data: torch.Tensor) -> None:
    if samples.shape[1] != data.shape[1]:
        raise ValueError(
            f"samples and data must have the same number of values per datum, got {samples.shape[1]} "
            f"and {data.shape[1]}"
        )


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's generator inside the block (networks' initial weights), restore it after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _normal_upper_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# ---------------------------------------------------------------------- kernel MMD
@dataclass(frozen=True)
class MMD:
    """The result of :func:`mmd`.

    Attributes
    ----------
    mmd2 : float
        The unbiased estimate of MMD^2 (it can be slightly negative when the two agree).
    standard_error : float
        Its first-order (Hoeffding) standard error. Under the null hypothesis (same
        distribution) the first-order term vanishes, so it understates the spread there: use
        ``p_value`` to test, ``standard_error`` to compare models that differ from the data.
    p_value : float or None
        Permutation p-value of "samples and data come from the same distribution" (None when
        ``num_permutations=0``).
    bandwidth : float
        The Gaussian kernel's bandwidth h: k(x, y) = exp(-||x - y||^2 / (2 h^2)).
    num_samples, num_data : int
    """

    mmd2: float
    standard_error: float
    p_value: float | None
    bandwidth: float
    num_samples: int
    num_data: int


def mmd(
    samples: Any,
    data: Any,
    bandwidth: float | None = None,
    num_permutations: int = 200,
    seed: int = 0,
) -> MMD:
    """Unbiased kernel MMD^2 between model samples and (held-out) data, Gaussian kernel.

    MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y), each expectation estimated without the
    diagonal terms (a U-statistic). The bandwidth is the median of the pairwise distances of
    the pooled points (the median heuristic) unless given. Cost: O((m + n)^2) memory and time.

    Parameters
    ----------
    samples : Tensor, array or Dataset, shape (m, ...)
    data : Tensor, array or Dataset, shape (n, ...)
    bandwidth : float, optional
        h; default the median heuristic.
    num_permutations : int
        Permutations of the pooled points for the p-value (0: no p-value).
    seed : int
        Seed of the permutations.

    Returns
    -------
    MMD
    """
    x, y = _matrix(samples, "samples"), _matrix(data, "data")
    _same_width(x, y)
    if bandwidth is not None:
        check_positive_float(bandwidth, "bandwidth")
    check_positive_int(num_permutations, "num_permutations", minimum=0)
    m, n = len(x), len(y)
    pooled = torch.cat([x, y]).double()
    squared = torch.cdist(pooled, pooled).pow(2)
    if bandwidth is None:
        upper = torch.triu_indices(len(pooled), len(pooled), offset=1)
        distances = squared[upper[0], upper[1]].sqrt()
        bandwidth = float(distances.median())
        if bandwidth <= 0:  # more than half the pairs coincide: fall back to the mean distance
            bandwidth = float(distances.mean()) or 1.0
    kernel = torch.exp(-squared / (2.0 * bandwidth**2))
    del squared
    kxx, kyy, kxy = kernel[:m, :m], kernel[m:, m:], kernel[:m, m:]
    within_x = (kxx.sum(1) - 1.0) / (m - 1)  # mean over i' != i of k(x_i, x_i')
    within_y = (kyy.sum(1) - 1.0) / (n - 1)
    f = within_x - kxy.mean(1)  # per-sample terms of the statistic
    g = within_y - kxy.mean(0)
    mmd2 = float(f.mean() + g.mean())
    standard_error = math.sqrt(4.0 * float(f.var()) / m + 4.0 * float(g.var()) / n)
    p_value = None
    if num_permutations:
        generator = torch.Generator().manual_seed(int(seed))
        total = m + n
        row_sums = kernel.sum(1)
        exceed = 0
        for start in range(0, num_permutations, 50):
            count = min(50, num_permutations - start)
            orders = torch.stack([torch.randperm(total, generator=generator) for _ in range(count)])
            first = torch.zeros(count, total, dtype=kernel.dtype)
            first.scatter_(1, orders[:, :m], 1.0)  # 1 where a point plays a sample
            k_first = kernel @ first.T  # (total, count)
            k_second = row_sums[:, None] - k_first
            aka = (first.T * k_first).sum(0)
            second = 1.0 - first
            bkb = (second.T * k_second).sum(0)
            akb = (first.T * k_second).sum(0)
            statistic = (aka - m) / (m * (m - 1)) + (bkb - n) / (n * (n - 1)) - 2.0 * akb / (m * n)
            exceed += int((statistic >= mmd2 - 1e-12).sum())
        p_value = (1 + exceed) / (1 + num_permutations)
    return MMD(mmd2, standard_error, p_value, float(bandwidth), m, n)


# ---------------------------------------------------------------------- classifier two-sample test
@dataclass(frozen=True)
class ClassifierTest:
    """The result of :func:`classifier_two_sample_test`.

    Attributes
    ----------
    accuracy : float
        Held-out accuracy of the classifier telling samples from data: 0.5 is perfect (the two
        cannot be told apart), 1.0 means every sample is recognisable.
    standard_error : float
        sqrt(accuracy (1 - accuracy) / num_test).
    p_value : float
        One-sided p-value of "accuracy is 0.5" (normal approximation to the binomial).
    num_test : int
        Points the accuracy is measured on (half samples, half data).
    """

    accuracy: float
    standard_error: float
    p_value: float
    num_test: int


def _standardizer(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and a floored scale (a constant feature does not blow up)."""
    mean = x.mean(0)
    std = x.std(0)
    floor = 0.1 * float(std.mean()) + 1e-6
    return mean, torch.sqrt(std**2 + floor**2)


def classifier_two_sample_test(
    samples: Any,
    data: Any,
    hidden_size: int = 64,
    num_steps: int = 500,
    learning_rate: float = 0.01,
    test_fraction: float = 0.5,
    seed: int = 0,
) -> ClassifierTest:
    """Classifier two-sample test: can a small network tell the model's samples from data?

    Takes as many samples as data points (the larger set is subsampled, so chance is 0.5),
    standardises the features with the training half, trains a one-hidden-layer network
    (``hidden_size`` ReLU units; 0 for logistic regression) by full-batch Adam for ``num_steps``
    steps on a random ``1 - test_fraction`` of the pooled points, and reports its accuracy on the
    rest.

    Parameters
    ----------
    samples : Tensor, array or Dataset, shape (m, ...)
    data : Tensor, array or Dataset, shape (n, ...)
    hidden_size : int
        Hidden units (0: logistic regression, which sees only differences of means).
    num_steps : int
    learning_rate : float
    test_fraction : float
        Fraction of the pooled points held out to measure the accuracy, in (0, 1).
    seed : int
        Seed of the split, the subsampling and the network's initial weights.

    Returns
    -------
    ClassifierTest
    """
    x, y = _matrix(samples, "samples"), _matrix(data, "data")
    _same_width(x, y)
    check_positive_int(hidden_size, "hidden_size", minimum=0)
    check_positive_int(num_steps, "num_steps")
    check_positive_float(learning_rate, "learning_rate")
    check_probability(test_fraction, "test_fraction")
    generator = torch.Generator().manual_seed(int(seed))
    size = min(len(x), len(y))
    x = x[torch.randperm(len(x), generator=generator)[:size]]
    y = y[torch.randperm(len(y), generator=generator)[:size]]
    pooled = torch.cat([x, y])
    labels = torch.cat([torch.ones(size), torch.zeros(size)])
    order = torch.randperm(2 * size, generator=generator)
    num_test = max(2, int(round(test_fraction * 2 * size)))
    if num_test >= 2 * size:
        raise ValueError(f"too few points ({2 * size} pooled) to hold out {test_fraction:.0%} and train")
    test, train = order[:num_test], order[num_test:]
    mean, scale = _standardizer(pooled[train])
    features = (pooled - mean) / scale
    with _seeded(seed):
        width = features.shape[1]
        network: nn.Module = (
            nn.Sequential(nn.Linear(width, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1))
            if hidden_size
            else nn.Linear(width, 1)
        )
    optimizer = Adam(network.parameters(), learning_rate=learning_rate, weight_decay=1e-4)
    for _ in range(num_steps):
        optimizer.zero_grad()
        logits = network(features[train]).squeeze(-1)
        functional.binary_cross_entropy_with_logits(logits, labels[train]).backward()
        optimizer.step()
    with torch.no_grad():
        predicted = network(features[test]).squeeze(-1) > 0
    accuracy = float((predicted.float() == labels[test]).float().mean())
    standard_error = math.sqrt(max(accuracy * (1 - accuracy), 1e-12) / num_test)
    p_value = _normal_upper_tail((accuracy - 0.5) / math.sqrt(0.25 / num_test))
    return ClassifierTest(accuracy, standard_error, p_value, num_test)


# ---------------------------------------------------------------------- a classifier's features
class FeatureClassifier(nn.Module):
    """A small classifier zoo trains on a labelled data set: its features define the Fréchet
    distance, its predictions the class coverage.

    Inputs are flattened and standardised with the training data's statistics; ``features`` is
    the last hidden layer (after its ReLU).

    Parameters
    ----------
    num_inputs : int
        Values per datum D.
    num_classes : int
    hidden_sizes : sequence of int
        At least one; the last is the feature dimension.
    mean, scale : Tensor, shape (D,)
        Standardisation.
    """

    def __init__(
        self, num_inputs: int, num_classes: int, hidden_sizes: Sequence[int], mean: torch.Tensor, scale: torch.Tensor
    ) -> None:
        super().__init__()
        sizes = [num_inputs, *hidden_sizes]
        layers: list[nn.Module] = []
        for inputs, outputs in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(inputs, outputs), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], num_classes)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("scale", scale.clone())
        self.num_inputs, self.num_classes = num_inputs, num_classes

    def _inputs(self, x: Any) -> torch.Tensor:
        matrix = _matrix(x, "x") if not (isinstance(x, torch.Tensor) and x.dim() == 2) else x.float()
        if matrix.shape[1] != self.num_inputs:
            raise ValueError(f"the classifier takes {self.num_inputs} values per datum, got {matrix.shape[1]}")
        return (matrix - self.mean) / self.scale

    def features(self, x: Any) -> torch.Tensor:
        """Last hidden layer's activations: (N, hidden_sizes[-1])."""
        with torch.no_grad():
            return self.body(self._inputs(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes) of standardised inputs (training)."""
        return self.head(self.body(x))

    def probabilities(self, x: Any) -> torch.Tensor:
        """Class probabilities (N, num_classes)."""
        with torch.no_grad():
            return torch.softmax(self.head(self.body(self._inputs(x))), -1)

    def predict(self, x: Any) -> torch.Tensor:
        """Most probable class of each datum: (N,) int64."""
        return self.probabilities(x).argmax(-1)

    def accuracy(self, data: Dataset) -> float:
        """Accuracy on labelled data."""
        if data.y is None:
            raise ValueError("accuracy needs labelled data (y)")
        labelled = data.y >= 0
        return float((self.predict(data.x[labelled]) == data.y[labelled]).float().mean())


def train_classifier(
    data: Dataset,
    hidden_sizes: Sequence[int] = (128, 64),
    num_epochs: int = 30,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> FeatureClassifier:
    """Train the small classifier whose features :func:`frechet_distance` uses.

    Parameters
    ----------
    data : Dataset
        Labelled (``y``) data, e.g. the training split of ``zoo.datasets.load("digits")``. Use
        the same scale as the samples to be scored (e.g. digits / 16 for a GAN with a sigmoid
        output).
    hidden_sizes : sequence of int
        The last is the feature dimension.
    num_epochs, batch_size, learning_rate : int, int, float
        Adam, minibatches of shuffled data, weight decay 1e-4.
    seed : int
        Seed of the initial weights and the shuffling.

    Returns
    -------
    FeatureClassifier
        In evaluation mode; ``classifier.accuracy(test)`` checks it.
    """
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a zoo.Dataset with labels, got {type(data).__name__}")
    if data.y is None or not bool((data.y >= 0).any()):
        raise ValueError("train_classifier needs labelled data (a Dataset with y)")
    hidden = list(hidden_sizes)
    if not hidden or any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in hidden):
        raise ValueError(f"hidden_sizes must be at least one positive integer, got {hidden_sizes!r}")
    check_positive_int(num_epochs, "num_epochs")
    check_positive_int(batch_size, "batch_size")
    check_positive_float(learning_rate, "learning_rate")
    labelled = data.y >= 0
    x = _matrix(data.x[labelled], "data.x")
    y = data.y[labelled]
    mean = x.mean(0)
    scale = torch.full_like(mean, float(x.std()) + 1e-6)  # one scale: empty pixels stay small
    with _seeded(seed):
        classifier = FeatureClassifier(x.shape[1], int(y.max()) + 1, hidden, mean, scale)
    generator = torch.Generator().manual_seed(int(seed))
    optimizer = Adam(classifier.parameters(), learning_rate=learning_rate, weight_decay=1e-4)
    inputs = (x - mean) / scale
    classifier.train()
    for _ in range(num_epochs):
        for index in torch.randperm(len(x), generator=generator).split(batch_size):
            optimizer.zero_grad()
            functional.cross_entropy(classifier(inputs[index]), y[index]).backward()
            optimizer.step()
    return classifier.eval()


def _covariance(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = features.double()
    mean = features.mean(0)
    centred = features - mean
    return mean, centred.T @ centred / (len(features) - 1)


def frechet_distance(samples: Any, data: Any, classifier: FeatureClassifier) -> float:
    """Fréchet distance between Gaussians fitted to the classifier's features of samples and data.

    ||mu_s - mu_d||^2 + Tr(C_s + C_d - 2 (C_s C_d)^(1/2)), in float64, the trace of the matrix
    square root taken from the eigenvalues of C_s^(1/2) C_d C_s^(1/2) (symmetric, so stable).
    The FID recipe with zoo's own classifier in place of Inception: numbers compare models on
    the same data set and classifier only. 0 is perfect.

    Parameters
    ----------
    samples, data : Tensor, array or Dataset, shape (N, ...)
    classifier : FeatureClassifier
        From :func:`train_classifier` on data of the same scale.

    Returns
    -------
    float
    """
    if not isinstance(classifier, FeatureClassifier):
        raise TypeError("classifier must come from zoo.metrics.train_classifier")
    mean_s, cov_s = _covariance(classifier.features(_matrix(samples, "samples")))
    mean_d, cov_d = _covariance(classifier.features(_matrix(data, "data")))
    values, vectors = torch.linalg.eigh(cov_s)
    root_s = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    middle = root_s @ cov_d @ root_s
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (mean_s - mean_d).pow(2).sum() + cov_s.trace() + cov_d.trace() - 2 * trace_root
    return float(distance.clamp_min(0))


@dataclass(frozen=True)
class Coverage:
    """The result of :func:`class_coverage`.

    Attributes
    ----------
    coverage : float
        Fraction of the classes found among the samples (1.0: every class).
    counts : Tensor, shape (num_classes,)
        Samples the classifier assigns to each class.
    min_count : int
        A class counts as found with at least this many samples.
    mean_confidence : float
        Mean of the classifier's largest class probability over the samples (low for samples
        that look like no class in particular).
    """

    coverage: float
    counts: torch.Tensor
    min_count: int
    mean_confidence: float


def class_coverage(samples: Any, classifier: FeatureClassifier, min_fraction: float | None = None) -> Coverage:
    """The fraction of classes the classifier finds among the samples: mode collapse shows.

    Parameters
    ----------
    samples : Tensor, array or Dataset, shape (N, ...)
    classifier : FeatureClassifier
    min_fraction : float, optional
        A class is found when at least this fraction of the samples fall in it; default a
        quarter of a uniform share, 1 / (4 num_classes).

    Returns
    -------
    Coverage
    """
    if not isinstance(classifier, FeatureClassifier):
        raise TypeError("classifier must come from zoo.metrics.train_classifier")
    x = _matrix(samples, "samples")
    fraction = 0.25 / classifier.num_classes if min_fraction is None else min_fraction
    check_positive_float(fraction, "min_fraction")
    probabilities = classifier.probabilities(x)
    counts = torch.bincount(probabilities.argmax(-1), minlength=classifier.num_classes)
    min_count = max(1, math.ceil(fraction * len(x)))
    found = (counts >= min_count).float().mean()
    return Coverage(float(found), counts, min_count, float(probabilities.max(-1).values.mean()))


@dataclass(frozen=True)
class ModeCoverage:
    """The result of :func:`mode_coverage`.

    Attributes
    ----------
    num_covered : int
        Modes with at least ``min_count`` high-quality samples.
    covered : Tensor, shape (K,), bool
    counts : Tensor, shape (K,)
        High-quality samples nearest each mode.
    high_quality : float
        Fraction of the samples within ``num_sd`` standard deviations of some mode.
    min_count : int
    """

    num_covered: int
    covered: torch.Tensor
    counts: torch.Tensor
    high_quality: float
    min_count: int


def mode_coverage(
    samples: Any, locs: torch.Tensor, scale: float | torch.Tensor, num_sd: float = 3.0, min_fraction: float | None = None
) -> ModeCoverage:
    """How many of a known set of modes the samples cover (Srivastava et al., 2017).

    A sample is of high quality when it lies within ``num_sd * scale`` of its nearest mode; a
    mode is covered when at least ``min_fraction`` of the samples are high-quality samples
    nearest it.

    Parameters
    ----------
    samples : Tensor, array or Dataset, shape (N, D)
    locs : Tensor, shape (K, D)
        The modes (e.g. ``ring.truth["locs"]``).
    scale : float
        Their standard deviation (e.g. ``ring.truth["scale"]``).
    num_sd : float
    min_fraction : float, optional
        Default a quarter of a uniform share, 1 / (4 K).

    Returns
    -------
    ModeCoverage
    """
    x = _matrix(samples, "samples")
    centres = torch.as_tensor(locs, dtype=torch.float32).reshape(len(locs), -1)
    _same_width(x, centres)
    scale_value = float(scale)
    check_positive_float(scale_value, "scale")
    check_positive_float(num_sd, "num_sd")
    fraction = 0.25 / len(centres) if min_fraction is None else min_fraction
    check_positive_float(fraction, "min_fraction")
    distances = torch.cdist(x, centres)
    nearest = distances.argmin(-1)
    close = distances.min(-1).values <= num_sd * scale_value
    counts = torch.bincount(nearest[close], minlength=len(centres))
    min_count = max(1, math.ceil(fraction * len(x)))
    covered = counts >= min_count
    return ModeCoverage(int(covered.sum()), covered, counts, float(close.float().mean()), min_count)


# ---------------------------------------------------------------------- one table
def compare_samples(
    samples: dict[str, Any],
    data: Any,
    classifier: FeatureClassifier | None = None,
    num_permutations: int = 100,
    seed: int = 0,
) -> Any:
    """Every sample-based metric for several models' samples against the same held-out data.

    Parameters
    ----------
    samples : dict of str to Tensor
        Label -> samples shaped like ``data`` (e.g. ``fit.sample(len(test))``).
    data : Dataset, tensor or array
        Held-out data.
    classifier : FeatureClassifier, optional
        For images: adds the Fréchet distance and the class coverage.
    num_permutations : int
        For the MMD's p-value.
    seed : int

    Returns
    -------
    pandas.DataFrame
        Indexed by label, columns ``mmd2``, ``mmd2_se``, ``mmd_p_value``, ``c2st_accuracy``,
        ``c2st_se`` and, with a classifier, ``frechet``, ``class_coverage``.
    """
    import pandas as pd

    if not isinstance(samples, dict) or not samples:
        raise ValueError("samples must be a non-empty dict: label -> samples")
    rows = []
    for label, values in samples.items():
        distance = mmd(values, data, num_permutations=num_permutations, seed=seed)
        test = classifier_two_sample_test(values, data, seed=seed)
        row = {
            "mmd2": distance.mmd2,
            "mmd2_se": distance.standard_error,
            "mmd_p_value": distance.p_value,
            "c2st_accuracy": test.accuracy,
            "c2st_se": test.standard_error,
        }
        if classifier is not None:
            row["frechet"] = frechet_distance(values, data, classifier)
            row["class_coverage"] = class_coverage(values, classifier).coverage
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(list(samples), name="model"))
