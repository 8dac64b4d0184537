"""The variational autoencoder: its ELBO and IWAE estimates, training, helpers and bad input."""

from __future__ import annotations

import dataclasses
import math

import pyro
import pyro.poutine as poutine
import pytest
import torch

import zoo
from zoo.infer.runtime import isolated
from zoo.models import vae
from zoo.models.m2 import SemiSupervisedVAE, predict, predict_proba

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    """One torch thread: these networks are small, and the test machines are shared (two threads
    on a busy 2-core machine run ten times slower than one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def digits() -> tuple[zoo.Dataset, zoo.Dataset]:
    return zoo.datasets.load("digits", binarize=True).split(test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def trained() -> tuple[zoo.Fit, zoo.Dataset, zoo.Dataset]:
    """A small VAE trained briefly (seeded) on binarised 8x8 digits, with its train and test data."""
    train, test = digits()
    model = zoo.models.VAE(latent_dim=4, hidden_sizes=[64])
    method = zoo.SVI(batch_size=64, num_epochs=12, learning_rate=0.01, seed=0, progress=False,
                     num_posterior_samples=2)
    return zoo.fit(model, train, method, held_out=test), train, test


# ---------------------------------------------------------------------- the ELBO by hand
def tiny_vae() -> vae.VAE:
    """Latent dim 1, two pixels, no hidden layer: encoder and decoder are single linear maps."""
    model = vae.VAE(latent_dim=1, hidden_sizes=[], image_shape=[2])
    with torch.no_grad():
        encoder, decoder = model.encoder.mlp[0], model.decoder.mlp[0]
        encoder.weight.copy_(torch.tensor([[0.5, -1.0], [0.3, 0.2]]))  # rows: loc, raw scale
        encoder.bias.copy_(torch.tensor([0.1, -0.4]))
        decoder.weight.copy_(torch.tensor([[1.5], [-2.0]]))
        decoder.bias.copy_(torch.tensor([0.2, 0.7]))
    return model


def hand_log_weight(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) - log q(z | x) of ``tiny_vae`` written out with scalar formulas."""
    x1, x2 = x[..., 0], x[..., 1]
    loc = 0.5 * x1 - 1.0 * x2 + 0.1
    scale = torch.log1p(torch.exp(0.3 * x1 + 0.2 * x2 - 0.4)) + 1e-4
    logits = torch.stack([1.5 * z + 0.2, -2.0 * z + 0.7], dim=-1)
    probs = torch.sigmoid(logits)
    log_lik = (x * probs.log() + (1 - x) * (1 - probs).log()).sum(-1)
    log_prior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    log_q = -0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)
    return log_lik + log_prior - log_q


def test_training_elbo_equals_a_hand_computation_with_minibatch_scaling() -> None:
    model = tiny_vae()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    with isolated(seed=0):
        # a minibatch of 2 of the 3 points: the data plate scales its log densities by 3 / 2
        guide_trace = poutine.trace(model.amortized_guide).get_trace(x=x, batch_size=2)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x=x, batch_size=2)
    index = guide_trace.nodes["data"]["value"]
    z = guide_trace.nodes["z"]["value"][:, 0]
    estimate = model_trace.log_prob_sum() - guide_trace.log_prob_sum()
    expected = 1.5 * hand_log_weight(x[index], z).sum()
    torch.testing.assert_close(estimate.detach(), expected, rtol=1e-5, atol=1e-5)


