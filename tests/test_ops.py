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
from torch.distributions.transforms import CorrCholeskyTransform, StickBreakingTransform, Transform

from zoo.ops.baum_welch import baum_welch, chain_estimates, chain_start, expected_counts, label_counts, sequence_mask
from zoo.ops.bijections import CorrelationCholesky, StickBreaking, fast_bijection
from zoo.ops.chunks import over_draw_chunks
from zoo.ops.clustering import kmeans_labels, kmeans_plus_plus, name_clusters, reorder_components
from zoo.ops.densities import all_binary, all_counts, bernoulli_log_density, multinomial_log_density
from zoo.ops.labels import labeled_log_likelihood, labeled_posterior
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
from zoo.ops.moments import correlation_cholesky, mean_and_spread, weighted_covariances, weighted_means

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


# --------------------------------------------------------------------------- densities
def test_density_functions_match_torch_at_the_edges() -> None:
    """Probabilities of exactly 0 and 1 give finite densities (floored logs), where the other
    outcome has density 1."""
    probs = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert bernoulli_log_density(torch.tensor([0.0, 1.0], dtype=torch.float64), probs) == 0.0
    assert torch.isfinite(bernoulli_log_density(torch.tensor([1.0, 0.0], dtype=torch.float64), probs))
    counts = torch.tensor([0.0, 3.0], dtype=torch.float64)
    assert multinomial_log_density(counts, probs) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.bool])
def test_support_checks_decide_every_value_exactly(dtype: torch.dtype) -> None:
    """all_binary and all_counts against the elementwise definitions, on the values where a
    shortcut could go wrong (just inside and outside 0 and 1, subnormals, -0.0, large counts)."""
    if dtype == torch.bool:
        assert all_binary(torch.tensor([True, False])) and all_counts(torch.tensor([True, False]))
        return
    if dtype.is_floating_point:
        tiny = torch.finfo(dtype).tiny
        eps = torch.finfo(dtype).eps
        candidates = [0.0, -0.0, 1.0, 2.0, 3.0, 2.0**40, tiny, tiny / 4, 1 - eps / 2, 1 + eps, 0.5, -1.0, 3 - 2 * eps, float("inf")]
    else:
        candidates = [0, 1, 2, 3, -1, 2**40]
    for value in candidates:
        values = torch.tensor([0, 1, value], dtype=dtype)
        value = float(value)
        assert all_binary(values) == (value in (0.0, 1.0)) or value == float("inf"), value
        assert all_counts(values) == (value >= 0 and value == int(value) if value != float("inf") else False), value
    assert all_counts(torch.zeros(0, dtype=dtype))


# --------------------------------------------------------------------------- chunks
def test_over_draw_chunks_equals_one_call_on_all_draws() -> None:
    generator = torch.Generator().manual_seed(0)
    draws = {"a": torch.randn(7, 3, generator=generator), "b": torch.randn(7, 3, 2, generator=generator)}

    def table(chunk: dict[str, torch.Tensor]) -> torch.Tensor:
        return (chunk["a"].unsqueeze(-1) * chunk["b"]).sum(-1)  # (S', 3)

    for limit in (1, 5, 6, 17, 10**6):  # one draw per chunk, uneven chunks, a single chunk
        assert torch.equal(over_draw_chunks(table, draws, elements_per_draw=6, limit=limit), table(draws))


