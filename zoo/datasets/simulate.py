"""Simulated data sets with known ground truth.

Each simulator draws its true parameters and its data from a local ``torch.Generator`` seeded
by ``seed`` (the global random state is never used or changed), and returns a `Dataset` whose
``truth`` dict holds the true parameters as torch tensors (float32, or int64 for discrete
latent variables).
"""

from __future__ import annotations

import numbers
import operator

import torch

from .dataset import Dataset

__all__ = ["gaussian_mixture", "hidden_markov", "naive_bayes", "ring", "two_moons", "HMM_EMISSIONS", "NAIVE_BAYES_FEATURES"]

HMM_EMISSIONS: tuple[str, ...] = ("gaussian", "poisson", "categorical", "bernoulli")
NAIVE_BAYES_FEATURES: tuple[str, ...] = ("gaussian", "bernoulli", "categorical")

#: Number of categories of each feature in ``naive_bayes(features="categorical")``.
NAIVE_BAYES_CATEGORIES = 4

_SOURCE = "Simulated by zoo.datasets.simulate (seed {seed}); the true parameters are in `truth`."


# --------------------------------------------------------------------------- validation
def _count(value: object, argument: str, minimum: int = 1) -> int:
    """``value`` as an int, or ValueError naming ``argument`` if it is not an integer >= minimum."""
    if isinstance(value, bool):
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {number}")
    return number


def _generator(seed: object) -> torch.Generator:
    if isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    try:
        return torch.Generator().manual_seed(operator.index(seed))
    except (TypeError, RuntimeError):
        raise ValueError(f"seed must be an integer (0 <= seed < 2**64), got {seed!r}") from None


def _choice(value: object, argument: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{argument} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)


# --------------------------------------------------------------------------- parameter draws
def _simplex(size: int, generator: torch.Generator) -> torch.Tensor:
    """Random probabilities, shape (size,), none smaller than a third of another."""
    weights = 0.5 + torch.rand(size, generator=generator)
    return weights / weights.sum()


def _separated_locs(num: int, num_features: int, spacing: float, generator: torch.Generator) -> torch.Tensor:
    """``num`` random points in ``num_features`` dimensions, shape (num, num_features), each
    pair at least ``spacing`` apart (Euclidean), centred at the origin."""
    if num == 1 or spacing <= 0:
        return torch.zeros(num, num_features) if num == 1 else torch.randn(num, num_features, generator=generator)
    half_width = 0.5 * spacing * num ** (1.0 / num_features)
    locs: list[torch.Tensor] = []
    attempts = 0
    while len(locs) < num:
        candidate = (2.0 * torch.rand(num_features, generator=generator) - 1.0) * half_width
        if all(torch.linalg.vector_norm(candidate - loc) >= spacing for loc in locs):
            locs.append(candidate)
        attempts += 1
        if attempts % 100 == 0:  # crowded: widen the box
            half_width *= 1.2
    points = torch.stack(locs)
    return points - points.mean(0)


def _correlation_cholesky(num: int, num_features: int, generator: torch.Generator) -> torch.Tensor:
    """Cholesky factors of random correlation matrices with |rho| <= 0.6, shape (num, D, D).

    The correlation matrix is that of ``W W^T + I`` where each row of ``W`` is a random
    direction of squared norm 1.5, so correlation (i, j) is 0.6 times the cosine of the angle
    between rows i and j of ``W``.
    """
    directions = torch.randn(num, num_features, num_features, generator=generator)
    factors = 1.5 ** 0.5 * directions / torch.linalg.vector_norm(directions, dim=-1, keepdim=True)
    scatter = factors @ factors.transpose(-1, -2) + torch.eye(num_features)
    inverse_sd = scatter.diagonal(dim1=-2, dim2=-1).rsqrt()
    correlation = scatter * inverse_sd.unsqueeze(-1) * inverse_sd.unsqueeze(-2)
    return torch.linalg.cholesky(correlation)


