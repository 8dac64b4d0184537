"""Step time of zoo's adversarial training against a hand-written PyTorch GAN loop; and one table
of sample-based metrics for a Gaussian mixture, a VAE and a GAN on the 8x8 digits.

Part 1 (speed). Both loops train the same generator and discriminator (``zoo.models.nets``, the
same initial weights) with Adam, the same learning rates, batch size, seeds and non-saturating
loss, on the same shuffled minibatches and the same noise; the hand-written loop is the usual
DCGAN loop (the discriminator's samples detached, then reused for the generator's step), with
the discriminator scoring real data and samples in one call as zoo does. So both compute the
same numbers (checked: their final losses are printed and must agree) and the ratio measures
zoo's machinery only (``zoo.fit``'s preparation, the per-step NaN checks and loss records).
Printed: milliseconds per step of each, wall-clock and CPU time of the training thread (one torch
thread), the fastest of 5 interleaved runs (on a shared machine other processes only ever add
time; the CPU time is the steadier of the two there), and the ratios (target: at most 1.05).

Part 2 (metrics). Digits scaled to [0, 1] (1,257 train / 540 test), fitted by a Gaussian mixture
(10 components, diagonal covariances, MAP by SVI), a VAE (Bernoulli likelihood read as
cross-entropy on grey levels; both its samples, which are binary, and its mean images
E[x | z] are scored) and a GAN; each draws as many samples as there are test images; the
held-out training images are the reference row (the metrics' noise floor). Columns: MMD^2 and
its standard error, the classifier two-sample accuracy (0.5 perfect), the Fréchet distance in a
small classifier's features, and class coverage.

Part 3 (``--processes 2``): the ring's run again with two processes (``torchrun -m zoo fit gan
--distributed``, gloo, one torch thread each; real samples per second of training, from the
fit's wall time) next to the single process's rate from part 1.

Run: ``python benchmarks/gan.py [--steps 400] [--threads 1] [--skip-metrics] [--processes 2]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch
from torch.nn import functional

import zoo
from zoo import metrics
from zoo.models import vae
from zoo.models.gan import GAN


def pure_torch(model: GAN, x: torch.Tensor, steps: int, batch: int, learning_rate: float, seed: int) -> float:
    """The hand-written loop on ``model``'s networks. Returns the final generator loss."""
    generator, discriminator = model.generator, model.discriminator
    torch.manual_seed(seed)
    g_opt = torch.optim.Adam(generator.parameters(), lr=learning_rate, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=learning_rate, betas=(0.5, 0.999))
    shuffle = torch.Generator().manual_seed(seed)
    per_epoch, position, order = len(x) // batch, None, None
    for _ in range(steps):
        if position is None or position == per_epoch:
            order, position = torch.randperm(len(x), generator=shuffle), 0
        real = x[order[position * batch : (position + 1) * batch]]
        position += 1
        fake = model.transform(generator(torch.randn(batch, model.latent_dim)))
        scores = discriminator(torch.cat([real, fake.detach()]))
        d_loss = functional.softplus(-scores[:batch]).mean() + functional.softplus(scores[batch:]).mean()
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        g_loss = functional.softplus(-discriminator(fake)).mean()
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
    return float(g_loss.detach())


def speed(
    name: str, data: zoo.Dataset, model: GAN, steps: int, batch: int, learning_rate: float, repeats: int = 5
) -> float:
    """Prints the comparison; returns zoo's fastest seconds per step."""
    prepared = model.prepare(data)  # the networks zoo.fit would build (same init seed)
    method = zoo.Adversarial(num_steps=steps, batch_size=batch, generator_learning_rate=learning_rate,
                             discriminator_learning_rate=learning_rate, progress=False, seed=0)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    final: dict[str, float] = {}
    for label in ("zoo", "pytorch") * repeats:  # interleaved: a busy machine drifts
        start, start_cpu = time.perf_counter(), time.thread_time()
        if label == "zoo":
            loss = float(zoo.fit(model, data, method).losses[-1])
        else:
            loss = pure_torch(GAN(**prepared.config()), data.x, steps, batch, learning_rate, seed=0)
        seconds, cpu_seconds = time.perf_counter() - start, time.thread_time() - start_cpu
        wall[label] = min(wall.get(label, float("inf")), seconds / steps)
        cpu[label] = min(cpu.get(label, float("inf")), cpu_seconds / steps)
        final[label] = loss
    sizes = "-".join(str(size) for size in prepared.hidden_sizes)
    print(f"{name}: MLP discriminator {sizes}, latent {prepared.latent_dim}, batch {batch}, {steps} steps, "
          f"fastest of {repeats} interleaved runs")
    for label in ("zoo", "pytorch"):
        print(f"  {label:<8} {1000 * wall[label]:8.3f} ms / step wall, {1000 * cpu[label]:8.3f} ms / step CPU"
              f"   final generator loss {final[label]:.6f}")
    print(f"  ratio zoo / pytorch: wall {wall['zoo'] / wall['pytorch']:.3f}, CPU {cpu['zoo'] / cpu['pytorch']:.3f}"
          "  (target <= 1.05)")
    return wall["zoo"]


