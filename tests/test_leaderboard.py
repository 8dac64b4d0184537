"""The one table: `zoo leaderboard --fast` end to end, and what its columns must satisfy."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

import zoo
from zoo.cli import main
from zoo.leaderboard import COLUMNS


@pytest.mark.slow
def test_leaderboard_command_writes_one_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "--fast", "--out", str(tmp_path)]) == 0
    assert "Leaderboard finished" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(table.columns) == COLUMNS
    assert set(table["data"]) == {"two_moons", "ring", "digits (17 levels)"}
    # toys: mixture, flow, VAE (ELBO, IWAE), diffusion (ELBO, IW), GAN, and Naive Bayes on the
    # two moons only (the ring has no classes); digits: MADE, Naive Bayes, categorical mixture,
    # Gaussian mixture, factor analysis, flow, VAE (2), diffusion (2), GAN
    assert len(table) == 8 + 7 + 11
    assert table["model"].str.startswith("naive bayes").groupby(table["data"]).sum().to_dict() == {
        "two_moons": 1, "ring": 0, "digits (17 levels)": 1}
    gan = table[table["model"] == "gan"]
    assert (gan["kind"] == "samples only").all() and gan["log_likelihood"].isna().all()
    scored = table[table["kind"] != "samples only"]
    assert scored["log_likelihood"].notna().all()
    # bits per dimension is minus the log-likelihood over D ln 2 (D = 2 for the toys, 64 for the digits)
    dims = scored["data"].map(lambda name: 64 if name.startswith("digits") else 2)
    expected = -scored["log_likelihood"] / (dims * math.log(2.0))
    assert (scored["bits_per_dim"] - expected).abs().max() < 1e-9
    kinds = dict(zip(table["model"] + " / " + table["data"], table["kind"]))
    assert kinds["autoregressive (MADE) / digits (17 levels)"] == "exact"
    assert kinds["diffusion (discretised ELBO) / digits (17 levels)"] == "bound"
    assert kinds["flow (spline coupling, dequantized) / digits (17 levels)"] == "bound"
    for model, kind in kinds.items():
        if any(word in model for word in ("vae", "diffusion", "dequantized")):
            assert kind == "bound", model
        elif model.startswith(("naive bayes", "mixture of categorical", "gaussian mixture (K=8)")):
            assert kind == "exact", model
    assert table.loc[table["data"] == "ring", "mmd2"].notna().all()
    digits = table[table["data"].str.startswith("digits")]
    assert digits["frechet"].notna().all() and digits["class_coverage"].between(0, 1).all()


def test_leaderboard_refuses_unknown_toys() -> None:
    with pytest.raises(ValueError, match="toys must be among"):
        zoo.leaderboard(fast=True, toys=("checkerboard",), digits=False)


def test_leaderboard_refuses_unknown_settings() -> None:
    with pytest.raises(ValueError, match="setting"):
        zoo.leaderboard(setting="quick", digits=False)
