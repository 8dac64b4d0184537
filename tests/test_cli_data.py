"""A user's own data through the front door: DataFrames, CSV and .npy files, method strings, and
the ``zoo fit / compare / select --data`` commands (one-line errors, exit status 2)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import zoo
from zoo.cli import main


def iris_frame() -> pd.DataFrame:
    data = zoo.datasets.load("iris")
    frame = pd.DataFrame(data.x.numpy(), columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    frame["species"] = np.array(["setosa", "versicolor", "virginica"])[data.y.numpy()]
    return frame


# --------------------------------------------------------------------------- DataFrames
def test_dataset_from_frame_keeps_names_and_encodes_labels() -> None:
    frame = iris_frame()
    frame.loc[[0, 60], "species"] = None  # two unlabeled rows
    data = zoo.Dataset.from_frame(frame, label="species", name="iris")
    assert data.feature_names == ("sepal_length", "sepal_width", "petal_length", "petal_width")
    torch.testing.assert_close(data.x, zoo.datasets.load("iris").x)
    expected = zoo.datasets.load("iris").y.clone()
    expected[[0, 60]] = zoo.datasets.UNLABELED
    assert torch.equal(data.y, expected)
    assert "0 = setosa, 1 = versicolor, 2 = virginica" in data.description
    # integer labels stay as they are; chosen columns come in the order given
    frame["code"] = zoo.datasets.load("iris").y.numpy()
    chosen = zoo.Dataset.from_frame(frame, label="code", columns=["petal_width", "sepal_length"])
    assert chosen.feature_names == ("petal_width", "sepal_length")
    torch.testing.assert_close(chosen.x, zoo.datasets.load("iris").x[:, [3, 0]])
    assert torch.equal(chosen.y, zoo.datasets.load("iris").y)


def test_dataset_from_frame_builds_padded_sequences_by_id_and_time() -> None:
    frame = pd.DataFrame(
        {
            "walker": ["b", "a", "b", "a", "b", "a", "a"],
            "step": [2, 1, 0, 3, 1, 0, 2],
            "position": [2.0, 1.0, 0.0, 3.0, 1.0, 0.0, 2.0],
            "speed": [0.2, 0.1, 0.0, 0.3, 0.1, 0.0, 0.2],
        }
    )
    data = zoo.Dataset.from_frame(frame, sequence_id="walker", time="step")
    assert data.lengths.tolist() == [3, 4]  # "b" first: order of first appearance
    assert data.x.shape == (2, 4, 2) and data.feature_names == ("position", "speed")
    torch.testing.assert_close(data.x[0, :3, 0], torch.tensor([0.0, 1.0, 2.0]))
    torch.testing.assert_close(data.x[1, :, 0], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert float(data.x[0, 3].abs().sum()) == 0.0  # padding
    # time alone: one sequence, sorted
    single = zoo.Dataset.from_frame(frame[frame.walker == "a"], columns=["position"], time="step")
    assert single.lengths.tolist() == [4] and single.x[0, :, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "column\\(s\\) 'species' are not numeric"),
        ({"label": "kind"}, "label names column\\(s\\) 'kind', which the table lacks"),
        ({"label": "species", "columns": ["petal_width", "petal_size"]}, "columns names column\\(s\\) 'petal_size'"),
        ({"label": "species", "columns": ["species"]}, "columns must not include the label"),
        ({"label": "species", "time": "sepal_length"}, "sequences \\(sequence_id / time\\) take no label column"),
    ],
)
def test_dataset_from_frame_refuses_what_it_cannot_read(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        zoo.Dataset.from_frame(iris_frame(), **options)
    with pytest.raises(TypeError, match="frame must be a pandas DataFrame"):
        zoo.Dataset.from_frame(np.zeros((3, 2)))


def test_fit_takes_a_frame_and_a_method_string() -> None:
    data = zoo.datasets.load("old_faithful")
    frame = pd.DataFrame(data.x.numpy(), columns=list(data.feature_names))
    by_string = zoo.fit(zoo.models.GaussianMixture(2), frame, "svi:delta:num_steps=30")
    by_object = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="delta", num_steps=30, progress=False))
    assert by_string.method == by_object.method
    assert by_string.train.feature_names == ("eruptions", "waiting")
    for name, value in by_object.point.items():
        torch.testing.assert_close(by_string.point[name], value)
    with pytest.raises(ValueError, match="unknown kind 'mcmc'; valid: svi, nuts, exact"):
        zoo.fit(zoo.models.GaussianMixture(2), data, "mcmc")


def read_file(path: Path, **options: object) -> zoo.Dataset:
    return zoo.Dataset.from_file(path, **options)


def test_dataset_from_file_csv_and_npy(tmp_path: Path) -> None:
    iris_frame().to_csv(tmp_path / "flowers.csv", index=False)
    data = read_file(tmp_path / "flowers.csv", label="species")
    assert data.name == "flowers" and data.x.shape == (150, 4) and int(data.y.max()) == 2
    table = np.column_stack([zoo.datasets.load("iris").x.numpy(), zoo.datasets.load("iris").y.numpy()])
    np.save(tmp_path / "table.npy", table)
    data = read_file(tmp_path / "table.npy", label=4, columns=[2, 3])
    assert data.feature_names == ("2", "3") and torch.equal(data.y, zoo.datasets.load("iris").y)
    np.save(tmp_path / "sequences.npy", np.zeros((3, 5, 2)))
    sequences = read_file(tmp_path / "sequences.npy")
    assert sequences.x.shape == (3, 5, 2) and sequences.lengths.tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="does not exist"):
        read_file(tmp_path / "missing.csv")
    (tmp_path / "notes.txt").write_text("a")
    with pytest.raises(ValueError, match="expected a .csv or .npy file"):
        read_file(tmp_path / "notes.txt")


# --------------------------------------------------------------------------- the command line
def numbers_of(table: str) -> list[str]:
    """The table's numbers, but its wall times (the column after the method name)."""
    rows = [line.split() for line in table.splitlines() if line.startswith("svi:") or line.startswith("exact")]
    return [value for row in rows for index, value in enumerate(row) if index != 2]