def two_processes(steps: int, batch: int, learning_rate: float, latent_dim: int, hidden: list[int]) -> float:
    """Train on the ring with two processes (gloo) by ``torchrun -m zoo fit gan --distributed``;
    real samples per second (the CLI's ring: 1,600 training rows)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29534",
            "-m", "zoo", "fit", "gan", "--dataset", "ring", "--method", "adversarial",
            "--latent-dim", str(latent_dim), "--hidden-sizes", ",".join(str(size) for size in hidden),
            "--num-steps", str(steps), "--batch-size", str(batch), "--learning-rate", str(learning_rate),
            "--num-threads", "1", "--distributed", "--quiet", "--out", folder,
        ]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            print(result.stdout[-2000:], result.stderr[-2000:])
            return float("nan")
        fit = zoo.load(os.path.join(folder, "fit.zoo"))
    return fit.diagnostics["num_steps"] * batch * fit.method.discriminator_steps / fit.wall_time


def metrics_table(seed: int = 0) -> None:
    digits = zoo.datasets.load("digits")
    scaled = zoo.Dataset(digits.x / 16.0, y=digits.y, name="digits")
    train, test = scaled.split(test_fraction=0.3, seed=seed)
    unlabeled = zoo.Dataset(train.x, name="digits")
    n = len(test)
    timings = {}

    start = time.perf_counter()
    gmm = zoo.fit(zoo.models.GaussianMixture(10, covariance="diag"), unlabeled,
                  zoo.SVI(guide="delta", num_steps=300, seed=seed, progress=False, num_posterior_samples=1))
    timings["gmm"] = time.perf_counter() - start

    start = time.perf_counter()
    vae_fit = zoo.fit(zoo.models.VAE(latent_dim=8, hidden_sizes=[256]), unlabeled,
                      zoo.SVI(batch_size=64, num_epochs=60, learning_rate=3e-3, seed=seed, progress=False,
                              num_posterior_samples=1))
    timings["vae"] = time.perf_counter() - start

    start = time.perf_counter()
    gan_fit = zoo.fit(zoo.models.GAN(latent_dim=8, hidden_sizes=[256, 256]), unlabeled,
                      zoo.Adversarial(num_epochs=200, batch_size=64, generator_learning_rate=5e-4,
                                      discriminator_learning_rate=5e-4, seed=seed, progress=False))
    timings["gan"] = time.perf_counter() - start

    start = time.perf_counter()
    classifier = metrics.train_classifier(train, seed=seed)
    print(f"feature classifier: test accuracy {classifier.accuracy(test):.3f} "
          f"({time.perf_counter() - start:.1f} s)")
    codes = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
    samples = {
        "held-out train images": train.x[torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:n]],
        "GMM (10 diag.)": gmm.sample(n, seed=seed),
        "VAE samples": vae_fit.sample(n, seed=seed),
        "VAE mean images": vae.decode(vae_fit, codes),
        "GAN": gan_fit.sample(n, seed=seed),
    }
    table = metrics.compare_samples(samples, test, classifier=classifier, seed=seed)
    print(f"fit seconds: GMM {timings['gmm']:.1f}, VAE {timings['vae']:.1f}, GAN {timings['gan']:.1f}")
    print(f"held-out log-likelihood per image: GMM {float(gmm.log_prob(zoo.Dataset(test.x)).mean()):.1f} nats "
          "(Gaussian density on grey levels); VAE: a Bernoulli density (not comparable); GAN: none")
    with_pandas_options(table)


def with_pandas_options(table: object) -> None:
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", None, "display.precision", 4):
        print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-metrics", action="store_true")
    parser.add_argument("--processes", type=int, default=1, help="2: also time a two-process run")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    print(f"{torch.get_num_threads()} torch thread(s)")
    ring = zoo.datasets.load("ring", num_data=2000)
    seconds = speed("ring of 8 Gaussians", ring, GAN(latent_dim=2, hidden_sizes=[128, 128]), arguments.steps, 256, 1e-3)
    if arguments.processes == 2:
        rate = two_processes(arguments.steps, 256, 1e-3, 2, [128, 128])
        print(f"  two processes (gloo, 1 thread each): {rate:,.0f} samples/s; one process: {256 / seconds:,.0f} samples/s")
    digits = zoo.datasets.load("digits")
    scaled = zoo.Dataset(digits.x / 16.0, name="digits")
    speed("digits 8x8", scaled, GAN(latent_dim=8, hidden_sizes=[256, 256]), arguments.steps, 64, 5e-4)
    if not arguments.skip_metrics:
        metrics_table()


if __name__ == "__main__":
    main()
