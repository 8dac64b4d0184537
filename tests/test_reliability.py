"""Faults the runner survives and files it checks (issue 13): divergence, interrupts, damaged
files, grad mode. The per-model catalogue of bad inputs is tests/test_catalogue.py."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import zoo
from zoo.infer import optimizers


def _finite_partial_fit(error: zoo.FitError) -> zoo.Fit:
    partial = error.fit
    assert partial is not None and partial.interrupted
    for value in partial.draws.values():
        assert value.shape[:2] == (1, 1)  # the last good point, not draws from the failed guide
        assert torch.isfinite(value).all()
    assert torch.isfinite(partial.log_prob()).all()
    return partial


@pytest.mark.parametrize("guide", ["normal", "mvn"])
@pytest.mark.parametrize("model_name", ["GaussianMixture", "HiddenMarkovModel"])
def test_adam_divergence_keeps_the_parameters_before_the_failing_update(model_name: str, guide: str) -> None:
    """learning_rate=1e10: the first update carries the scales to exp(1e10) = inf, which Pyro's
    distributions refuse (GMM) or which make the loss NaN (HMM): the partial fit holds the
    parameters before that update, whose log-likelihood is finite."""
    model, data = getattr(zoo.models, model_name).example()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pyro's "Encountered NaN: loss"
        with pytest.raises(zoo.FitError, match=r"NaN or infinite at step 1 ") as caught:
            zoo.fit(model, data, zoo.SVI(guide=guide, learning_rate=1e10, num_steps=40, progress=False))
    partial = _finite_partial_fit(caught.value)
    assert len(partial.losses) == 1


@pytest.mark.parametrize("exception", [IndexError, ValueError, RuntimeError])
def test_an_error_inside_the_lbfgs_line_search_is_a_fit_error(monkeypatch: pytest.MonkeyPatch, exception: type) -> None:
    model, data = zoo.models.GaussianMixture.example()
    calls = {"count": 0}
    original = optimizers.LBFGS.step

    def failing_step(self: optimizers.LBFGS, closure: object) -> torch.Tensor:
        calls["count"] += 1
        if calls["count"] == 3:
            raise exception("list index out of range")
        return original(self, closure)

    monkeypatch.setattr(optimizers.LBFGS, "step", failing_step)
    with pytest.raises(zoo.FitError, match=rf"at step 2 .*{exception.__name__}: list index") as caught:
        zoo.fit(model, data, zoo.SVI(guide="delta", num_steps=40, tolerance=0.0, progress=False))
    assert isinstance(caught.value.__cause__, exception)
    _finite_partial_fit(caught.value)


# ---------------------------------------------------------------------- files
def _saved_fit(tmp_path: object) -> tuple[zoo.Fit, object]:
    model, data = zoo.models.GaussianMixture.example()
    fit = zoo.fit(model, data, zoo.SVI(num_steps=3, num_posterior_samples=4, progress=False))
    return fit, fit.save(tmp_path / "fit.zoo")  # type: ignore[operator]


def _rewrite(path: object, change: object) -> None:
    """Load the raw payload, let ``change`` edit it, write it back (keeping the old checksum)."""
    payload = torch.load(path, weights_only=True)
    change(payload)  # type: ignore[operator]
    torch.save(payload, path)


def _flip_one_bit(payload: dict) -> None:
    locs = payload["draws"]["locs"]
    locs.view(torch.int32).reshape(-1)[5] ^= 1 << 20


@pytest.mark.parametrize(
    "change, message",
    [
        (_flip_one_bit, "checksum does not match"),
        (lambda payload: payload.update(draws={"oops": torch.zeros(1, 1)}), "checksum does not match"),
        (lambda payload: payload.update(checksum="0" * 64), "checksum does not match"),
        (lambda payload: payload.update(version=99), "format version 99"),
        (lambda payload: payload["draws"].update(locs=torch.zeros(1, 1, 1).expand(1, 10**6, 10**4)), "repeats its storage"),
        (lambda payload: payload.update(draws=[1, 2]), "not a tensor or a dict"),
    ],
    ids=["bit flip", "replaced draws", "wrong checksum", "version", "expanded tensor", "not tensors"],
)
def test_a_changed_file_is_refused_saying_what_is_wrong(tmp_path: object, change: object, message: str) -> None:
    _, path = _saved_fit(tmp_path)
    _rewrite(path, change)
    with pytest.raises(ValueError, match=f"is not a zoo fit file, or it is damaged: .*{message}"):
        zoo.load(path)


def _resign(payload: dict) -> None:
    """Give an edited payload a valid checksum: what a deliberate forger would do."""
    from zoo.io import HEADER, checksum

    tensors = {name: value for name, value in payload.items() if name not in HEADER}
    payload["checksum"] = checksum(payload["metadata"], tensors)


def _huge_vae_config(payload: dict) -> None:
    import json

    metadata = json.loads(payload["metadata"])
    metadata["model"]["config"]["hidden_sizes"] = [30000, 30000]
    payload["metadata"] = json.dumps(metadata)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda payload: payload.update(draws={"oops": torch.zeros(1, 1)}), r"draws hold sites \['oops'\]"),
        (lambda payload: payload["draws"].update(locs=torch.zeros(1, 4, 3, 2)), "draws of 'locs' are shaped"),
        (lambda payload: payload["point"]["scales"].fill_(float("nan")), "point 'scales' holds NaN"),
        (lambda payload: payload["draws"].update(locs=payload["draws"]["locs"].long()), "holds torch.int64"),
    ],
    ids=["unknown site", "wrong shape", "NaN point", "integer draws"],
)
def test_records_that_do_not_fit_the_declared_model_are_refused_even_with_a_valid_checksum(
    tmp_path: object, change: object, message: str
) -> None:
    _, path = _saved_fit(tmp_path)
    _rewrite(path, lambda payload: (change(payload), _resign(payload)))  # type: ignore[operator]
    with pytest.raises(ValueError, match=f"is damaged: .*{message}"):
        zoo.load(path)


def test_a_tiny_file_asking_for_huge_layers_is_refused_before_building_them(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A VAE file whose config asks for 30,000-wide layers (3.6e9 weights, 14 GB): the model is
    examined on the meta device and refused because its state does not match the file's; its
    real constructor is never called."""
    model, data = zoo.models.VAE.example()
    fit = zoo.fit(model, data, zoo.SVI(num_steps=2, progress=False))
    path = fit.save(tmp_path / "vae.zoo")  # type: ignore[operator]
    _rewrite(path, lambda payload: (_huge_vae_config(payload), _resign(payload)))
    with pytest.raises(ValueError, match="model state does not match the model it declares"):
        zoo.load(path)