def test_fit_on_a_csv_file_equals_fit_on_the_bundled_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = zoo.datasets.load("old_faithful")
    pd.DataFrame(data.x.numpy(), columns=list(data.feature_names)).to_csv(tmp_path / "geyser.csv", index=False)
    common = ["--num-components", "2", "--guide", "delta", "--num-steps", "40", "--quiet"]
    assert main(["fit", "gmm", "--dataset", "old_faithful"] + common) == 0
    bundled = capsys.readouterr().out
    assert main(["fit", "gmm", "--data", str(tmp_path / "geyser.csv")] + common) == 0
    own = capsys.readouterr().out
    assert "218 training rows, 54 held out" in own
    assert numbers_of(own) == numbers_of(bundled) and numbers_of(own)
    assert "locs[0, eruptions]" in own  # the file's column names reach the summary


def test_fit_hmm_on_a_long_csv_with_sequence_and_time_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counts = zoo.datasets.load("earthquakes").x[0, :, 0].numpy()
    years = np.arange(1900, 1900 + len(counts))
    shuffled = np.random.RandomState(0).permutation(len(counts))  # rows in any order: --time sorts
    frame = pd.DataFrame({"year": years, "count": counts.astype(int), "region": "world"}).iloc[shuffled]
    frame.to_csv(tmp_path / "quakes.csv", index=False)
    common = ["--num-states", "2", "--guide", "delta", "--num-steps", "40", "--quiet"]
    assert main(["fit", "hmm", "--dataset", "earthquakes"] + common) == 0
    bundled = capsys.readouterr().out
    assert main(["fit", "hmm", "--data", str(tmp_path / "quakes.csv"), "--columns", "count",
                 "--sequence-id", "region", "--time", "year"] + common) == 0
    own = capsys.readouterr().out
    assert "1 training sequences (86 steps)" in own
    assert numbers_of(own) == numbers_of(bundled) and numbers_of(own)


