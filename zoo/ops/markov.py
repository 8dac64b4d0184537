r"""Exact inference in a hidden Markov chain with K discrete states, in plain torch.

Every function takes the chain as log tensors with one leading dim S of parameter draws (one
draw: S = 1) and N sequences of T steps, padded at the end:

==================  ================  ====================================================
argument            shape             meaning
==================  ================  ====================================================
``log_initial``     (S, K)            log p(state_0 = k)
``log_transition``  (S, K, K)         log p(state_t = j | state_{t-1} = i) at [s, i, j]
``log_emission``    (S, N, T, K)      log p(x_{n,t} | state_t = k); ignored at padded steps
``mask``            (N, T) bool       True at real steps; padding follows each sequence's
                                      real steps, and every sequence has at least one
==================  ================  ====================================================

Padded steps observe nothing and keep the state of the last real step, so they change no
likelihood, gradient, marginal, MAP path or sample of the real steps.

- :func:`forward_log_likelihood`: log p(x_n | theta_s) by the forward algorithm, differentiable
  to any order (so it serves as a training objective and, through its gradient, as the E-step
  of Baum-Welch). Three forms: a log-space parallel scan over time, a rescaled pass in
  probability space (:func:`forward_scaled`) and a log-space pass (:func:`forward_log_space`),
  to which the rescaled pass hands over where its messages would underflow.
- :func:`forward_backward`: the posterior marginals p(state_t | x_n, theta_s).
- :func:`viterbi`: the most probable path.
- :func:`backward_sample`: an exact posterior draw of the path (forward filtering, backward
  sampling).

No Pyro sample sites here: these are the algorithms a model's fast exact paths call.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from zoo.ops.recording import is_recording

__all__ = [
    "SCAN_LIMIT",
    "RESCALE_EVERY",
    "FORWARD_METHODS",
    "safe_log",
    "forward_log_likelihood",
    "forward_scaled",
    "forward_log_space",
    "forward_backward",
    "viterbi",
    "backward_sample",
    "clamp_states",
    "IMPOSSIBLE",
]

#: The log-probability added to a state that a known label rules out: exp() of it is exactly 0
#: in any float dtype, and sums of it over a sequence stay finite (no -inf, so no NaN gradients).
IMPOSSIBLE = -1e6


def clamp_states(states: torch.Tensor, num_states: int, dtype: torch.dtype) -> torch.Tensor:
    """What to add to ``log_emission`` so that the known steps of ``states`` take their label.

    Adding it restricts every forward pass, forward-backward, Viterbi path and backward sample
    to the paths through the known states: the forward algorithm then gives log p(x, known
    states), the joint density of the data and the labels (semi-supervised training).

    Parameters
    ----------
    states : LongTensor, shape (N, T)
        Known states in 0..K-1, -1 where unknown.
    num_states : int
        K.
    dtype : torch.dtype

    Returns
    -------
    Tensor, shape (N, T, K)
        0 for an unknown step and for the known state, :data:`IMPOSSIBLE` for the other states.
    """
    known = (states >= 0).unsqueeze(-1)
    other = torch.arange(num_states, device=states.device) != states.clamp(min=0).unsqueeze(-1)
    return torch.where(known & other, torch.tensor(IMPOSSIBLE, dtype=dtype, device=states.device), torch.zeros((), dtype=dtype, device=states.device))

#: Largest S * N * K**3 (the parallel scan's work per time step) for which "auto" takes the scan.
#: The sequential pass costs a roughly fixed overhead per step (a few small operations), the
#: scan log2(T) levels of work proportional to S N T K^3; on a CPU the two cross near S N K^3 of
#: 500-1000 (the scan wins on a few short-state sequences, the sequential pass on many
#: sequences or more states).
SCAN_LIMIT = 2**9

#: The sequential forward pass in probability space rescales its messages every this many steps.
RESCALE_EVERY = 4

#: The forms :func:`forward_log_likelihood` can take.
FORWARD_METHODS = ("auto", "scan", "sequential", "log-sequential")


def safe_log(probs: torch.Tensor) -> torch.Tensor:
    """log of probabilities floored at the smallest normal number.

    A MAP fit can push a probability to exactly 0 (Dirichlet(1) is flat up to the boundary),
    whose log would be -inf and whose gradient NaN; the floor stops it there.

    Parameters
    ----------
    probs : Tensor, any shape
        Probabilities (values below ``torch.finfo(probs.dtype).tiny`` are raised to it).

    Returns
    -------
    Tensor, the shape of ``probs``
    """
    return probs.clamp(min=torch.finfo(probs.dtype).tiny).log()


def _log_matmul_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(exp(a) @ exp(b)) for (..., K, K) tensors, in log space."""
    return (a.unsqueeze(-1) + b.unsqueeze(-3)).logsumexp(-2)


