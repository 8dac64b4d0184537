"""zoo.ops: each algorithm against brute force on problems small enough to enumerate.

The chain algorithms are checked against the sum (or max, or distribution) over all K^L state
paths of every sequence (L <= 4 steps, K <= 3 states) in float64; the estimates against numpy
and hand-written closed forms. Seeds are fixed; tolerances are stated where they are set.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from zoo.ops import conjugate
from zoo.ops.clustering import kmeans_plus_plus
from zoo.ops.markov import (
    FORWARD_METHODS,
    backward_sample,
    forward_backward,
    forward_log_likelihood,
    forward_log_space,
    forward_scaled,
    safe_log,
    viterbi,
)
from zoo.ops.moments import correlation_cholesky, weighted_covariances, weighted_means

# Float64 sums of a few dozen terms of magnitude <= ~100: rounding error below
# T K eps * 100 ~ 3e-13; 1e-11 leaves a margin of 30.
EXACT = dict(rtol=0.0, atol=1e-11)


# --------------------------------------------------------------------------- tiny chains
def random_chain(
    num_draws: int, lengths: list[int], num_states: int, seed: int, length: int | None = None, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised log initial (S, K) and transition (S, K, K), log emissions (S, N, T, K) with
    junk (large values) at padded steps, and the mask (N, T)."""
    generator = torch.Generator().manual_seed(seed)
    length = length or max(lengths)
    log_initial = torch.randn(num_draws, num_states, generator=generator, dtype=dtype).log_softmax(-1)
    log_transition = (2 * torch.randn(num_draws, num_states, num_states, generator=generator, dtype=dtype)).log_softmax(-1)
    log_emission = -3 * torch.rand(num_draws, len(lengths), length, num_states, generator=generator, dtype=dtype) ** 2
    mask = torch.arange(length) < torch.tensor(lengths).unsqueeze(-1)
    junk = 100 * torch.randn(log_emission.shape, generator=generator, dtype=dtype)
    log_emission = torch.where(mask.unsqueeze(-1), log_emission, junk)
    return log_initial, log_transition, log_emission, mask


def path_log_joints(
    log_initial: torch.Tensor, log_transition: torch.Tensor, log_emission: torch.Tensor, draw: int, sequence: int, length: int
) -> tuple[list[tuple[int, ...]], torch.Tensor]:
    """Every state path of the real steps of one sequence, and log p(path, x) of each: (K^L,)."""
    num_states = log_initial.shape[-1]
    paths = list(itertools.product(range(num_states), repeat=length))
    joints = []
    for path in paths:
        joint = log_initial[draw, path[0]] + log_emission[draw, sequence, 0, path[0]]
        for t in range(1, length):
            joint = joint + log_transition[draw, path[t - 1], path[t]] + log_emission[draw, sequence, t, path[t]]
        joints.append(joint)
    return paths, torch.stack(joints)


LENGTHS = [4, 2, 1, 3]  # padding of every size, and a single-step sequence


@pytest.mark.parametrize("method", FORWARD_METHODS)
@pytest.mark.parametrize("num_states", [1, 2, 3])
def test_forward_log_likelihood_is_the_sum_over_all_paths(method: str, num_states: int) -> None:
    chain = random_chain(2, LENGTHS, num_states, seed=num_states)
    inputs = [tensor.clone().requires_grad_() for tensor in chain[:3]]
    mask = chain[3]
    value = forward_log_likelihood(*inputs, mask, method=method)  # (S, N)
    expected = torch.stack(
        [
            torch.stack([path_log_joints(*inputs, s, n, length)[1].logsumexp(0) for n, length in enumerate(LENGTHS)])
            for s in range(2)
        ]
    )
    torch.testing.assert_close(value, expected, **EXACT)
    gradients = torch.autograd.grad(value.sum(), inputs)
    expected_gradients = torch.autograd.grad(expected.sum(), inputs)
    for ours, theirs in zip(gradients, expected_gradients):
        torch.testing.assert_close(ours, theirs, **EXACT)
    # nothing flows into the padding
    assert (gradients[2][:, ~mask] == 0).all()