# --------------------------------------------------------------------------- Baum-Welch
def test_one_baum_welch_step_equals_brute_force_path_enumeration() -> None:
    """Expected counts by the forward pass's gradient, and the M-step built on them (chain with
    pseudo-counts, Gaussian emission means weighted by the posterior), against sums over every
    path of each sequence's real steps."""
    num_states, pseudo = 3, (0.5, 0.25)
    log_initial, log_transition, log_emission, mask = random_chain(2, LENGTHS, num_states, seed=7)
    x = torch.randn(len(LENGTHS), max(LENGTHS), generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    counts = expected_counts(log_initial, log_transition, log_emission, mask)
    initial, transition = chain_estimates(counts, *pseudo)
    for s in range(2):
        starts = torch.zeros(num_states, dtype=torch.float64)
        transitions = torch.zeros(num_states, num_states, dtype=torch.float64)
        posterior = torch.zeros(len(LENGTHS), max(LENGTHS), num_states, dtype=torch.float64)
        for n, length in enumerate(LENGTHS):
            paths, joints = path_log_joints(log_initial, log_transition, log_emission, s, n, length)
            torch.testing.assert_close(counts.log_likelihood[s, n], joints.logsumexp(0), **EXACT)
            for path, probability in zip(paths, joints.softmax(0)):
                starts[path[0]] += probability
                for t in range(length):
                    posterior[n, t, path[t]] += probability
                for t in range(1, length):
                    transitions[path[t - 1], path[t]] += probability
        torch.testing.assert_close(counts.starts[s], starts, **EXACT)
        torch.testing.assert_close(counts.transitions[s], transitions, **EXACT)
        torch.testing.assert_close(counts.posterior[s], posterior, **EXACT)  # 0 at padded steps
        torch.testing.assert_close(initial[s], (starts + pseudo[0]) / (starts + pseudo[0]).sum(), **EXACT)
        expected = (transitions + pseudo[1]) / (transitions + pseudo[1]).sum(-1, keepdim=True)
        torch.testing.assert_close(transition[s], expected, **EXACT)
        # the emission M-step: each real step weighted by its state posterior
        means = weighted_means(x[mask].unsqueeze(-1), counts.posterior[s][mask]).means[:, 0]
        brute = (posterior[mask] * x[mask].unsqueeze(-1)).sum(0) / posterior[mask].sum(0)
        torch.testing.assert_close(means, brute, **EXACT)


def test_label_counts_and_sequence_mask() -> None:
    mask = sequence_mask(torch.tensor([3, 1, 2]), 4)
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False], [True, True, False, False]]
    labels = torch.tensor([[0, 1, 1, -1], [2, -1, -1, -1], [1, 0, -1, -1]])
    starts, transitions = label_counts(labels, 3)
    assert starts.tolist() == [1, 1, 1]
    assert transitions.tolist() == [[0, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_reorder_components_permutes_components_and_transition_rows_and_columns() -> None:
    generator = torch.Generator().manual_seed(3)
    order = torch.stack([torch.randperm(4, generator=generator) for _ in range(6)]).reshape(2, 3, 4)
    value = torch.randn(2, 3, 4, 5, generator=generator)
    matrix = torch.randn(2, 3, 4, 4, generator=generator)
    moved, moved_matrix = reorder_components(value, order), reorder_components(matrix, order, dims=2)
    for c, d in itertools.product(range(2), range(3)):
        permutation = order[c, d]
        assert torch.equal(moved[c, d], value[c, d][permutation])
        assert torch.equal(moved_matrix[c, d], matrix[c, d][permutation][:, permutation])


# --------------------------------------------------------------------------- starts from labels
def test_name_clusters_finds_the_least_total_distance_naming() -> None:
    """Against brute force: every permutation's total centre-to-label-mean distance (K = 4), and
    the greedy naming for K = 8 on well-separated labels (each cluster nearest one label)."""
    generator = torch.Generator().manual_seed(0)
    for num_labels in (4, 8):
        truth = torch.randperm(num_labels, generator=generator)  # cluster c stands for label truth[c]
        label_means = 10.0 * torch.randn(num_labels, 2, generator=generator, dtype=torch.float64)
        centres = label_means[truth] + 0.1 * torch.randn(num_labels, 2, generator=generator, dtype=torch.float64)
        known = torch.randint(num_labels, (200,), generator=generator)
        features = label_means[known] + 0.5 * torch.randn(200, 2, generator=generator, dtype=torch.float64)
        known[::3] = -1  # a third of the points unlabelled
        names = name_clusters(centres, features, known)
        assert sorted(names.tolist()) == list(range(num_labels))
        if num_labels == 4:
            labelled = known >= 0
            means = torch.stack([features[labelled & (known == k)].mean(0) for k in range(num_labels)])
            totals = {order: sum(float((centres[c] - means[order[c]]).norm()) for c in range(num_labels))
                      for order in itertools.permutations(range(num_labels))}
            assert tuple(names.tolist()) == min(totals, key=totals.get)
        assert torch.equal(names, truth)


def test_kmeans_labels_keep_known_labels_and_name_the_rest_after_them() -> None:
    x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]], dtype=torch.float64)
    plain = kmeans_labels(x, 2, seed=0)
    assert plain[:3].unique().numel() == 1 and plain[3:].unique().numel() == 1 and plain[0] != plain[3]
    known = torch.tensor([1, -1, -1, -1, 0, -1])  # the left group is label 1; one point forced to 0
    named = kmeans_labels(x, 2, seed=0, known=known)
    assert named.tolist() == [1, 1, 1, 0, 0, 0]


