"""Tests of zoo.datasets: the bundled real data, the simulators and the registry."""

from __future__ import annotations

import collections
import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo.datasets as datasets
from zoo.datasets import Dataset, load

DATA = Path(datasets.__file__).parent / "data"

REAL = ["old_faithful", "old_faithful_sequence", "iris", "wine", "breast_cancer", "digits",
        "mnist", "earthquakes", "galaxies", "jsb_chorales"]
SIMULATED = ["gaussian_mixture", "hidden_markov", "naive_bayes", "ring", "two_moons"]


# --------------------------------------------------------------------------- registry
def test_names_are_the_documented_ones() -> None:
    assert datasets.names() == REAL + SIMULATED


@pytest.mark.parametrize("name", REAL + SIMULATED)
def test_every_name_loads_and_is_described(name: str) -> None:
    data = load(name)
    assert isinstance(data, Dataset)
    assert data.x.dtype == torch.float32
    assert data.description and data.source and data.name
    assert data.feature_names is not None and len(data.feature_names) == data.x.shape[-1]
    line = datasets.describe(name)
    assert name in line and str(tuple(data.x.shape)) in line
    assert ("simulated" in line) == (name in SIMULATED)
    if data.y is not None:
        assert data.y.dtype == torch.int64
    if data.lengths is not None:
        assert data.lengths.dtype == torch.int64 and data.x.dim() == 3


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="name must be one of.*old_faithful.*naive_bayes"):
        load("old_faithfull")
    with pytest.raises(ValueError, match="name"):
        datasets.describe("nope")


def test_unknown_option_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="splitt.*valid options: split"):
        load("jsb_chorales", splitt="test")


def test_options_are_passed_to_the_loader() -> None:
    data = load("gaussian_mixture", num_data=500, seed=1)
    assert data.x.shape == (500, 2)
    assert torch.equal(data.x, datasets.simulate.gaussian_mixture(num_data=500, seed=1).x)


# --------------------------------------------------------------------------- real data
def test_old_faithful() -> None:
    data = load("old_faithful")
    assert data.x.shape == (272, 2) and data.y is None
    assert data.feature_names == ("eruptions", "waiting")
    assert data.x[0].tolist() == pytest.approx([3.6, 79.0])
    assert data.x[1].tolist() == pytest.approx([1.8, 54.0])
    sequence = load("old_faithful_sequence")
    assert sequence.x.shape == (1, 272, 2) and sequence.lengths.tolist() == [272]
    assert torch.equal(sequence.x[0], data.x)


def test_galaxies_match_the_published_summary() -> None:
    """The summary the literature quotes (Roeder 1990; Richardson and Green 1997, data in
    thousands of km/s): 82 velocities, mean 20.83 and sd 4.56 thousand km/s,
    from 9,172 to 34,279 km/s."""
    data = load("galaxies")
    assert data.x.shape == (82, 1)
    assert round(float(data.x.mean()) / 1000, 2) == 20.83
    assert round(float(data.x.std()) / 1000, 2) == 4.56
    assert (float(data.x.min()), float(data.x.max())) == (9172.0, 34279.0)


