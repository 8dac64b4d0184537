r"""Hidden Markov models: a chain of discrete states, each emitting one observation.

Generative story
----------------
For N sequences, sequence n of length L_n (padded to T), K hidden states and observations of D
features (C categories for categorical emissions)::

    initial            ~ Dirichlet(initial_concentration * 1_K)                (K >= 2)
    for k in 1..K:
        transition[k]  ~ Dirichlet(transition_concentration * 1_K)             (K >= 2)
        gaussian:    locs[k]   ~ Normal(prior_center, location_scale * prior_spread)   (per feature)
                     scales[k] ~ LogNormal(log(prior_spread), scale_log_sd)            (per feature)
                     corr_cholesky[k] ~ LKJCholesky(D, correlation_concentration)      (full, D >= 2)
        poisson:     rates[k]  ~ LogNormal(log(prior_center), rate_log_sd)             (per feature)
        categorical: probs[k]  ~ Dirichlet(emission_concentration * 1_C)
        bernoulli:   probs[k]  ~ Beta(emission_concentration, emission_concentration)  (per feature)
    for n in 1..N:
        state_0[n]     ~ Categorical(initial)                                   (enumerated)
        state_t[n]     ~ Categorical(transition[state_{t-1}[n]])   for 0 < t < L_n   (enumerated)
        state_t[n]     = state_{t-1}[n]                            for t >= L_n (padding)
        x_t[n]         ~ emission(state_t[n])                      for t < L_n  (observed)

With K = 1 there is nothing to learn about the chain: ``initial`` and ``transition`` are the
constants [1] and [[1]] and are not sample sites (the model is then i.i.d.).

``prior_center`` and ``prior_spread`` default to the mean and standard deviation of the
observed training steps (an empirical prior, as for :class:`~zoo.models.GaussianMixture`);
for Poisson emissions ``prior_center`` is the mean count. ``emission="auto"`` (the default)
picks the emission from the training data: ``"bernoulli"`` if every value is 0 or 1,
``"poisson"`` if every value is a non-negative integer, ``"gaussian"`` otherwise (categorical
data must be asked for by name).

Sample sites
------------
====================== ===============  =====================================================
name                   shape            support
====================== ===============  =====================================================
``initial``            (K,)             simplex (K >= 2)
``transition``         (K, K)           each row a simplex (K >= 2)
``locs``               (K, D)           real (gaussian)
``scales``             (K, D)           positive (gaussian)
``corr_cholesky``      (K, D, D)        Cholesky factor of a correlation (gaussian, full, D >= 2)
``rates``              (K, D)           positive (poisson)
``probs``              (K, C) / (K, D)  simplex (categorical) / [0, 1] (bernoulli)
``state_0`` ..         (N,)             {0, ..., K-1}; enumerated, never seen by a guide
``state_{T-1}``
``x_0`` .. ``x_{T-1}``  (N, D) / (N,)   observed (D features, or a category index)
``x``                  (N, T, D)        the generated sequences (only when generating)
``log_likelihood``     (N,)             ``pyro.factor``: the forward algorithm (training only)
====================== ===============  =====================================================

Padding
-------
Padded steps (t >= L_n) observe nothing and copy the last real state, so they change no
likelihood, gradient, MAP path or posterior sample of the real steps (tests prove it); at
padded steps :meth:`Fit.discrete` and :meth:`Fit.marginals` repeat the last real step.

Exact fast paths, and what is trained
-------------------------------------
The enumerated model above is the definition: ``zoo.infer.evaluate`` sums its states out with
Pyro's tensor-variable elimination. The same numbers come much faster from the forward
algorithm (a log-space parallel scan over time when the problem is small enough for its K^3
cost; otherwise a sequential pass in probability space with rescaling, which falls back to
log space where its messages would underflow), which this module uses for
``log_likelihood``, forward-backward for ``marginals`` and Viterbi / forward-filtering
backward-sampling for ``discrete``. Training (SVI and NUTS) asks ``model_kwargs(...,
training=True)``: with ``training_path="forward"`` (the default) the model then replaces the
enumerated chain by one ``pyro.factor`` holding the forward algorithm's log p(x_n | theta),
the same density (tests check the ELBO and its gradient agree to 1e-6), some 10-50x faster
to differentiate than TraceEnum_ELBO's contraction over T sites. ``training_path=
"enumerate"`` trains on the definition itself. (Pyro's ``DiscreteHMM`` is not used: its
``initial_logits`` describe the state *before* the first step, and it takes no per-sequence
lengths.)

Label switching
---------------
The likelihood is unchanged by any permutation of the states. zoo starts every fit from a
k-means initialisation refined by a few Baum-Welch iterations (``initial_em_steps``, see
:meth:`HiddenMarkovModel.initial_values`), whose states are ordered, and relabels every
posterior draw the same way: states sorted by the first feature's emission mean
(``locs[:, 0]`` for gaussian, ``rates[:, 0]`` for poisson), by the mean of ``probs`` over
features (bernoulli), or by the expected category index (categorical). The permutation is
applied to the rows *and* columns of ``transition``, to ``initial`` and to every emission
parameter, so each draw describes the same chain. When two states share that key the
ordering is ambiguous and relabelling cannot help.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex

from zoo.checks import check_positive_float, check_positive_int
from zoo.datasets.dataset import Dataset
from zoo.models.base import Model
from zoo.models.mixture import kmeans_plus_plus
from zoo.models.registry import register

__all__ = [
    "HiddenMarkovModel",
    "EMISSIONS",
    "forward_log_likelihood",
    "forward_backward",
    "viterbi",
]

# Trained on its forward factor, the model has no enumerated site in the trace the runner's
# TraceEnum_ELBO sees; Pyro then warns that nothing is enumerated, which is expected here.
warnings.filterwarnings("ignore", message="TraceEnum_ELBO found no sample sites configured for enumeration")

EMISSIONS = ("auto", "gaussian", "categorical", "poisson", "bernoulli")
COVARIANCES = ("diag", "full")
TRAINING_PATHS = ("forward", "enumerate")
#: Largest S * N * K**3 (the parallel scan's work per time step) for which "auto" takes the scan.
#: The sequential pass costs a roughly fixed overhead per step (a few small operations), the
#: scan log2(T) levels of work proportional to S N T K^3; on a CPU they cross near 500-1000
#: (measured, one thread: at 5 x 200 steps x 3 states the scan is 4x faster to differentiate, at
#: 30 x 100 x 3 about as fast, at 200 x 100 x 5 9x slower).
SCAN_LIMIT = 2**9


# =========================================================================== exact algorithms
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
        :func:`_forward_scaled`), falling back to "log-sequential" (T small steps in log space)
        when a rescaling constant leaves the safe floating-point range; "auto": "scan" when
        S N K^3 <= SCAN_LIMIT, "sequential" otherwise.

    Returns
    -------
    Tensor, shape (S, N)
        Differentiable (to any order) in the three log tensors.
    """
    if method not in ("auto", "scan", "sequential", "log-sequential"):
        raise ValueError(f"method must be 'auto', 'scan', 'sequential' or 'log-sequential', got {method!r}")
    num_draws, num_sequences, length, num_states = log_emission.shape
    # The first step at which some sequence is padding (padding follows the real steps), as a
    # Python int: one sync here, none per step, and no masking work at all before it.
    shortest = int(mask.sum(1).min()) if num_sequences else length
    if shortest < length:
        log_emission = torch.where(mask.unsqueeze(-1), log_emission, torch.zeros((), dtype=log_emission.dtype))
    if length == 1:
        return (log_initial.unsqueeze(1) + log_emission[:, :, 0]).logsumexp(-1)
    if method == "auto":
        method = "scan" if num_draws * num_sequences * num_states**3 <= SCAN_LIMIT else "sequential"
    if method == "scan":
        return _forward_scan(log_initial, log_transition, log_emission, mask)
    padded = [t >= shortest for t in range(length)]  # (T,) whether some sequence is padding
    if method == "sequential":
        log_likelihood = _forward_scaled(log_initial, log_transition, log_emission, mask, padded)
        if log_likelihood is not None:
            return log_likelihood
    return _forward_log_space(log_initial, log_transition, log_emission, mask, padded)


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