def test_chain_start_smooths_the_label_counts_by_hand() -> None:
    labels = torch.tensor([[0, 0, 1, -1], [1, 1, 1, 1]])
    initial, transition = chain_start(labels, 2, torch.float64)
    # starts [1, 1] + 1; transitions [[1, 1], [0, 3]] + 1, + 10% of the row's steps on the diagonal
    torch.testing.assert_close(initial, torch.tensor([0.5, 0.5], dtype=torch.float64), **EXACT)
    expected = torch.tensor([[2.2, 2.0], [1.0, 4.3]], dtype=torch.float64)
    torch.testing.assert_close(transition, expected / expected.sum(-1, keepdim=True), **EXACT)


def test_baum_welch_iteration_equals_brute_force_em() -> None:
    """One EM iteration of a 2-state chain with unit-variance Gaussian emissions, against the
    expected counts summed over every state path of each sequence (K^L <= 8 paths)."""
    x = torch.tensor([[0.1, 2.3, 1.9], [2.2, -0.4, 0.0]], dtype=torch.float64)  # (N, T); second of length 2
    labels = torch.tensor([[0, 1, 1], [1, 0, -1]])
    mask = labels >= 0

    def table(params: dict[str, torch.Tensor]) -> torch.Tensor:  # (1, N, T, K)
        return (-0.5 * (x.unsqueeze(-1) - params["means"]) ** 2 - 0.5 * math.log(2 * math.pi)).unsqueeze(0)

    def estimates(weights: torch.Tensor) -> dict[str, torch.Tensor]:  # weights (M, K) of the real steps
        return {"means": (weights * x[mask].unsqueeze(-1)).sum(0) / weights.sum(0)}

    start = baum_welch(labels, 2, table, estimates, 0, 0.5, 0.25, torch.float64)
    torch.testing.assert_close(start["means"], torch.tensor([(0.1 - 0.4) / 2, (2.3 + 1.9 + 2.2) / 3], dtype=torch.float64), **EXACT)
    initial, transition = chain_start(labels, 2, torch.float64)
    torch.testing.assert_close(start["initial"], initial, **EXACT)
    torch.testing.assert_close(start["transition"], transition, **EXACT)

    starts, transitions = torch.zeros(2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)
    weighted, totals = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    log_emission = table(start)[0]
    for n, length in enumerate(mask.sum(1).tolist()):
        paths = list(itertools.product(range(2), repeat=length))
        joints = torch.stack([
            initial[path[0]].log() + sum(transition[a, b].log() for a, b in zip(path, path[1:])) + sum(log_emission[n, t, path[t]] for t in range(length))
            for path in paths
        ])
        for path, probability in zip(paths, joints.softmax(0)):
            starts[path[0]] += probability
            for a, b in zip(path, path[1:]):
                transitions[a, b] += probability
            for t in range(length):
                weighted[path[t]] += probability * x[n, t]
                totals[path[t]] += probability
    step = baum_welch(labels, 2, table, estimates, 1, 0.5, 0.25, torch.float64)
    torch.testing.assert_close(step["initial"], (starts + 0.5) / (starts + 0.5).sum(), **EXACT)
    torch.testing.assert_close(step["transition"], (transitions + 0.25) / (transitions + 0.25).sum(-1, keepdim=True), **EXACT)
    torch.testing.assert_close(step["means"], weighted / totals, **EXACT)