def test_random_byte_flips_never_load_changed_values(tmp_path: object) -> None:
    """Flip one bit at 40 places spread over the file: each load is refused, or (a flip in the
    zip container's slack) gives exactly the saved fit."""
    fit, path = _saved_fit(tmp_path)
    original = path.read_bytes()  # type: ignore[attr-defined]
    generator = torch.Generator().manual_seed(0)
    positions = torch.randint(len(original), (40,), generator=generator).tolist()
    refused = 0
    for position in positions:
        damaged_bytes = bytearray(original)
        damaged_bytes[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(damaged_bytes))  # type: ignore[attr-defined]
        try:
            loaded = zoo.load(path)
        except ValueError:
            refused += 1
            continue
        for name in fit.draws:
            assert torch.equal(loaded.draws[name], fit.draws[name])
    assert refused > 0


def test_a_version_1_file_loads_with_a_warning_and_is_still_checked(tmp_path: object) -> None:
    fit, path = _saved_fit(tmp_path)
    _rewrite(path, lambda payload: (payload.update(version=1), payload.pop("checksum")))
    with pytest.warns(UserWarning, match="version 1.*no.*checksum|version 1, written before files carried a checksum"):
        loaded = zoo.load(path)
    assert all(torch.equal(loaded.draws[name], fit.draws[name]) for name in fit.draws)
    _rewrite(path, lambda payload: payload.update(draws={"oops": torch.zeros(1, 1)}))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"draws hold sites \['oops'\]"):
        zoo.load(path)


