"""The runner's behaviour that no single model owns: refusals, divergence, interruption, CLI."""

from __future__ import annotations

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer.autoguide import AutoDelta

import zoo
from zoo.cli import main
from zoo.datasets import simulate
from zoo.infer import optimizers
from zoo.infer.guides import hide_enumerated
from zoo.infer.runtime import isolated


class SviOnlyMixture(zoo.models.GaussianMixture):
    """A mixture that declares it takes SVI only (not registered)."""

    methods = ("svi",)


def small_data() -> zoo.Dataset:
    return simulate.gaussian_mixture(num_data=40, num_components=2, seed=0)


def test_a_method_the_model_does_not_support_is_refused_with_what_it_supports() -> None:
    with pytest.raises(ValueError, match="does not support NUTS; it supports: svi"):
        zoo.fit(SviOnlyMixture(2), small_data(), zoo.NUTS(progress=False))
    # where the model declares why, the error says it
    with pytest.raises(ValueError, match="VAE does not support NUTS: its posterior holds every datum's code .*; it supports: svi"):
        zoo.fit(zoo.models.VAE(latent_dim=2), torch.rand(8, 4).round(), zoo.NUTS(progress=False))


def test_default_method_is_svi_with_the_models_default_guide() -> None:
    fit = zoo.fit(zoo.models.GaussianMixture(2), small_data(), zoo.SVI(num_steps=2, progress=False, num_posterior_samples=3))
    assert fit.method_name == "svi:normal"
    assert type(fit.guide).__name__ == "AutoNormal"


def test_loss_is_reported_per_datum() -> None:
    """At a point mass the loss is minus the log joint, here computed by hand, over N."""
    import pyro.distributions as dist

    data = small_data()
    fit = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="delta", num_steps=50, progress=False))
    point, model = fit.point, fit.model
    center, spread = torch.tensor(model.prior_center), torch.tensor(model.prior_spread)
    log_prior = (
        dist.Dirichlet(torch.ones(2)).log_prob(point["weights"])
        + dist.Normal(center, 2.0 * spread).log_prob(point["locs"]).sum()
        + dist.LogNormal(spread.log(), 1.0).log_prob(point["scales"]).sum()
        + dist.LKJCholesky(2, 2.0).log_prob(point["corr_cholesky"]).sum()
    )
    params = {name: value[None] for name, value in point.items()}
    log_likelihood = model.log_likelihood(params, data).sum()
    expected = -(log_prior + log_likelihood) / len(data)
    # the last recorded loss is at the parameters before the last L-BFGS step; at convergence
    # the two agree to well below the tolerance
    assert fit.losses[-1].item() == pytest.approx(expected.item(), abs=1e-4)


def make_failing_guide(model: zoo.models.Model, fail_after: int, exception: type | None = None):
    """A MAP guide whose loss turns NaN (or which raises) after ``fail_after`` calls."""
    calls = {"count": 0}
    holder: dict[str, AutoDelta] = {}

    def guide(**kwargs: object) -> object:
        calls["count"] += 1
        if "auto" not in holder:
            holder["auto"] = AutoDelta(hide_enumerated(model))
        if calls["count"] > fail_after and torch.is_grad_enabled():  # training, not drawing
            if exception is not None:
                raise exception()
            with poutine.scale(scale=torch.tensor(float("nan"))):
                return holder["auto"](**kwargs)
        return holder["auto"](**kwargs)

    return guide, calls


def test_a_nan_loss_stops_with_the_step_and_the_last_finite_parameters() -> None:
    data = small_data()
    model = zoo.models.GaussianMixture(2).prepare(data)
    guide, _ = make_failing_guide(model, fail_after=6)
    method = zoo.SVI(guide=guide, num_steps=50, optimizer="adam", num_posterior_samples=5, progress=False)
    with pytest.raises(zoo.FitError, match=r"NaN or infinite at step \d+") as caught:
        zoo.fit(model, data, method)
    error = caught.value
    assert error.step is not None and error.step >= 1
    partial = error.fit
    assert partial is not None and partial.interrupted
    assert len(partial.losses) == error.step
    assert torch.isfinite(partial.losses).all()
    for value in partial.draws.values():
        assert torch.isfinite(value).all()


def test_a_nan_gradient_behind_a_finite_loss_stops_before_the_update() -> None:
    """A finite loss whose gradient is infinite (d/dw sqrt(w - w0) at w = w0): Adam must not take
    that step (it would make w NaN); the fit stops there and keeps the last good parameters."""
    data = small_data()
    model = zoo.models.GaussianMixture(2).prepare(data)
    inner, _ = make_failing_guide(model, fail_after=10**9)
    calls = {"count": 0}

    def guide(**kwargs: object) -> object:
        calls["count"] += 1
        weight = pyro.param("weight", torch.tensor(1.0))
        if calls["count"] > 6 and torch.is_grad_enabled():
            pyro.factor("poison", torch.sqrt(weight - weight.detach()))  # value 0, gradient -inf
        return inner(**kwargs)

    method = zoo.SVI(guide=guide, num_steps=50, optimizer="adam", num_posterior_samples=5, progress=False)
    with pytest.raises(zoo.FitError, match=r"NaN or infinite at step \d+") as caught:
        zoo.fit(model, data, method)
    partial = caught.value.fit
    assert torch.isfinite(partial.losses).all() and len(partial.losses) == caught.value.step
    with isolated(partial.param_state):
        assert torch.isfinite(pyro.param("weight")).all()
        assert all(torch.isfinite(value).all() for value in pyro.get_param_store().values())