def test_mean_and_spread_equal_numpy_and_floor_a_zero_spread_at_one() -> None:
    x = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 2.5], [8.0, 5.0, -1.0]], dtype=torch.float64)
    mean, spread = mean_and_spread(x)
    np.testing.assert_allclose(mean.numpy(), x.numpy().mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(spread.numpy(), [x.numpy()[:, 0].std(ddof=1), 1.0, x.numpy()[:, 2].std(ddof=1)], rtol=0, atol=1e-12)
    single_mean, single_spread = mean_and_spread(x[:1])
    assert torch.equal(single_mean, x[0]) and torch.equal(single_spread, torch.ones(3, dtype=torch.float64))


def test_partially_labelled_rows_density_and_posterior_row_by_row() -> None:
    """Against a row-by-row loop: log p(x, y) where labeled, log sum_c p(x, c) where not; the
    posterior one-hot where labeled, as given where not."""
    generator = torch.Generator().manual_seed(0)
    joint = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)  # (S, N, C)
    labels = torch.tensor([2, -1, 0, -1, 1])
    density = labeled_log_likelihood(joint, labels)
    probs = joint.softmax(-1)
    posterior = labeled_posterior(probs, labels)
    for s in range(2):
        for i, label in enumerate(labels.tolist()):
            expected = joint[s, i, label] if label >= 0 else torch.logsumexp(joint[s, i], 0)
            torch.testing.assert_close(density[s, i], expected, **EXACT)
            row = torch.eye(3, dtype=torch.float64)[label] if label >= 0 else probs[s, i]
            torch.testing.assert_close(posterior[s, i], row, **EXACT)
    torch.testing.assert_close(labeled_log_likelihood(joint, None), joint.logsumexp(-1), **EXACT)
    assert labeled_posterior(probs, None) is probs


# ------------------------------------------------------------------------------ bijections
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (2,), (3, 4), (2, 9)])
def test_stick_breaking_equals_torchs_and_its_jacobian_is_the_brute_force_one(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    _check_against_torch(StickBreakingTransform(), StickBreaking(), x)
    # the log-Jacobian of x -> the first K - 1 coordinates of the simplex, by autograd
    vector = x.detach()[0] if x.dim() > 1 else x.detach()
    jacobian = torch.autograd.functional.jacobian(lambda u: StickBreaking()(u)[:-1], vector)
    expected = torch.linalg.slogdet(jacobian).logabsdet
    got = StickBreaking().log_abs_det_jacobian(vector, StickBreaking()(vector))
    torch.testing.assert_close(got, expected, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1,), (3, 1), (4, 3), (2, 6), (10,), (2, 3, 10)])
