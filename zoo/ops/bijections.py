"""Bijections onto a simplex and onto correlation Cholesky factors, with fewer operations.

torch's ``StickBreakingTransform`` and ``CorrCholeskyTransform`` build their running products
with ``cumprod``, whose backward pass is long (it guards against zero factors), and rebuild
their index tensors (``arange``, masks) at every call. NUTS evaluates these maps and their
gradients at every leapfrog step, so for a small mixture they were a large share of the
potential's cost (``benchmarks/nuts.py``).

Every factor in those products lies in (0, 1], so a product is ``exp(cumsum(log(...)))``:
the same numbers to rounding with a short backward pass. The classes below subclass torch's,
keep their domains, codomains, shapes and inverses, and replace only the forward map and the
log-Jacobian. ``tests/test_ops.py`` checks them against torch's, value and gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as functional
from torch.distributions.transforms import CorrCholeskyTransform, StickBreakingTransform, Transform

__all__ = ["CorrelationCholesky", "StickBreaking", "fast_bijection"]


class StickBreaking(StickBreakingTransform):
    """torch's stick-breaking map from R^(K-1) onto the K-simplex, without ``cumprod``.

    With x'_k = x_k - log(K - k) (k = 0..K-2) and z_k = sigmoid(x'_k):
    y_k = z_k prod_{j<k} (1 - z_j) and y_{K-1} = prod_j (1 - z_j), all in log space.
    """

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        shifted = x - _offset_logs(x)
        log_sticks = functional.logsigmoid(-shifted).cumsum(-1)  # log prod_{j<=k} (1 - z_j)
        log_y = functional.pad(functional.logsigmoid(shifted), [0, 1]) + functional.pad(log_sticks, [1, 0])
        return log_y.exp()

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # torch's sum_k [-x'_k + log z_k + log y_k], from x alone (no gradient through y):
        # log y_k = log z_k + sum_{j<k} log(1 - z_j), and the double sum is a weighted one
        shifted = x - _offset_logs(x)
        log_rest = functional.logsigmoid(-shifted)
        return (2 * functional.logsigmoid(shifted) - shifted + log_rest * _later_counts(x)).sum(-1)


class CorrelationCholesky(CorrCholeskyTransform):
    """torch's map from R^(D(D-1)/2) onto Cholesky factors of D x D correlation matrices,
    without ``cumprod``, index assignment or per-call index tensors.

    r = tanh(x) fills the strict lower triangle row by row; row i of the factor is
    r_ij prod_{k<j} sqrt(1 - r_ik^2) off the diagonal and prod_{k<i} sqrt(1 - r_ik^2) on it.
    """

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        size = round((0.25 + 2 * int(x.shape[-1])) ** 0.5 + 0.5)
        tiny = torch.finfo(x.dtype).eps
        partial = torch.tanh(x).clamp(min=-1 + tiny, max=1 - tiny)
        # the strict lower triangle, row-major, by one gather from [0, r_1, ..., r_N]: D x D
        padded = functional.pad(partial, [1, 0])
        lower = padded[..., _lower_index(size, x.device)].reshape(*x.shape[:-1], size, size)
        half_log_rest = 0.5 * torch.log1p(-lower * lower)  # 0 above the diagonal
        # exclusive running sum: row i, column j sums k < j
        stick = (half_log_rest.cumsum(-1) - half_log_rest).exp()
        return (lower + torch.eye(size, dtype=x.dtype, device=x.device)) * stick

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # torch's tanh term, sum log(1 - r^2) in its stable form, plus its stick-breaking term,
        # 0.5 sum_{j <= i-2} sum_{k <= j} log(1 - r_ik^2): entry (i, k) counted i - 1 - k times
        log_rest = -2 * (x + functional.softplus(-2 * x) - math.log(2.0))
        return (log_rest * _correlation_weights(x)).sum(-1)


def fast_bijection(transform: Transform) -> Transform:
    """The class above that replaces ``transform`` or its inverse, else ``transform`` itself."""
    for slow, fast in ((StickBreakingTransform, StickBreaking), (CorrCholeskyTransform, CorrelationCholesky)):
        if type(transform) is slow:
            return fast()
        if type(transform.inv) is slow:
            return fast().inv
    return transform


def _offset_logs(x: torch.Tensor) -> torch.Tensor:
    """log(K - 1), log(K - 2), ..., log 1 for x of last size K - 1: a constant of the shape,
    built once per size."""
    key = ("offsets", x.shape[-1], str(x.dtype), str(x.device))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.arange(x.shape[-1], 0, -1, dtype=x.dtype, device=x.device).log()
    return _CONSTANTS[key]


def _later_counts(x: torch.Tensor) -> torch.Tensor:
    """K - 2, K - 3, ..., 0 for x of last size K - 1: how many later sticks each one shortens."""
    key = ("later", x.shape[-1], str(x.dtype), str(x.device))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.arange(x.shape[-1] - 1, -1, -1, dtype=x.dtype, device=x.device)
    return _CONSTANTS[key]


def _correlation_weights(x: torch.Tensor) -> torch.Tensor:
    """1 + (i - 1 - k) / 2 for the strict-lower entries (i, k) in row order, x of last size
    D(D-1)/2: the weight of log(1 - r_ik^2) in the log-Jacobian."""
    key = ("correlation", x.shape[-1], str(x.dtype), str(x.device))
    if key not in _CONSTANTS:
        size = round((0.25 + 2 * int(x.shape[-1])) ** 0.5 + 0.5)
        rows, columns = torch.tril_indices(size, size, offset=-1)
        _CONSTANTS[key] = (1 + (rows - 1 - columns) / 2).to(dtype=x.dtype, device=x.device)
    return _CONSTANTS[key]


def _lower_index(size: int, device: torch.device) -> torch.Tensor:
    """For each flat D x D position, row-major: 1 + the rank of a strict-lower entry in row
    order, 0 on and above the diagonal (an index into [0, r_1, ..., r_N]); built once."""
    key = ("index", size, str(device))
    if key not in _CONSTANTS:
        rows, columns = torch.tril_indices(size, size, offset=-1)  # row order, as torch fills it
        index = torch.zeros(size * size, dtype=torch.long)
        index[rows * size + columns] = torch.arange(1, len(rows) + 1)
        _CONSTANTS[key] = index.to(device)
    return _CONSTANTS[key]


_CONSTANTS: dict[tuple[object, ...], torch.Tensor] = {}
