"""The GAN, adversarial training and the sample-based metrics (zoo.metrics).

The contract checks (tests/test_contract.py) cover what every model shares: registry entry,
prior predictive shapes, seeding, isolation, save/load, and that a model with no density says so.
"""

from __future__ import annotations

import pyro.poutine as poutine
import pytest
import torch

import zoo
from zoo import metrics
from zoo.infer.runtime import isolated
from zoo.models.gan import GAN


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    """One torch thread: these networks are small and the test machines are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quick(**options: object) -> zoo.Adversarial:
    settings: dict[str, object] = {"num_steps": 20, "batch_size": 16, "progress": False}
    settings.update(options)
    return zoo.Adversarial(**settings)  # type: ignore[arg-type]


def ring(num_data: int = 200) -> zoo.Dataset:
    return zoo.datasets.load("ring", num_data=num_data)


# ---------------------------------------------------------------------- kernel MMD
def test_mmd_of_a_sample_with_itself_is_near_zero() -> None:
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    result = metrics.mmd(x, x, num_permutations=0)
    assert abs(result.mmd2) < 0.01
    assert result.p_value is None and result.bandwidth > 0
    assert result.num_samples == result.num_data == 300


def test_mmd_detects_a_shift_with_power_and_keeps_its_level() -> None:
    """A power check, not one lucky seed: over 20 seeds at n = m = 100 in 2-D, a mean shift of
    0.6 standard deviations is detected (permutation p < 0.05) at least 80% of the time, and two
    samples of the same distribution are flagged at most 20% of the time (the level is 5%)."""
    shifted, same, statistics, errors = 0, 0, [], []
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        x, y, z = (torch.randn(100, 2, generator=generator) for _ in range(3))
        alternative = metrics.mmd(x + torch.tensor([0.6, 0.0]), y, num_permutations=100, seed=seed)
        null = metrics.mmd(z, y, num_permutations=100, seed=seed)
        shifted += alternative.p_value < 0.05
        same += null.p_value < 0.05
        statistics.append(alternative.mmd2)
        errors.append(alternative.standard_error)
    assert shifted >= 16, shifted
    assert same <= 4, same
    # the standard error describes the spread of the statistic over repeated samples (within 2x)
    spread = torch.tensor(statistics).std().item()
    assert 0.5 * spread < sum(errors) / len(errors) < 2.0 * spread


def test_mmd_permutation_statistic_matches_the_direct_one() -> None:
    """The batched permutation arithmetic gives the direct statistic for the identity split."""
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 3, generator=generator), torch.randn(40, 3, generator=generator) + 0.3
    result = metrics.mmd(x, y, num_permutations=0)
    h = result.bandwidth
    k = lambda a, b: torch.exp(-torch.cdist(a.double(), b.double()).pow(2) / (2 * h * h))  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    direct = (kxx.sum() - 30) / (30 * 29) + (kyy.sum() - 40) / (40 * 39) - 2 * kxy.mean()
    assert result.mmd2 == pytest.approx(float(direct), abs=1e-10)


# ---------------------------------------------------------------------- classifier two-sample test
def test_classifier_two_sample_test_tells_apart_what_differs_only() -> None:
    data = ring(1000)
    generator = torch.Generator().manual_seed(3)
    blob = 2.0 * torch.randn(1000, 2, generator=generator)  # same mean and similar spread, no ring
    other = ring(1000).x[torch.randperm(1000, generator=generator)]
    fresh = zoo.datasets.load("ring", num_data=1000, seed=7)
    different = metrics.classifier_two_sample_test(blob, data, seed=0)
    alike = metrics.classifier_two_sample_test(fresh, data, seed=0)
    assert different.accuracy > 0.8 and different.p_value < 1e-6
    assert abs(alike.accuracy - 0.5) < 4 * alike.standard_error + 0.02
    assert alike.num_test == 1000
    assert metrics.classifier_two_sample_test(other, data, seed=0).accuracy < 0.6


# ---------------------------------------------------------------------- image metrics
@pytest.fixture(scope="module")
def digits() -> tuple[zoo.Dataset, zoo.Dataset, metrics.FeatureClassifier]:
    data = zoo.datasets.load("digits")
    scaled = zoo.Dataset(data.x / 16.0, y=data.y, name="digits")
    train, test = scaled.split(test_fraction=0.3, seed=0)
    return train, test, metrics.train_classifier(train, num_epochs=20, seed=0)


def test_feature_classifier_frechet_distance_and_class_coverage(
    digits: tuple[zoo.Dataset, zoo.Dataset, metrics.FeatureClassifier],
) -> None:
    train, test, classifier = digits
    assert classifier.accuracy(test) > 0.9
    zeros = test.x[test.y == 0]
    same = metrics.frechet_distance(test.x, train.x, classifier)
    collapsed = metrics.frechet_distance(zeros, train.x, classifier)
    noise = metrics.frechet_distance(torch.rand_like(test.x), train.x, classifier)
    assert metrics.frechet_distance(test.x, test.x, classifier) < 1e-6
    assert same < 0.2 * collapsed and same < 0.2 * noise
    assert metrics.class_coverage(test.x, classifier).coverage == 1.0
    one_class = metrics.class_coverage(zeros, classifier)
    assert one_class.coverage == pytest.approx(0.1)
    assert int(one_class.counts.sum()) == len(zeros)
    table = metrics.compare_samples({"held-out": test.x, "zeros": zeros}, train, classifier=classifier,
                                    num_permutations=20)
    assert list(table.columns) == ["mmd2", "mmd2_se", "mmd_p_value", "c2st_accuracy", "c2st_se", "frechet",
                                   "class_coverage"]
    assert table.loc["held-out", "mmd2"] < table.loc["zeros", "mmd2"]


def test_mode_coverage_counts_modes() -> None:
    data = ring(800)
    locs, scale = data.truth["locs"], data.truth["scale"]
    full = metrics.mode_coverage(data.x, locs, scale)
    assert full.num_covered == 8 and full.high_quality > 0.95
    half = data.x[data.truth["assignment"] < 4]
    assert metrics.mode_coverage(half, locs, scale).num_covered == 4


def test_metrics_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="same number of values"):
        metrics.mmd(torch.randn(10, 2), torch.randn(10, 3))
    with pytest.raises(ValueError, match="NaN"):
        metrics.mmd(torch.full((10, 2), float("nan")), torch.randn(10, 2))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.classifier_two_sample_test(torch.randn(1, 2), torch.randn(10, 2))
    with pytest.raises(ValueError, match="labelled"):
        metrics.train_classifier(ring(50))
    with pytest.raises(TypeError, match="train_classifier"):
        metrics.frechet_distance(torch.randn(10, 2), torch.randn(10, 2), None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the model
def test_generate_is_forward_without_pyro() -> None:
    """The runner's fast sampler and the Pyro model give the same values from the same state."""
    model = GAN(latent_dim=3, hidden_sizes=[8], image_shape=[5])
    with isolated(seed=4):
        traced = poutine.trace(model).get_trace(num_data=6)
    with isolated(seed=4):
        direct = model.generate(6)
    assert traced.nodes["z"]["value"].shape == (6, 3)
    torch.testing.assert_close(traced.nodes["x"]["value"], direct)
    assert type(traced.nodes["x"]["fn"]).__name__ == "Delta"