def test_ctrl_c_during_training_gives_an_interrupted_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    data = small_data()
    steps = {"count": 0}
    original = optimizers.Adam.step

    def interrupting_step(self: optimizers.Adam, *args: object, **kwargs: object) -> object:
        steps["count"] += 1
        if steps["count"] == 7:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(optimizers.Adam, "step", interrupting_step)
    fit = zoo.fit(zoo.models.GaussianMixture(2), data, zoo.SVI(guide="normal", num_steps=100, num_posterior_samples=5, progress=False))
    assert fit.interrupted
    assert len(fit.losses) == 6
    assert torch.isfinite(fit.log_prob(data)).all()


def test_cli_list_and_fit(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    for word in ("gmm", "svi", "nuts", "delta", "mvn", "old_faithful", "iris"):
        assert word in listing
    out = tmp_path / "run"  # type: ignore[operator]
    code = main(
        ["fit", "gmm", "--dataset", "old_faithful", "--num-components", "2", "--method", "svi",
         "--guide", "delta", "--num-steps", "100", "--out", str(out), "--quiet"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "test_log_lik" in printed and "locs[0, eruptions]" in printed
    assert (out / "inference_data.nc").stat().st_size > 0
    assert (out / "fit.png").stat().st_size > 0
    import arviz

    idata = arviz.from_netcdf(out / "inference_data.nc")
    assert "log_likelihood" in idata.groups()


def test_cli_reports_bad_arguments_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fit", "gmm", "--dataset", "old_faithful", "--num-components", "0", "--quiet"])
    assert code == 2
    assert "num_components must be at least 1" in capsys.readouterr().err
    code = main(["fit", "gmm", "--dataset", "old_faithful", "--num-components", "2", "--guide", "nope", "--quiet"])
    assert code == 2
    assert "unknown guide 'nope'" in capsys.readouterr().err


def test_tour_fast_writes_a_report(tmp_path: object) -> None:
    out = tmp_path / "tour"  # type: ignore[operator]
    assert main(["tour", "--fast", "--out", str(out), "--quiet"]) == 0
    index = (out / "index.md").read_text()
    assert "Gaussian mixture" in index and "| fit |" in index
    for line in index.splitlines():
        if line.startswith("!["):
            assert (out / line[line.index("(") + 1 : -1]).stat().st_size > 0
    assert (out / "summary.csv").stat().st_size > 0


class _MixtureWithAuxiliaryLoss(zoo.models.GaussianMixture):
    """A mixture with a constant auxiliary term of one nat per row (changes no gradient),
    recording the rows each step hands it."""

    seen: list[torch.Tensor] = []

    def auxiliary_loss(self, data: zoo.Dataset) -> torch.Tensor:
        type(self).seen.append(data.x)
        return torch.tensor(float(len(data)))


def test_an_auxiliary_loss_is_added_on_the_steps_rows_and_scaled_like_the_elbo() -> None:
    data = small_data()
    plain = zoo.SVI(guide="delta", optimizer="adam", num_steps=5, num_posterior_samples=2, progress=False)
    base = zoo.fit(zoo.models.GaussianMixture(2), data, plain)
    _MixtureWithAuxiliaryLoss.seen = []
    with_term = zoo.fit(_MixtureWithAuxiliaryLoss(2), data, plain)
    # num_data / num_data rows, per observation: exactly one more nat per datum, same path
    torch.testing.assert_close(with_term.losses, base.losses + 1.0)
    torch.testing.assert_close(with_term.point["locs"], base.point["locs"])
    _MixtureWithAuxiliaryLoss.seen = []
    minibatch = zoo.SVI(guide="normal", num_steps=4, batch_size=10, num_posterior_samples=2, progress=False)
    zoo.fit(_MixtureWithAuxiliaryLoss(2), data, minibatch)
    assert [len(rows) for rows in _MixtureWithAuxiliaryLoss.seen] == [10] * 4
    assert all(any(torch.equal(row, datum) for datum in data.x) for rows in _MixtureWithAuxiliaryLoss.seen for row in rows)


def test_num_posterior_samples_is_ignored_by_a_point_mass_and_the_workflows_take_its_one_draw() -> None:
    """A delta guide's fit holds one draw whatever num_posterior_samples says (documented in
    zoo.SVI); zoo.compare scores it as before (sd error 1: no spread); zoo.select refuses its
    LOO (the in-sample log-likelihood)."""
    data = small_data()
    model = zoo.models.GaussianMixture(2)
    assert zoo.SVI(guide="delta", num_posterior_samples=50).num_draws(model) == 1
    assert zoo.SVI(guide="normal", num_posterior_samples=50).num_draws(model) == 50
    assert zoo.SVI(num_posterior_samples=50).num_draws(model) == 50  # the default guide: "normal"
    reference = zoo.fit(model, data, zoo.SVI(guide="normal", num_steps=20, num_posterior_samples=30, progress=False))
    table, fits, _ = zoo.compare(model, data, data, methods=["svi:delta:num_steps=20"], reference=reference, return_fits=True)
    assert fits["svi:delta"].num_draws == 1
    assert table.loc["svi:delta", "sd_error"] == pytest.approx(1.0)
    assert table.loc["svi:delta", "test_log_lik"] == pytest.approx(float(fits["svi:delta"].log_prob(data).mean()))
    with pytest.raises(zoo.diagnostics.PointMassError, match="point-mass"):  # LOO of one point: refused
        zoo.select(zoo.models.GaussianMixture, data, data, [1, 2], method="svi:delta:num_steps=20")
