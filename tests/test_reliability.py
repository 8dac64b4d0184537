"""Faults the runner survives and files it checks (issue 13): divergence, interrupts, damaged
files, grad mode. The per-model catalogue of bad inputs is tests/test_catalogue.py."""

from __future__ import annotations

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