# --------------------------------------------------------------------------- Gaussian mixture
def gaussian_mixture(
    num_data: int = 1000,
    num_components: int = 3,
    num_features: int = 2,
    seed: int = 0,
    separation: float = 4.0,
) -> Dataset:
    """Draws from a mixture of multivariate normals with full covariance matrices.

    Parameters
    ----------
    num_data : int
        Number of points N.
    num_components : int
        Number of components K.
    num_features : int
        Dimension D.
    seed : int
        Seed of the local random generator.
    separation : float
        Every pair of component means is at least ``separation`` times the mean standard
        deviation (``scales.mean()``) apart.

    Returns
    -------
    Dataset
        ``x`` of shape (N, D), float32; no labels. ``truth`` holds ``weights`` (K,),
        ``locs`` (K, D), ``scales`` (K, D) standard deviations, ``corr_cholesky`` (K, D, D)
        Cholesky factors of the correlation matrices, ``covariance_matrix`` (K, D, D) =
        diag(scales) @ corr_cholesky @ corr_cholesky.T @ diag(scales), and ``assignment``
        (N,) int64, the component of each point.

    Raises
    ------
    ValueError
        If a count is not a positive integer or ``separation`` is negative.
    """
    num_data = _count(num_data, "num_data")
    num_components = _count(num_components, "num_components")
    num_features = _count(num_features, "num_features")
    if isinstance(separation, bool) or not isinstance(separation, numbers.Real) or not 0 <= separation < float("inf"):
        raise ValueError(f"separation must be a finite number >= 0, got {separation!r}")
    generator = _generator(seed)

    weights = _simplex(num_components, generator)
    scales = 0.5 + torch.rand(num_components, num_features, generator=generator)
    corr_cholesky = _correlation_cholesky(num_components, num_features, generator)
    locs = _separated_locs(num_components, num_features, float(separation) * float(scales.mean()), generator)
    scale_tril = scales.unsqueeze(-1) * corr_cholesky
    covariance_matrix = scale_tril @ scale_tril.transpose(-1, -2)

    assignment = torch.multinomial(weights, num_data, replacement=True, generator=generator)
    noise = torch.randn(num_data, num_features, 1, generator=generator)
    x = locs[assignment] + (scale_tril[assignment] @ noise).squeeze(-1)
    return Dataset(
        x=x,
        name="gaussian_mixture",
        description=(
            f"{num_data} points in {num_features} dimensions drawn from a mixture of "
            f"{num_components} multivariate normal components with full covariance matrices "
            "(standard deviations 0.5-1.5, correlations within +-0.6); component means are at "
            f"least {separation:g} mean standard deviations apart. The true component of each "
            "point is truth['assignment']."
        ),
        source=_SOURCE.format(seed=seed),
        feature_names=tuple(f"x{index}" for index in range(num_features)),
        truth={
            "weights": weights,
            "locs": locs,
            "scales": scales,
            "corr_cholesky": corr_cholesky,
            "covariance_matrix": covariance_matrix,
            "assignment": assignment,
        },
    )


# --------------------------------------------------------------------------- hidden Markov model
def _sticky_transition(num_states: int, generator: torch.Generator) -> torch.Tensor:
    """Transition matrix, shape (S, S), rows on the simplex, diagonal in [0.8, 0.9]."""
    if num_states == 1:
        return torch.ones(1, 1)
    stay = 0.8 + 0.1 * torch.rand(num_states, generator=generator)
    leave = 0.5 + torch.rand(num_states, num_states, generator=generator)
    leave.fill_diagonal_(0.0)
    leave = leave / leave.sum(-1, keepdim=True) * (1.0 - stay).unsqueeze(-1)
    return leave + torch.diag(stay)