@pytest.mark.parametrize("where, message", [("dir", "is a directory"), ("under_file", "is a file, not a folder"), ("missing", "does not exist")])
def test_saving_to_a_place_that_cannot_hold_a_file_is_refused_before_writing(tmp_path: object, where: str, message: str) -> None:
    fit, _ = _saved_fit(tmp_path)
    target = {"dir": tmp_path, "under_file": tmp_path / "fit.zoo" / "x.zoo", "missing": tmp_path / "no" / "x.zoo"}[where]  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        fit.save(target)


# ---------------------------------------------------------------------- the command line
def _readme_commands() -> list[list[str]]:
    """Every ``zoo fit ...`` command the README shows (inline code, possibly across lines)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    spans = re.findall(r"`(zoo fit [^`]*)`", readme)
    return [span.split()[1:] for span in spans if "--dataset" in span]


@pytest.mark.slow
def test_every_zoo_fit_command_of_the_readme_runs(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    """At a fast setting, each with --out (the Exact fit's figure once crashed on a missing
    loss history), writing every output."""
    from zoo.cli import main

    commands = _readme_commands()
    assert len(commands) >= 3 and any("exact" in words for words in commands)
    for index, words in enumerate(commands):
        out = tmp_path / f"run{index}"  # type: ignore[operator]
        words = [str(out) if word == "DIR" else word for word in words]
        if "--out" not in words:
            words += ["--out", str(out)]
        code = main(words + ["--num-steps", "20", "--num-posterior-samples", "20", "--quiet"])
        assert code == 0, (words, capsys.readouterr().err)
        for name in ("fit.zoo", "inference_data.nc", "summary.csv", "fit.png"):
            assert (out / name).stat().st_size > 0
        zoo.load(out / "fit.zoo")


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_cli_checks_out_before_any_fit(tmp_path: object, where: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from zoo import cli

    fits: list[object] = []
    monkeypatch.setattr(cli, "run_fit", lambda *arguments: fits.append(arguments))
    existing = tmp_path / "a_file"  # type: ignore[operator]
    existing.write_text("")
    out = existing if where == "file" else existing / "sub"
    code = cli.main(["fit", "gmm", "--dataset", "old_faithful", "--num-components", "2", "--out", str(out), "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and not fits
    assert error.count("\n") == 1 and error.startswith("zoo: error: --out") and "a file" in error


def test_cli_a_failed_fit_is_one_line_with_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.cli import main

    code = main(["fit", "gmm", "--dataset", "old_faithful", "--num-components", "2", "--learning-rate", "1e10",
                 "--num-steps", "20", "--quiet"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert error[-1].startswith("zoo: error: FitError: the loss became NaN or infinite")
    assert not any("Traceback" in line or "warn" in line for line in error)


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_cli_seed_out_of_range_is_refused(seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.cli import main

    assert main(["fit", "gmm", "--dataset", "old_faithful", "--num-components", "2", "--seed", seed, "--quiet"]) == 2
    assert "seed must be in [0, 2**63 - 1]" in capsys.readouterr().err


def test_cli_help_lists_only_what_each_model_takes() -> None:
    from zoo.cli import build_parser
    from zoo.models import registry

    parser = build_parser()
    for name in registry.names():
        model_class = registry.get(name)
        arguments = parser.parse_args(["fit", name, "--dataset", "iris"] + [
            word for option in _required_options(parser, name) for word in (option, "1")
        ])
        assert arguments.method in model_class.methods  # the default is one it supports
        sub = _fit_subparser(parser, name)
        method_action = next(action for action in sub._actions if action.dest == "method")
        assert set(method_action.choices) == set(model_class.methods)
        guide_actions = [action for action in sub._actions if action.dest == "guide"]
        if "svi" not in model_class.methods:
            assert not guide_actions
        else:
            for guide in model_class.unsupported_guides:
                assert f" {guide}," not in guide_actions[0].help and f" {guide} " not in guide_actions[0].help


def _fit_subparser(parser: object, name: str) -> object:
    import argparse

    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))  # type: ignore[attr-defined]
    models = next(action for action in commands.choices["fit"]._actions if isinstance(action, argparse._SubParsersAction))
    return models.choices[name]


def _required_options(parser: object, name: str) -> list[str]:
    sub = _fit_subparser(parser, name)
    return [action.option_strings[0] for action in sub._actions if action.required and action.option_strings and action.dest.startswith("model_")]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- arguments
def test_a_misspelt_sample_option_is_refused_naming_the_valid_ones() -> None:
    model, data = zoo.models.HiddenMarkovModel.example()
    fit = zoo.fit(model, data, zoo.SVI(guide="delta", num_steps=3, progress=False))
    with pytest.raises(TypeError, match="unknown keyword argument.*'lenght'; it takes: length"):
        fit.sample(2, lenght=50)
    assert fit.sample(2, length=7).shape[:2] == (2, 7)


@pytest.mark.parametrize("make", [
    lambda fit, model, data: fit.sample(10**9),
    lambda fit, model, data: zoo.fit(model, data, zoo.SVI(num_steps=3, num_posterior_samples=10**9, progress=False)),
    lambda fit, model, data: zoo.fit(model, data, zoo.NUTS(num_samples=10**8, num_chains=10, progress=False)),
], ids=["fit.sample", "SVI num_posterior_samples", "NUTS num_samples"])
def test_sizes_beyond_memory_are_refused_with_the_estimate_before_the_work(make: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """GMM on 2 features: 18 numbers per draw, 4 bytes each: 10**9 draws are 67 GiB."""
    model, data = zoo.models.GaussianMixture.example()
    fit = zoo.fit(model, data, zoo.SVI(guide="delta", num_steps=3, progress=False))
    steps: list[int] = []
    monkeypatch.setattr(optimizers.Adam, "step", lambda self: steps.append(1))
    with pytest.raises(ValueError, match=r"would take about \d+\.\d GiB, more than the 16 GiB"):
        make(fit, model, data)  # type: ignore[operator]
    assert not steps


def test_numpy_numbers_are_taken_and_kept_as_python_numbers() -> None:
    import json

    import numpy as np

    method = zoo.SVI(num_steps=np.int64(3), learning_rate=np.float32(0.5), seed=np.uint64(2), progress=False)
    assert type(method.num_steps) is int and type(method.learning_rate) is float and type(method.seed) is int
    json.dumps(method.to_dict())
    model, data = zoo.models.GaussianMixture.example()
    fit = zoo.fit(model, data, method)
    assert fit.sample(np.int64(3), seed=np.int32(1)).shape == (3, 2)


def test_nuts_chain_seeds_stay_in_range_at_the_largest_seed() -> None:
    model, data = zoo.models.GaussianMixture.example()
    method = zoo.NUTS(num_warmup=2, num_samples=3, num_chains=2, seed=2**63 - 1, initialization="model", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3 draws do not mix
        fit = zoo.fit(model, data, method)
    assert fit.num_chains == 2


# ---------------------------------------------------------------------- grad mode and interrupts
def _global_state() -> tuple:
    import pyro

    return (
        torch.is_grad_enabled(),
        torch.get_num_threads(),
        torch.random.get_rng_state().clone(),
        dict(pyro.get_param_store().items()),
    )


def _same_state(before: tuple, after: tuple) -> bool:
    return before[:2] == after[:2] and torch.equal(before[2], after[2]) and before[3].keys() == after[3].keys()


def test_a_fit_inside_no_grad_trains_and_leaves_no_grad_on() -> None:
    model, data = zoo.models.HiddenMarkovModel.example()
    with torch.no_grad():
        fit = zoo.fit(model, data, zoo.SVI(guide="delta", num_steps=30, progress=False))
        assert not torch.is_grad_enabled()
    assert len(fit.losses) > 1 and fit.losses[-1] < fit.losses[0]


@pytest.mark.parametrize("where", ["set-up", "training", "drawing"])
def test_an_interrupt_at_any_moment_leaves_the_session_as_it_was(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C before the first step (nothing to return: KeyboardInterrupt), during training or
    while drawing from the trained guide (an interrupted fit): grad mode, threads, the global RNG
    and the param store are as before, and the next fit works."""
    import pyro

    from zoo.infer import svi

    model, data = zoo.models.GaussianMixture.example()
    targets = {"set-up": (svi, "_make_optimizer"), "training": (optimizers.Adam, "step"), "drawing": (svi, "_posterior_draws")}
    owner, name = targets[where]
    original = getattr(owner, name)

    def interrupt(*arguments: object, **options: object) -> object:
        if options.get("point_only"):  # the fallback after the interrupt: the trained point
            return original(*arguments, **options)
        raise KeyboardInterrupt

    monkeypatch.setattr(owner, name, interrupt)
    pyro.param("users_own", torch.ones(2))
    torch.set_num_threads(torch.get_num_threads())
    method = zoo.SVI(guide="normal", num_steps=20, num_posterior_samples=5, progress=False, num_threads=1)
    with torch.no_grad():
        before = _global_state()
        if where == "set-up":
            with pytest.raises(KeyboardInterrupt):
                zoo.fit(model, data, method)
        else:
            fit = zoo.fit(model, data, method)
            assert fit.interrupted and all(torch.isfinite(value).all() for value in fit.draws.values())
        after = _global_state()
    assert _same_state(before, after)
    monkeypatch.undo()
    assert not zoo.fit(model, data, method).interrupted
    pyro.get_param_store().clear()


