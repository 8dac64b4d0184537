r"""Baum-Welch (EM) for a hidden Markov chain: expected counts and the chain's M-step, in plain torch.

The chain's tensors are those of :mod:`zoo.ops.markov`: ``log_initial`` (S, K), ``log_transition``
(S, K, K), ``log_emission`` (S, N, T, K) and ``mask`` (N, T), True at real steps.

E-step by differentiation. log p(x | theta) computed by the forward algorithm from the three log
tensors taken as free (unnormalised) inputs has, as its gradient,

* d / d log_emission[s, n, t, k]  = p(state_t = k | x_n, theta_s)  (the state posterior),
* d / d log_transition[s, i, j]   = sum_n sum_t p(state_{t-1} = i, state_t = j | x_n, theta_s)
  (the expected number of i -> j transitions),
* d / d log_initial[s, k]         = sum_n p(state_0 = k | x_n, theta_s)  (expected starts),

because log p(x) is the log of a sum over paths of products of these factors, each path's share of
the sum being its posterior probability. So one forward pass and its backward pass (what training
differentiates anyway) replace a hand-written forward-backward recursion for pairs of states
(:func:`expected_counts`). The M-step of the chain normalises the counts plus the Dirichlet
priors' pseudo-counts (:func:`chain_estimates`); the emissions' M-step weights each observation by
its state posterior (a family's weighted estimates).

:func:`label_counts` gives the same counts from one labelled path (a k-means start),
:func:`chain_start` a chain to start from out of them, :func:`baum_welch` the whole algorithm
from such a start, and :func:`sequence_mask` the mask from the sequences' lengths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from zoo.ops.markov import forward_log_likelihood, safe_log

__all__ = ["ExpectedCounts", "sequence_mask", "label_counts", "chain_start", "expected_counts", "chain_estimates", "baum_welch"]


class ExpectedCounts(NamedTuple):
    """What the E-step of Baum-Welch returns for S parameter draws."""

    #: (S, N) log p(x_n | theta_s)
    log_likelihood: torch.Tensor
    #: (S, K) expected number of sequences starting in each state
    starts: torch.Tensor
    #: (S, K, K) expected number of i -> j transitions at [s, i, j]
    transitions: torch.Tensor
    #: (S, N, T, K) p(state_t = k | x_n, theta_s); 0 at padded steps
    posterior: torch.Tensor


def sequence_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """True at the real steps of padded sequences.

    Parameters
    ----------
    lengths : LongTensor, shape (N,)
        Each sequence's number of real steps, 1..``length``.
    length : int
        T, the padded length.

    Returns
    -------
    BoolTensor, shape (N, T)
    """
    return torch.arange(length, device=lengths.device) < lengths.unsqueeze(-1)


def label_counts(labels: torch.Tensor, num_states: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Starts and transitions counted on labelled paths (e.g. k-means clusters of the steps).

    Parameters
    ----------
    labels : LongTensor, shape (N, T)
        States in 0..K-1 at real steps, -1 at padding (which follows the real steps).
    num_states : int
        K.

    Returns
    -------
    starts : LongTensor, shape (K,)
        Sequences starting in each state.
    transitions : LongTensor, shape (K, K)
        Steps from state i to state j at [i, j], over consecutive real steps.
    """
    starts = torch.bincount(labels[:, 0], minlength=num_states)
    real_pairs = (labels[:, :-1] >= 0) & (labels[:, 1:] >= 0)
    cells = labels[:, :-1][real_pairs] * num_states + labels[:, 1:][real_pairs]  # i * K + j
    transitions = torch.bincount(cells, minlength=num_states * num_states).reshape(num_states, num_states)
    return starts, transitions