#: The sequential forward pass in probability space rescales its messages every this many steps.
RESCALE_EVERY = 4


def _forward_scaled(
    log_initial: torch.Tensor,
    log_transition: torch.Tensor,
    log_emission: torch.Tensor,
    mask: torch.Tensor,
    padded: list[bool],
) -> torch.Tensor | None:
    """The forward algorithm in probability space with rescaling (Rabiner's scaled forward).

    Each step is one small matrix product and one product with the emission likelihoods,
    no exp or log: at 200 sequences x 100 steps x 5 states (float32, one thread) some 5x
    faster than the log-space pass evaluated, 3x differentiated (value and gradient). The
    emission likelihoods are shifted by their per-step maximum over states (a constant, so
    the shift's own gradient is not needed: the result is exact to every order of
    derivative), and the message is divided by its sum every ``RESCALE_EVERY`` steps, the
    logs of those sums adding up to the log-likelihood.

    Parameters
    ----------
    log_initial, log_transition, mask
        As for :func:`forward_log_likelihood`.
    log_emission : Tensor, shape (S, N, T, K)
        0 at padded steps.
    padded : list of bool
        Per step (T,): whether some sequence is padding there.

    Returns
    -------
    Tensor of shape (S, N), or None
        None when some rescaling sum fell below ``K e tiny / eps`` (or is not finite): messages
        that small may have lost precision to subnormal numbers (or underflowed to 0, e.g. a
        sequence impossible under a transition matrix with exact zeros), and the caller
        recomputes in log space, where nothing underflows.
    """
    length, num_states = log_emission.shape[2:]
    info = torch.finfo(log_emission.dtype)
    shift = log_emission.detach().amax(-1, keepdim=True)  # (S, N, T, 1): a constant
    # Clamped at log(e tiny) before exp: an exp whose result is subnormal or 0 (a state far
    # from the observation) costs some 10x a normal one on CPUs; such entries become e tiny
    # instead, an absolute error below 3 tiny per entry and step: at most ~K eps relative
    # to a rescaling sum that passes the check below (in practice ~1e-30 relative).
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
    sums = torch.cat(sums, -1)  # (S, N, number of rescalings)
    if not bool((sums.detach() >= num_states * math.e * info.tiny / info.eps).all()):  # one sync; NaN fails too
        return None
    return sums.log().sum(-1) + shift.squeeze(-1).sum(-1)


def _forward_log_space(
    log_initial: torch.Tensor,
    log_transition: torch.Tensor,
    log_emission: torch.Tensor,
    mask: torch.Tensor,
    padded: list[bool],
) -> torch.Tensor:
    """The forward algorithm in log space, step by step (nothing can underflow); arguments as
    for :func:`_forward_scaled`. Returns (S, N)."""
    length = log_emission.shape[2]
    emission = log_emission.unbind(2)
    alpha = log_initial.unsqueeze(1) + emission[0]  # (S, N, K)
    log_transition = log_transition.unsqueeze(1)  # (S, 1, K, K)
    for t in range(1, length):
        new = (alpha.unsqueeze(-1) + log_transition).logsumexp(-2) + emission[t]
        alpha = torch.where(mask[:, t, None], new, alpha) if padded[t] else new
    return alpha.logsumexp(-1)