def test_gan_covers_the_ring_of_eight_gaussians() -> None:
    """At a fixed seed, within 1500 steps (about 5 s), the GAN covers at least 7 of the 8 modes."""
    data = zoo.datasets.load("ring", num_data=2000)
    model = GAN(latent_dim=2, hidden_sizes=[128, 128])
    method = zoo.Adversarial(num_steps=1500, batch_size=256, generator_learning_rate=1e-3,
                             discriminator_learning_rate=1e-3, seed=0, progress=False)
    fit = zoo.fit(model, data, method)
    coverage = metrics.mode_coverage(fit.sample(2000, seed=1), data.truth["locs"], data.truth["scale"])
    assert coverage.num_covered >= 7, coverage
    assert coverage.high_quality > 0.5, coverage
    assert fit.losses.shape == (1500,) and fit.history["discriminator_loss"].shape == (1500,)
    assert fit.model.output == "identity"  # "auto" resolved: the ring is real-valued


def test_same_seed_gives_identical_training() -> None:
    data = ring()
    for loss, steps in (("non_saturating", 1), ("wgan_gp", 2)):
        model = GAN(latent_dim=2, hidden_sizes=[16], loss=loss)
        method = quick(seed=5, discriminator_steps=steps)
        first, second = zoo.fit(model, data, method), zoo.fit(model, data, method)
        other = zoo.fit(model, data, quick(seed=6, discriminator_steps=steps))
        assert torch.equal(first.losses, second.losses)
        for name in first.history:
            assert torch.equal(first.history[name], second.history[name]), name
        for name, value in first.model.state_dict().items():
            assert torch.equal(value, second.model.state_dict()[name]), name
        assert not torch.equal(first.losses, other.losses)
        assert torch.equal(first.sample(7, seed=2), second.sample(7, seed=2))


