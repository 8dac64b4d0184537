"""Naive Bayes: zoo.Exact against scikit-learn on digits and MNIST t10k.

Targets (issue 4): Exact fit time at most 1.5x scikit-learn's, accuracy at least scikit-learn's.

What is timed. zoo's time is the whole ``zoo.fit(model, train, zoo.Exact())`` call with the
default settings: input checks, the model's data-dependent set-up, the conjugate update and the
posterior mean (the point estimate ``predict`` uses). Its 1,000 exact posterior draws are drawn on
first use (see ``zoo.infer.exact``), not in the fit; the time that first use costs is measured
separately and printed below the headline, for information (a summary, ``to_arviz``, ``log_prob``
or ``predict_proba`` pays it once; ``predict`` never does). scikit-learn's time is its ``fit``
call on float64 numpy arrays converted beforehand (zoo's float32 tensors are converted outside
the timing too). scikit-learn is given zoo's posterior-mean class weights as ``class_prior`` and
alpha = 1, the matching setting (see tests/test_naive_bayes.py).

How. Each repeat times scikit-learn's fit and zoo's fit back to back in this one process, so a
busy machine slows both alike. Two ratios are reported, each against the target: the ratio of
the best times (noise on a shared machine only ever adds time, so the minimum is the closest to
each fit's own cost) and the median of the per-repeat ratios, with its interquartile range as the
noise. Every fit is warmed up once first.

Run:  python benchmarks/naive_bayes.py [--repeats 21] [--draw-repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.naive_bayes import BernoulliNB, GaussianNB, MultinomialNB
from threadpoolctl import threadpool_info  # installed with scikit-learn

import zoo
from zoo.models.naive_bayes import NaiveBayes, predict

#: Time ratio zoo / scikit-learn the issue asks for, at most.
TARGET_RATIO = 1.5


def seconds(run: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call of ``run``, and what it returned."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile) of ``values``."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    lower, middle, upper = statistics.quantiles(values, n=4, method="inclusive")
    return lower, middle, upper


def case(
    name: str,
    data: zoo.Dataset,
    family: str,
    reference: Callable[[np.ndarray], Any],
    repeats: int,
    draw_repeats: int,
) -> None:
    """Time and score one (data set, feature family) pair; print a block of results."""
    train, test = data.split(test_fraction=0.3, seed=0)
    model = NaiveBayes(10, family)
    method = zoo.Exact()  # the default: 1,000 draws, drawn on first use
    fit = zoo.fit(model, train, method)  # warm-up, and the fit that is scored
    weights = fit.point["weights"].double().numpy()
    x_train, y_train = train.x.numpy().astype(np.float64), train.y.numpy()
    x_test = test.x.numpy().astype(np.float64)
    reference(weights).fit(x_train, y_train)  # warm-up

    sk_times, zoo_times, ratios = [], [], []
    for _ in range(repeats):
        sk_time, sk_fit = seconds(lambda: reference(weights).fit(x_train, y_train))
        zoo_time, _ = seconds(lambda: zoo.fit(model, train, method))
        sk_times.append(sk_time)
        zoo_times.append(zoo_time)
        ratios.append(zoo_time / sk_time)

    # The first read of fit.draws on fresh fits: what the lazy draws cost when they are used.
    draw_times = []
    for _ in range(draw_repeats):
        fresh = zoo.fit(model, train, method)
        draw_time, _ = seconds(lambda: fresh.draws)
        draw_times.append(draw_time)

    zoo_predictions = predict(fit, test)
    untouched = not fit.draws_ready  # predict() used the point estimate, not the draws
    zoo_correct = int((zoo_predictions == test.y).sum())
    sk_correct = int((sk_fit.predict(x_test) == test.y.numpy()).sum())
    zoo_accuracy, sk_accuracy = zoo_correct / len(test), sk_correct / len(test)
    ratio_low, ratio, ratio_high = quartiles(ratios)

    print(f"\n{name}: {len(train)} training rows x {train.num_features} features, {len(test)} test rows")
    print(f"  scikit-learn fit                 median {1e3 * statistics.median(sk_times):8.2f} ms"
          f"   min {1e3 * min(sk_times):8.2f} ms   accuracy {sk_accuracy:.4f}")
    print(f"  zoo.fit(..., zoo.Exact())        median {1e3 * statistics.median(zoo_times):8.2f} ms"
          f"   min {1e3 * min(zoo_times):8.2f} ms   accuracy {zoo_accuracy:.4f}")
    best_ratio = min(zoo_times) / min(sk_times)
    print(f"  time ratio zoo/sklearn, best of {repeats} each: {best_ratio:.2f}x   target <= {TARGET_RATIO}x: "
          f"{'met' if best_ratio <= TARGET_RATIO else 'NOT met'}")
    print(f"  time ratio zoo/sklearn, median of {repeats} paired repeats: {ratio:.2f}x "
          f"(interquartile {ratio_low:.2f}x-{ratio_high:.2f}x: the noise)   target <= {TARGET_RATIO}x: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    print(f"  accuracy zoo - sklearn: {zoo_accuracy - sk_accuracy:+.4f}   target >= 0: "
          f"{'met' if zoo_correct >= sk_correct else 'NOT met'}"
          f"   (predict left the draws undrawn: {untouched})")
    print(f"  for information: first read of fit.draws (1000 exact draws, once per fit) median "
          f"{1e3 * statistics.median(draw_times):8.2f} ms, min {1e3 * min(draw_times):8.2f} ms "
          f"({draw_repeats} fits), i.e. {statistics.median(draw_times) / statistics.median(sk_times):.1f}x "
          "scikit-learn's fit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="paired timings per case")
    parser.add_argument("--draw-repeats", type=int, default=5, help="fresh fits whose first draws are timed")
    arguments = parser.parse_args()
    pools = ", ".join(f"{pool['internal_api']} {pool['num_threads']}" for pool in threadpool_info())
    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads (zoo runs Naive Bayes's conjugate "
          f"update on 1, its model.num_threads); numpy / scikit-learn thread pools: {pools}")
    digits = zoo.datasets.load("digits")
    case("digits, multinomial (pixel counts 0..16) vs MultinomialNB", digits, "multinomial",
         lambda w: MultinomialNB(alpha=1.0, class_prior=w), arguments.repeats, arguments.draw_repeats)
    case("digits, Gaussian vs GaussianNB", digits, "gaussian",
         lambda w: GaussianNB(priors=w), arguments.repeats, arguments.draw_repeats)
    mnist = zoo.datasets.load("mnist", binarize=True)
    case("MNIST t10k binarised, Bernoulli vs BernoulliNB", mnist, "bernoulli",
         lambda w: BernoulliNB(alpha=1.0, binarize=None, class_prior=w), arguments.repeats,
         arguments.draw_repeats)


if __name__ == "__main__":
    main()