def _alphas(
    log_initial: torch.Tensor, log_transition: torch.Tensor, log_emission: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Forward messages log p(x_{0..t}, state_t) at every step, (S, N, T, K); padded steps copy."""
    log_emission = torch.where(mask.unsqueeze(-1), log_emission, torch.zeros((), dtype=log_emission.dtype))
    alpha = log_initial.unsqueeze(1) + log_emission[:, :, 0]
    alphas = [alpha]
    log_transition = log_transition.unsqueeze(1)
    for t in range(1, log_emission.shape[2]):
        new = (alpha.unsqueeze(-1) + log_transition).logsumexp(-2) + log_emission[:, :, t]
        alpha = torch.where(mask[:, t, None], new, alpha)
        alphas.append(alpha)
    return torch.stack(alphas, 2)


def forward_backward(
    log_initial: torch.Tensor, log_transition: torch.Tensor, log_emission: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Posterior state marginals p(state_t = k | x_n, theta_s).

    Parameters are as for :func:`forward_log_likelihood`.

    Returns
    -------
    Tensor, shape (S, N, T, K)
        Probabilities; padded steps repeat the last real step.
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

    Parameters are as for :func:`forward_log_likelihood`.

    Returns
    -------
    LongTensor, shape (S, N, T)
        Padded steps repeat the last real state.
    """
    num_draws, num_sequences, length, num_states = log_emission.shape
    emission = log_emission.unbind(2)  # (T,) of (S, N, K)
    # log p(state_t = j | state_{t-1} = i) at [s, 0, j, i]: the max over the previous state
    # then runs over the last, contiguous dim, the fast layout for a reduction
    into = log_transition.transpose(-1, -2).contiguous().unsqueeze(1)  # (S, 1, K, K)
    delta = log_initial.unsqueeze(1) + emission[0]  # (S, N, K)
    stay = torch.arange(num_states).expand(num_draws, num_sequences, num_states)
    # the first step at which some sequence is padding (padding follows the real steps)
    shortest = int(mask.sum(1).min()) if num_sequences else length
    pointers = []
    for t in range(1, length):
        best, pointer = (delta.unsqueeze(-2) + into).max(-1)  # (S, N, K) each
        if t >= shortest:
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

    Returns
    -------
    LongTensor, shape (S, N, T)
        Padded steps repeat the last real state. Uses torch's global random generator.
    """
    alphas = _alphas(log_initial, log_transition, log_emission, mask)
    length = alphas.shape[2]
    state = dist.Categorical(logits=alphas[:, :, -1]).sample()
    path = [state]
    for t in range(length - 2, -1, -1):
        # p(state_t | state_{t+1}, x_{0..t}) is proportional to alpha_t * transition[:, state_{t+1}]
        column = log_transition.unsqueeze(1).expand(-1, state.shape[1], -1, -1)
        column = column.gather(-1, state[..., None, None].expand(-1, -1, column.shape[-2], 1)).squeeze(-1)
        drawn = dist.Categorical(logits=alphas[:, :, t] + column).sample()
        state = torch.where(mask[:, t + 1], drawn, state)
        path.append(state)
    return torch.stack(path[::-1], -1)


# =========================================================================== the model
def _safe_log(probs: torch.Tensor) -> torch.Tensor:
    """log of probabilities floored at the smallest normal number: a MAP fit can push a
    transition probability to exactly 0 (Dirichlet(1) is flat up to the boundary), whose log
    would be -inf and whose gradient NaN; the floor stops it there."""
    return probs.clamp(min=torch.finfo(probs.dtype).tiny).log()


@register("hmm")
class HiddenMarkovModel(Model):
    """Bayesian hidden Markov model with its hidden states summed out by enumeration.

    Parameters
    ----------
    num_states : int
        K, the number of hidden states (>= 1).
    emission : {"auto", "gaussian", "categorical", "poisson", "bernoulli"}
        The distribution of each step's observation given its state. Gaussian: D real features
        (diagonal or full covariance); categorical: one category index in 0..C-1 per step;
        poisson: D counts; bernoulli: D binary features (e.g. the 51 notes of a piano roll).
        "auto" picks one from the training data (see the module docstring).
    covariance : {"diag", "full"}
        Gaussian emissions only: diagonal covariance, or scales and an LKJ correlation.
    num_categories : int, optional
        C for categorical emissions; default: the largest category in the training data + 1.
    initial_concentration, transition_concentration : float
        Symmetric Dirichlet concentrations of the initial distribution and of each transition row.
        Default 1.1, just above uniform: with 1 the prior density is flat up to the edge of the
        simplex, where a MAP fit often lands (a transition never seen), reaching a probability of
        exactly 0 in floating point and a NaN log density (0 * log 0); above 1 the density
        vanishes at the edge, so the MAP stays inside.
    emission_concentration : float
        Dirichlet (categorical) or Beta (bernoulli) concentration of the emission probabilities
        (default 1.1, for the same reason).
    location_scale : float
        Gaussian: prior sd of each location, in units of ``prior_spread``.
    scale_log_sd : float
        Gaussian: sd of log(scale) under its LogNormal prior.
    correlation_concentration : float
        Gaussian, full: LKJ concentration.
    rate_log_sd : float
        Poisson: sd of log(rate) under its LogNormal prior, centred on the mean count.
    training_path : {"forward", "enumerate"}
        What the runner differentiates: the forward algorithm as one ``pyro.factor`` (default),
        or the enumerated chain (the definition); both are the same density.
    initial_em_steps : int
        Baum-Welch (EM) iterations refining the k-means start of every fit (see
        :meth:`initial_values`); 0 starts from k-means alone. They move the start, not the
        result: the fit then optimises its own objective.
    prior_center, prior_spread : list of float, optional
        Per-feature centre and spread of the emission priors; default: from the training data.
    num_features : int, optional
        D; default: from the training data.
    length : int, optional
        Default length of generated sequences; default: the training data's padded length.

    Examples
    --------
    >>> import zoo
    >>> data = zoo.datasets.load("earthquakes")
    >>> fit = zoo.fit(zoo.models.HiddenMarkovModel(3), data, zoo.SVI(guide="delta"))
    >>> fit.discrete(data)  # the Viterbi path, shape (1, 107)
    """

    registry_name = "hmm"
    max_plate_nesting = 1
    data_plate = "sequences"
    observed_site = "x"
    methods = ("svi", "nuts")
    default_guide = "normal"

    def __init__(
        self,
        num_states: int,
        emission: str = "auto",
        covariance: str = "diag",
        num_categories: int | None = None,
        initial_concentration: float = 1.1,
        transition_concentration: float = 1.1,
        emission_concentration: float = 1.1,
        location_scale: float = 2.0,
        scale_log_sd: float = 1.0,
        correlation_concentration: float = 2.0,
        rate_log_sd: float = 1.0,
        training_path: str = "forward",
        initial_em_steps: int = 3,
        prior_center: list[float] | None = None,
        prior_spread: list[float] | None = None,
        num_features: int | None = None,
        length: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(num_states, "num_states", minimum=1)
        if emission not in EMISSIONS:
            raise ValueError(f"emission must be one of {EMISSIONS}, got {emission!r}")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if training_path not in TRAINING_PATHS:
            raise ValueError(f"training_path must be one of {TRAINING_PATHS}, got {training_path!r}")
        if isinstance(initial_em_steps, bool) or not isinstance(initial_em_steps, int) or initial_em_steps < 0:
            raise ValueError(f"initial_em_steps must be a non-negative integer, got {initial_em_steps!r}")
        for name, value in [("num_categories", num_categories), ("num_features", num_features), ("length", length)]:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_categories is not None and num_categories < 2:
            raise ValueError(f"num_categories must be at least 2, got {num_categories}")
        if emission not in ("categorical", "auto") and num_categories is not None:
            raise ValueError("num_categories is for categorical emissions only")
        if emission == "categorical" and num_features not in (None, 1):
            raise ValueError(f"categorical emissions take one category per step (num_features=1), got {num_features}")
        self.num_states = num_states
        self.emission = emission
        self.covariance = covariance
        self.num_categories = num_categories
        self.initial_concentration = check_positive_float(initial_concentration, "initial_concentration")
        self.transition_concentration = check_positive_float(transition_concentration, "transition_concentration")
        self.emission_concentration = check_positive_float(emission_concentration, "emission_concentration")
        self.location_scale = check_positive_float(location_scale, "location_scale")
        self.scale_log_sd = check_positive_float(scale_log_sd, "scale_log_sd")
        self.correlation_concentration = check_positive_float(correlation_concentration, "correlation_concentration")
        self.rate_log_sd = check_positive_float(rate_log_sd, "rate_log_sd")
        self.training_path = training_path
        self.initial_em_steps = initial_em_steps
        if prior_spread is not None and any(not s > 0 for s in prior_spread):
            raise ValueError(f"prior_spread must be positive, got {prior_spread}")
        if prior_center is not None and num_features is not None and len(prior_center) != num_features:
            raise ValueError("prior_center must have one entry per feature")
        self.prior_center = None if prior_center is None else [float(c) for c in prior_center]
        self.prior_spread = None if prior_spread is None else [float(s) for s in prior_spread]
        self.num_features = num_features
        self.length = length

    # ------------------------------------------------------------------ declarations
    @classmethod
    def example(cls) -> tuple["HiddenMarkovModel", Dataset]:
        """Two Gaussian states, 6 short sequences of unequal lengths (padding exercised)."""
        import dataclasses

        from zoo.datasets import simulate

        data = simulate.hidden_markov(num_sequences=6, length=10, num_states=2, emission="gaussian", seed=0)
        return cls(num_states=2, emission="gaussian"), dataclasses.replace(data, lengths=torch.tensor([10, 7, 10, 5, 10, 8]))

    def config(self) -> dict[str, Any]:
        return {
            "num_states": self.num_states,
            "emission": self.emission,
            "covariance": self.covariance,
            "num_categories": self.num_categories,
            "initial_concentration": self.initial_concentration,
            "transition_concentration": self.transition_concentration,
            "emission_concentration": self.emission_concentration,
            "location_scale": self.location_scale,
            "scale_log_sd": self.scale_log_sd,
            "correlation_concentration": self.correlation_concentration,
            "rate_log_sd": self.rate_log_sd,
            "training_path": self.training_path,
            "initial_em_steps": self.initial_em_steps,
            "prior_center": self.prior_center,
            "prior_spread": self.prior_spread,
            "num_features": self.num_features,
            "length": self.length,
        }

    @property
    def enumerated_sites(self) -> tuple[str, ...]:  # type: ignore[override]
        """``state_0`` .. ``state_{length-1}``: one enumerated site per time step."""
        return tuple(f"state_{t}" for t in range(self.length or 1))

    @property
    def has_correlations(self) -> bool:
        return self.emission == "gaussian" and self.covariance == "full" and (self.num_features or 0) >= 2

    @property
    def emission_sites(self) -> tuple[str, ...]:
        """The state-indexed emission parameter sites, first dim K."""
        return {
            "gaussian": ("locs", "scales") + (("corr_cholesky",) if self.has_correlations else ()),
            "poisson": ("rates",),
            "categorical": ("probs",),
            "bernoulli": ("probs",),
        }.get(self.emission, ())

    # ------------------------------------------------------------------ data
    @staticmethod
    def _lengths(data: Dataset) -> torch.Tensor:
        if data.lengths is not None:
            return data.lengths
        return torch.full((len(data),), int(data.x.shape[1]), dtype=torch.long)

    @classmethod
    def _mask(cls, data: Dataset) -> torch.Tensor:
        """True at real steps: (N, T)."""
        return torch.arange(data.x.shape[1]) < cls._lengths(data).unsqueeze(-1)

    def validate(self, data: Dataset) -> None:
        """Refuse data this model cannot take, naming the argument; nothing is computed."""
        if data.x.dim() != 3:
            raise ValueError(
                "data.x must be 3-D padded sequences (num_sequences, length, num_features) for a hidden "
                f"Markov model, got shape {tuple(data.x.shape)}"
            )
        if data.x.shape[1] < 1 or data.x.shape[2] < 1:
            raise ValueError(f"data.x is empty: shape {tuple(data.x.shape)}")
        real = data.x[self._mask(data)]  # (num_observations, D)
        integer = (real == real.round()).all()
        if self.emission == "poisson":
            if (real < 0).any() or not integer:
                raise ValueError("data.x must hold non-negative integer counts for Poisson emissions")
        elif self.emission == "bernoulli":
            if not ((real == 0) | (real == 1)).all():
                raise ValueError("data.x must hold only 0 and 1 for Bernoulli emissions")
        elif self.emission == "categorical":
            if data.x.shape[2] != 1:
                raise ValueError(
                    f"data.x must have one feature (the category index) for categorical emissions, got {data.x.shape[2]}"
                )
            if (real < 0).any() or not integer:
                raise ValueError("data.x must hold category indices 0, 1, ... (integers) for categorical emissions")
            if self.num_categories is not None and (real >= self.num_categories).any():
                raise ValueError(
                    f"data.x holds category {int(real.max())}, outside the alphabet 0..{self.num_categories - 1} "
                    f"(num_categories={self.num_categories})"
                )
        if self.num_features is not None and data.x.shape[2] != self.num_features:
            raise ValueError(f"data has {data.x.shape[2]} features but the model was set up for {self.num_features}")

    def _resolve_emission(self, data: Dataset) -> str:
        if self.emission != "auto":
            return self.emission
        real = data.x[self._mask(data)]
        if ((real == 0) | (real == 1)).all():
            return "bernoulli"
        if (real >= 0).all() and (real == real.round()).all():
            return "poisson"
        return "gaussian"

    def prepare(self, data: Dataset) -> "HiddenMarkovModel":
        """A copy with the emission, empirical prior, D, C and default length set from ``data``."""
        config = self.config()
        config["emission"] = self._resolve_emission(data)
        resolved = HiddenMarkovModel(**config)
        resolved.validate(data)
        real = data.x[self._mask(data)]
        config["num_features"] = int(data.x.shape[2])
        config["length"] = config["length"] or int(data.x.shape[1])
        if config["emission"] == "categorical" and config["num_categories"] is None:
            config["num_categories"] = max(2, int(real.max()) + 1)
        if config["prior_center"] is None and config["emission"] in ("gaussian", "poisson"):
            center = real.mean(0)
            if config["emission"] == "poisson":
                center = center.clamp(min=0.1)
                spread = torch.ones_like(center)
            else:
                spread = real.std(0) if len(real) > 1 else torch.ones_like(center)
                spread = torch.where(spread > 0, spread, torch.ones_like(spread))
            config["prior_center"], config["prior_spread"] = center.tolist(), spread.tolist()
        return HiddenMarkovModel(**config)

    def _check_ready(self) -> None:
        if self.emission == "auto" or self.num_features is None or self.length is None:
            raise ValueError(
                "this HiddenMarkovModel is not set up for data yet: fit it with zoo.fit (which sets the "
                "emission, num_features and length from the data), or pass them to the constructor"
            )
        if self.emission in ("gaussian", "poisson") and self.prior_center is None:
            raise ValueError("prior_center (and prior_spread) are needed for gaussian / poisson emissions")
        if self.emission == "categorical" and self.num_categories is None:
            raise ValueError("num_categories is needed for categorical emissions")

    def model_kwargs(
        self,
        data: Dataset | None = None,
        *,
        num_samples: int | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Arguments of ``forward``.

        With ``data``: the padded observations (padding replaced by a value inside the
        support; category indices as integers), the lengths, and ``use_forward`` when the
        runner asks for its training model (``training=True``). Without: ``num_samples``
        sequences of ``length`` steps (option ``length``; else the length of ``template``, a
        data set to imitate; else the model's default length).
        """
        if data is not None:
            x = torch.where(self._mask(data).unsqueeze(-1), data.x, torch.zeros((), dtype=data.x.dtype))
            if self.emission == "categorical":
                x = x[..., 0].long()
            return {
                "x": x,
                "lengths": self._lengths(data),
                "batch_size": batch_size,
                "use_forward": bool(options.get("training")) and self.training_path == "forward",
            }
        length = options.get("length")
        template = options.get("template")
        if length is None and template is not None:
            length = int(template.x.shape[1])
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise ValueError(f"length must be a positive integer, got {length!r}")
        return {"x": None, "num_sequences": num_samples, "length": length}

    # ------------------------------------------------------------------ results
    def dims(self) -> dict[str, list[str]]:
        dims = {"x": ["sequence", "time", "feature"]}
        if self.num_states > 1:
            dims["initial"] = ["state"]
            dims["transition"] = ["state", "state_to"]
        column = "category" if self.emission == "categorical" else "feature"
        for name in self.emission_sites:
            dims[name] = ["state", column]
        if self.has_correlations:
            dims["corr_cholesky"] = ["state", "feature", "feature_bis"]
        return dims

    def coords(self, data: Dataset | None = None) -> dict[str, list[Any]]:
        num_features = self.num_features or (data.num_features if data is not None else 1)
        names = list(data.feature_names) if data is not None and data.feature_names else list(range(num_features))
        coords: dict[str, list[Any]] = {
            "state": list(range(self.num_states)),
            "state_to": list(range(self.num_states)),
            "feature": names,
            "feature_bis": names,
        }
        if self.num_categories is not None:
            coords["category"] = list(range(self.num_categories))
        if data is not None and data.x.dim() == 3:
            coords["time"] = list(range(int(data.x.shape[1])))
        return coords

    # ------------------------------------------------------------------ the model
    def _sample_parameters(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        K, D = self.num_states, int(self.num_features or 1)
        params: dict[str, torch.Tensor] = {}
        if K > 1:
            params["initial"] = pyro.sample(
                "initial", dist.Dirichlet(torch.full((K,), self.initial_concentration, dtype=dtype))
            )
        else:
            params["initial"] = torch.ones(1, dtype=dtype)
        with pyro.plate("states", K, dim=-1):
            if K > 1:
                params["transition"] = pyro.sample(
                    "transition", dist.Dirichlet(torch.full((K,), self.transition_concentration, dtype=dtype))
                )
            if self.emission == "gaussian":
                center = torch.tensor(self.prior_center, dtype=dtype)
                spread = torch.tensor(self.prior_spread, dtype=dtype)
                params["locs"] = pyro.sample("locs", dist.Normal(center, self.location_scale * spread).to_event(1))
                params["scales"] = pyro.sample("scales", dist.LogNormal(spread.log(), self.scale_log_sd).to_event(1))
                if self.has_correlations:
                    params["corr_cholesky"] = pyro.sample(
                        "corr_cholesky", dist.LKJCholesky(D, torch.tensor(self.correlation_concentration, dtype=dtype))
                    )
            elif self.emission == "poisson":
                center = torch.tensor(self.prior_center, dtype=dtype)
                params["rates"] = pyro.sample("rates", dist.LogNormal(center.log(), self.rate_log_sd).to_event(1))
            elif self.emission == "categorical":
                C = int(self.num_categories or 2)
                params["probs"] = pyro.sample(
                    "probs", dist.Dirichlet(torch.full((C,), self.emission_concentration, dtype=dtype))
                )
            else:
                concentration = torch.full((D,), self.emission_concentration, dtype=dtype)
                params["probs"] = pyro.sample("probs", dist.Beta(concentration, concentration).to_event(1))
        if K == 1:
            params["transition"] = torch.ones(1, 1, dtype=dtype)
        return params

    def _emission(self, params: dict[str, torch.Tensor], state: torch.Tensor) -> dist.Distribution:
        """The emission distribution of ``state`` (any batch shape, under enumeration or draws)."""

        def pick(name: str, event_dims: int = 1) -> torch.Tensor:
            value = params[name]
            expanded = value.unsqueeze(-(event_dims + 2))  # a singleton sequence dim left of K
            return Vindex(expanded)[(..., state) + (slice(None),) * event_dims]

        if self.emission == "gaussian":
            loc, scale = pick("locs"), pick("scales")
            if self.has_correlations:
                tril = pick("corr_cholesky", 2)
                return dist.MultivariateNormal(loc, scale_tril=scale.unsqueeze(-1) * tril)
            return dist.Normal(loc, scale).to_event(1)
        if self.emission == "poisson":
            return dist.Poisson(pick("rates")).to_event(1)
        if self.emission == "categorical":
            return dist.Categorical(logits=_safe_log(pick("probs")))
        probs = pick("probs")
        return dist.Bernoulli(logits=_safe_log(probs) - _safe_log(1 - probs)).to_event(1)

    def forward(
        self,
        x: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        num_sequences: int | None = None,
        length: int | None = None,
        batch_size: int | None = None,
        use_forward: bool = False,
    ) -> torch.Tensor | None:
        """p(x, z): see the module docstring. Conditions on padded ``x`` (with ``lengths``) or
        generates ``num_sequences`` sequences of ``length`` steps (returned, (N, T, D))."""
        self._check_ready()
        dtype = x.dtype if x is not None and x.dtype.is_floating_point else torch.get_default_dtype()
        params = self._sample_parameters(dtype)
        if x is not None:
            num_sequences, length = x.shape[0], x.shape[1]
            if lengths is None:
                lengths = torch.full((num_sequences,), length, dtype=torch.long)
        elif num_sequences is None:
            raise ValueError("give x (to condition on) or num_sequences (to generate)")
        length = int(length or self.length or 1)
        initial, transition = params["initial"], params["transition"]

        with pyro.plate(self.data_plate, num_sequences, subsample_size=batch_size, dim=-1) as index:
            if x is not None:
                observed, observed_lengths = x.index_select(0, index), lengths.index_select(0, index)
                if observed.dtype.is_floating_point:  # the parameters' precision (float64 in tests)
                    observed = observed.to(params[self.emission_sites[0]].dtype)
                mask = torch.arange(length) < observed_lengths.unsqueeze(-1)  # (n, T)
                if use_forward:
                    log_likelihood = self._batched_log_likelihood(params, observed, mask)
                    pyro.factor("log_likelihood", log_likelihood)
                    return None
            outputs = []
            state = None
            for t in pyro.markov(range(length)):
                if t == 0:
                    logits = _safe_log(initial)
                else:
                    logits = Vindex(_safe_log(transition).unsqueeze(-3))[..., state, :]
                    if x is not None:
                        # padding: the state stays where it was (probability one), so padded
                        # steps change no likelihood, MAP path or sample of the real ones
                        stay = torch.full_like(logits, -math.inf).scatter(-1, state.unsqueeze(-1).expand(logits.shape[:-1] + (1,)), 0.0)
                        logits = torch.where(mask[:, t].unsqueeze(-1), logits, stay)
                state = pyro.sample(f"state_{t}", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
                emission = self._emission(params, state)
                if x is not None:
                    pyro.sample(f"x_{t}", emission.mask(mask[:, t]), obs=observed[:, t])
                else:
                    outputs.append(pyro.sample(f"x_{t}", emission))
            if x is not None:
                return None
            if self.emission == "categorical":
                generated = torch.stack(outputs, -1).unsqueeze(-1).to(dtype)
            else:
                generated = torch.stack(outputs, -2)
            return pyro.deterministic(self.observed_site, generated, event_dim=2)

    # ------------------------------------------------------------------ fast exact paths
    def _flat_parameters(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Parameters with one leading draw dim S: initial (S, K), transition (S, K, K), ..."""
        reference = draws[self.emission_sites[0]]
        num_draws, dtype = reference.shape[0], reference.dtype
        K = self.num_states
        flat = {name: draws[name] for name in self.emission_sites}
        flat["initial"] = draws["initial"] if "initial" in draws else torch.ones(num_draws, 1, dtype=dtype)
        flat["transition"] = draws["transition"] if "transition" in draws else torch.ones(num_draws, 1, 1, dtype=dtype)
        if K > 1 and flat["initial"].dim() != 2:
            raise ValueError(f"draws['initial'] must have shape (num_draws, {K}), got {tuple(flat['initial'].shape)}")
        return flat

    def log_emission(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """log p(x_{n,t} | state k, theta_s) for parameters with a leading draw dim.

        Parameters
        ----------
        params : dict
            Emission sites shaped (S, K, ...).
        x : Tensor, shape (N, T, D)
            Padded observations (padding inside the support).

        Returns
        -------
        Tensor, shape (S, N, T, K)
        """
        dtype = params[self.emission_sites[0]].dtype
        if self.emission == "bernoulli":
            probs = params["probs"]
            x = x.to(dtype)
            return torch.einsum("ntd,skd->sntk", x, _safe_log(probs)) + torch.einsum("ntd,skd->sntk", 1 - x, _safe_log(1 - probs))
        if self.emission == "categorical":
            log_probs = _safe_log(params["probs"]).log_softmax(-1)  # (S, K, C)
            index = x[..., 0].long()  # (N, T)
            return log_probs[:, :, index].permute(0, 2, 3, 1)
        value = x.to(dtype)[None, :, :, None, :]  # (1, N, T, 1, D)
        if self.emission == "poisson":
            return dist.Poisson(params["rates"][:, None, None]).log_prob(value).sum(-1)
        loc, scale = params["locs"][:, None, None], params["scales"][:, None, None]  # (S, 1, 1, K, D)
        if self.has_correlations:
            tril = scale.unsqueeze(-1) * params["corr_cholesky"][:, None, None]
            return dist.MultivariateNormal(loc, scale_tril=tril).log_prob(value)
        # log Normal(x | loc, scale) written out, as Normal.log_prob computes it, in three
        # full-size operations, without building a distribution and validating a full-size
        # value on every call (this runs once per optimiser step and per evaluation)
        standardised = (value - loc) * scale.reciprocal()  # (S, N, T, K, D)
        constant = -scale.log() - 0.5 * math.log(2 * math.pi)  # (S, 1, 1, K, D)
        density = torch.addcmul(constant, standardised, standardised, value=-0.5)
        return density[..., 0] if density.shape[-1] == 1 else density.sum(-1)

    def _batched_log_likelihood(self, params: dict[str, torch.Tensor], x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The forward algorithm inside ``forward``: parameters with any batch shape left of the
        site shape (e.g. vectorised particles), result (..., N)."""
        batch = params[self.emission_sites[0]].shape[:-2]  # e.g. (num_particles,) or ()
        flat = {name: value.reshape((-1,) + value.shape[len(value.shape) - self._site_dims(name) :]) for name, value in params.items()}
        if self.emission == "categorical":
            x = x.unsqueeze(-1)
        log_likelihood = forward_log_likelihood(*self._log_chain(flat), self.log_emission(flat, x), mask)
        return log_likelihood.reshape(batch + log_likelihood.shape[-1:])

    def _site_dims(self, name: str) -> int:
        return {"initial": 1, "corr_cholesky": 3}.get(name, 2)

    def _chunks(self, draws: dict[str, torch.Tensor], data: Dataset, limit: int = 2**23) -> list[dict[str, torch.Tensor]]:
        total = int(next(iter(draws.values())).shape[0])
        size = int(data.x.shape[0] * data.x.shape[1]) * self.num_states * max(self.num_states, int(data.x.shape[2]))
        step = max(1, limit // max(size, 1))
        return [{name: value[start : start + step] for name, value in draws.items()} for start in range(0, total, step)]

    def _messages(self, draws: dict[str, torch.Tensor], data: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        self._check_ready()
        flat = self._flat_parameters(draws)
        mask = self._mask(data)
        # padding replaced by a value inside every emission's support
        x = torch.where(mask.unsqueeze(-1), data.x, torch.zeros((), dtype=data.x.dtype))  # (N, T, D)
        return (*self._log_chain(flat), self.log_emission(flat, x), mask)

    @staticmethod
    def _log_chain(flat: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """log initial and log transition, normalised as ``Categorical`` normalises them (so
        values *and* gradients equal the enumerated model's, also off the simplex)."""
        return _safe_log(flat["initial"]).log_softmax(-1), _safe_log(flat["transition"]).log_softmax(-1)

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log p(x_n | theta_s) by the forward algorithm: (S, num_sequences)."""
        rows = [forward_log_likelihood(*self._messages(chunk, data)) for chunk in self._chunks(draws, data)]
        return rows[0] if len(rows) == 1 else torch.cat(rows)

    def marginals(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, torch.Tensor]:
        """p(state_t = k | x_n, theta_s) by forward-backward: {"state_t": (S, N, K)} for each t."""
        probs = torch.cat([forward_backward(*self._messages(chunk, data)) for chunk in self._chunks(draws, data)])
        return {f"state_{t}": probs[:, :, t] for t in range(probs.shape[2])}

    def discrete(self, params: dict[str, torch.Tensor], data: Dataset, temperature: int = 0) -> dict[str, torch.Tensor]:
        """Viterbi path (temperature 0) or a forward-filtering backward-sampling draw (1).

        Returns
        -------
        dict
            {"state_t": LongTensor (N,)} for each t.
        """
        batched = {name: value.unsqueeze(0) for name, value in params.items()}
        messages = self._messages(batched, data)
        paths = (viterbi if temperature == 0 else backward_sample)(*messages)[0]
        return {f"state_{t}": paths[:, t] for t in range(paths.shape[1])}

    def collect_discrete(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The per-step values as one tensor, time second: (N, T) paths or (N, T, K) probabilities."""
        steps = sorted((int(name.split("_")[1]), value) for name, value in values.items() if name.startswith("state_"))
        return torch.stack([value for _, value in steps], 1)

    # ------------------------------------------------------------------ initialisation, labels
    def _order_key(self, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """The quantity states are sorted by: (..., K)."""
        if self.emission == "gaussian":
            return draws["locs"][..., 0]
        if self.emission == "poisson":
            return draws["rates"][..., 0]
        if self.emission == "bernoulli":
            return draws["probs"].mean(-1)
        probs = draws["probs"]
        return (probs * torch.arange(probs.shape[-1], dtype=probs.dtype)).sum(-1)

    def relabel(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sort the states of every draw (chain, draw, K, ...) by their emission key; permute
        ``initial``, the rows and columns of ``transition`` and the emission sites alike."""
        if self.num_states == 1 or self.emission_sites[0] not in draws:
            return draws
        order = self._order_key(draws).argsort(-1)  # (c, d, K)
        axis = order.dim() - 1
        relabelled = dict(draws)
        for name in ("initial", "transition") + self.emission_sites:
            if name not in draws:
                continue
            value = draws[name]
            index = order.reshape(order.shape + (1,) * (value.dim() - order.dim())).expand_as(value)
            value = value.gather(axis, index)
            if name == "transition":
                value = value.gather(axis + 1, order.unsqueeze(-2).expand_as(value))
            relabelled[name] = value
        return relabelled

    def initial_values(self, data: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
        """Where every fit starts: k-means, then ``initial_em_steps`` Baum-Welch iterations.

        k-means on the observed steps (ignoring time) gives each state's emission parameters
        (from its cluster) and the chain's (from the cluster labels' counts, smoothed towards
        staying). k-means knows nothing of the chain, so Baum-Welch (EM) iterations then
        refine the start (see :meth:`_em_step`). Each costs about one evaluation of the
        training objective and its gradient, where an L-BFGS step costs two or more, and the
        first few EM iterations from k-means gain more than several L-BFGS steps (on the
        5-state benchmark in ``benchmarks/hmm.py``: 3 EM iterations bring the start within
        1e-6 nats per observation of the optimum; L-BFGS from k-means alone stops after some
        25 steps, 5e-6 away). The fit itself then optimises its exact objective (the MAP, the
        ELBO, or NUTS's posterior) from there. States are ordered as :meth:`relabel` orders
        them.

        Returns
        -------
        dict
            One value per latent site (constrained), no draw dims: ``initial`` (K,),
            ``transition`` (K, K) (K >= 2) and the emission sites (K, ...), in the data's dtype.
        """
        self._check_ready()
        K = self.num_states
        mask = self._mask(data)
        real = data.x[mask]  # (M, D): the observed steps, time ignored
        features = self._features(real)
        centres = kmeans_plus_plus(features, K, seed=seed)
        label = torch.cdist(features, centres).argmin(-1)  # (M,)
        values = self._emission_estimates(real, torch.nn.functional.one_hot(label, K).to(real.dtype))
        if K > 1:
            labels = torch.full(mask.shape, -1, dtype=torch.long)  # (N, T), -1 at padding
            labels[mask] = label
            first = torch.bincount(labels[:, 0], minlength=K).to(real.dtype) + 1.0
            pairs = (labels[:, :-1] >= 0) & (labels[:, 1:] >= 0)
            flat_pairs = labels[:, :-1][pairs] * K + labels[:, 1:][pairs]
            transitions = torch.bincount(flat_pairs, minlength=K * K).reshape(K, K).to(real.dtype)
            # smoothed: one pseudo-count everywhere, and 10% of the row's steps for staying
            stay = 0.1 * transitions.sum(-1, keepdim=True).clamp(min=1)
            transitions = transitions + 1.0 + torch.eye(K, dtype=real.dtype) * stay
            values["initial"] = first / first.sum()
            values["transition"] = transitions / transitions.sum(-1, keepdim=True)
            for _ in range(self.initial_em_steps):
                values = self._em_step(values, data, real)
        ordered = self.relabel({name: value[None, None] for name, value in values.items()})
        return {name: value[0, 0] for name, value in ordered.items()}

    def _features(self, real: torch.Tensor) -> torch.Tensor:
        """What k-means clusters: the observations, or categories one-hot: (M, D) or (M, C)."""
        if self.emission == "categorical":
            return torch.nn.functional.one_hot(real[:, 0].long(), int(self.num_categories)).to(real.dtype)
        return real

    def _emission_estimates(self, real: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """Emission parameters from the observed steps weighted by state (maximum likelihood,
        smoothed and floored so that the start lies inside the support).

        Parameters
        ----------
        real : Tensor, shape (M, D)
            The observed steps.
        weights : Tensor, shape (M, K)
            Each step's weight per state: one-hot k-means labels, or posterior state
            probabilities (an EM step).

        Returns
        -------
        dict
            The emission sites, (K, ...).
        """
        features = self._features(real)  # (M, F)
        counts = weights.sum(0)  # (K,) (expected) number of steps per state
        sums = weights.T @ features  # (K, F)
        present = counts.unsqueeze(-1) > 0
        # a state without steps (an empty cluster) starts at the overall mean
        means = torch.where(present, sums / counts.clamp(min=1e-12).unsqueeze(-1), features.mean(0))  # (K, F)
        values: dict[str, torch.Tensor] = {}
        if self.emission == "gaussian":
            spread = torch.tensor(self.prior_spread, dtype=real.dtype)
            # weighted second moments about each state's mean, state by state: memory (M, D),
            # not (M, K, D); centred, not E[x^2] - mean^2, which cancels catastrophically
            # when the spread is small next to the mean
            covariances = []
            for k in range(self.num_states):
                centred = real - means[k]  # (M, D)
                weighted = weights[:, k, None] * centred
                covariances.append(weighted.T @ centred if self.has_correlations else (weighted * centred).sum(0))
            moments = torch.stack(covariances) / counts.clamp(min=1e-12).reshape(-1, *[1] * covariances[0].dim())
            variance = moments.diagonal(dim1=-2, dim2=-1) if self.has_correlations else moments  # (K, D)
            scales = variance.sqrt().clamp(min=1e-2 * spread)
            # too few steps for a spread (or none): half the data's
            scales = torch.where((counts.unsqueeze(-1) > 2) & torch.isfinite(scales), scales, 0.5 * spread)
            values["locs"], values["scales"] = means, scales
            if self.has_correlations:
                values["corr_cholesky"] = self._correlation_cholesky(moments, counts)
        elif self.emission == "poisson":
            values["rates"] = means.clamp(min=0.05)
        elif self.emission == "categorical":
            values["probs"] = (sums + 0.5) / (counts.unsqueeze(-1) + 0.5 * sums.shape[1])
        else:
            values["probs"] = (sums + 0.5) / (counts.unsqueeze(-1) + 1.0)
        return values

    @staticmethod
    def _correlation_cholesky(covariance: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Cholesky factors (K, D, D) of the correlations of each state's ``covariance``
        (K, D, D), estimated from ``counts`` (K,) steps; the identity where a state has too few
        steps for one or its estimate is not positive definite."""
        num_features = covariance.shape[-1]
        sd = covariance.diagonal(dim1=-2, dim2=-1).clamp(min=torch.finfo(covariance.dtype).tiny).sqrt()  # (K, D)
        correlation = covariance / (sd.unsqueeze(-1) * sd.unsqueeze(-2))
        eye = torch.eye(num_features, dtype=covariance.dtype)
        correlation = 0.99 * correlation + 0.01 * eye  # strictly inside: |r| < 1
        cholesky, info = torch.linalg.cholesky_ex(correlation)
        usable = (info == 0) & (counts > num_features + 1) & torch.isfinite(cholesky).all((-2, -1))
        return torch.where(usable[:, None, None], cholesky, eye)

    def _em_step(
        self, values: dict[str, torch.Tensor], data: Dataset, real: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One Baum-Welch (EM) iteration from ``values`` (K-indexed sites, no draw dims).

        E-step: the expected counts are the gradient of log p(x | theta) with respect to the
        log parameters taken as free (unnormalised): d/d log_emission[n, t, k] is
        p(state_t = k | x_n), d/d log_transition[i, j] the expected number of i -> j
        transitions, d/d log_initial[k] the expected number of sequences starting in k. So one
        forward pass and its backward (the fast training path's) replace a hand-written
        backward pass. M-step: the chain from the counts plus the Dirichlet priors' pseudo-counts
        (floored at 0.01, so the start stays inside the simplex), the emissions as in
        :meth:`_emission_estimates` with the posterior state probabilities as weights.
        """
        batched = {name: value[None] for name, value in values.items()}
        with torch.no_grad():
            log_initial, log_transition, log_emission, mask = self._messages(batched, data)
        log_initial, log_transition, log_emission = (
            tensor.detach().requires_grad_() for tensor in (log_initial, log_transition, log_emission)
        )
        with torch.enable_grad():
            log_likelihood = forward_log_likelihood(log_initial, log_transition, log_emission, mask).sum()
            starts, transitions, posterior = torch.autograd.grad(
                log_likelihood, (log_initial, log_transition, log_emission)
            )  # (1, K), (1, K, K), (1, N, T, K)
        if not (torch.isfinite(log_likelihood) and torch.isfinite(posterior).all()):
            return values  # a start this poor is left to the optimiser
        updated = self._emission_estimates(real, posterior[0][mask])  # weights (M, K)
        starts = starts[0] + max(self.initial_concentration - 1.0, 0.01)  # (K,)
        transitions = transitions[0] + max(self.transition_concentration - 1.0, 0.01)  # (K, K)
        updated["initial"] = starts / starts.sum()
        updated["transition"] = transitions / transitions.sum(-1, keepdim=True)
        return updated
