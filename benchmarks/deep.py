"""Step time of zoo's deep explicit densities against the same networks in a hand-written PyTorch loop.

For each model (Flow, Autoregressive, Diffusion) both sides train the same networks from the same
initial weights (the model zoo prepares, deep-copied) on the same data with Adam at the same
learning rate and batch size for the same number of epochs, on the same objective:

* Flow: minus the exact log-density of the (dequantized) 8x8 digits, from ``model.distribution()``;
* Autoregressive: minus the exact log-probability of the digits' 17 grey levels (MADE);
* Diffusion: minus the ELBO with the forward process as guide and every KL in closed form, written
  out here in torch (what ``TraceMeanField_ELBO`` computes from the model and guide in zoo).

zoo runs through ``zoo.fit`` (``zoo.SVI(batch_size=..., num_epochs=...)``: the data plate's
subsampling, the per-step NaN guard, epoch records). zoo is timed twice: the whole ``zoo.fit``
divided by its steps (set-up and the posterior's bookkeeping included: what a short fit pays),
and the cost of one more step (fits of ``--epochs`` and twice as many, differenced: what a long
fit pays). Printed: seconds per step of each (the
fastest of ``--rounds`` interleaved runs: on a shared machine other processes only ever add
time, so the minimum is the least noisy estimate), and the ratio zoo / hand-written (goal: at
most 1.10). **Timings on a loaded machine are noise**: run it on an idle one before quoting.

Flow libraries: where zuko is installed (the ``bench`` extra), the same digits are fitted by
zuko's neural spline flow used directly (``zuko.flows.NSF`` with coupling passes, the same number
of layers, bins and hidden width, its own initialisation) and zoo's flow (Pyro's transforms) are
trained in the same hand-written loop: seconds per step of each and, after the same epochs, both
flows' held-out nats per image (dequantized
17-level digits, the 20% held out by ``split(seed=0)``). nflows is not measured (unmaintained
since 2020; it is not installed).

Run: ``python benchmarks/deep.py [--epochs 3] [--rounds 2] [--threads 1]``
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import time
from collections.abc import Callable

import torch

import zoo
from zoo.units import dequantize

LEVELS = 17


def hand_loop(parameters: list[torch.Tensor], loss_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
              epochs: int, batch_size: int, learning_rate: float, seed: int,
              clock: Callable[[], float] = time.perf_counter) -> tuple[float, int]:
    """Adam on minibatches of shuffled rows; returns (seconds, steps)."""
    optimizer = torch.optim.Adam(parameters, lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    steps, start = 0, clock()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for begin in range(0, len(x), batch_size):
            batch = x[order[begin : begin + batch_size]]
            optimizer.zero_grad()
            # the data plate's scaling: the minibatch's sum times N / batch, per datum (as SVI reports)
            loss = loss_of(batch).sum() * (len(x) / len(batch)) / len(x)
            loss.backward()
            optimizer.step()
            steps += 1
    return clock() - start, steps


def diffusion_loss(model: zoo.models.Diffusion) -> Callable[[torch.Tensor], torch.Tensor]:
    """Minus the ELBO per datum, one forward-process chain, every KL in closed form."""

    def kl(mean_q: torch.Tensor, scale_q: float | torch.Tensor, mean_p: torch.Tensor, scale_p: float) -> torch.Tensor:
        var_q = torch.as_tensor(scale_q) ** 2
        return (0.5 * (math.log(scale_p**2) - torch.log(var_q) + (var_q + (mean_q - mean_p) ** 2) / scale_p**2 - 1)).sum(-1)

    def loss(x: torch.Tensor) -> torch.Tensor:
        x0 = model.to_unit(x)
        alpha_bar = float(model.alpha_bars[-1])
        mean = math.sqrt(alpha_bar) * x0
        z = mean + math.sqrt(1 - alpha_bar) * torch.randn_like(x0)
        total = kl(mean, math.sqrt(1 - alpha_bar), torch.zeros_like(x0), 1.0)
        for step in range(model.num_timesteps, 1, -1):
            mean_q, scale_q = model.posterior(z, x0, step)
            mean_p = model.reverse_mean(z, step)
            total = total + kl(mean_q, scale_q, mean_p, math.sqrt(float(model.betas[step - 1])))
            z = mean_q + scale_q * torch.randn_like(x0)
        return total - model.decoder(model.reverse_mean(z, 1)).log_prob(x)

    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall seconds, or the process's CPU seconds (better on a shared machine, with --threads 1)")
    arguments = parser.parse_args()
    clock = time.process_time if arguments.clock == "cpu" else time.perf_counter
    torch.set_num_threads(arguments.threads)
    digits = zoo.datasets.load("digits")
    cases = [
        ("flow (spline coupling, 4 layers)", zoo.models.Flow(num_layers=4, hidden_sizes=[128]), dequantize(digits, LEVELS),
         lambda model: (lambda x: -model.distribution().log_prob(x))),
        ("autoregressive (MADE 512)", zoo.models.Autoregressive(num_categories=LEVELS, hidden_sizes=[512]), digits,
         lambda model: (lambda x: -model.distribution().log_prob(x))),
        ("diffusion (T=20, 256x2)", zoo.models.Diffusion(num_timesteps=20, hidden_sizes=[256, 256], num_levels=LEVELS),
         digits, diffusion_loss),
    ]
    print(f"{arguments.epochs} epochs of {len(digits)} digits, batch {arguments.batch_size}, {arguments.threads} thread(s); "
          f"{arguments.clock} seconds per step, fastest of the rounds (NOISE on a loaded machine)")
    for label, model, data, make_loss in cases:
        zoo_times, marginal_times, hand_times = [], [], []
        for round_index in range(arguments.rounds):
            seconds_and_steps = []
            for epochs in (arguments.epochs, 2 * arguments.epochs):
                method = zoo.SVI(batch_size=arguments.batch_size, num_epochs=epochs, learning_rate=1e-3,
                                 seed=round_index, progress=False, jit=False)
                start = clock()
                fit = zoo.fit(model, data, method)
                seconds_and_steps.append((clock() - start, len(fit.losses)))
            (short, short_steps), (long, long_steps) = seconds_and_steps
            zoo_times.append(short / short_steps)
            # the cost of one more step, the fit's fixed costs (set-up, the posterior's
            # bookkeeping) differenced away: what a long fit pays per step
            marginal_times.append((long - short) / (long_steps - short_steps))
            prepared = copy.deepcopy(model.prepare(data))
            seconds, steps = hand_loop(list(prepared.parameters()), make_loss(prepared), data.x, arguments.epochs,
                                       arguments.batch_size, 1e-3, round_index, clock)
            hand_times.append(seconds / steps)
        hand = min(hand_times)
        print(f"{label:34s} hand-written {hand * 1e3:7.2f} ms/step | zoo whole fit {min(zoo_times) * 1e3:7.2f} ms/step "
              f"(ratio {min(zoo_times) / hand:4.2f}) | zoo per extra step {min(marginal_times) * 1e3:7.2f} ms "
              f"(ratio {min(marginal_times) / hand:4.2f})")
    if importlib.util.find_spec("zuko") is None:
        print("zuko: not installed (pip install zoo[bench]): no comparison with a flow library")
    else:
        compare_with_zuko(digits, arguments.epochs, arguments.batch_size, arguments.rounds, clock)


def compare_with_zuko(digits: zoo.Dataset, epochs: int, batch_size: int, rounds: int, clock: Callable[[], float]) -> None:
    """The flow library chosen (Pyro's transforms, as zoo's Flow builds them) against zuko's NSF,
    both trained in the same hand-written loop: seconds per step and held-out nats per image."""
    import zuko

    train, test = digits.split(test_fraction=0.2, seed=0)
    train_x, test_x = dequantize(train, LEVELS).x, dequantize(test, LEVELS, seed=1).x
    pyro_times, zuko_times = [], []
    for round_index in range(rounds):
        prepared = copy.deepcopy(zoo.models.Flow(num_layers=4, hidden_sizes=[128]).prepare(zoo.Dataset(train_x)))
        seconds, steps = hand_loop(list(prepared.parameters()), lambda x: -prepared.distribution().log_prob(x), train_x,
                                   epochs, batch_size, 1e-3, round_index, clock)
        pyro_times.append(seconds / steps)
        torch.manual_seed(round_index)
        flow = zuko.flows.NSF(features=train_x.shape[1], transforms=4, bins=8, passes=2, hidden_features=[128])
        seconds, steps = hand_loop(list(flow.parameters()), lambda x: -flow().log_prob(x), train_x, epochs,
                                   batch_size, 1e-3, round_index, clock)
        zuko_times.append(seconds / steps)
    with torch.no_grad():
        pyro_nats = float(prepared.distribution().log_prob(test_x).mean())
        zuko_nats = float(flow().log_prob(test_x).mean())
    print(f"flow libraries, same hand-written loop, {epochs} epochs (held-out: log-density of the dequantized digits in [0, 1]^64)")
    print(f"{'  Pyro transforms (zoo Flow)':34s} {min(pyro_times) * 1e3:7.2f} ms/step, held-out {pyro_nats:8.1f} nats/image")
    print(f"{'  zuko NSF ' + zuko.__version__:34s} {min(zuko_times) * 1e3:7.2f} ms/step, held-out {zuko_nats:8.1f} nats/image"
          f" | step-time ratio Pyro / zuko {min(pyro_times) / min(zuko_times):4.2f}")


if __name__ == "__main__":
    main()
