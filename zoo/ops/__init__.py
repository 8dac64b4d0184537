"""Pure tensor algorithms the models' fast exact paths and starts are built from.

No Pyro sample sites and no model imports here: plain torch functions of tensors, each tested
against brute force on tiny problems (``tests/test_ops.py``).

=====================  ===================================================================
module                 what
=====================  ===================================================================
:mod:`.markov`         forward filtering (parallel scan, rescaled, log space), forward-
                       backward, Viterbi, forward-filtering backward-sampling
:mod:`.densities`      log densities of the emission families, written for broadcasting
                       (one call scores every datum under every component), and their
                       support checks
:mod:`.baum_welch`     Baum-Welch (EM) for a hidden Markov chain: expected counts by the
                       forward pass's gradient, the chain's M-step, counts of labelled paths
:mod:`.clustering`     k-means++ seeding and Lloyd iterations, clusters named after known
                       labels, components reordered (relabelling)
:mod:`.moments`        weighted means and covariances from responsibilities
:mod:`.conjugate`      conjugate posterior updates from labeled rows (Naive Bayes), and the
                       posterior they give (exact draws, means, marginals)
:mod:`.labels`         the density and class posterior of partially labelled rows
:mod:`.chunks`         a function of parameter draws evaluated a chunk of draws at a time
:mod:`.bijections`     torch's stick-breaking and correlation-Cholesky maps, with shorter
                       gradients (the NUTS potential's transforms)
:mod:`.recording`      a function's ATen operations, backward passes included, recorded once
                       as a graph for replay; whether the running operations are recorded (a
                       function with a branch on a tensor's value takes its value-free path)
=====================  ===================================================================
"""

from zoo.ops import conjugate
from zoo.ops.clustering import kmeans_plus_plus
from zoo.ops.markov import (
    SCAN_LIMIT,
    backward_sample,
    forward_backward,
    forward_log_likelihood,
    forward_log_space,
    forward_scaled,
    safe_log,
    viterbi,
)
from zoo.ops.moments import WeightedMeans, correlation_cholesky, weighted_covariances, weighted_means

__all__ = [
    "SCAN_LIMIT",
    "WeightedMeans",
    "backward_sample",
    "conjugate",
    "correlation_cholesky",
    "forward_backward",
    "forward_log_likelihood",
    "forward_log_space",
    "forward_scaled",
    "kmeans_plus_plus",
    "safe_log",
    "viterbi",
    "weighted_covariances",
    "weighted_means",
]