def test_earthquakes_sum_matches_the_csv() -> None:
    with open(DATA / "earthquakes.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    data = load("earthquakes")
    assert data.x.shape == (1, 107, 1) and data.lengths.tolist() == [107]
    assert data.feature_names == ("count",)
    assert "1900" in data.description and "2006" in data.description
    assert int(data.x.sum()) == sum(int(row["count"]) for row in rows)
    assert [int(row["year"]) for row in rows] == list(range(1900, 2007))


def test_jsb_chorales_train() -> None:
    data = load("jsb_chorales")
    assert data.x.shape[0] == 229 and data.x.shape[2] == 51
    assert int(data.lengths.sum()) == 13_807
    assert data.x.shape[1] == int(data.lengths.max())
    assert set(data.x.unique().tolist()) == {0.0, 1.0}
    assert data.feature_names[0] == "43" and data.feature_names[-1] == "96"
    pitches = [int(name) for name in data.feature_names]
    assert pitches == sorted(pitches)
    # padding is zero
    mask = torch.arange(data.x.shape[1]) < data.lengths.unsqueeze(-1)
    assert data.x[~mask].sum() == 0


@pytest.mark.parametrize("split, count", [("valid", 76), ("test", 77)])
def test_jsb_chorales_other_splits(split: str, count: int) -> None:
    data = load("jsb_chorales", split=split)
    assert data.x.shape[0] == count and data.x.shape[2] == 51
    assert data.feature_names == load("jsb_chorales").feature_names
    assert "dropped" in data.description


def test_jsb_chorales_bad_split() -> None:
    with pytest.raises(ValueError, match="split must be one of 'train', 'valid', 'test'"):
        load("jsb_chorales", split="validation")


def test_mnist_matches_the_idx_file() -> None:
    with gzip.open(DATA / "t10k-labels-idx1-ubyte.gz", "rb") as file:
        raw = file.read()
    assert int.from_bytes(raw[:4], "big") == 2049
    expected = collections.Counter(raw[8:])
    data = load("mnist")
    assert data.x.shape == (10_000, 784) and data.x.dtype == torch.float32
    assert float(data.x.min()) == 0.0 and float(data.x.max()) == 1.0
    assert sorted(data.y.unique().tolist()) == list(range(10))
    assert collections.Counter(data.y.tolist()) == expected


def test_mnist_options_and_cache() -> None:
    images = load("mnist", images=True, binarize=True)
    assert images.x.shape == (10_000, 28, 28)
    assert set(images.x.unique().tolist()) == {0.0, 1.0}
    flat = load("mnist")
    assert torch.equal(images.x.reshape(10_000, -1), (flat.x >= 0.5).float())
    flat.x.zero_()  # modifying a returned tensor must not touch the cache
    assert float(load("mnist").x.max()) == 1.0
    assert datasets.real._mnist_arrays.cache_info().hits >= 1


def test_mnist_bad_magic_number(monkeypatch: pytest.MonkeyPatch) -> None:
    real = datasets.real
    original = real._read_bytes

    def corrupt(filename: str) -> bytes:
        data = original(filename)
        return (1234).to_bytes(4, "big") + data[4:] if "images" in filename else data

    real._mnist_arrays.cache_clear()
    monkeypatch.setattr(real, "_read_bytes", corrupt)
    try:
        with pytest.raises(ValueError, match="magic number 1234, expected 2051"):
            real.mnist()
    finally:
        real._mnist_arrays.cache_clear()


def test_digits_and_iris_match_scikit_learn() -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    for name, loader in [("digits", sklearn_datasets.load_digits), ("iris", sklearn_datasets.load_iris),
                         ("wine", sklearn_datasets.load_wine),
                         ("breast_cancer", sklearn_datasets.load_breast_cancer)]:
        reference = loader()
        data = load(name)
        assert data.x.shape == reference.data.shape
        np.testing.assert_array_equal(data.x.numpy(), reference.data.astype(np.float32))
        np.testing.assert_array_equal(data.y.numpy(), reference.target)
        assert list(data.feature_names) == [str(name) for name in reference.feature_names]


def test_digits_options() -> None:
    plain = load("digits")
    assert plain.x.shape == (1797, 64) and float(plain.x.max()) == 16.0
    images = load("digits", images=True)
    assert images.x.shape == (1797, 8, 8)
    assert torch.equal(images.x.reshape(1797, 64), plain.x)
    binary = load("digits", binarize=True)
    assert torch.equal(binary.x, (plain.x >= 8).float())
    with pytest.raises(ValueError, match="binarize"):
        load("digits", binarize="yes")


def test_tables_shapes() -> None:
    for name, shape, classes in [("iris", (150, 4), 3), ("wine", (178, 13), 3), ("breast_cancer", (569, 30), 2)]:
        data = load(name)
        assert data.x.shape == shape and data.y.shape == (shape[0],)
        assert sorted(data.y.unique().tolist()) == list(range(classes))


# --------------------------------------------------------------------------- simulators
SIMULATOR_CASES = [
    ("gaussian_mixture", {}),
    ("gaussian_mixture", {"num_features": 3, "num_components": 4}),
    ("hidden_markov", {}),
    ("hidden_markov", {"emission": "poisson"}),
    ("hidden_markov", {"emission": "categorical", "num_features": 5}),
    ("hidden_markov", {"emission": "bernoulli", "num_features": 6}),
    ("naive_bayes", {}),
    ("naive_bayes", {"features": "bernoulli"}),
    ("naive_bayes", {"features": "categorical"}),
    ("ring", {}),
    ("ring", {"num_modes": 5, "radius": 1.0, "scale": 0.2}),
]


@pytest.mark.parametrize("name, options", SIMULATOR_CASES)
def test_simulators_are_reproducible(name: str, options: dict) -> None:
    state = torch.get_rng_state()
    first, again, other = (load(name, seed=seed, **options) for seed in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state), "the global RNG must not be used"
    assert torch.equal(first.x, again.x)
    assert first.truth.keys() == again.truth.keys()
    for key in first.truth:
        assert torch.equal(first.truth[key], again.truth[key]), key
    assert not torch.equal(first.x, other.x)


def test_gaussian_mixture_truth() -> None:
    data = load("gaussian_mixture", num_data=2000, num_components=3, num_features=2, seed=3)
    truth = data.truth
    assert data.x.shape == (2000, 2) and data.x.dtype == torch.float32
    assert truth["weights"].shape == (3,) and (truth["weights"] >= 0.1).all()
    assert float(truth["weights"].sum()) == pytest.approx(1.0)
    assert truth["locs"].shape == (3, 2) and truth["scales"].shape == (3, 2)
    assert truth["assignment"].shape == (2000,) and truth["assignment"].dtype == torch.int64
    cholesky = truth["corr_cholesky"]
    correlation = cholesky @ cholesky.transpose(-1, -2)
    assert torch.allclose(correlation.diagonal(dim1=-2, dim2=-1), torch.ones(3, 2), atol=1e-5)
    assert (correlation - torch.eye(2)).abs().max() <= 0.6 + 1e-5
    scales = truth["scales"]
    expected = scales.unsqueeze(-1) * correlation * scales.unsqueeze(-2)
    assert torch.allclose(truth["covariance_matrix"], expected, atol=1e-5)
    distances = torch.cdist(truth["locs"], truth["locs"]) + 1e9 * torch.eye(3)
    assert distances.min() >= 4.0 * scales.mean() - 1e-4
    for component in range(3):  # the sample moments match the truth
        points = data.x[truth["assignment"] == component]
        assert torch.allclose(points.mean(0), truth["locs"][component], atol=0.25)
        assert torch.allclose(torch.cov(points.T), truth["covariance_matrix"][component], atol=0.35)


@pytest.mark.parametrize("emission", ["gaussian", "poisson", "categorical", "bernoulli"])
def test_hidden_markov_truth(emission: str) -> None:
    num_features = {"gaussian": 2, "poisson": 1, "categorical": 4, "bernoulli": 3}[emission]
    data = load("hidden_markov", num_sequences=7, length=30, num_states=3, emission=emission,
                num_features=num_features)
    truth = data.truth
    expected_features = 1 if emission in ("poisson", "categorical") else num_features
    assert data.x.shape == (7, 30, expected_features)
    assert data.lengths.tolist() == [30] * 7
    assert truth["initial"].shape == (3,)
    transition = truth["transition"]
    assert transition.shape == (3, 3)
    assert torch.allclose(transition.sum(-1), torch.ones(3))
    assert ((transition.diagonal() >= 0.8) & (transition.diagonal() <= 0.9)).all()
    assert truth["states"].shape == (7, 30) and truth["states"].dtype == torch.int64
    if emission == "gaussian":
        assert truth["locs"].shape == (3, 2) and truth["scales"].shape == (3, 2)
    elif emission == "poisson":
        assert truth["rates"].shape == (3,)
        assert (data.x == data.x.round()).all() and (data.x >= 0).all()
    elif emission == "categorical":
        assert truth["probs"].shape == (3, 4)
        assert set(data.x.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}
    else:
        assert truth["probs"].shape == (3, 3)
        assert set(data.x.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("features", ["gaussian", "bernoulli", "categorical"])
def test_naive_bayes_truth(features: str) -> None:
    data = load("naive_bayes", num_data=300, num_classes=2, num_features=5, features=features)
    truth = data.truth
    assert data.x.shape == (300, 5) and data.y.shape == (300,)
    assert truth["class_weights"].shape == (2,)
    if features == "gaussian":
        assert truth["locs"].shape == (2, 5) and truth["scales"].shape == (2, 5)
    elif features == "bernoulli":
        assert truth["probs"].shape == (2, 5)
        assert set(data.x.unique().tolist()) <= {0.0, 1.0}
    else:
        assert truth["probs"].shape == (2, 5, 4)
        assert torch.allclose(truth["probs"].sum(-1), torch.ones(2, 5))
        assert set(data.x.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}


@pytest.mark.parametrize("name, options, argument", [
    ("gaussian_mixture", {"num_data": 0}, "num_data"),
    ("gaussian_mixture", {"num_components": 2.5}, "num_components"),
    ("gaussian_mixture", {"separation": -1.0}, "separation"),
    ("gaussian_mixture", {"seed": "zero"}, "seed"),
    ("hidden_markov", {"length": -3}, "length"),
    ("hidden_markov", {"emission": "student"}, "emission"),
    ("hidden_markov", {"emission": "categorical", "num_features": 1}, "num_features"),
    ("hidden_markov", {"emission": "poisson", "num_features": 2}, "num_features"),
    ("naive_bayes", {"num_classes": True}, "num_classes"),
    ("naive_bayes", {"features": "poisson"}, "features"),
    ("ring", {"num_modes": 0}, "num_modes"),
    ("ring", {"radius": -2.0}, "radius"),
    ("ring", {"scale": 0.0}, "scale"),
])
def test_simulators_reject_bad_arguments(name: str, options: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        load(name, **options)


# --------------------------------------------------------------------------- Dataset behaviour
@pytest.mark.parametrize("name", ["iris", "jsb_chorales"])
def test_split_is_disjoint_and_covers_all_rows(name: str) -> None:
    data = load(name)
    train, test = data.split(test_fraction=0.25, seed=2)
    assert len(train) + len(test) == len(data)
    rows = {tuple(row.flatten().tolist()) for row in data.x}
    train_rows = [tuple(row.flatten().tolist()) for row in train.x]
    test_rows = [tuple(row.flatten().tolist()) for row in test.x]
    if len(rows) == len(data):  # rows are distinct, so compare their content
        assert set(train_rows).isdisjoint(test_rows)
        assert set(train_rows) | set(test_rows) == rows


def test_split_indices_are_disjoint() -> None:
    data = Dataset(torch.arange(40.0).reshape(20, 2), y=torch.arange(20) % 3)
    train, test = data.split(test_fraction=0.3, seed=0)
    train_ids, test_ids = set(train.x[:, 0].tolist()), set(test.x[:, 0].tolist())
    assert train_ids.isdisjoint(test_ids) and len(test_ids) == 6
    assert train_ids | test_ids == set(data.x[:, 0].tolist())


def test_dataset_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="x holds NaN"):
        Dataset(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="lengths must not exceed"):
        Dataset(torch.zeros(2, 5, 1), lengths=torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="lengths must be at least 1"):
        Dataset(torch.zeros(2, 5, 1), lengths=torch.tensor([0, 3]))


def test_ring_truth() -> None:
    data = load("ring", num_data=800, num_modes=8, radius=2.0, scale=0.05, seed=0)
    locs = data.truth["locs"]
    assert data.x.shape == (800, 2) and locs.shape == (8, 2)
    torch.testing.assert_close(locs.norm(dim=-1), torch.full((8,), 2.0))
    residual = data.x - locs[data.truth["assignment"]]
    assert abs(float(residual.std()) - 0.05) < 0.005
    assert torch.bincount(data.truth["assignment"], minlength=8).min() > 60  # equal weights


def test_two_moons_lie_on_their_half_circles() -> None:
    """Without noise every point is on its moon's unit half circle: the upper centred at (0, 0)
    with y >= 0, the lower centred at (1, 0.5) with y <= 0.5 (scikit-learn's make_moons)."""
    moons = load("two_moons", num_data=101, noise=1e-9, seed=3)
    upper, lower = moons.x[moons.y == 0], moons.x[moons.y == 1]
    assert len(upper) == 51 and len(lower) == 50
    torch.testing.assert_close(upper.norm(dim=-1), torch.ones(51), atol=1e-5, rtol=0)
    torch.testing.assert_close((lower - torch.tensor([1.0, 0.5])).norm(dim=-1), torch.ones(50), atol=1e-5, rtol=0)
    assert (upper[:, 1] >= -1e-5).all() and (lower[:, 1] <= 0.5 + 1e-5).all()
    with pytest.raises(ValueError, match="noise must be a finite number > 0"):
        load("two_moons", noise=0.0)