def test_forward_forms_agree_in_value_gradient_and_hessian() -> None:
    """The parallel scan, the rescaled probability-space pass and the log-space pass are the
    same function of the log parameters (padding included), to the second order the Laplace
    approximation and L-BFGS use, on sequences too long to enumerate."""
    lengths = [25, 17, 25, 3, 11, 25, 20]
    chain = random_chain(1, lengths, 3, seed=2)
    mask = chain[3]
    results = {}
    for method in ("scan", "sequential", "log-sequential"):
        inputs = [tensor.clone().requires_grad_() for tensor in chain[:3]]
        value = forward_log_likelihood(*inputs, mask, method=method)
        gradients = torch.autograd.grad(value.sum(), inputs, create_graph=True)
        direction = [torch.linspace(-1.0, 1.0, g.numel(), dtype=g.dtype).reshape(g.shape) for g in gradients]
        curvature = torch.autograd.grad(sum((g * d).sum() for g, d in zip(gradients, direction)), inputs)
        results[method] = (value.detach(), [g.detach() for g in gradients], curvature)
    scan_value, scan_gradients, scan_curvature = results["scan"]
    for method in ("sequential", "log-sequential"):
        value, gradients, curvature = results[method]
        torch.testing.assert_close(value, scan_value, rtol=1e-10, atol=0)
        for ours, theirs in zip(gradients + list(curvature), scan_gradients + list(scan_curvature)):
            torch.testing.assert_close(ours, theirs, rtol=1e-8, atol=1e-10)


def test_forward_backward_marginals_are_the_path_posterior_marginals() -> None:
    chain = random_chain(2, LENGTHS, 3, seed=5)
    marginals = forward_backward(*chain)  # (S, N, T, K)
    for s in range(2):
        for n, length in enumerate(LENGTHS):
            paths, joints = path_log_joints(*chain[:3], s, n, length)
            posterior = joints.softmax(0)
            for t in range(length):
                expected = torch.stack([posterior[[p[t] == k for p in paths]].sum() for k in range(3)])
                torch.testing.assert_close(marginals[s, n, t], expected, **EXACT)
            # padded steps repeat the last real step
            torch.testing.assert_close(marginals[s, n, length:], marginals[s, n, length - 1].expand(4 - length, 3))


def test_viterbi_path_is_the_most_probable_path() -> None:
    for seed in range(4):
        chain = random_chain(3, LENGTHS, 3, seed=seed)
        paths = viterbi(*chain)  # (S, N, T)
        assert paths.shape == (3, len(LENGTHS), 4) and paths.dtype == torch.long
        for s in range(3):
            for n, length in enumerate(LENGTHS):
                candidates, joints = path_log_joints(*chain[:3], s, n, length)
                best = candidates[int(joints.argmax())]  # continuous random parameters: no ties
                assert tuple(paths[s, n, :length].tolist()) == best
                assert (paths[s, n, length:] == best[-1]).all()