def test_iwae_and_elbo_estimators_equal_a_hand_computation() -> None:
    model = tiny_vae()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    data = zoo.Dataset(x)
    num_particles = 7
    noise = torch.randn((num_particles, 4, 1), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        loc, scale = model.encoder(x)
    z = (loc + scale * noise)[..., 0]
    weights = hand_log_weight(x, z)  # (K, N)
    iwae = model.log_likelihood({}, data, num_particles=num_particles, seed=3)[0]
    elbo = model.log_likelihood({}, data, num_particles=num_particles, seed=3, estimator="elbo")[0]
    torch.testing.assert_close(iwae, weights.logsumexp(0) - math.log(num_particles), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(elbo, weights.mean(0), rtol=1e-5, atol=1e-5)
    # with K = 1 both are the same single-sample ELBO
    one = model.log_likelihood({}, data, num_particles=1, seed=3)[0]
    torch.testing.assert_close(one, model.log_likelihood({}, data, num_particles=1, seed=3, estimator="elbo")[0])


# ---------------------------------------------------------------------- a trained VAE
def test_iwae_is_at_least_the_elbo_and_grows_with_k(trained: tuple) -> None:
    fit, _, test = trained
    elbo = fit.log_prob(test, num_particles=50, estimator="elbo", seed=1)
    iwae = {k: fit.log_prob(test, num_particles=k, seed=10 + k) for k in (1, 10, 100)}
    # same particles: log-mean-exp >= mean (Jensen), datum by datum
    same = fit.log_prob(test, num_particles=50, seed=1)
    assert (same >= elbo - 1e-5).all()
    # in expectation IWAE_K grows with K. Paired differences over the test images (independent
    # particles): never significantly negative (two standard errors), and from K = 1 to K = 100
    # positive beyond three standard errors. (From 10 to 100 the gain is small for this easy
    # posterior, a few hundredths of a nat, so only its sign is checked with a tolerance.)
    for small, large in [(1, 10), (10, 100), (1, 100)]:
        difference = iwae[large] - iwae[small]
        standard_error = difference.std() / math.sqrt(len(difference))
        assert difference.mean() > -2 * standard_error, (small, large, difference.mean(), standard_error)
    difference = iwae[100] - iwae[1]
    assert difference.mean() > 3 * difference.std() / math.sqrt(len(difference))


def test_held_out_iwae_beats_the_independent_pixel_baseline(trained: tuple) -> None:
    """The baseline is the best model without a latent code: independent Bernoulli pixels with
    maximum-likelihood probabilities (add-one smoothed, so unseen pixels are not log 0). A VAE
    that has learned anything about the digits' shapes explains their pixel correlations; by 12
    epochs it does so by a wide margin (about 8 nats per image: ~-21 against ~-29)."""
    fit, train, test = trained
    counts = train.x.sum(0)
    probs = (counts + 1) / (len(train) + 2)
    baseline = (test.x * probs.log() + (1 - test.x) * (1 - probs).log()).sum(-1).mean()
    iwae = fit.log_prob(test, num_particles=200).mean()
    assert iwae > baseline + 4.0, (float(iwae), float(baseline))


def test_epochs_history_and_held_out_loss(trained: tuple) -> None:
    fit, train, _ = trained
    steps_per_epoch = math.ceil(len(train) / 64)
    assert fit.losses.shape == (12 * steps_per_epoch,)
    for name in ("epoch_loss", "held_out_loss", "learning_rate", "epoch_time"):
        assert fit.history[name].shape == (12,), name
    assert fit.history["epoch_loss"][-1] < fit.history["epoch_loss"][0]
    assert fit.history["held_out_loss"][-1] < fit.history["held_out_loss"][0]
    # the held-out negative ELBO is the per-datum ELBO of the test data, up to Monte Carlo noise
    # no global latent site: the decoder is one point, held once whatever num_posterior_samples
    assert fit.draws == {} and fit.num_draws == 1


def test_helpers_shapes_and_ends(trained: tuple) -> None:
    fit, _, test = trained
    loc, scale = vae.encode(fit, test)
    assert loc.shape == scale.shape == (len(test), 4) and (scale > 0).all()
    means = vae.decode(fit, torch.zeros(5, 4))
    assert means.shape == (5, 64) and ((means >= 0) & (means <= 1)).all()
    assert vae.reconstruct(fit, test).shape == test.x.shape
    path = vae.interpolate(fit, test.x[0], test.x[1], num_steps=6)
    assert path.shape == (6, 64)
    torch.testing.assert_close(path[0], vae.decode(fit, loc[0]))
    torch.testing.assert_close(path[-1], vae.decode(fit, loc[1]))
    samples = fit.sample(9, seed=1)
    assert samples.shape == (9, 64) and set(samples.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(samples, fit.sample(9, seed=1))
    assert vae.elbo(fit, test).shape == (len(test),)


def test_save_and_load_restore_the_networks(trained: tuple, tmp_path: object) -> None:
    fit, _, test = trained
    loaded = zoo.load(fit.save(tmp_path / "vae.zoo"))  # type: ignore[operator]
    assert torch.equal(loaded.log_prob(test, num_particles=5), fit.log_prob(test, num_particles=5))
    assert torch.equal(loaded.history["epoch_loss"], fit.history["epoch_loss"])
    assert loaded.num_draws == fit.num_draws


def test_to_arviz_holds_the_point_estimate_once(trained: tuple) -> None:
    """The decoder is a point estimate: one draw, one log-likelihood row, one replicate (the
    issue measured 18.5 s for a VAE's to_arviz when the point was repeated 1,000 times)."""
    fit, _, test = trained
    small = test.subset(list(range(10)))
    idata = fit.to_arviz(small)
    values = torch.as_tensor(idata.log_likelihood["x"].values)
    assert values.shape == (1, 1, 10) and torch.isfinite(values).all()
    assert idata.posterior_predictive["x"].shape == (1, 1, 10, 64)


# ---------------------------------------------------------------------- other settings
@pytest.mark.parametrize(
    "options, images",
    [
        ({"likelihood": "continuous_bernoulli"}, False),
        ({"likelihood": "gaussian"}, False),
        ({"architecture": "conv"}, True),
        ({"architecture": "conv"}, False),  # 64 pixels read as an 8x8 image
    ],
)
def test_likelihoods_and_architectures_train(options: dict, images: bool) -> None:
    data = zoo.datasets.load("digits", images=images)
    data = zoo.Dataset(data.x[:120] / 16.0, y=data.y[:120])
    model = zoo.models.VAE(latent_dim=2, hidden_sizes=[32], **options)
    fit = zoo.fit(model, data, zoo.SVI(batch_size=40, num_epochs=2, progress=False, num_posterior_samples=1))
    assert torch.isfinite(fit.losses).all()
    assert torch.isfinite(fit.log_prob(data, num_particles=3)).all()
    assert fit.sample(2).shape == (2,) + tuple(data.x.shape[1:])


def test_runner_epochs_are_generic_and_cover_the_data() -> None:
    """Epochs for a model with global latents too: every datum is seen once per epoch."""
    data = zoo.datasets.simulate.gaussian_mixture(num_data=50, num_components=2, seed=0)
    seen: list[torch.Tensor] = []

    def guide(x: torch.Tensor, batch_size: int | None = None, **kwargs: object) -> None:
        with pyro.plate("data", x.shape[0], subsample_size=batch_size) as index:
            seen.append(index.clone())
        return auto(x=x, batch_size=batch_size, **kwargs)

    model = zoo.models.GaussianMixture(2)
    prepared = model.prepare(data)
    auto = pyro.infer.autoguide.AutoDelta(poutine.block(prepared, hide=["assignment"]))
    method = zoo.SVI(guide=guide, batch_size=20, num_epochs=2, optimizer="adam", progress=False,
                     num_posterior_samples=2, learning_rate_schedule="cosine", final_learning_rate_fraction=0.1)
    fit = zoo.fit(prepared, data, method)
    assert fit.losses.shape == (6,)  # 2 epochs of ceil(50 / 20) = 3 steps
    batches = [index for index in seen if len(index) < 50][-6:]
    assert [len(index) for index in batches] == [20, 20, 10, 20, 20, 10]
    for epoch in (batches[:3], batches[3:]):
        assert torch.equal(torch.cat(epoch).sort().values, torch.arange(50))
    assert fit.history["learning_rate"][-1] == pytest.approx(0.01 * 0.1)


# ---------------------------------------------------------------------- compiled steps (jit)
@pytest.mark.parametrize(
    "build, method",
    [
        # epochs with explicit indices: 1,438 images in batches of 64, so each epoch ends with a
        # smaller batch of 30, which must get a compilation of its own (its scale N / 30)
        (lambda: (zoo.models.VAE(latent_dim=3, hidden_sizes=[16]), digits()[0]),
         {"batch_size": 64, "num_epochs": 2}),
        # the data plate's own random subsample (num_steps), drawn inside the compiled program
        (lambda: (zoo.models.VAE(latent_dim=3, hidden_sizes=[16]), digits()[0]),
         {"batch_size": 50, "num_steps": 30}),
        # a parameter of the model itself (log_scale), convolutions, several particles
        (lambda: (zoo.models.VAE(latent_dim=2, hidden_sizes=[16], likelihood="gaussian", architecture="conv"),
                  zoo.Dataset(zoo.datasets.load("digits").x[:150] / 16.0)),
         {"batch_size": 40, "num_epochs": 3, "num_particles": 2}),
        # per-datum autoguide parameters (AutoNormal) in the param store
        (lambda: (zoo.models.VAE(latent_dim=2, hidden_sizes=[16]), digits()[0].subset(list(range(90)))),
         {"guide": "normal", "batch_size": 40, "num_epochs": 3}),
        # M2: JitTraceEnum_ELBO, the class enumerated in the guide, the classifier's factor
        (SemiSupervisedVAE.example, {"batch_size": 16, "num_epochs": 4}),
    ],
    ids=["epochs", "plate-subsample", "gaussian-conv-particles", "autonormal", "m2-enumerated"],
)
def test_jit_follows_the_eager_steps_at_the_same_seed(build: object, method: dict) -> None:
    """SVI(jit=True), the VAEs' default, draws the same noise as jit=False (compilation runs on a forked generator)
    and computes the same ELBO, step by step, to float rounding. (Only the first steps are held
    to a tight tolerance: Adam divides each gradient by its own running scale, so the rounding
    of a gradient near zero can move a weight by up to a learning rate, and the two runs then
    drift apart slowly, as two eager runs on different hardware do.) The same seed gives the
    same jit run twice (the second through the default, jit=None), to the bit."""
    model, data = build()  # type: ignore[operator]
    options = {"learning_rate": 0.01, "seed": 3, "progress": False, "num_posterior_samples": 1, **method}
    eager = zoo.fit(model, data, zoo.SVI(jit=False, **options))
    compiled = zoo.fit(model, data, zoo.SVI(jit=True, **options))
    again = zoo.fit(model, data, zoo.SVI(**options))  # the default for a model declaring jit_safe
    assert compiled.method.jit and compiled.losses.shape == eager.losses.shape
    torch.testing.assert_close(compiled.losses[:8], eager.losses[:8], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled.losses, eager.losses, rtol=1e-3, atol=1e-3)
    assert torch.equal(again.losses, compiled.losses)
    for name, value in again.model.state_dict().items():
        assert torch.equal(value, compiled.model.state_dict()[name]), name


def test_jit_refuses_a_network_it_would_freeze() -> None:
    """A guide that calls the encoder without registering it with Pyro (no pyro.module): eager
    SVI still trains it (it is a parameter of the model), but the compiled program could hold
    its weights only as constants. The fit is refused with the reason and the remedy."""

    class Unregistered(zoo.models.VAE):
        def amortized_guide(self, x: torch.Tensor | None = None, num_data: int | None = None,
                            batch_size: int | None = None) -> None:
            with pyro.plate(self.data_plate, x.shape[0], subsample_size=batch_size) as index:
                loc, scale = self.encoder(x.index_select(0, index))
                pyro.sample("z", pyro.distributions.Normal(loc, scale).to_event(1))

    train, _ = digits()
    method = zoo.SVI(batch_size=64, num_epochs=1, progress=False, num_posterior_samples=1, jit=False)
    zoo.fit(Unregistered(latent_dim=2, hidden_sizes=[8]), train, method)  # eager: fine
    for compiled in (dataclasses.replace(method, jit=True), dataclasses.replace(method, jit=None)):
        with pytest.raises(ValueError, match=r"compiled ELBO .* uses a tensor that requires grad"):
            zoo.fit(Unregistered(latent_dim=2, hidden_sizes=[8]), train, compiled)
    with pytest.raises(TypeError, match="jit must be True, False or None"):
        zoo.SVI(jit="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- bad input
def test_bad_input_is_refused_before_any_work() -> None:
    grey = zoo.datasets.load("digits")  # counts 0..16
    with pytest.raises(ValueError, match=r"data.x holds values .* outside \[0, 1\]"):
        zoo.fit(zoo.models.VAE(latent_dim=2), grey, zoo.SVI(progress=False))
    with pytest.raises(ValueError, match="latent_dim must be at least 1"):
        zoo.models.VAE(latent_dim=0)
    with pytest.raises(ValueError, match="architecture='conv' takes images whose height and width"):
        zoo.fit(zoo.models.VAE(latent_dim=2, architecture="conv"), torch.rand(10, 9, 9), zoo.SVI(progress=False))
    with pytest.raises(ValueError, match="architecture='conv'"):
        zoo.fit(zoo.models.VAE(latent_dim=2, architecture="conv"), torch.rand(10, 50), zoo.SVI(progress=False))
    with pytest.raises(ValueError, match="batch_size=11 is larger than the data"):
        zoo.fit(zoo.models.VAE(latent_dim=2), torch.rand(10, 4), zoo.SVI(batch_size=11, progress=False))
    with pytest.raises(ValueError, match="likelihood must be one of"):
        zoo.models.VAE(latent_dim=2, likelihood="poisson")
    with pytest.raises(ValueError, match="data have shape"):
        trained_model = zoo.models.VAE(latent_dim=2, image_shape=[4])
        zoo.fit(trained_model, torch.rand(10, 5), zoo.SVI(progress=False))
    with pytest.raises(ValueError, match="num_epochs must be at least 1"):
        zoo.SVI(num_epochs=0)
    with pytest.raises(ValueError, match="learning_rate_schedule must be one of"):
        zoo.SVI(learning_rate_schedule="warm")


def test_gaussian_likelihood_takes_any_real_values() -> None:
    x = torch.randn(30, 6) * 3.0
    fit = zoo.fit(zoo.models.VAE(latent_dim=2, likelihood="gaussian", hidden_sizes=[8]), x,
                  zoo.SVI(num_steps=5, progress=False, num_posterior_samples=1))
    assert torch.isfinite(fit.log_prob(x, num_particles=4)).all()


# ---------------------------------------------------------------------- slow: amortization gap
@pytest.mark.slow
def test_amortization_gap_is_non_negative_on_small_data(trained: tuple) -> None:
    fit, train, _ = trained
    small = train.subset(list(range(60)))
    gap = zoo.amortization_gap(fit, small, num_steps=1500, num_particles=200)
    # the per-datum Gaussians are at least as good as the encoder's (up to optimisation and
    # Monte Carlo error, a fraction of a nat with these budgets)
    assert gap["gap"] > -0.3, gap
    assert gap["fit"].method_name == "svi:normal"


# ---------------------------------------------------------------------- cuda
@CUDA
def test_cuda_end_to_end() -> None:
    train, test = digits()
    fit = zoo.fit(zoo.models.VAE(latent_dim=4, hidden_sizes=[64]), train,
                  zoo.SVI(batch_size=64, num_epochs=2, device="cuda", progress=False, num_posterior_samples=2),
                  held_out=test)
    assert fit.model.device.type == "cuda"
    assert torch.isfinite(fit.log_prob(test, num_particles=10)).all()
    assert fit.sample(3).device.type == "cpu"
    assert vae.reconstruct(fit, test).shape == test.x.shape


def _m2_end_to_end(device: str) -> None:
    """M2 fitted on ``device`` (its auxiliary loss on the step's rows there too), then its
    estimates, classes and helpers, whose results come back to the CPU."""
    model, data = SemiSupervisedVAE.example()
    fit = zoo.fit(model, data, zoo.SVI(batch_size=16, num_epochs=2, device=device, progress=False,
                                       num_posterior_samples=1))
    assert fit.model.device.type == device and torch.isfinite(fit.losses).all()
    assert torch.isfinite(fit.log_prob(data, num_particles=5)).all()
    assert torch.isfinite(fit.log_prob(data.x, num_particles=5, estimator="elbo")).all()
    assert predict(fit, data).device.type == "cpu" and fit.discrete(data).shape == (len(data),)
    assert fit.sample(3, y=2).shape == (3, 64)
    assert vae.reconstruct(fit, data).shape == data.x.shape


@CUDA
def test_m2_cuda_end_to_end() -> None:
    _m2_end_to_end("cuda")


# ---------------------------------------------------------------------- slow: two processes
def _distributed_worker(rank: int, world: int, port: int, config: dict, path: str) -> None:
    import os

    import torch.distributed as distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        train, _ = digits()
        fit = zoo.fit(zoo.models.VAE(**config["model"]), train.subset(list(range(120))),
                      zoo.SVI(distributed=True, jit=config["jit"], **config["method"]))
        if rank == 0:
            torch.save({"state": fit.model.state_dict(), "losses": fit.losses,
                        "processes": torch.tensor(fit.diagnostics["num_processes"])}, path)
    finally:
        distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_two_processes_train_like_one_on_the_same_global_batches(tmp_path: object, jit: bool) -> None:
    """DistributedDataParallel's arithmetic: each of two processes takes half of every global
    minibatch and the gradients are averaged, so the parameters follow the single-process run on
    the same global batches, to float tolerance. The guide is a point mass per datum ("delta"):
    its ELBO has no Monte Carlo noise, so the two runs see the same numbers (with a sampling guide
    the processes would draw other noise than the single process, equal only in distribution).
    With ``jit`` the two processes compile their shards' ELBO (shards of 20 rows, each process
    its own recording) and still follow the eager single-process run."""
    import socket

    import torch.multiprocessing as multiprocessing

    config = {
        "model": {"latent_dim": 2, "hidden_sizes": [16]},
        "method": {"guide": "delta", "batch_size": 40, "num_epochs": 3, "learning_rate": 0.01,
                   "num_posterior_samples": 1, "progress": False, "seed": 0},
        "jit": jit,
    }
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = str(tmp_path / "distributed.pt")  # type: ignore[operator]
    multiprocessing.spawn(_distributed_worker, args=(2, port, config, path), nprocs=2, join=True)
    both = torch.load(path, weights_only=True)
    train, _ = digits()
    one = zoo.fit(zoo.models.VAE(**config["model"]), train.subset(list(range(120))), zoo.SVI(**config["method"]))
    assert int(both["processes"]) == 2 and one.diagnostics["num_processes"] == 1
    assert both["losses"].shape == one.losses.shape == (9,)
    torch.testing.assert_close(both["losses"], one.losses, rtol=1e-5, atol=1e-5)
    for name, value in one.model.state_dict().items():
        torch.testing.assert_close(both["state"][name], value, rtol=1e-4, atol=1e-5, msg=name)


# ---------------------------------------------------------------------- semi-supervised VAE (M2)
def tiny_m2(classifier_weight: float = 2.0) -> SemiSupervisedVAE:
    """Three classes, latent dim 1, two pixels, no hidden layer (single linear maps)."""
    return SemiSupervisedVAE(num_classes=3, latent_dim=1, hidden_sizes=[], image_shape=[2], init_seed=4,
                             classifier_weight=classifier_weight)


def hand_log_joint(model: SemiSupervisedVAE, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x_i, y = c, z_ic) of ``tiny_m2`` for codes z shaped (classes, data, 1): (classes, data)."""
    with torch.no_grad():
        logits = model.decoder(z, torch.eye(3)[:, None, :])
    log_lik = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x.expand(3, -1, 2), reduction="none").sum(-1)
    return log_lik - 0.5 * z[..., 0] ** 2 - 0.5 * math.log(2 * math.pi) - math.log(3)


def test_m2_elbo_equals_a_hand_computation() -> None:
    """TraceEnum_ELBO with the guide enumerating y gives, per labeled row, the bound on log p(x, y)
    (the guide's point mass at the label contributes log q = 0), and per unlabeled row
    sum_y q(y | x) [log p(x, y, z_y) - log q(z_y | x, y) - log q(y | x)], with the same codes z_y
    the guide drew. The classifier term is no part of it (it is the auxiliary loss)."""
    model = tiny_m2()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    y = torch.tensor([0, -1, 2, -1])
    kwargs = {"x": x, "y": y}
    elbo = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)
    with isolated(seed=5):
        loss = elbo.differentiable_loss(model, model.amortized_guide, **kwargs).detach()
    with isolated(seed=5):  # the same draws: the guide draws z once, for every class at once
        trace = poutine.trace(poutine.enum(model.amortized_guide, first_available_dim=-2)).get_trace(**kwargs)
    z = trace.nodes["z"]["value"]  # (classes, data, 1)
    assert z.shape == (3, 4, 1)
    with torch.no_grad():
        loc, scale = model.encoder(x, torch.eye(3)[:, None, :])
        log_q_y = model.classifier(x).log_softmax(-1)  # (data, classes)
    log_q_z = -0.5 * ((z - loc) / scale)[..., 0] ** 2 - scale[..., 0].log() - 0.5 * math.log(2 * math.pi)
    weight = (hand_log_joint(model, x, z) - log_q_z).T  # (data, classes)
    expected = 0.0
    for row in range(4):
        if y[row] >= 0:
            expected += weight[row, y[row]]
        else:
            q = log_q_y[row].exp()
            expected += (q * (weight[row] - log_q_y[row])).sum()
    torch.testing.assert_close(-loss, expected, rtol=1e-5, atol=1e-4)


def test_m2_auxiliary_loss_is_the_weighted_classifier_term_on_labeled_rows() -> None:
    model = tiny_m2(classifier_weight=2.0)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    with torch.no_grad():
        log_q_y = model.classifier(x).log_softmax(-1)
        term = model.auxiliary_loss(zoo.Dataset(x, y=torch.tensor([0, -1, 2, -1])))
        none_labeled = model.auxiliary_loss(zoo.Dataset(x, y=torch.full((4,), -1)))
        no_labels = model.auxiliary_loss(zoo.Dataset(x))
    torch.testing.assert_close(term, -2.0 * (log_q_y[0, 0] + log_q_y[2, 2]))
    assert float(none_labeled) == 0.0 and float(no_labels) == 0.0


@pytest.mark.parametrize("batch_size", [None, 2], ids=["full-batch", "two-minibatches"])
def test_m2_training_loss_is_the_elbo_plus_the_classifier_term(batch_size: int | None) -> None:
    """The loss SVI records for M2 is the negative ELBO of the density plus classifier_weight *
    -log q(y_i | x_i) on the labeled rows, per datum; on minibatches both are scaled by N / batch,
    so the steps of one epoch add up to N / batch times the full-data loss.

    Computed by hand at the fit's parameters: the guide is a point mass per datum and class
    ("delta"), so the ELBO has no Monte Carlo noise, and a learning rate of 1e-12 leaves the
    parameters where the first steps saw them (float32 rounds such a step away)."""
    model = tiny_m2(classifier_weight=2.0)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    y = torch.tensor([0, -1, 2, -1])
    data = zoo.Dataset(x, y=y)
    steps = {"num_steps": 1} if batch_size is None else {"num_epochs": 1}
    fit = zoo.fit(model, data, zoo.SVI(guide="delta", optimizer="adam", learning_rate=1e-12, batch_size=batch_size,
                                       progress=False, num_posterior_samples=1, seed=1, **steps))
    with isolated(fit.param_state):
        codes = pyro.param("z_loc").detach()  # (data, classes, 1)
        log_q_y = pyro.param("y_logits").detach().log_softmax(-1)  # the guide's q(y) per datum
    joint = hand_log_joint(fit.model, x, codes.transpose(0, 1)).T  # (data, classes)
    with torch.no_grad():
        log_classifier = fit.model.classifier(x).log_softmax(-1)
    elbo_terms, classifier_terms = [], []
    for row in range(4):
        if y[row] >= 0:
            elbo_terms.append(joint[row, y[row]])
            classifier_terms.append(-2.0 * log_classifier[row, y[row]])
        else:
            elbo_terms.append((log_q_y[row].exp() * (joint[row] - log_q_y[row])).sum())
    expected = (-sum(elbo_terms) + sum(classifier_terms)) / 4
    if batch_size is None:
        assert fit.losses.shape == (1,)
        torch.testing.assert_close(fit.losses[0], expected, rtol=1e-5, atol=1e-5)
    else:
        assert fit.losses.shape == (2,)
        torch.testing.assert_close(fit.losses.sum(), (4 / 2) * expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def m2() -> tuple[zoo.Fit, zoo.Dataset, zoo.Dataset, torch.Tensor]:
    """M2 trained (seeded, 60 epochs) on binarised digits with 100 labels (10 per class, the other
    1,337 training images unlabeled); its fit, training data, test data and the labeled rows."""
    train, test = digits()
    generator = torch.Generator().manual_seed(0)
    keep = torch.cat([
        (train.y == digit).nonzero().reshape(-1)[torch.randperm(int((train.y == digit).sum()), generator=generator)[:10]]
        for digit in range(10)
    ])
    labels = torch.full_like(train.y, zoo.datasets.UNLABELED)
    labels[keep] = train.y[keep]
    semi = zoo.Dataset(train.x, y=labels)
    model = zoo.models.SemiSupervisedVAE(num_classes=10, latent_dim=8, hidden_sizes=[128])
    method = zoo.SVI(batch_size=100, num_epochs=60, learning_rate=0.003, seed=0, progress=False, num_posterior_samples=1)
    return zoo.fit(model, semi, method, held_out=zoo.Dataset(test.x)), semi, test, keep


def test_m2_with_100_labels_beats_a_classifier_of_those_100_labels(m2: tuple) -> None:
    """The point of M2: the 1,337 unlabeled images teach the classifier q(y | x) what the 100
    labels alone cannot. The baseline is scikit-learn's logistic regression on the same 100
    labeled images (the same binary pixels), given its best regularisation on the test set itself
    (C in 0.1, 1, 10: a generous baseline; it reaches 0.877). M2 reaches 0.90 (0.90 to 0.905 over
    seeds 0 to 3), about 10 more test images right out of 359."""
    from sklearn.linear_model import LogisticRegression

    fit, semi, test, keep = m2
    accuracy = float((predict(fit, test) == test.y).float().mean())
    baseline = max(
        float((LogisticRegression(C=C, max_iter=5000).fit(semi.x[keep].numpy(), semi.y[keep].numpy())
               .predict(test.x.numpy()) == test.y.numpy()).mean())
        for C in (0.1, 1.0, 10.0)
    )
    assert accuracy > baseline + 0.01, (accuracy, baseline)
    # fit.discrete / fit.marginals: q(y | x) where the label is unknown, the label where known
    assert torch.equal(fit.discrete(test.x), predict(fit, test))
    assert torch.equal(fit.discrete(semi)[keep], semi.y[keep])
    marginals = fit.marginals(semi)
    assert marginals.shape == (len(semi), 10)
    torch.testing.assert_close(marginals.sum(-1), torch.ones(len(semi)))
    torch.testing.assert_close(fit.marginals(test.x), predict_proba(fit, test))
    # the held-out negative ELBO per image fell while training
    assert fit.history["held_out_loss"][-1] < fit.history["held_out_loss"][0] - 5


def test_m2_class_conditional_samples_are_of_their_class(m2: tuple) -> None:
    """fit.sample(n, y=c) draws images of class c: the trained classifier labels them c far above
    chance (1 in 10): 86% to 100% per class for these binary samples."""
    fit, *_ = m2
    for digit in range(10):
        samples = fit.sample(50, y=digit, seed=digit)
        assert samples.shape == (50, 64) and set(samples.unique().tolist()) <= {0.0, 1.0}
        share = float((predict(fit, samples) == digit).float().mean())
        assert share > 0.6, (digit, share)
    # one style, every class: decode the same code with each label
    grid = vae.decode(fit, torch.zeros(10, 8), y=torch.arange(10))
    assert torch.equal(predict(fit, grid), torch.arange(10))
    # samples without a class come from p(y): several classes appear
    assert len(predict(fit, fit.sample(60, seed=1)).unique()) >= 5


def test_m2_log_prob_and_helpers(m2: tuple) -> None:
    fit, semi, test, _ = m2
    # with the labels, log p(x, y); images alone, log p(x) (y summed out): never smaller, with
    # the same particles, and the difference log p(y | x) is small where the classes are clear
    joint, marginal = fit.log_prob(test, num_particles=20), fit.log_prob(test.x, num_particles=20)
    assert (joint <= marginal + 1e-4).all()
    assert float((marginal - joint).mean()) < 1.0
    bound = fit.log_prob(test.x, num_particles=20, estimator="elbo")
    assert (bound <= marginal + 1e-4).all()  # IWAE with y summed out >= the M2 bound, same particles
    assert -25.0 < float(marginal.mean()) < -10.0
    loc, scale = vae.encode(fit, test)
    assert loc.shape == scale.shape == (len(test), 8)
    assert vae.reconstruct(fit, test).shape == test.x.shape
    assert vae.interpolate(fit, test.x[0], test.x[1], num_steps=4, y=3).shape == (4, 64)
    with pytest.raises(ValueError, match="decoder takes the class too"):
        vae.decode(fit, torch.zeros(2, 8))
    with pytest.raises(TypeError, match="amortization_gap takes a Fit of a VAE .* got SemiSupervisedVAE"):
        zoo.amortization_gap(fit, test.subset(list(range(5))))


def test_m2_bad_input_is_refused() -> None:
    data = zoo.datasets.load("digits", binarize=True).subset(list(range(30)))
    model = zoo.models.SemiSupervisedVAE(num_classes=10, latent_dim=2, hidden_sizes=[8])
    quick = zoo.SVI(num_steps=2, progress=False, num_posterior_samples=1)
    labels = data.y.clone()
    labels[4] = 10
    with pytest.raises(ValueError, match=r"y holds label 10 \(row 4\): labels must be in 0..9, or -1"):
        zoo.fit(model, zoo.Dataset(data.x, y=labels), quick)
    labels[4] = -2  # the Dataset itself refuses labels below -1
    with pytest.raises(ValueError, match="y holds -2: .* or -1 for an unlabeled row"):
        zoo.fit(model, zoo.Dataset(data.x, y=labels), quick)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        zoo.models.SemiSupervisedVAE(num_classes=1, latent_dim=2)
    with pytest.raises(ValueError, match="classifier_weight must be non-negative"):
        zoo.models.SemiSupervisedVAE(num_classes=3, latent_dim=2, classifier_weight=-1.0)
    with pytest.raises(ValueError, match="latent_dim must be at least 1"):
        zoo.models.SemiSupervisedVAE(num_classes=3, latent_dim=0)
    fit = zoo.fit(model, data, quick)
    with pytest.raises(ValueError, match=r"y must be a class in 0..9, got 10"):
        fit.sample(3, y=10)
    with pytest.raises(ValueError, match="y holds label 12"):
        fit.log_prob(zoo.Dataset(data.x[:2], y=torch.tensor([1, 12])))
    plain = zoo.fit(zoo.models.VAE(latent_dim=2, hidden_sizes=[8]), data, quick)
    with pytest.raises(TypeError, match="predict needs a Fit of a SemiSupervisedVAE"):
        predict(plain, data)
    with pytest.raises(ValueError, match="a VAE has no classes"):
        vae.decode(plain, torch.zeros(1, 2), y=1)