def test_correlation_cholesky_equals_torchs_and_its_jacobian_is_the_brute_force_one(
    dtype: torch.dtype, shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    _check_against_torch(CorrCholeskyTransform(), CorrelationCholesky(), x)
    # torch's convention: the log-Jacobian of x -> the strict lower triangle of the factor
    vector = x.detach().reshape(-1, shape[-1])[0]
    size = round((0.25 + 2 * shape[-1]) ** 0.5 + 0.5)
    rows, columns = torch.tril_indices(size, size, offset=-1)
    jacobian = torch.autograd.functional.jacobian(lambda u: CorrelationCholesky()(u)[rows, columns], vector)
    expected = torch.linalg.slogdet(jacobian).logabsdet
    got = CorrelationCholesky().log_abs_det_jacobian(vector, CorrelationCholesky()(vector))
    torch.testing.assert_close(got, expected, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-4)


def test_fast_bijection_replaces_both_directions_and_leaves_other_transforms() -> None:
    assert type(fast_bijection(StickBreakingTransform())) is StickBreaking
    assert type(fast_bijection(CorrCholeskyTransform().inv).inv) is CorrelationCholesky
    exp = torch.distributions.transforms.ExpTransform()
    assert fast_bijection(exp) is exp
    y = CorrelationCholesky()(torch.randn(3))
    torch.testing.assert_close(fast_bijection(CorrCholeskyTransform().inv)(y), CorrCholeskyTransform().inv(y))


def _check_against_torch(slow: Transform, fast: Transform, x: torch.Tensor) -> None:
    """Values, log-Jacobians and their gradients agree to rounding; the domain and codomain are torch's."""
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if x.dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    expected, got = slow(x), fast(x)
    torch.testing.assert_close(got, expected, **tolerance)
    expected_log, got_log = slow.log_abs_det_jacobian(x, expected), fast.log_abs_det_jacobian(x, got)
    torch.testing.assert_close(got_log, expected_log, **tolerance)
    weights = torch.linspace(0.5, 1.5, expected.numel(), dtype=x.dtype).reshape(expected.shape)
    (expected_gradient,) = torch.autograd.grad((expected * weights).sum() + expected_log.sum(), x)
    (got_gradient,) = torch.autograd.grad((got * weights).sum() + got_log.sum(), x)
    torch.testing.assert_close(got_gradient, expected_gradient, **tolerance)
    assert fast.domain is slow.domain and fast.codomain is slow.codomain
    torch.testing.assert_close(fast.inv(got.detach()), x.detach(), **tolerance)


def test_a_recording_takes_the_forward_pass_free_of_value_branches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above ``SCAN_LIMIT`` "auto" picks the rescaled sequential pass, whose fallback branches on
    the values; while the operations are recorded (``recording()`` or ``torch.jit.trace``) it
    must pick the scan, which has no such branch, and give the same numbers."""
    from zoo.ops import markov
    from zoo.ops.recording import is_recording, recording

    scans: list[int] = []
    scan = markov._forward_scan
    monkeypatch.setattr(markov, "_forward_scan", lambda *args: scans.append(1) or scan(*args))
    generator = torch.Generator().manual_seed(0)
    num_states, num_draws = 4, 16  # S K^3 = 1024 > SCAN_LIMIT
    log_initial = torch.randn(num_draws, num_states, generator=generator).log_softmax(-1)
    log_transition = torch.randn(num_draws, num_states, num_states, generator=generator).log_softmax(-1)
    log_emission = torch.randn(num_draws, 1, 9, num_states, generator=generator)
    mask = torch.ones(1, 9, dtype=torch.bool)
    assert num_draws * num_states**3 > markov.SCAN_LIMIT and not is_recording()
    eager = forward_log_likelihood(log_initial, log_transition, log_emission, mask)
    assert scans == []
    with recording():
        assert is_recording()
        recorded = forward_log_likelihood(log_initial, log_transition, log_emission, mask)
    assert scans == [1] and not is_recording()
    torch.testing.assert_close(recorded, eager, rtol=1e-5, atol=1e-5)
    traced = torch.jit.trace(lambda emission: forward_log_likelihood(log_initial, log_transition, emission, mask), log_emission, check_trace=False)
    assert scans == [1, 1]
    torch.testing.assert_close(traced(log_emission), eager, rtol=1e-5, atol=1e-5)


def test_a_recorded_function_replays_its_value_and_gradient_at_other_points() -> None:
    """``record`` keeps every ATen operation of the forward pass and of ``torch.autograd.grad``;
    the graph run at another point equals the function run eagerly there (the same kernels, so
    to the last bit), with the data kept as a buffer and a number read off the data kept as read."""
    from zoo.ops.recording import is_recording, record

    data = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    seen_recording: list[bool] = []

    def value_and_gradient(point: torch.Tensor) -> tuple[torch.Tensor, ...]:
        seen_recording.append(is_recording())
        with torch.enable_grad():
            leaf = point.detach().requires_grad_()
            rows = int((data > 0).sum())  # a number read off the data, the same at every point
            first, second = leaf.split([1, 2])  # several outputs of one operation
            scaled = torch.cat([first.exp(), second.tanh()]) * data
            scaled[:, 0] += rows  # in place, on a tensor the recording computed
            value = torch.logsumexp(scaled, dim=-1).sum() + (leaf**2).sum()
            (gradient,) = torch.autograd.grad(value, leaf)
        return value.detach(), gradient

    start, other = torch.tensor([0.1, -0.2, 0.3]), torch.tensor([1.2, 0.7, -2.0])
    graph = record(value_and_gradient, start)
    assert seen_recording == [True] and not is_recording()
    assert any(torch.equal(buffer, data) for buffer in graph.buffers())
    with torch.no_grad():
        replayed = graph(other)
    expected = value_and_gradient(other)
    for got, want in zip(replayed, expected):
        assert torch.equal(got, want)
    by_hand = torch.logsumexp(torch.cat([other[:1].exp(), other[1:].tanh()]) * data + torch.tensor([4.0, 0.0, 0.0]), dim=-1).sum()
    torch.testing.assert_close(replayed[0], by_hand + (other**2).sum())