def hidden_markov(
    num_sequences: int = 50,
    length: int = 100,
    num_states: int = 3,
    emission: str = "gaussian",
    num_features: int = 1,
    seed: int = 0,
) -> Dataset:
    """Sequences drawn from a hidden Markov model with sticky transitions.

    ``z_0 ~ Categorical(initial)``, ``z_t ~ Categorical(transition[z_{t-1}])``,
    ``x_t ~ emission(z_t)``.

    Parameters
    ----------
    num_sequences : int
        Number of sequences N.
    length : int
        Length T of every sequence.
    num_states : int
        Number of hidden states S.
    emission : {"gaussian", "poisson", "categorical", "bernoulli"}
        The emission distribution.
    num_features : int
        Dimension D of each observation for "gaussian" and "bernoulli"; the number of
        categories (at least 2) for "categorical"; must be 1 for "poisson".
    seed : int
        Seed of the local random generator.

    Returns
    -------
    Dataset
        ``x`` of shape (N, T, D) for "gaussian" (float) and "bernoulli" (0/1), (N, T, 1) for
        "poisson" (counts) and "categorical" (category indices as floats); ``lengths`` (N,)
        all equal to T. ``truth`` holds ``initial`` (S,), ``transition`` (S, S), ``states``
        (N, T) int64, and ``locs``, ``scales`` (S, D) for "gaussian"; ``rates`` (S,) for
        "poisson"; ``probs`` (S, num_features) for "categorical" and "bernoulli".

    Raises
    ------
    ValueError
        If a count is not a positive integer, ``emission`` is unknown, or ``num_features``
        does not suit the emission.
    """
    num_sequences = _count(num_sequences, "num_sequences")
    length = _count(length, "length")
    num_states = _count(num_states, "num_states")
    emission = _choice(emission, "emission", HMM_EMISSIONS)
    num_features = _count(num_features, "num_features")
    if emission == "poisson" and num_features != 1:
        raise ValueError(f"num_features must be 1 for poisson emissions, got {num_features}")
    if emission == "categorical" and num_features < 2:
        raise ValueError(
            "num_features is the number of categories for categorical emissions and must be "
            f">= 2, got {num_features}"
        )
    generator = _generator(seed)

    initial = _simplex(num_states, generator)
    transition = _sticky_transition(num_states, generator)
    truth: dict[str, torch.Tensor] = {"initial": initial, "transition": transition}
    if emission == "gaussian":
        truth["scales"] = 0.5 + 0.5 * torch.rand(num_states, num_features, generator=generator)
        truth["locs"] = _separated_locs(num_states, num_features, 3.0, generator)
    elif emission == "poisson":
        truth["rates"] = 3.0 * 2.0 ** torch.arange(num_states) * (0.8 + 0.4 * torch.rand(num_states, generator=generator))
    elif emission == "categorical":
        probs = 0.5 + torch.rand(num_states, num_features, generator=generator)
        probs[torch.arange(num_states), torch.arange(num_states) % num_features] += num_features
        truth["probs"] = probs / probs.sum(-1, keepdim=True)
    else:
        truth["probs"] = 0.1 + 0.8 * torch.rand(num_states, num_features, generator=generator)

    states = torch.empty(num_sequences, length, dtype=torch.long)
    states[:, 0] = torch.multinomial(initial, num_sequences, replacement=True, generator=generator)
    for step in range(1, length):
        states[:, step] = torch.multinomial(transition[states[:, step - 1]], 1, generator=generator).squeeze(-1)

    if emission == "gaussian":
        noise = torch.randn(num_sequences, length, num_features, generator=generator)
        x = truth["locs"][states] + truth["scales"][states] * noise
        what = f"{num_features}-dimensional normal observations with diagonal covariance"
    elif emission == "poisson":
        x = torch.poisson(truth["rates"][states], generator=generator).unsqueeze(-1)
        what = "Poisson counts"
    elif emission == "categorical":
        flat = truth["probs"][states].reshape(-1, num_features)
        x = torch.multinomial(flat, 1, generator=generator).reshape(num_sequences, length, 1).float()
        what = f"category indices 0..{num_features - 1}"
    else:
        x = torch.bernoulli(truth["probs"][states], generator=generator)
        what = f"{num_features} binary (0/1) features"
    truth["states"] = states

    return Dataset(
        x=x,
        lengths=torch.full((num_sequences,), length),
        name=f"hidden_markov_{emission}",
        description=(
            f"{num_sequences} sequences of {length} steps drawn from a {num_states}-state hidden "
            f"Markov model with sticky transitions (probability 0.8-0.9 of staying) and {emission} "
            f"emissions: each step holds {what}. The true hidden states are truth['states']."
        ),
        source=_SOURCE.format(seed=seed),
        feature_names=(
            ("count",) if emission == "poisson"
            else ("category",) if emission == "categorical"
            else tuple(f"x{index}" for index in range(num_features))
        ),
        truth=truth,
    )