def test_wgan_gp_records_its_penalty_and_stays_finite() -> None:
    fit = zoo.fit(GAN(latent_dim=2, hidden_sizes=[16], loss="wgan_gp"), ring(),
                  quick(discriminator_steps=3, betas=(0.5, 0.9)))
    assert set(fit.history) == {"discriminator_loss", "real_score", "fake_score", "gradient_penalty"}
    assert fit.method_name == "adversarial:wgan_gp"
    for value in (fit.losses, *fit.history.values()):
        assert torch.isfinite(value).all() and value.shape == (20,)


def test_epochs_count_the_discriminators_passes_over_the_data() -> None:
    method = zoo.Adversarial(num_epochs=3, batch_size=10, discriminator_steps=2, progress=False)
    fit = zoo.fit(GAN(latent_dim=2, hidden_sizes=[8]), ring(40), method)
    assert fit.diagnostics["num_steps"] == 6 and fit.diagnostics["num_epochs"] == 3  # 3 x 4 / 2
    assert fit.diagnostics["completed"]


def test_training_continues_from_a_fitted_model() -> None:
    data = ring()
    first = zoo.fit(GAN(latent_dim=2, hidden_sizes=[8]), data, quick())
    more = zoo.fit(first.model, data, quick(seed=1))
    assert more.model is not first.model
    before = {name: value.clone() for name, value in first.model.state_dict().items()}
    assert any(not torch.equal(before[name], value) for name, value in more.model.state_dict().items())
    # the starting point was the first fit's weights, which zoo.fit did not change
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, before[name])


def test_conv_gan_on_digit_images() -> None:
    data = zoo.datasets.load("digits", images=True)
    images = zoo.Dataset(data.x[:64] / 16.0, name="digits")
    fit = zoo.fit(GAN(latent_dim=4, hidden_sizes=[16], architecture="conv"), images, quick(num_steps=3))
    assert fit.model.output == "sigmoid"
    samples = fit.sample(5, seed=0)
    assert samples.shape == (5, 8, 8) and ((samples > 0) & (samples < 1)).all()
    assert fit.to_arviz().posterior_predictive["x"].shape == (1, 10, 64, 8, 8)


def test_a_nan_stops_training_with_the_partial_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"count": 0}
    original = GAN.discriminate

    def failing(self: GAN, x: torch.Tensor) -> torch.Tensor:
        calls["count"] += 1  # two calls per step: the discriminator's update and the generator's
        scores = original(self, x)
        return scores * float("nan") if calls["count"] > 10 else scores

    monkeypatch.setattr(GAN, "discriminate", failing)
    with pytest.raises(zoo.FitError, match="discriminator's loss became NaN.*step 5") as caught:
        zoo.fit(GAN(latent_dim=2, hidden_sizes=[8]), ring(), quick())
    partial = caught.value.fit
    assert caught.value.step == 5 and partial.interrupted
    assert partial.losses.shape == (5,) and torch.isfinite(partial.losses).all()
    assert all(torch.isfinite(value).all() for value in partial.model.state_dict().values())


def test_ctrl_c_returns_the_interrupted_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"count": 0}
    original = GAN.discriminate

    def interrupting(self: GAN, x: torch.Tensor) -> torch.Tensor:
        calls["count"] += 1
        if calls["count"] == 15:
            raise KeyboardInterrupt
        return original(self, x)

    monkeypatch.setattr(GAN, "discriminate", interrupting)
    fit = zoo.fit(GAN(latent_dim=2, hidden_sizes=[8]), ring(), quick())
    assert fit.interrupted and fit.losses.shape == (7,) and not fit.diagnostics["completed"]
    assert fit.sample(3).shape == (3, 2)