def _scan(matrices: torch.Tensor) -> torch.Tensor:
    """The log-space product M_1 @ M_2 @ ... of (..., T, K, K) matrices, by a parallel scan."""
    while matrices.size(-3) > 1:
        steps = matrices.size(-3)
        even = steps - steps % 2
        paired = _log_matmul_exp(matrices[..., 0:even:2, :, :], matrices[..., 1:even:2, :, :])
        matrices = torch.cat([paired, matrices[..., even:, :, :]], dim=-3) if steps % 2 else paired
    return matrices.squeeze(-3)


def _padded_steps(mask: torch.Tensor) -> list[bool]:
    """Per step (T,): whether some sequence is padding there."""
    num_sequences, length = mask.shape
    # The first step at which some sequence is padding (padding follows the real steps), as a
    # Python int: one sync here, none per step, and no masking work at all before it.
    shortest = int(mask.sum(1).min()) if num_sequences else length
    return [t >= shortest for t in range(length)]


def forward_log_likelihood(
    log_initial: torch.Tensor,
    log_transition: torch.Tensor,
    log_emission: torch.Tensor,
    mask: torch.Tensor,
    method: str = "auto",
) -> torch.Tensor:
    """log p(x_n | theta_s) by the forward algorithm, padded steps skipped.

    Parameters
    ----------
    log_initial : Tensor, shape (S, K)
        log p(state_0).
    log_transition : Tensor, shape (S, K, K)
        log p(state_t = j | state_{t-1} = i) at [s, i, j].
    log_emission : Tensor, shape (S, N, T, K)
        log p(x_t | state_t = k); values at padded steps are ignored.
    mask : BoolTensor, shape (N, T)
        True at real steps; padding comes after each sequence's real steps.
    method : {"auto", "scan", "sequential", "log-sequential"}
        "scan": the log-space parallel scan over time (few large operations, K^3 work per
        step); "sequential": T small steps in probability space, rescaled (see
        :func:`forward_scaled`), falling back to "log-sequential" (T small steps in log space,
        :func:`forward_log_space`) when a rescaling constant leaves the safe floating-point
        range; "auto": "scan" when S N K^3 <= ``SCAN_LIMIT``, "sequential" otherwise, and
        always "scan" while the operations are recorded (``torch.jit.trace``, or
        :func:`zoo.ops.recording.recording`: a recording keeps the branch taken at the point it
        was recorded at; the scan has no branch on a tensor's value, the
        sequential pass's fallback has).

    Returns
    -------
    Tensor, shape (S, N)
        Differentiable (to any order) in the three log tensors.

    Raises
    ------
    ValueError
        If ``method`` is not one of the four.
    """
    if method not in FORWARD_METHODS:
        raise ValueError(f"method must be 'auto', 'scan', 'sequential' or 'log-sequential', got {method!r}")
    num_draws, num_sequences, length, num_states = log_emission.shape
    padded = _padded_steps(mask)
    if any(padded):
        log_emission = torch.where(mask.unsqueeze(-1), log_emission, torch.zeros((), dtype=log_emission.dtype))
    if length == 1:
        return (log_initial.unsqueeze(1) + log_emission[:, :, 0]).logsumexp(-1)
    if method == "auto":
        small = num_draws * num_sequences * num_states**3 <= SCAN_LIMIT
        method = "scan" if small or is_recording() else "sequential"
    if method == "scan":
        return _forward_scan(log_initial, log_transition, log_emission, mask)
    if method == "sequential":
        log_likelihood = forward_scaled(log_initial, log_transition, log_emission, mask, padded)
        if log_likelihood is not None:
            return log_likelihood
    return forward_log_space(log_initial, log_transition, log_emission, mask, padded)