@pytest.mark.parametrize("num_states, lengths", [(3, [3, 2, 1]), (2, [4, 3])])
def test_backward_sampling_draws_paths_from_the_exact_posterior(num_states: int, lengths: list[int]) -> None:
    """Path frequencies of n draws against the exact path posterior, in total variation.

    The L1 deviation bound of Weissman et al. (2003) for the empirical distribution of n draws
    over m outcomes: P(||p_hat - p||_1 >= e) <= (2^m - 2) exp(-n e^2 / 2). With n = 20,000 and a
    failure probability delta = 1e-6 per sequence, e = sqrt(2 (m ln 2 + ln(1 / delta)) / n), a
    total variation of e / 2: 0.028 for m = 27 paths, 0.022 for m = 16.
    """
    num_draws = 20_000
    log_initial, log_transition, log_emission, mask = random_chain(1, lengths, num_states, seed=11)
    # the same parameters repeated as n draws: n independent samples in one call
    repeated = (
        log_initial.expand(num_draws, -1),
        log_transition.expand(num_draws, -1, -1),
        log_emission.expand(num_draws, -1, -1, -1),
    )
    torch.manual_seed(0)
    samples = backward_sample(*repeated, mask)  # (n, N, T)
    assert samples.shape == (num_draws, len(lengths), max(lengths))
    for n, length in enumerate(lengths):
        paths, joints = path_log_joints(log_initial, log_transition, log_emission, 0, n, length)
        exact = joints.softmax(0)
        index = {path: i for i, path in enumerate(paths)}
        drawn = torch.tensor([index[tuple(row)] for row in samples[:, n, :length].tolist()])
        empirical = torch.bincount(drawn, minlength=len(paths)).double() / num_draws
        bound = math.sqrt(2 * (len(paths) * math.log(2) + math.log(1e6)) / num_draws) / 2
        total_variation = float((empirical - exact).abs().sum() / 2)
        assert total_variation < bound, (total_variation, bound)
        assert (samples[:, n, length:] == samples[:, n, length - 1 : length]).all()  # padding repeats


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rescaled_forward_pass_falls_back_to_log_space_where_messages_underflow(dtype: torch.dtype) -> None:
    """A chain that all but cannot leave a state whose emissions are exp(-200) per step (moving
    costs e^-5000): the log-likelihood is -200 T, far below what probability-space messages
    can hold in either precision, so the rescaled pass must hand over to log space."""
    length = 12
    log_initial = torch.tensor([[0.0, -5000.0]], dtype=dtype)
    log_transition = torch.tensor([[[0.0, -5000.0], [-5000.0, 0.0]]], dtype=dtype)
    log_emission = torch.tensor([-200.0, 0.0], dtype=dtype).expand(1, 1, length, 2).clone().requires_grad_()
    mask = torch.ones(1, length, dtype=torch.bool)
    # the rescaled pass declines (its sums leave the safe range) ...
    assert forward_scaled(log_initial, log_transition, log_emission, mask) is None
    # ... and "sequential" gives the log-space answer, value and gradient
    value = forward_log_likelihood(log_initial, log_transition, log_emission, mask, method="sequential")
    torch.testing.assert_close(value, torch.tensor([[-200.0 * length]], dtype=dtype))
    (gradient,) = torch.autograd.grad(value.sum(), log_emission)
    torch.testing.assert_close(gradient[0, 0], torch.tensor([[1.0, 0.0]], dtype=dtype).expand(length, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rescaled_pass_handles_emissions_that_underflow_in_probability_space(dtype: torch.dtype) -> None:
    """Emissions near exp(-800) (0 in either precision) and states 1000 nats apart (subnormal
    or 0 after the shift): the shift and the clamp keep the rescaled pass exact, and it agrees
    with the log-space pass and with brute force. Tolerance: a relative 50 eps of the
    precision on values of magnitude ~3,000 (each step adds a few roundings of that size)."""
    lengths = [4, 3]
    log_initial, log_transition, log_emission, mask = random_chain(1, lengths, 3, seed=7, dtype=torch.float64)
    log_emission = log_emission - 800.0
    log_emission[..., 2] -= 1000.0  # a state far from every observation
    inputs = [tensor.to(dtype) for tensor in (log_initial, log_transition, torch.where(mask.unsqueeze(-1), log_emission, 0.0))]
    rounded = [tensor.double() for tensor in inputs]  # brute force on the very numbers the passes see
    brute = torch.stack([path_log_joints(*rounded, 0, n, length)[1].logsumexp(0) for n, length in enumerate(lengths)])
    scaled = forward_scaled(*inputs, mask)
    assert scaled is not None  # the rescaled pass copes: no fallback needed
    log_space = forward_log_space(*inputs, mask)
    tolerance = dict(rtol=50 * torch.finfo(dtype).eps, atol=0.0)
    torch.testing.assert_close(scaled[0].double(), brute, **tolerance)
    torch.testing.assert_close(log_space[0].double(), brute, **tolerance)


def test_safe_log_floors_at_the_smallest_normal_number() -> None:
    for dtype in (torch.float32, torch.float64):
        probs = torch.tensor([0.0, 0.5, 1.0], dtype=dtype, requires_grad=True)
        value = safe_log(probs)
        assert value[0] == math.log(torch.finfo(dtype).tiny)
        torch.testing.assert_close(value[1:], torch.tensor([math.log(0.5), 0.0], dtype=dtype))
        assert torch.isfinite(torch.autograd.grad(value.sum(), probs)[0]).all()


def test_forward_log_likelihood_refuses_an_unknown_method() -> None:
    with pytest.raises(ValueError, match="method must be"):
        forward_log_likelihood(*random_chain(1, [2], 2, seed=0), method="fast")


# --------------------------------------------------------------------------- k-means++
def kmeans_costs(x: torch.Tensor, labelings: torch.Tensor, num_components: int) -> torch.Tensor:
    """Within-cluster sum of squares of every labeling (L, N) of the points x (N, D): (L,)."""
    one_hot = torch.nn.functional.one_hot(labelings, num_components).to(x.dtype)  # (L, N, K)
    counts = one_hot.sum(1)  # (L, K)
    sums = one_hot.transpose(1, 2) @ x  # (L, K, D)
    # sum_k [sum of |x|^2 in k - |sum_k|^2 / n_k]; an empty cluster contributes 0
    return (x**2).sum() - ((sums**2).sum(-1) / counts.clamp(min=1)).sum(-1)


def test_kmeans_plus_plus_finds_the_brute_force_optimum_on_a_separable_set() -> None:
    """Three tight clusters of three points, 100 apart: the optimal partition (over all 3^9
    labelings) is the clusters, and k-means++ reaches its centres from every seed."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [100.0, 5.0], [50.0, 100.0]], dtype=torch.float64)
    x = (centres.repeat_interleave(3, 0) + torch.randn(9, 2, generator=generator, dtype=torch.float64))
    labelings = torch.tensor(list(itertools.product(range(3), repeat=9)))  # (3^9, 9)
    label = labelings[kmeans_costs(x, labelings, 3).argmin()]
    optimum = torch.stack([x[label == k].mean(0) for k in range(3)])
    optimum = optimum[optimum[:, 0].argsort()]
    for seed in range(5):
        found = kmeans_plus_plus(x, 3, seed=seed)
        torch.testing.assert_close(found, optimum, rtol=0, atol=1e-12)


def test_kmeans_plus_plus_edge_cases() -> None:
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(kmeans_plus_plus(x, 1), x.mean(0, keepdim=True))
    every = kmeans_plus_plus(x, 6, seed=3)  # as many centres as points: the points, sorted
    torch.testing.assert_close(every, x[x[:, 0].argsort()])
    # the global generator is not touched
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    kmeans_plus_plus(x, 2, seed=9)
    assert torch.equal(torch.rand(3), before)


# --------------------------------------------------------------------------- weighted moments
def test_weighted_moments_equal_numpy_weighted_estimates() -> None:
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(40, 3, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64) + 2.0
    weights = torch.rand(40, 4, generator=generator, dtype=torch.float64)
    weights[:, 3] = 0.0  # an empty component
    counts, sums, means = weighted_means(x, weights)
    full = weighted_covariances(x, weights, means, full=True)
    diagonal = weighted_covariances(x, weights, means)
    for k in range(3):
        w = weights[:, k].numpy()
        np.testing.assert_allclose(counts[k].item(), w.sum(), rtol=1e-14)
        np.testing.assert_allclose(sums[k].numpy(), w @ x.numpy(), rtol=1e-13)
        np.testing.assert_allclose(means[k].numpy(), np.average(x.numpy(), weights=w, axis=0), rtol=1e-13)
        expected = np.cov(x.numpy().T, aweights=w, bias=True)
        np.testing.assert_allclose(full[k].numpy(), expected, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(diagonal[k].numpy(), np.diag(expected), rtol=1e-12)
    torch.testing.assert_close(means[3], x.mean(0))  # the empty component starts at the overall mean
    assert counts[3] == 0 and (full[3] == 0).all()


def test_weighted_variances_do_not_cancel_in_float32() -> None:
    """Mean 1,000, sd 1: E[x^2] - mean^2 would lose ~eps * 1e6 = 0.1 of a variance of 1 in
    float32; about the mean the error stays near eps. Tolerance 1e-4 relative."""
    generator = torch.Generator().manual_seed(2)
    x64 = 1000.0 + torch.randn(500, 2, generator=generator, dtype=torch.float64)
    x = x64.float()
    weights = torch.nn.functional.one_hot(torch.arange(500) % 2, 2).float()
    _, _, means = weighted_means(x, weights)
    variance = weighted_covariances(x, weights, means)
    for k in range(2):
        expected = np.cov(x.double().numpy()[k::2].T, bias=True)
        np.testing.assert_allclose(variance[k].double().numpy(), np.diag(expected), rtol=1e-4)


def test_correlation_cholesky_of_a_known_covariance() -> None:
    covariance = torch.tensor(
        [[[4.0, 1.2], [1.2, 1.0]], [[1.0, 0.0], [0.0, 9.0]], [[1.0, 2.0], [2.0, 1.0]]], dtype=torch.float64
    )  # the third is not positive definite
    counts = torch.tensor([10.0, 2.0, 10.0], dtype=torch.float64)  # the second rests on too few
    factors = correlation_cholesky(covariance, counts)
    correlation = torch.tensor([[1.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(factors[0] @ factors[0].T, 0.99 * correlation + 0.01 * eye)
    assert torch.equal(factors[0], factors[0].tril())
    assert torch.equal(factors[1], eye) and torch.equal(factors[2], eye)


# --------------------------------------------------------------------------- conjugate updates
def labeled_rows(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels of twelve rows of four classes, class 2 without rows, and a generator for their values."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 1, 0, 0, 1, 3, 1, 0, 3, 0, 1, 3])
    return labels, generator


def test_normal_gamma_update_equals_the_closed_form_and_is_the_posterior() -> None:
    labels, generator = labeled_rows()
    x = torch.randn(12, 2, generator=generator, dtype=torch.float64) * 2 + 1
    prior_loc = torch.tensor([0.5, -1.0], dtype=torch.float64)
    k0, a0 = 0.7, 1.5
    b0 = torch.tensor([2.0, 0.3], dtype=torch.float64)
    update = conjugate.normal_gamma(x, labels, 4, prior_loc, k0, a0, b0)
    for c in range(4):
        rows = x[labels == c]
        n = len(rows)
        mean = rows.mean(0) if n else torch.zeros(2, dtype=torch.float64)
        squares = ((rows - mean) ** 2).sum(0)
        torch.testing.assert_close(update.loc[c], (k0 * prior_loc + n * mean) / (k0 + n))
        torch.testing.assert_close(update.loc_count[c], torch.full((2,), k0 + n, dtype=torch.float64))
        torch.testing.assert_close(update.shape[c], torch.full((2,), a0 + n / 2, dtype=torch.float64))
        torch.testing.assert_close(update.rate[c], b0 + squares / 2 + k0 * n * (mean - prior_loc) ** 2 / (2 * (k0 + n)))
    # and it is the posterior: log posterior(theta) - log prior(theta) - log likelihood(theta)
    # is the same constant for every theta (checked at a few random (loc, precision))

    def normal_gamma_log_density(loc: torch.Tensor, precision: torch.Tensor, m: torch.Tensor, k: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Gamma(a, b).log_prob(precision) + torch.distributions.Normal(m, (k * precision).rsqrt()).log_prob(loc)

    c = 0
    rows = x[labels == c]
    differences = []
    for _ in range(4):
        loc = torch.randn(2, generator=generator, dtype=torch.float64)
        precision = torch.rand(2, generator=generator, dtype=torch.float64) + 0.1
        posterior = normal_gamma_log_density(loc, precision, update.loc[c], update.loc_count[c], update.shape[c], update.rate[c])
        prior = normal_gamma_log_density(loc, precision, prior_loc, torch.tensor(k0), torch.tensor(a0), b0)
        likelihood = torch.distributions.Normal(loc, precision.rsqrt()).log_prob(rows).sum(0)
        differences.append(posterior - prior - likelihood)
    torch.testing.assert_close(torch.stack(differences), differences[0].expand(4, 2))


def test_beta_bernoulli_update_counts_ones_and_zeros() -> None:
    labels, generator = labeled_rows(1)
    x = (torch.rand(12, 3, generator=generator) < 0.4).double()
    alpha, beta = conjugate.beta_bernoulli(x, labels, 4, concentration=0.5)
    for c in range(4):
        rows = x[labels == c]
        torch.testing.assert_close(alpha[c], 0.5 + rows.sum(0))
        torch.testing.assert_close(beta[c], 0.5 + (1 - rows).sum(0))


def test_dirichlet_categorical_and_multinomial_updates_count_per_class() -> None:
    labels, generator = labeled_rows(2)
    categories = torch.randint(0, 5, (12,), generator=generator)
    concentration = conjugate.dirichlet_categorical(categories, labels, 4, 5, 1.5, torch.float64)
    counts = torch.randint(0, 7, (12, 3), generator=generator).double()
    totals = conjugate.dirichlet_multinomial(counts, labels, 4, 0.25)
    for c in range(4):
        expected = torch.tensor([float(((labels == c) & (categories == j)).sum()) for j in range(5)], dtype=torch.float64)
        torch.testing.assert_close(concentration[c], 1.5 + expected)
        torch.testing.assert_close(totals[c], 0.25 + counts[labels == c].sum(0))
    with pytest.raises(ValueError, match="a category is 5, beyond the 5 categories 0..4"):
        conjugate.dirichlet_categorical(torch.tensor([5]), torch.tensor([0]), 4, 5, 1.0, torch.float64)
    # no rows: the prior
    torch.testing.assert_close(conjugate.dirichlet_multinomial(counts[:0], labels[:0], 4, 0.25), torch.full((4, 3), 0.25, dtype=torch.float64))