# ---------------------------------------------------------------------- two processes (about 5 s)
#: (loss, discriminator_steps, batch_size, dtype): the batch of 15 splits unevenly (8 + 7 rows),
#: which the shards' weights must make up for. WGAN-GP runs in float64: its critic's loss
#: mean(D(fake)) - mean(D(real)) gives the bias of a hidden unit active on every row a gradient
#: that is exactly zero, so all Adam sees there is float32 round-off (2^-31, which differs
#: between one process and two), and Adam's normalisation turns it into steps of ~lr / 20; in
#: float64 the round-off is far below Adam's eps and the steps it causes are negligible.
TWO_PROCESS_CASES = (("non_saturating", 1, 16, torch.float32), ("wgan_gp", 2, 15, torch.float64))


def _two_process_fit(loss: str, batch_size: int, dtype: torch.dtype, method: zoo.Adversarial) -> zoo.Fit:
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the networks' weights
    try:
        data = ring(60)
        return zoo.fit(GAN(latent_dim=2, hidden_sizes=[16], loss=loss), zoo.Dataset(data.x.to(dtype), name="ring"),
                       method)
    finally:
        torch.set_default_dtype(before)


def _two_process_method(discriminator_steps: int, batch_size: int, **options: object) -> zoo.Adversarial:
    return zoo.Adversarial(num_steps=12, batch_size=batch_size, discriminator_steps=discriminator_steps,
                           generator_learning_rate=1e-3, discriminator_learning_rate=1e-3, seed=3,
                           progress=False, **options)  # type: ignore[arg-type]


def _distributed_worker(rank: int, world: int, port: int, path: str) -> None:
    import os

    import torch.distributed as distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = []
        for loss, steps, batch, dtype in TWO_PROCESS_CASES:
            fit = _two_process_fit(loss, batch, dtype, _two_process_method(steps, batch, distributed=True))
            results.append({"state": fit.model.state_dict(), "losses": fit.losses, "history": fit.history,
                            "processes": torch.tensor(fit.diagnostics["num_processes"])})
        torch.save(results, f"{path}.{rank}")
    finally:
        distributed.destroy_process_group()


def test_two_processes_train_like_one_on_the_same_global_batches(tmp_path: object) -> None:
    """DistributedDataParallel's arithmetic for both networks: each of two processes takes its
    shard of every global minibatch of real data and of the global batch's noise (drawn from the
    shared seed on every process, so it is the single process's noise), and the discriminator's
    and the generator's gradients are averaged; the networks then follow the single-process run on
    the same global batches, to float tolerance, with the same recorded losses, on both processes."""
    import socket

    import torch.multiprocessing as multiprocessing

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = str(tmp_path / "distributed.pt")  # type: ignore[operator]
    multiprocessing.spawn(_distributed_worker, args=(2, port, path), nprocs=2, join=True)
    ranks = [torch.load(f"{path}.{rank}", weights_only=True) for rank in range(2)]
    for case, (loss, steps, batch, dtype) in enumerate(TWO_PROCESS_CASES):
        one = _two_process_fit(loss, batch, dtype, _two_process_method(steps, batch))
        assert one.diagnostics["num_processes"] == 1
        for both in (ranks[0][case], ranks[1][case]):
            assert int(both["processes"]) == 2
            assert both["losses"].shape == one.losses.shape == (12,)
            torch.testing.assert_close(both["losses"], one.losses, rtol=1e-5, atol=1e-5, msg=loss)
            assert set(both["history"]) == set(one.history)
            for name, values in one.history.items():
                torch.testing.assert_close(both["history"][name], values, rtol=1e-5, atol=1e-5, msg=f"{loss} {name}")
            state = one.model.state_dict()
            assert any(name.startswith("generator.") for name in state)
            assert any(name.startswith("discriminator.") for name in state)
            for name, value in state.items():
                torch.testing.assert_close(both["state"][name], value, rtol=1e-4, atol=1e-5, msg=f"{loss} {name}")