def _forward_scan(
    log_initial: torch.Tensor, log_transition: torch.Tensor, log_emission: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The forward algorithm as a log-space parallel scan; arguments as for
    :func:`forward_log_likelihood`, ``log_emission`` already 0 at padded steps. Returns (S, N)."""
    num_states = log_emission.shape[-1]
    alpha = log_initial.unsqueeze(1) + log_emission[:, :, 0]  # (S, N, K)
    # log of the identity (padded steps); a huge finite negative rather than -inf, so that
    # no product of two padded steps is -inf everywhere (NaN second derivatives, e.g. in the
    # Laplace approximation's Hessian); exp() of it is exactly 0.
    eye = torch.full((num_states, num_states), torch.finfo(log_emission.dtype).min / 4, dtype=log_emission.dtype)
    eye.fill_diagonal_(0.0)
    steps = log_transition[:, None, None] + log_emission[:, :, 1:, None, :]  # (S, N, T-1, K, K)
    steps = torch.where(mask[:, 1:, None, None], steps, eye)
    product = _scan(steps)  # (S, N, K, K)
    return (alpha.unsqueeze(-1) + product).logsumexp((-2, -1))


def forward_scaled(
    log_initial: torch.Tensor,
    log_transition: torch.Tensor,
    log_emission: torch.Tensor,
    mask: torch.Tensor,
    padded: list[bool] | None = None,
) -> torch.Tensor | None:
    """The forward algorithm in probability space with rescaling (Rabiner's scaled forward).

    Each step is one small matrix product and one product with the emission likelihoods,
    no exp or log, which makes it several times faster than the log-space pass on a CPU,
    evaluated or differentiated. The emission likelihoods are shifted by their per-step
    maximum over states (a constant, so the shift's own gradient is not needed: the result is
    exact to every order of derivative), and the message is divided by its sum every
    ``RESCALE_EVERY`` steps, the logs of those sums adding up to the log-likelihood.

    Parameters
    ----------
    log_initial, log_transition, log_emission, mask : Tensor
        The chain, (S, K), (S, K, K), (S, N, T, K) and (N, T) bool, as in the module docstring;
        ``log_emission`` 0 at padded steps (:func:`forward_log_likelihood` sees to it).
    padded : list of bool, optional
        Per step (T,): whether some sequence is padding there; default: from ``mask``.

    Returns
    -------
    Tensor of shape (S, N), or None
        None when some rescaling sum fell below ``K e tiny / eps`` (or is not finite): messages
        that small may have lost precision to subnormal numbers (or underflowed to 0, e.g. a
        sequence impossible under a transition matrix with exact zeros), and the caller
        recomputes in log space, where nothing underflows.
    """
    if padded is None:
        padded = _padded_steps(mask)
    length, num_states = log_emission.shape[2:]
    info = torch.finfo(log_emission.dtype)
    shift = log_emission.detach().amax(-1, keepdim=True)  # (S, N, T, 1): a constant
    # Clamped at log(e tiny) before exp: an exp whose result is subnormal or 0 (a state far
    # from the observation) is an order of magnitude slower than a normal one on CPUs; such
    # entries become e tiny instead, an absolute error below 3 tiny per entry and step: at
    # most ~K eps relative to a rescaling sum that passes the check below (in practice ~1e-30
    # relative).
    # In place: one full-size temporary fewer; autograd allows it (nothing saved the
    # difference). The (T,) slices (S, N, K) come from one unbind, whose backward is one
    # stack, where indexing step by step would give T backward nodes each writing a
    # full-size zero tensor.
    floor = math.log(info.tiny) + 1.0
    emission = (log_emission - shift).clamp_(min=floor).exp_().unbind(2)  # each (S, N, K), max 1
    transition = log_transition.exp()  # (S, K, K)
    alpha = log_initial.exp().unsqueeze(1) * emission[0]  # (S, N, K), unnormalised
    sums = []
    for t in range(1, length):
        new = torch.bmm(alpha, transition) * emission[t]  # (S, N, K) @ (S, K, K): one matmul per draw
        alpha = torch.where(mask[:, t, None], new, alpha) if padded[t] else new
        if t % RESCALE_EVERY == 0 or t == length - 1:
            total = alpha.sum(-1, keepdim=True)  # (S, N, 1)
            alpha = alpha / total
            sums.append(total)
    if not sums:  # a single step: nothing was rescaled
        sums.append(alpha.sum(-1, keepdim=True))
    sums = torch.cat(sums, -1)  # (S, N, number of rescalings)
    if not bool((sums.detach() >= num_states * math.e * info.tiny / info.eps).all()):  # one sync; NaN fails too
        return None
    return sums.log().sum(-1) + shift.squeeze(-1).sum(-1)


def forward_log_space(
    log_initial: torch.Tensor,
    log_transition: torch.Tensor,
    log_emission: torch.Tensor,
    mask: torch.Tensor,
    padded: list[bool] | None = None,
) -> torch.Tensor:
    """The forward algorithm in log space, step by step: nothing can underflow.

    Parameters
    ----------
    log_initial, log_transition, log_emission, mask : Tensor
        The chain, (S, K), (S, K, K), (S, N, T, K) and (N, T) bool, as in the module docstring;
        ``log_emission`` 0 at padded steps (:func:`forward_log_likelihood` sees to it).
    padded : list of bool, optional
        Per step (T,): whether some sequence is padding there; default: from ``mask``.

    Returns
    -------
    Tensor, shape (S, N)
    """
    *_, alpha = _log_forward(log_initial, log_transition, log_emission, mask, padded)
    return alpha.logsumexp(-1)


def _log_forward(
    log_initial: torch.Tensor,
    log_transition: torch.Tensor,
    log_emission: torch.Tensor,
    mask: torch.Tensor,
    padded: list[bool] | None = None,
) -> Iterator[torch.Tensor]:
    """The forward messages log p(x_{0..t}, state_t), (S, N, K), one step after another (padded
    steps copy the last real one); arguments as for :func:`forward_log_space`."""
    if padded is None:
        padded = _padded_steps(mask)
    emission = log_emission.unbind(2)
    alpha = log_initial.unsqueeze(1) + emission[0]  # (S, N, K)
    yield alpha
    log_transition = log_transition.unsqueeze(1)  # (S, 1, K, K)
    for t in range(1, len(emission)):
        new = (alpha.unsqueeze(-1) + log_transition).logsumexp(-2) + emission[t]
        alpha = torch.where(mask[:, t, None], new, alpha) if padded[t] else new
        yield alpha


def _alphas(
    log_initial: torch.Tensor, log_transition: torch.Tensor, log_emission: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Forward messages log p(x_{0..t}, state_t) at every step, (S, N, T, K); padded steps copy."""
    log_emission = torch.where(mask.unsqueeze(-1), log_emission, torch.zeros((), dtype=log_emission.dtype))
    return torch.stack(list(_log_forward(log_initial, log_transition, log_emission, mask)), 2)


def forward_backward(
    log_initial: torch.Tensor, log_transition: torch.Tensor, log_emission: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Posterior state marginals p(state_t = k | x_n, theta_s), in log space.

    Parameters
    ----------
    log_initial, log_transition, log_emission, mask : Tensor
        The chain, (S, K), (S, K, K), (S, N, T, K) and (N, T) bool, as in the module docstring.

    Returns
    -------
    Tensor, shape (S, N, T, K)
        Probabilities (each (s, n, t) row sums to 1); padded steps repeat the last real step.
    """
    log_emission = torch.where(mask.unsqueeze(-1), log_emission, torch.zeros((), dtype=log_emission.dtype))
    alphas = _alphas(log_initial, log_transition, log_emission, mask)
    length = log_emission.shape[2]
    beta = torch.zeros_like(alphas[:, :, 0])
    betas = [beta]
    for t in range(length - 2, -1, -1):
        new = (log_transition.unsqueeze(1) + (log_emission[:, :, t + 1] + beta).unsqueeze(-2)).logsumexp(-1)
        beta = torch.where(mask[:, t + 1, None], new, beta)
        betas.append(beta)
    betas = torch.stack(betas[::-1], 2)
    return (alphas + betas).softmax(-1)


def viterbi(
    log_initial: torch.Tensor, log_transition: torch.Tensor, log_emission: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The most probable state path argmax_z p(z | x_n, theta_s) (max-product, log space).

    Parameters
    ----------
    log_initial, log_transition, log_emission, mask : Tensor
        The chain, (S, K), (S, K, K), (S, N, T, K) and (N, T) bool, as in the module docstring.

    Returns
    -------
    LongTensor, shape (S, N, T)
        States in 0..K-1; padded steps repeat the last real state.
    """
    num_draws, num_sequences, length, num_states = log_emission.shape
    emission = log_emission.unbind(2)  # (T,) of (S, N, K)
    # log p(state_t = j | state_{t-1} = i) at [s, 0, j, i]: the max over the previous state
    # then runs over the last, contiguous dim, the fast layout for a reduction
    into = log_transition.transpose(-1, -2).contiguous().unsqueeze(1)  # (S, 1, K, K)
    delta = log_initial.unsqueeze(1) + emission[0]  # (S, N, K)
    stay = torch.arange(num_states).expand(num_draws, num_sequences, num_states)
    padded = _padded_steps(mask)
    pointers = []
    for t in range(1, length):
        best, pointer = (delta.unsqueeze(-2) + into).max(-1)  # (S, N, K) each
        if padded[t]:
            keep = mask[:, t, None]
            delta = torch.where(keep, best + emission[t], delta)
            pointer = torch.where(keep, pointer, stay)
        else:
            delta = best + emission[t]
        pointers.append(pointer)
    state = delta.argmax(-1, keepdim=True)  # (S, N, 1)
    path = [state]
    for pointer in reversed(pointers):
        state = pointer.gather(-1, state)  # (S, N, 1): one operation per step
        path.append(state)
    return torch.cat(path[::-1], -1)


def backward_sample(
    log_initial: torch.Tensor, log_transition: torch.Tensor, log_emission: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """One exact draw of the states from p(z | x_n, theta_s): forward filtering, backward sampling.

    Parameters
    ----------
    log_initial, log_transition, log_emission, mask : Tensor
        The chain, (S, K), (S, K, K), (S, N, T, K) and (N, T) bool, as in the module docstring.

    Returns
    -------
    LongTensor, shape (S, N, T)
        States in 0..K-1; padded steps repeat the last real state. Draws from torch's global
        random generator (seed it, or fork it, for a reproducible draw).
    """
    alphas = _alphas(log_initial, log_transition, log_emission, mask)
    length = alphas.shape[2]
    state = torch.distributions.Categorical(logits=alphas[:, :, -1]).sample()
    path = [state]
    for t in range(length - 2, -1, -1):
        # p(state_t | state_{t+1}, x_{0..t}) is proportional to alpha_t * transition[:, state_{t+1}]
        column = log_transition.unsqueeze(1).expand(-1, state.shape[1], -1, -1)
        column = column.gather(-1, state[..., None, None].expand(-1, -1, column.shape[-2], 1)).squeeze(-1)
        drawn = torch.distributions.Categorical(logits=alphas[:, :, t] + column).sample()
        state = torch.where(mask[:, t + 1], drawn, state)
        path.append(state)
    return torch.stack(path[::-1], -1)