def test_an_interrupt_in_the_second_chains_warm_up_keeps_the_first_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.infer import mcmc

    model, data = zoo.models.GaussianMixture.example()
    original = mcmc._sample_chain

    def chain_two_interrupted(model: object, data: object, method: object, chain: int, *arguments: object, **options: object) -> object:
        if chain == 1:
            raise KeyboardInterrupt  # at the start of its warm-up: it has kept no draw
        return original(model, data, method, chain, *arguments, **options)

    monkeypatch.setattr(mcmc, "_sample_chain", chain_two_interrupted)
    method = zoo.NUTS(num_warmup=3, num_samples=4, num_chains=2, initialization="model", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = zoo.fit(model, data, method)
    assert fit.interrupted and fit.num_chains == 1 and fit.num_draws == 4


# ---------------------------------------------------------------------- data
@pytest.mark.parametrize("data, error, message", [
    (torch.zeros(10, 2, device="meta"), ValueError, "meta device"),
    (3.0, TypeError, "the single number"),
    (torch.ones(5, 2, dtype=torch.float64) * 1e300, ValueError, "beyond float32's range"),
    (torch.ones(5, 2) * 1e18, ValueError, "Standardise the data"),
], ids=["meta", "scalar", "float64 overflow", "1e18"])
def test_data_zoo_cannot_compute_with_is_refused_saying_why(data: object, error: type, message: str) -> None:
    model, _ = zoo.models.GaussianMixture.example()
    with pytest.raises(error, match=message):
        zoo.fit(model, data, zoo.SVI(num_steps=2, progress=False))


def test_naive_bayes_exact_on_huge_values_is_refused_not_minus_infinity() -> None:
    iris = zoo.datasets.load("iris")
    model = zoo.models.NaiveBayes(num_classes=3)
    with pytest.raises(ValueError, match="Standardise"):
        zoo.fit(model, zoo.Dataset(iris.x * 1e30, y=iris.y), zoo.Exact())
    fit = zoo.fit(model, iris, zoo.Exact())
    with pytest.raises(ValueError, match="Standardise"):
        fit.log_prob(iris.x * 1e30)


def test_unsigned_integers_are_read_as_the_numbers_they_are() -> None:
    import numpy as np

    values = np.array([[3, 4], [5, 6], [7, 8]])
    for dtype in (np.uint16, np.uint32, np.uint64):
        assert torch.equal(zoo.Dataset(values.astype(dtype)).x, torch.tensor(values, dtype=torch.float32))


def test_an_hmm_on_sequences_of_one_step_fits() -> None:
    """No transition is ever observed: Baum-Welch's expected transitions are zero, and the
    likelihood is the emission mixture's, checked here by hand at the fitted point."""
    model, _ = zoo.models.HiddenMarkovModel.example()
    data = zoo.Dataset(torch.randn(6, 1, 1, generator=torch.Generator().manual_seed(0)), lengths=[1] * 6)
    fit = zoo.fit(model, data, zoo.SVI(guide="delta", num_steps=5, progress=False))
    point = fit.point
    components = torch.distributions.Normal(point["locs"][:, 0], point["scales"][:, 0])
    expected = torch.logsumexp(point["initial"].log() + components.log_prob(data.x[:, 0, :]), -1)
    torch.testing.assert_close(fit.log_prob(), expected, rtol=1e-5, atol=1e-5)


def test_one_sequence_without_lengths_splits_in_time() -> None:
    series = zoo.Dataset(torch.arange(50.0).reshape(1, 50, 1))
    for train, test in (series.split(test_fraction=0.2), series.split_time(0.2)):
        assert train.x.shape == (1, 40, 1) and test.x.shape == (1, 10, 1)
        assert torch.equal(test.x[0, :, 0], torch.arange(40.0, 50.0))


# ---------------------------------------------------------------------- smaller messages
def test_a_guide_the_model_refuses_is_named_as_such() -> None:
    model, data = zoo.models.VAE.example()
    with pytest.raises(ValueError, match="guide 'mvn' does not apply to VAE; it takes: delta, normal, amortized"):
        zoo.fit(model, data, zoo.SVI(guide="mvn", num_steps=2, progress=False))


def test_a_bad_held_out_is_named_held_out() -> None:
    model, data = zoo.models.GaussianMixture.example()
    with pytest.raises(ValueError, match="^held_out: .*3 features"):
        zoo.fit(model, data, zoo.SVI(num_steps=2, progress=False), held_out=torch.zeros(5, 3))


def test_the_summary_of_a_fit_without_draws_says_why() -> None:
    model, data = zoo.models.VAE.example()
    fit = zoo.fit(model, data, zoo.SVI(num_steps=2, progress=False, jit=False))
    with pytest.raises(ValueError, match="holds no posterior draws"):
        fit.summary()


@pytest.mark.slow
def test_to_arviz_refuses_bad_data_before_importing_arviz() -> None:
    """In a fresh process: the refusal must not wait for arviz's import (seconds)."""
    import subprocess
    import sys

    code = (
        "import sys, zoo\n"
        "model, data = zoo.models.GaussianMixture.example()\n"
        "fit = zoo.fit(model, data, zoo.SVI(guide='delta', num_steps=2, progress=False))\n"
        "try:\n    fit.to_arviz('abc')\nexcept TypeError:\n    print('arviz' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr


# ---------------------------------------------------------------------- workflows survive a failed member
DIVERGING_SVI = "svi:normal:num_steps=20:learning_rate=1e10"


def test_compare_records_a_failed_method_as_a_row_and_keeps_the_others() -> None:
    model, data = zoo.models.GaussianMixture.example()
    train, test = data.split(seed=0)
    table, fits, _ = zoo.compare(
        model, train, test, methods=["svi:delta:num_steps=20", DIVERGING_SVI], reference="svi:delta:num_steps=20",
        return_fits=True,
    )
    assert list(table.index) == ["svi:delta", "svi:normal"] and list(fits) == ["svi:delta"]
    assert table.loc["svi:normal", "error"].startswith("FitError: the loss became NaN")
    assert table.loc["svi:delta", "error"] == "" and math.isfinite(table.loc["svi:delta", "test_log_lik"])
    assert math.isnan(table.loc["svi:normal", "test_log_lik"])


@pytest.mark.slow  # LOO imports arviz (seconds in a fresh process)
def test_select_records_a_failed_value_as_a_row_and_ranks_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo import comparison

    model, data = zoo.models.GaussianMixture.example()
    train, test = data.split(seed=0)
    original = comparison.run_fit

    def failing_for_three(model: zoo.models.Model, *arguments: object) -> zoo.Fit:
        if model.num_components == 3:
            raise zoo.FitError("the loss became NaN or infinite at step 4 of SVI")
        return original(model, *arguments)

    monkeypatch.setattr(comparison, "run_fit", failing_for_three)
    table = zoo.select(lambda k: zoo.models.GaussianMixture(k), train, test, values=[1, 2, 3], method="svi:delta:num_steps=20",
                        criterion="test")
    assert table.loc[3, "error"] == "FitError: the loss became NaN or infinite at step 4 of SVI"
    assert sorted(table.loc[[1, 2], "rank"].tolist()) == [0, 1] and math.isnan(table.loc[3, "rank"])


def test_sbc_records_failed_rounds_and_ranks_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    sbc_module = importlib.import_module("zoo.sbc")  # zoo.sbc is also the function's name

    original, calls = sbc_module.run_fit, {"count": 0}

    def second_fails(*arguments: object) -> zoo.Fit:
        calls["count"] += 1
        if calls["count"] == 2:
            raise zoo.FitError("the loss became NaN or infinite at step 1 of SVI")
        return original(*arguments)

    monkeypatch.setattr(sbc_module, "run_fit", second_fails)
    model, data = zoo.models.NaiveBayes.example()
    with pytest.warns(UserWarning, match="1 of 4 SBC fits failed"):
        result = zoo.sbc(model.prepare(data), "exact", num_simulations=4, num_data=30, num_draws=9, processes=1)
    assert len(result.failures) == 1
    assert result.failures[0].endswith(": FitError: the loss became NaN or infinite at step 1 of SVI")
    assert result.num_simulations == 3


def test_the_tour_writes_a_failed_stop_as_its_error_and_goes_on(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    from zoo import tour

    def broken_stop(out: object, fast: bool, progress: bool) -> tour.Section:
        raise zoo.FitError("the loss became NaN or infinite at step 3 of SVI")

    def small_stop(out: object, fast: bool, progress: bool) -> tour.Section:
        return tour.Section(title="small", text="fine", table=pd.DataFrame({"test_log_lik": [-1.0]}, index=["a"]))

    monkeypatch.setattr(tour, "STOPS", [broken_stop, small_stop])
    sections = tour.run(tmp_path, fast=True, progress=False)  # type: ignore[arg-type]
    assert [section.title for section in sections] == ["broken (failed)", "small"]
    report = (tmp_path / "index.md").read_text()  # type: ignore[operator]
    assert "FitError: the loss became NaN or infinite at step 3 of SVI" in report and "## small" in report


def test_data_one_pixel_wide_are_not_read_as_images() -> None:
    """(N, D, 1) data are D features per datum given with a trailing axis, not images of width 1."""
    for model, method in [(zoo.models.VAE(2), zoo.SVI(num_steps=2)), (zoo.models.GAN(2), zoo.Adversarial(num_steps=2))]:
        with pytest.raises(ValueError, match=r"would be images 5 x 1 pixels, one pixel wide: .*reshape\(20, -1\)"):
            zoo.fit(model, torch.rand(20, 5, 1).round(), method)