# ---------------------------------------------------------------------- bad input
def test_bad_method_arguments_are_refused() -> None:
    for arguments, message in (
        ({"generator_learning_rate": 0.0}, "generator_learning_rate must be positive"),
        ({"discriminator_learning_rate": -1e-3}, "discriminator_learning_rate must be positive"),
        ({"num_steps": 0}, "num_steps must be at least 1"),
        ({"num_epochs": 0}, "num_epochs must be at least 1"),
        ({"discriminator_steps": 0}, "discriminator_steps must be at least 1"),
        ({"batch_size": -4}, "batch_size must be at least 1"),
        ({"betas": (0.5, 1.5)}, "betas must be two numbers"),
        ({"device": "abacus"}, "device must name a torch device"),
    ):
        with pytest.raises(ValueError, match=message):
            zoo.Adversarial(**arguments)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="num_steps must be an integer"):
        zoo.Adversarial(num_steps=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="distributed must be True or False"):
        zoo.Adversarial(distributed="yes")  # type: ignore[arg-type]


def test_bad_models_and_data_are_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="loss must be one of.*'hinge'"):
        GAN(latent_dim=2, loss="hinge")
    with pytest.raises(ValueError, match="architecture must be one of"):
        GAN(latent_dim=2, architecture="transformer")
    with pytest.raises(ValueError, match="latent_dim must be at least 1"):
        GAN(latent_dim=0)
    with pytest.raises(ValueError, match="hidden_sizes must be positive"):
        GAN(latent_dim=2, hidden_sizes=[16, 0])
    with pytest.raises(ValueError, match="architecture='conv' takes images"):
        zoo.fit(GAN(latent_dim=2, architecture="conv"), ring(), quick())  # 2 values are no image
    with pytest.raises(ValueError, match="must be .num_data, num_features. or .num_data, height, width."):
        zoo.fit(GAN(latent_dim=2), torch.zeros(10, 2, 2, 2), quick(batch_size=4))
    with pytest.raises(ValueError, match="output='sigmoid' generates values in .0, 1."):
        zoo.fit(GAN(latent_dim=2, output="sigmoid"), ring(), quick())
    with pytest.raises(ValueError, match="GAN does not support SVI: a GAN is an implicit model: it samples but has no density"):
        zoo.fit(GAN(latent_dim=2), ring(), zoo.SVI(num_steps=2))
    with pytest.raises(ValueError, match="VAE does not support Adversarial"):
        zoo.fit(zoo.models.VAE(latent_dim=2), zoo.datasets.load("digits", binarize=True), quick())
    with pytest.raises(ValueError, match="held_out"):
        zoo.fit(GAN(latent_dim=2), ring(), quick(), held_out=ring(20))
    with pytest.raises(ValueError, match="batch_size=500 is larger than the data"):
        zoo.fit(GAN(latent_dim=2), ring(), quick(batch_size=500))


def test_log_prob_on_a_gan_explains_and_names_the_metrics() -> None:
    fit = zoo.fit(GAN(latent_dim=2, hidden_sizes=[8]), ring(), quick(num_steps=2))
    with pytest.raises(ValueError, match="defines no density") as caught:
        fit.log_prob(ring(10))
    for name in ("zoo.metrics.mmd", "classifier_two_sample_test", "frechet_distance", "class_coverage"):
        assert name in str(caught.value)
    with pytest.raises(ValueError, match="defines no density"):
        fit.model(x=ring(10).x)  # the Pyro model cannot be conditioned on data either
    from zoo import report

    table = report.comparison_table({"gan": fit}, ring(10))
    assert table.loc["gan", "test_log_lik"] != table.loc["gan", "test_log_lik"]  # NaN, no error


def test_cli_fits_a_gan(capsys: pytest.CaptureFixture[str]) -> None:
    from zoo.cli import main

    code = main(["fit", "gan", "--dataset", "ring", "--method", "adversarial", "--num-steps", "5",
                 "--batch-size", "16", "--learning-rate", "0.001", "--latent-dim", "2", "--hidden-sizes", "8",
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "adversarial:non_saturating" in out
    with pytest.raises(SystemExit) as refused:  # --method offers only the GAN's own method
        main(["fit", "gan", "--dataset", "ring", "--latent-dim", "2", "--method", "svi", "--quiet"])
    assert refused.value.code == 2
    assert "argument --method: invalid choice: 'svi'" in capsys.readouterr().err