# --------------------------------------------------------------------------- naive Bayes
def naive_bayes(
    num_data: int = 500,
    num_classes: int = 3,
    num_features: int = 4,
    features: str = "gaussian",
    seed: int = 0,
) -> Dataset:
    """Labelled data drawn from a naive Bayes model: features independent given the class.

    Parameters
    ----------
    num_data : int
        Number of rows N.
    num_classes : int
        Number of classes C.
    num_features : int
        Number of features D.
    features : {"gaussian", "bernoulli", "categorical"}
        The distribution of each feature given the class.
    seed : int
        Seed of the local random generator.

    Returns
    -------
    Dataset
        ``x`` of shape (N, D), float32 (real values, 0/1, or category indices 0..3);
        ``y`` of shape (N,), int64 classes. ``truth`` holds ``class_weights`` (C,), and
        ``locs``, ``scales`` (C, D) for "gaussian"; ``probs`` (C, D) for "bernoulli";
        ``probs`` (C, D, 4) for "categorical".

    Raises
    ------
    ValueError
        If a count is not a positive integer or ``features`` is unknown.
    """
    num_data = _count(num_data, "num_data")
    num_classes = _count(num_classes, "num_classes")
    num_features = _count(num_features, "num_features")
    features = _choice(features, "features", NAIVE_BAYES_FEATURES)
    generator = _generator(seed)

    class_weights = _simplex(num_classes, generator)
    truth: dict[str, torch.Tensor] = {"class_weights": class_weights}
    if features == "gaussian":
        truth["locs"] = 2.0 * torch.randn(num_classes, num_features, generator=generator)
        truth["scales"] = 0.5 + torch.rand(num_classes, num_features, generator=generator)
    elif features == "bernoulli":
        truth["probs"] = 0.1 + 0.8 * torch.rand(num_classes, num_features, generator=generator)
    else:
        logits = 1.5 * torch.randn(num_classes, num_features, NAIVE_BAYES_CATEGORIES, generator=generator)
        truth["probs"] = logits.softmax(-1)

    y = torch.multinomial(class_weights, num_data, replacement=True, generator=generator)
    if features == "gaussian":
        x = truth["locs"][y] + truth["scales"][y] * torch.randn(num_data, num_features, generator=generator)
        what = "normal features"
    elif features == "bernoulli":
        x = torch.bernoulli(truth["probs"][y], generator=generator)
        what = "binary (0/1) features"
    else:
        flat = truth["probs"][y].reshape(-1, NAIVE_BAYES_CATEGORIES)
        x = torch.multinomial(flat, 1, generator=generator).reshape(num_data, num_features).float()
        what = f"categorical features (category indices 0..{NAIVE_BAYES_CATEGORIES - 1})"

    return Dataset(
        x=x,
        y=y,
        name=f"naive_bayes_{features}",
        description=(
            f"{num_data} rows of {num_features} {what} drawn from a naive Bayes model with "
            f"{num_classes} classes: the class y is drawn first, then each feature independently "
            "given the class."
        ),
        source=_SOURCE.format(seed=seed),
        feature_names=tuple(f"x{index}" for index in range(num_features)),
        truth=truth,
    )