def chain_start(labels: torch.Tensor, num_states: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A chain to start from, estimated from labelled paths (e.g. k-means clusters of the steps).

    The counts of :func:`label_counts`, smoothed: one pseudo-count for every start and every
    transition, and for staying in a state 10% of its row's transitions (at least 0.1), since
    clusters found with time ignored switch more often than the states they stand for.

    Parameters
    ----------
    labels : LongTensor, shape (N, T)
        States in 0..K-1 at real steps, -1 at padding (which follows the real steps).
    num_states : int
        K.
    dtype : torch.dtype
        Of the result.

    Returns
    -------
    initial : Tensor, shape (K,)
    transition : Tensor, shape (K, K)
        Each row on the simplex, every entry positive.
    """
    starts, transitions = (counts.to(dtype) for counts in label_counts(labels, num_states))
    starts = starts + 1.0
    stay = 0.1 * transitions.sum(-1, keepdim=True).clamp(min=1)
    transitions = transitions + 1.0 + torch.eye(num_states, dtype=dtype) * stay
    return starts / starts.sum(), transitions / transitions.sum(-1, keepdim=True)


def expected_counts(
    log_initial: torch.Tensor, log_transition: torch.Tensor, log_emission: torch.Tensor, mask: torch.Tensor
) -> ExpectedCounts:
    """The E-step of Baum-Welch: expected starts, transitions and state posteriors.

    Parameters
    ----------
    log_initial, log_transition, log_emission, mask : Tensor
        The chain, (S, K), (S, K, K), (S, N, T, K) and (N, T) bool, as in the module docstring.

    Returns
    -------
    ExpectedCounts
        Computed by differentiating the forward algorithm (see the module docstring); no
        gradient flows back into the arguments. Non-finite where the likelihood underflows.
    """
    inputs = [tensor.detach().requires_grad_() for tensor in (log_initial, log_transition, log_emission)]
    with torch.enable_grad():
        log_likelihood = forward_log_likelihood(*inputs, mask)
        # allow_unused: with every sequence one step long no transition is ever taken, so the
        # likelihood does not depend on the transition matrix: its expected counts are zeros.
        gradients = torch.autograd.grad(log_likelihood.sum(), inputs, allow_unused=True)
    starts, transitions, posterior = (
        torch.zeros_like(tensor) if gradient is None else gradient for gradient, tensor in zip(gradients, inputs)
    )
    return ExpectedCounts(log_likelihood.detach(), starts, transitions, posterior)


def chain_estimates(
    counts: ExpectedCounts, initial_pseudo_count: float, transition_pseudo_count: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The M-step of the chain: expected counts plus pseudo-counts, normalised.

    With pseudo-counts alpha - 1 of Dirichlet(alpha) priors this is the MAP update.

    Parameters
    ----------
    counts : ExpectedCounts
    initial_pseudo_count, transition_pseudo_count : float
        Added to every expected start, and to every expected transition.

    Returns
    -------
    initial : Tensor, shape (S, K)
    transition : Tensor, shape (S, K, K)
        Each row on the simplex.
    """
    starts = counts.starts + initial_pseudo_count
    transitions = counts.transitions + transition_pseudo_count
    return starts / starts.sum(-1, keepdim=True), transitions / transitions.sum(-1, keepdim=True)


def baum_welch(
    labels: torch.Tensor,
    num_states: int,
    emission_table: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    estimates: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    num_iterations: int,
    initial_pseudo_count: float,
    transition_pseudo_count: float,
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """Baum-Welch (EM) for a hidden Markov chain, from labelled paths (e.g. k-means clusters).

    The start: the emission parameters estimated from each state's labelled steps, the chain
    from the labels' counts (:func:`chain_start`). Each iteration: the E-step
    (:func:`expected_counts`, the chain normalised as :func:`~zoo.ops.markov.safe_log` and a
    log-softmax normalise it), then the chain's M-step (:func:`chain_estimates`) and the
    emissions re-estimated with the state posteriors as weights. The iterations stop where the
    likelihood or a posterior is not finite (a start this poor is left as it is).

    Parameters
    ----------
    labels : LongTensor, shape (N, T)
        A state in 0..K-1 at every real step, -1 at padding (which follows the real steps).
    num_states : int
        K.
    emission_table : callable
        Emission parameters (each (K, ...)) -> log p(x_{n,t} | state k), shape (1, N, T, K).
    estimates : callable
        Weights (M, K) of the M real steps, in the order of ``labels[labels >= 0]`` ->
        emission parameters, each (K, ...) (weighted estimates, e.g. a family's).
    num_iterations : int
        EM iterations after the start (0: the start itself).
    initial_pseudo_count, transition_pseudo_count : float
        Added to the expected starts and transitions (:func:`chain_estimates`).
    dtype : torch.dtype
        Of the weights and the chain.

    Returns
    -------
    dict
        ``initial`` (K,), ``transition`` (K, K) and the emission parameters (K, ...).
    """
    mask = labels >= 0
    emission = estimates(torch.nn.functional.one_hot(labels[mask], num_states).to(dtype))
    initial, transition = chain_start(labels, num_states, dtype)
    for _ in range(num_iterations):
        with torch.no_grad():
            chain = (safe_log(initial[None]).log_softmax(-1), safe_log(transition[None]).log_softmax(-1))
            table = emission_table(emission)
        counts = expected_counts(*chain, table, mask)  # one draw
        if not (torch.isfinite(counts.log_likelihood).all() and torch.isfinite(counts.posterior).all()):
            break
        emission = estimates(counts.posterior[0][mask])
        initial, transition = (value[0] for value in chain_estimates(counts, initial_pseudo_count, transition_pseudo_count))
    return emission | {"initial": initial, "transition": transition}
