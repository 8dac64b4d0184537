"""Epoch time of zoo's VAE against the same networks trained by a hand-written PyTorch loop.

All train the same encoder and decoder (``zoo.models.nets``, the same initial weights) on the
same binarised MNIST split (9,000 train / 1,000 test, fixed), with Adam, the same learning rate,
batch size and number of epochs, and the same single-sample reparameterised ELBO. The only
difference is the machinery. zoo runs through ``zoo.fit`` (per-step NaN guard, epoch records)
twice: "zoo" with the default ``SVI()`` (``jit=None``: the VAE declares ``jit_safe``, so its
steps replay a compiled recording of Pyro's ELBO, ``JitTrace_ELBO``), and "zoo eager" with
``jit=False`` (Pyro's ``Trace_ELBO``, its effect handlers run in Python on every step), for
information. The peer computes the ELBO with four lines of
torch.

Printed: seconds per epoch of each run (the fastest epoch after the first: on a shared machine
other processes only ever add time, so the minimum is the least noisy estimate; the median is
printed too); the ratio of zoo's fastest epoch to the peer's over all runs (target: at most 1.10,
for "zoo", the default), and the same ratio within each round of runs (the three are interleaved, so a
slow drift of the machine's load cancels in a round; their spread shows how noisy it was);
and the held-out ELBO per image of each (the same estimator: 100 particles from the encoder),
which should agree to within run-to-run noise. (jit and eager zoo draw the same noise and
compute the same ELBO to float rounding; Adam's per-weight normalisation lets the rounding grow
to a few hundredths of a nat over the run. The peer draws its noise differently.) With
``--processes 2`` it also trains with two processes (``torchrun``-style, gloo, the default compiled steps)
and prints their samples per second.

Run: ``python benchmarks/vae.py [--epochs 5] [--threads 1] [--rounds 3] [--processes 2]``
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import zoo
from zoo.models import vae


def data(num_train: int = 9000) -> tuple[zoo.Dataset, zoo.Dataset]:
    mnist = zoo.datasets.load("mnist", binarize=True)
    order = torch.randperm(len(mnist), generator=torch.Generator().manual_seed(0))
    return mnist.subset(order[:num_train].sort().values), mnist.subset(order[num_train:].sort().values)


def pure_torch(model: vae.VAE, train: zoo.Dataset, epochs: int, batch_size: int, learning_rate: float, seed: int) -> list[float]:
    """The hand-written loop: minibatch ELBO by reparameterisation, Adam. Returns epoch times."""
    torch.manual_seed(seed)
    encoder, decoder = model.encoder, model.decoder
    optimizer = torch.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=learning_rate)
    x_all, num_data = train.x, len(train)
    generator = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for index in torch.randperm(num_data, generator=generator).split(batch_size):
            x = x_all[index]
            loc, scale = encoder(x)
            z = loc + scale * torch.randn_like(loc)
            logits = decoder(z)
            log_lik = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
            log_prior = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
            log_q = (-0.5 * ((z - loc) / scale) ** 2 - scale.log()).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
            loss = -(log_lik + log_prior - log_q).mean()  # per datum, as zoo reports it
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def two_processes(epochs: int, batch_size: int, learning_rate: float, latent_dim: int, hidden: int) -> float:
    """Train with two processes (gloo) by ``torchrun -m zoo fit vae --distributed``; samples/s."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
            "-m", "zoo", "fit", "vae", "--dataset", "mnist", "--binarize", "--latent-dim", str(latent_dim),
            "--hidden-sizes", str(hidden), "--batch-size", str(batch_size), "--num-epochs", str(epochs),
            "--learning-rate", str(learning_rate), "--test-fraction", "0.1", "--distributed", "--quiet",
            "--num-threads", "1", "--out", folder,
        ]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            print(result.stdout[-2000:], result.stderr[-2000:])
            return float("nan")
        fit = zoo.load(os.path.join(folder, "fit.zoo"))
    epoch_times = fit.history["epoch_time"].tolist()
    steady = statistics.median(epoch_times[1:] or epoch_times)
    return len(fit.train) / steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1, help="2: also time a two-process run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three runs (more: less noise)")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    train, test = data()
    config = dict(latent_dim=arguments.latent_dim, hidden_sizes=[arguments.hidden], image_shape=[784], init_seed=0)

    results: dict[str, list[tuple[float, float, float]]] = {}
    for name in ("zoo", "zoo eager", "pytorch") * arguments.rounds:  # interleaved: a busy machine drifts
        model = vae.VAE(**config)
        if name.startswith("zoo"):
            method = zoo.SVI(batch_size=arguments.batch_size, num_epochs=arguments.epochs,
                             learning_rate=arguments.learning_rate, num_threads=arguments.threads,
                             num_posterior_samples=1, tolerance=0.0, progress=False, seed=0,
                             jit=None if name == "zoo" else False)
            fit = zoo.fit(model, train, method)
            times, trained = fit.history["epoch_time"].tolist(), fit.model
        else:
            times, trained = pure_torch(model, train, arguments.epochs, arguments.batch_size,
                                        arguments.learning_rate, seed=0), model
        held_out = float(vae.elbo(trained, test, num_particles=100).mean())
        steady = times[1:] or times
        results.setdefault(name, []).append((min(steady), statistics.median(steady), held_out))

    print(f"VAE on binarised MNIST: {len(train)} train / {len(test)} test, MLP 784-{arguments.hidden}-"
          f"{arguments.latent_dim}, batch {arguments.batch_size}, {arguments.epochs} epochs, "
          f"{torch.get_num_threads()} torch thread(s)")
    print(f"{'':<10}{'min s / epoch':>15}{'median':>10}{'held-out ELBO / image':>24}")
    best = {}
    for name, rows in results.items():
        best[name] = min(row[0] for row in rows)
        for fastest, median, held_out in rows:
            print(f"{name:<10}{fastest:>15.3f}{median:>10.3f}{held_out:>24.2f}")
    for name, target in (("zoo", "  (target <= 1.10)"), ("zoo eager", "")):
        rounds = " ".join(f"{mine[0] / peer[0]:.3f}" for mine, peer in zip(results[name], results["pytorch"]))
        print(f"ratio {name} / pytorch (fastest epoch of {arguments.rounds} runs each): "
              f"{best[name] / best['pytorch']:.3f}{target}; "
              f"round by round: {rounds}")
    if arguments.processes == 2:
        rate = two_processes(arguments.epochs, arguments.batch_size, arguments.learning_rate,
                             arguments.latent_dim, arguments.hidden)
        single = len(train) / best["zoo"]
        print(f"two processes (gloo, 1 thread each): {rate:,.0f} samples/s; one process: {single:,.0f} samples/s")


if __name__ == "__main__":
    main()