# --------------------------------------------------------------------------- ring of Gaussians
def ring(
    num_data: int = 2000,
    num_modes: int = 8,
    radius: float = 2.0,
    scale: float = 0.05,
    seed: int = 0,
) -> Dataset:
    """Points from equally weighted isotropic Gaussians whose means sit evenly on a circle.

    The classic test of mode collapse in GANs (Metz et al., 2017): a generator that covers only
    some of the modes shows at a glance. ``zoo.metrics.mode_coverage`` counts the modes covered.

    Parameters
    ----------
    num_data : int
        Number of points N.
    num_modes : int
        Number of Gaussians K, with means at angles 2 pi k / K on the circle.
    radius : float
        Radius of the circle (> 0).
    scale : float
        Standard deviation of every Gaussian, in each coordinate (> 0).
    seed : int
        Seed of the local random generator.

    Returns
    -------
    Dataset
        ``x`` of shape (N, 2), float32; no labels. ``truth`` holds ``locs`` (K, 2), ``scale``
        (a 0-dim tensor), ``weights`` (K,) and ``assignment`` (N,) int64, the mode of each point.

    Raises
    ------
    ValueError
        If a count is not a positive integer, or ``radius`` / ``scale`` is not a positive number.
    """
    num_data = _count(num_data, "num_data")
    num_modes = _count(num_modes, "num_modes")
    for value, argument in ((radius, "radius"), (scale, "scale")):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < float("inf"):
            raise ValueError(f"{argument} must be a finite number > 0, got {value!r}")
    generator = _generator(seed)
    angles = 2 * torch.pi * torch.arange(num_modes) / num_modes
    locs = float(radius) * torch.stack([angles.cos(), angles.sin()], dim=-1)
    assignment = torch.randint(num_modes, (num_data,), generator=generator)
    x = locs[assignment] + float(scale) * torch.randn(num_data, 2, generator=generator)
    return Dataset(
        x=x,
        name="ring",
        description=(
            f"{num_data} points from {num_modes} equally weighted Gaussians (standard deviation "
            f"{scale:g}) whose means sit evenly on a circle of radius {radius:g}: the classic test of "
            "mode collapse. The mode of each point is truth['assignment']."
        ),
        source=_SOURCE.format(seed=seed),
        feature_names=("x0", "x1"),
        truth={
            "locs": locs,
            "scale": torch.tensor(float(scale)),
            "weights": torch.full((num_modes,), 1.0 / num_modes),
            "assignment": assignment,
        },
    )


# --------------------------------------------------------------------------- two moons
def two_moons(num_data: int = 2000, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two interleaved half circles with Gaussian noise (scikit-learn's ``make_moons`` recipe).

    Parameters
    ----------
    num_data : int
        Number of points N (the upper moon gets the first ceil(N / 2)).
    noise : float
        Standard deviation of the Gaussian noise added to each coordinate (> 0).
    seed : int
        Seed of the local random generator.

    Returns
    -------
    Dataset
        ``x`` of shape (N, 2), float32; ``y`` the moon of each point (0 upper, 1 lower).
    """
    num_data = _count(num_data, "num_data")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not 0 < noise < float("inf"):
        raise ValueError(f"noise must be a finite number > 0, got {noise!r}")
    generator = _generator(seed)
    upper = (num_data + 1) // 2
    angles = torch.pi * torch.rand(num_data, generator=generator)
    moon = (torch.arange(num_data) >= upper).long()
    first = torch.stack([angles.cos(), angles.sin()], -1)
    second = torch.stack([1 - angles.cos(), 0.5 - angles.sin()], -1)
    x = torch.where(moon.unsqueeze(-1).bool(), second, first) + float(noise) * torch.randn(num_data, 2, generator=generator)
    return Dataset(
        x=x,
        y=moon,
        name="two_moons",
        description=f"{num_data} points on two interleaved half circles with Gaussian noise of standard deviation {noise:g}.",
        source=_SOURCE.format(seed=seed),
        feature_names=("x0", "x1"),
    )