def test_compare_and_select_commands_mirror_the_functions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    iris_frame().to_csv(tmp_path / "flowers.csv", index=False)
    code = main(["compare", "naive_bayes", "--data", str(tmp_path / "flowers.csv"), "--label", "species",
                 "--num-classes", "3", "--methods", "svi:delta:num_steps=50,exact", "--reference", "exact",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "reference posterior: exact" in printed
    table = pd.read_csv(tmp_path / "out" / "comparison.csv", index_col=0)
    assert list(table.index) == ["svi:delta", "exact"]
    assert table.loc["exact", "mean_error"] == 0.0 and table.loc["svi:delta", "sd_error"] == pytest.approx(1.0)
    code = main(["select", "gmm", "--dataset", "old_faithful", "--values", "1,2", "--method",
                 "svi:normal:num_steps=60,num_posterior_samples=200", "--out", str(tmp_path / "out")])
    assert code == 0
    table = pd.read_csv(tmp_path / "out" / "selection.csv", index_col=0)
    assert table.index.name == "num_components" and list(table.index) == [1, 2]
    assert table.loc[2, "test_log_lik"] > table.loc[1, "test_log_lik"]  # two eruption types
    # MAP fits are ranked by BIC (LOO refuses them): --criterion
    code = main(["select", "gmm", "--dataset", "old_faithful", "--values", "1,2", "--method", "svi:delta",
                 "--criterion", "bic", "--out", str(tmp_path / "bic")])
    assert code == 0
    table = pd.read_csv(tmp_path / "bic" / "selection.csv", index_col=0)
    assert table["bic"].idxmin() == 2


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"zoo {zoo.__version__}"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["fit", "gmm", "--data", "missing.csv", "--num-components", "2"], "zoo: error: data file 'missing.csv' does not exist"),
        (["fit", "gmm", "--data", "{csv}", "--num-components", "2"], "zoo: error: column(s) 'species' are not numeric"),
        (["fit", "gmm", "--data", "{csv}", "--columns", "petal_size", "--num-components", "2"], "which the table lacks"),
        (["fit", "gmm", "--dataset", "iris", "--label", "species", "--num-components", "2"], "--label chooses columns of a --data file"),
        (["fit", "gmm", "--num-components", "2"], "zoo fit gmm: error: one of the arguments --dataset --data is required"),
        (["fit", "gmm", "--dataset", "iris", "--data", "{csv}", "--num-components", "2"], "not allowed with argument"),
        (["select", "gmm", "--dataset", "old_faithful", "--values", "2"], "values must list at least two values"),
        (["frobnicate"], "zoo: error: argument command: invalid choice: 'frobnicate'"),
    ],
)
def test_errors_are_one_line_with_exit_status_2(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iris_frame().to_csv(tmp_path / "flowers.csv", index=False)
    arguments = [argument.replace("{csv}", str(tmp_path / "flowers.csv")) for argument in arguments]
    try:
        code = main(arguments)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    assert code == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert re.search(re.escape(message), error), error


def test_a_model_argument_named_like_a_cli_option_is_offered_with_a_model_prefix() -> None:
    """A constructor argument ``num_steps`` (say, a diffusion's noise steps) beside SVI's
    ``--num-steps``: the model's becomes ``--model-num-steps`` and both parse."""
    import argparse

    from zoo.cli import _add_model_options

    class Stepped:
        def __init__(self, num_steps: int = 10, width: int = 2) -> None:
            pass

    parser = argparse.ArgumentParser()
    assert _add_model_options(parser, Stepped) == ["num_steps", "width"]
    parser.add_argument("--num-steps", type=int, default=2000)
    arguments = parser.parse_args(["--model-num-steps", "7", "--num-steps", "3", "--width", "4"])
    assert (arguments.model_num_steps, arguments.num_steps, arguments.model_width) == (7, 3, 4)
