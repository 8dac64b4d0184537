"""Convergence diagnostics of MCMC draws: rank-normalised split R-hat, bulk and tail ESS.

The diagnostics of Vehtari, Gelman, Simpson, Carpenter and Buerkner (2021), "Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC", Bayesian
Analysis 16(2), written in torch so that a NUTS fit reports them without importing ArviZ (whose
import, with SciPy's statistics and Numba, costs seconds on the first fit of a process). The
tests check every number against ArviZ's ``rhat`` and ``ess``.

For draws x of one scalar, shaped (chain, draw):

* each chain is split into halves (its first and last floor(n / 2) draws), so that a chain
  whose two halves disagree (a trend) counts as two chains that disagree;
* rank normalisation: every draw is replaced by Phi^-1((r - 3/8) / (S + 1/4)), r its rank
  among all S draws (ties get their average rank);
* R-hat: the classic potential scale reduction sqrt(((n - 1) / n W + B / n) / W) of the
  rank-normalised split chains, and of the rank-normalised |x - median(x)| (the folded draws,
  which see differences in scale): the larger of the two;
* ESS: S / tau, with tau from the chains' autocorrelations combined as in the paper (Geyer's
  initial positive sequence, then made monotone); bulk ESS of the rank-normalised split chains,
  tail ESS the smaller of the ESS of the indicators x <= q_5% and x <= q_95%.
"""

from __future__ import annotations

import math

import torch

__all__ = ["split_chains", "rank_normalise", "rhat", "ess", "ess_bulk", "ess_tail"]


def split_chains(draws: torch.Tensor) -> torch.Tensor:
    """(chain, draw) -> (2 chain, floor(draw / 2)): each chain's first and last halves."""
    half = draws.shape[1] // 2
    return torch.cat([draws[:, :half], draws[:, draws.shape[1] - half :]])


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..S of a flat tensor, ties sharing the average of their ranks."""
    order = values.argsort(stable=True)
    ordered = values[order]
    # the first and last position of each run of equal values, for every element of the run
    new_run = torch.ones_like(ordered, dtype=torch.bool)
    new_run[1:] = ordered[1:] != ordered[:-1]
    run = new_run.cumsum(0) - 1
    positions = torch.arange(1, len(values) + 1, dtype=torch.float64)
    first = torch.zeros(int(run[-1]) + 1, dtype=torch.float64).scatter_reduce(0, run, positions, "amin", include_self=False)
    last = torch.zeros_like(first).scatter_reduce(0, run, positions, "amax", include_self=False)
    ranks = torch.empty(len(values), dtype=torch.float64)
    ranks[order] = ((first + last) / 2)[run]
    return ranks


def rank_normalise(draws: torch.Tensor) -> torch.Tensor:
    """Phi^-1((rank - 3/8) / (S + 1/4)) of every draw, ranked among all S draws: same shape."""
    flat = draws.reshape(-1).double()
    ranks = _average_ranks(flat)
    return torch.special.ndtri((ranks - 0.375) / (len(flat) + 0.25)).reshape(draws.shape)


def _potential_scale_reduction(chains: torch.Tensor) -> float:
    """sqrt(var+ / W) of chains (m, n), var+ = (n - 1) / n W + B / n."""
    n = chains.shape[1]
    within = chains.var(dim=1, correction=1).mean()
    between = n * chains.mean(dim=1).var(correction=1)
    return float(((n - 1) / n * within + between / n) / within) ** 0.5


def rhat(draws: torch.Tensor) -> float:
    """Rank-normalised split R-hat of one scalar's draws (chain, draw), the larger of the bulk
    and the folded (tail) versions. NaN with one chain (as ArviZ), fewer than 4 draws per chain,
    or no variation."""
    draws = draws.double()
    if draws.shape[0] < 2 or draws.shape[1] < 4 or not _varies(draws):
        return math.nan
    split = split_chains(draws)
    bulk = _potential_scale_reduction(rank_normalise(split))
    folded = (split - torch.quantile(split, 0.5)).abs()
    tail = _potential_scale_reduction(rank_normalise(folded))
    return max(bulk, tail)


def _autocovariance(chains: torch.Tensor) -> torch.Tensor:
    """Biased autocovariance of each chain (m, n) at lags 0..n-1, by FFT: (m, n)."""
    n = chains.shape[1]
    centred = chains - chains.mean(dim=1, keepdim=True)
    size = 2 ** math.ceil(math.log2(2 * n))  # zero padding: no circular wrap-around
    spectrum = torch.fft.rfft(centred, n=size)
    return torch.fft.irfft(spectrum * spectrum.conj(), n=size)[:, :n] / n


def ess(chains: torch.Tensor) -> float:
    """Effective sample size of draws (chain, draw) of one scalar (no splitting, no ranks).

    The autocorrelation at lag t is rho_t = 1 - (W - mean over chains of the lag-t
    autocovariance) / var+, W the mean within-chain variance and var+ = (n - 1) / n W + the
    variance of the chain means. Geyer's initial positive sequence keeps the pairs
    (rho_2k, rho_2k+1) while their sums stay positive, then makes the pair sums non-increasing;
    tau = -1 + 2 sum of the kept rho (the last even lag once), ESS = S / tau, with tau at least
    1 / log10(S).
    """
    chains = chains.double()
    m, n = chains.shape
    if n < 2:
        return math.nan
    if not _varies(chains):
        return float(m * n)
    autocovariance = _autocovariance(chains)  # (m, n)
    within = float(autocovariance[:, 0].mean()) * n / (n - 1)
    variance = within * (n - 1) / n
    if m > 1:
        variance += float(chains.mean(dim=1).var(correction=1))
    lagged = autocovariance.mean(dim=0).tolist()

    def correlation(lag: int) -> float:
        return 1.0 - (within - lagged[lag]) / variance

    rho = [0.0] * n
    rho[0], rho[1] = 1.0, correlation(1)
    even, odd = 1.0, rho[1]
    t = 1
    while t < n - 3 and even + odd > 0.0:
        even, odd = correlation(t + 1), correlation(t + 2)
        if even + odd >= 0.0:
            rho[t + 1], rho[t + 2] = even, odd
        t += 2
    last = t - 2  # the last lag of the positive sequence
    if even > 0.0:
        rho[last + 1] = even
    for t in range(1, last - 1, 2):  # monotone: no pair sum above the one before it
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
    tau = -1.0 + 2.0 * sum(rho[: last + 1]) + sum(rho[last + 1 : last + 2])
    total = m * n
    return total / max(tau, 1.0 / math.log10(total))


def ess_bulk(draws: torch.Tensor) -> float:
    """Bulk ESS: the ESS of the rank-normalised split chains of draws (chain, draw)."""
    draws = draws.double()
    if draws.shape[1] < 4 or not _varies(draws):
        return math.nan
    return ess(rank_normalise(split_chains(draws)))


def ess_tail(draws: torch.Tensor) -> float:
    """Tail ESS: the smaller ESS of the split-chain indicators x <= q_5% and x <= q_95%."""
    draws = draws.double()
    if draws.shape[1] < 4 or not _varies(draws):
        return math.nan
    values = []
    for probability in (0.05, 0.95):
        quantile = torch.quantile(draws.reshape(-1), probability)  # type 7, as R and ArviZ
        values.append(ess(split_chains((draws <= quantile).double())))
    return min(values)


def _varies(draws: torch.Tensor) -> bool:
    return bool(draws.max() - draws.min() >= torch.finfo(torch.float64).resolution)
