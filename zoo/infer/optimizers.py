"""zoo's optimisers: Adam and L-BFGS with a strong-Wolfe line search, in plain tensor code.

Why not ``torch.optim``: the first ``torch.optim`` optimiser a process builds imports
``torch._dynamo`` (its constructor, ``step`` and ``zero_grad`` are wrapped to keep the compiler
out, and the wrapper imports the compiler to say so), and with it sympy: 1-5 seconds on the first
fit of a fresh process, more than the fit itself, and a Ctrl-C in that window can leave sympy
half-imported. These two are all zoo's fitting loops need, and they are short.

* :class:`Adam` (Kingma and Ba, "Adam: a method for stochastic optimization", ICLR 2015,
  Algorithm 1): the update of ``torch.optim.Adam`` with ``amsgrad=False``, to float rounding
  (the tests take both 50 steps side by side), with the optional L2 ``weight_decay`` of
  ``torch.optim.Adam`` (added to the gradient).
* :class:`LBFGS` (Nocedal and Wright, "Numerical Optimization", 2nd ed., 2006): the two-loop
  recursion of Algorithm 7.4 with the scaled identity of eq. (7.20) as initial matrix, the
  curvature pairs of Algorithm 7.5, and the strong-Wolfe line search of Algorithms 3.5
  (bracketing) and 3.6 (zoom) with the cubic interpolation of eq. (3.59). One iteration per
  :meth:`LBFGS.step`, so a fitting loop can record, test convergence and stop between
  iterations.

A learning-rate schedule is a plain factor per step: the loop sets ``learning_rate`` before
each step (``base * factor(step)``), as ``torch.optim.lr_scheduler.LambdaLR`` does.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable

import torch

__all__ = ["Adam", "LBFGS"]


class Adam:
    """Adam (Kingma and Ba 2015, Algorithm 1), one update per :meth:`step`.

    With g_t the gradient (plus ``weight_decay * theta`` if given) and t the parameter's own
    step count::

        m_t = beta1 m_{t-1} + (1 - beta1) g_t
        v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        theta_t = theta_{t-1} - lr * (m_t / (1 - beta1^t)) / (sqrt(v_t / (1 - beta2^t)) + eps)

    A parameter whose ``grad`` is None is left alone (its step count does not advance), as in
    ``torch.optim.Adam``.

    Parameters
    ----------
    parameters : iterable of Tensor
        Leaf tensors that require grad.
    learning_rate : float
        lr (alpha in the paper); may be changed between steps (a schedule).
    betas : (float, float)
        beta1, beta2: decay rates of the moment estimates.
    eps : float
        Added to the denominator.
    weight_decay : float
        L2 penalty coefficient, added to the gradient (``torch.optim.Adam``'s, not AdamW's).
    """

    def __init__(
        self,
        parameters: Iterable[torch.Tensor],
        learning_rate: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.parameters = list(parameters)
        self.learning_rate = float(learning_rate)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.steps = [0] * len(self.parameters)
        self.first_moments: list[torch.Tensor | None] = [None] * len(self.parameters)
        self.second_moments: list[torch.Tensor | None] = [None] * len(self.parameters)

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (``grad = None``)."""
        for parameter in self.parameters:
            parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient."""
        for index, parameter in enumerate(self.parameters):
            gradient = parameter.grad
            if gradient is None:
                continue
            if self.weight_decay:
                gradient = gradient.add(parameter, alpha=self.weight_decay)
            if self.first_moments[index] is None:
                self.first_moments[index] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
                self.second_moments[index] = torch.zeros_like(parameter, memory_format=torch.preserve_format)
            m, v = self.first_moments[index], self.second_moments[index]
            assert m is not None and v is not None
            self.steps[index] += 1
            t = self.steps[index]
            m.mul_(self.beta1).add_(gradient, alpha=1.0 - self.beta1)
            v.mul_(self.beta2).addcmul_(gradient, gradient, value=1.0 - self.beta2)
            corrected_m = m / (1.0 - self.beta1**t)
            denominator = (v / (1.0 - self.beta2**t)).sqrt_().add_(self.eps)
            parameter.addcdiv_(corrected_m, denominator, value=-self.learning_rate)


class LBFGS:
    """Limited-memory BFGS with a strong-Wolfe line search, one iteration per :meth:`step`.

    Each step, at the current point x_k with gradient g_k:

    1. the direction p_k = -H_k g_k by the two-loop recursion (Nocedal and Wright, Algorithm
       7.4) over the last ``history_size`` pairs s_i = x_{i+1} - x_i, y_i = g_{i+1} - g_i, with
       H_k^0 = gamma_k I, gamma_k = s^T y / y^T y of the newest pair (eq. 7.20); a pair is kept
       only if s^T y > 1e-10 (the curvature condition; otherwise it is skipped, Algorithm 7.5).
       The first step goes down the gradient, p_0 = -g_0;
    2. a step length alpha satisfying the strong Wolfe conditions (3.7), c1 = 1e-4, c2 = 0.9,
       found by :func:`strong_wolfe` from the trial ``learning_rate`` (the first step's trial is
       ``learning_rate * min(1, 1 / ||g_0||_1)``, a step no longer than 1 along the gradient);
    3. x_{k+1} = x_k + alpha p_k.

    Nothing moves when the gradient is already below ``tolerance_grad`` (largest absolute
    entry), or when p_k is not a descent direction by more than ``tolerance_change``
    (g^T p > -tolerance_change).

    Parameters
    ----------
    parameters : iterable of Tensor
        Leaf tensors that require grad (one flat vector to the algorithm).
    learning_rate : float
        The line search's first trial step length (1: the quasi-Newton step).
    history_size : int
        m, the number of curvature pairs kept.
    max_evaluations : int
        Most loss evaluations the line search may make in one step.
    tolerance_grad, tolerance_change : float
        See above.
    line_search_tolerance : float
        The zoom phase stops when the bracket's width times the direction's largest entry falls
        below this (the step no longer moves any coordinate by more).
    reuse_evaluation : bool
        The closure is one deterministic function of the parameters (a full-batch loss with no
        Monte Carlo noise): the loss and gradient the line search ended at are then the next
        step's start, not evaluated again (one evaluation per step saved), and after a line
        search that found no step the next steps return at once (they would search the same
        line again). Leave False for a loss that changes between steps (minibatches, sampling).

    Notes
    -----
    :meth:`step` returns the loss at the point the step started from (as ``torch.optim.LBFGS``
    does), with the gradient the closure computed there.
    """

    def __init__(
        self,
        parameters: Iterable[torch.Tensor],
        learning_rate: float = 1.0,
        history_size: int = 20,
        max_evaluations: int = 25,
        tolerance_grad: float = 1e-9,
        tolerance_change: float = 1e-12,
        line_search_tolerance: float = 1e-9,
        reuse_evaluation: bool = False,
    ) -> None:
        self.parameters = list(parameters)
        self.learning_rate = float(learning_rate)
        self.history_size = int(history_size)
        self.max_evaluations = int(max_evaluations)
        self.tolerance_grad = float(tolerance_grad)
        self.tolerance_change = float(tolerance_change)
        self.line_search_tolerance = float(line_search_tolerance)
        self.reuse_evaluation = bool(reuse_evaluation)
        self.pairs: deque[tuple[torch.Tensor, torch.Tensor, float]] = deque(maxlen=self.history_size)
        self.gamma = 1.0
        self.previous_gradient: torch.Tensor | None = None
        self.previous_step: torch.Tensor | None = None  # s_{k-1} = alpha p
        self.evaluation: tuple[torch.Tensor, torch.Tensor] | None = None  # (loss, flat gradient) at x
        self.stalled = False  # the last line search found no step
        self.num_evaluations = 0

    # ------------------------------------------------------------------ flat vectors
    def _flat_parameters(self) -> torch.Tensor:
        return torch.cat([parameter.detach().reshape(-1) for parameter in self.parameters])

    def _flat_gradient(self) -> torch.Tensor:
        return torch.cat(
            [
                torch.zeros(parameter.numel(), dtype=parameter.dtype, device=parameter.device)
                if parameter.grad is None
                else parameter.grad.detach().reshape(-1)
                for parameter in self.parameters
            ]
        )

    @torch.no_grad()
    def _set(self, flat: torch.Tensor) -> None:
        offset = 0
        for parameter in self.parameters:
            size = parameter.numel()
            parameter.copy_(flat[offset : offset + size].view_as(parameter))
            offset += size

    def _evaluate(self, closure: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, flat gradient) at the current parameters: the closure computes the gradients."""
        with torch.enable_grad():
            loss = closure()
        self.num_evaluations += 1
        return loss, self._flat_gradient()

    def forget_evaluation(self) -> None:
        """Evaluate again at the next step (the parameters were changed from outside)."""
        self.evaluation = None
        self.stalled = False

    # ------------------------------------------------------------------ one iteration
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One L-BFGS iteration; returns the loss at the point it started from."""
        if self.evaluation is not None and self.reuse_evaluation:
            loss, gradient = self.evaluation
            if self.stalled:  # the same point, the same search: it would find nothing again
                return loss
        else:
            loss, gradient = self._evaluate(closure)
        self.evaluation = (loss, gradient)  # until the parameters move
        if float(gradient.abs().max()) <= self.tolerance_grad:
            return loss
        first = self.previous_gradient is None
        if not first:
            assert self.previous_gradient is not None and self.previous_step is not None
            s, y = self.previous_step, gradient - self.previous_gradient
            sy = float(y.dot(s))
            if sy > 1e-10:  # curvature condition; else the pair is skipped
                self.pairs.append((s, y, 1.0 / sy))
                self.gamma = sy / float(y.dot(y))
        direction = self._direction(gradient)
        self.previous_gradient = gradient
        slope = float(gradient.dot(direction))
        if slope > -self.tolerance_change:
            self.previous_step = torch.zeros_like(direction)
            return loss
        trial = self.learning_rate
        if first:
            trial *= min(1.0, 1.0 / float(gradient.abs().sum()))
        start = self._flat_parameters()

        def phi(alpha: float) -> tuple[float, float, torch.Tensor, torch.Tensor]:
            """The loss along the direction: (phi, phi', loss tensor, flat gradient) at x + alpha p."""
            self._set(start + alpha * direction)
            value, flat_gradient = self._evaluate(closure)
            return float(value.detach()), float(flat_gradient.dot(direction)), value, flat_gradient

        alpha, found = strong_wolfe(
            phi,
            float(loss.detach()),
            slope,
            trial,
            max_evaluations=self.max_evaluations,
            resolution=0.5 * torch.finfo(loss.dtype).eps * abs(float(loss.detach())) if loss.is_floating_point() else 0.0,
            tolerance=self.line_search_tolerance / max(float(direction.abs().max()), 1e-300),
        )
        self._set(start + alpha * direction)
        self.previous_step = alpha * direction
        self.stalled = alpha == 0.0
        if alpha != 0.0:
            self.evaluation = None if found is None else (found[0], found[1])
        return loss

    def _direction(self, gradient: torch.Tensor) -> torch.Tensor:
        """-H_k g by the two-loop recursion (Algorithm 7.4); -g before any pair is kept."""
        q = gradient.neg()
        if not self.pairs:
            return q
        alphas = []
        for s, y, rho in reversed(self.pairs):  # newest first
            a = rho * float(s.dot(q))
            q.add_(y, alpha=-a)
            alphas.append(a)
        r = q.mul_(self.gamma)
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):  # oldest first
            b = rho * float(y.dot(r))
            r.add_(s, alpha=a - b)
        return r


# ---------------------------------------------------------------------- the line search
def strong_wolfe(
    phi: Callable[[float], tuple[float, float, torch.Tensor, torch.Tensor]],
    phi0: float,
    slope0: float,
    trial: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_evaluations: int = 25,
    tolerance: float = 0.0,
    resolution: float = 0.0,
) -> tuple[float, tuple[torch.Tensor, torch.Tensor] | None]:
    """A step length satisfying the strong Wolfe conditions (Nocedal and Wright, Algorithms 3.5
    and 3.6).

    phi(alpha) >= phi(0) + c1 alpha phi'(0) fails (sufficient decrease) and
    |phi'(alpha)| <= c2 |phi'(0)| (curvature) holds at the step returned, if one is found within
    ``max_evaluations``; otherwise the step of lowest phi found with sufficient decrease (0 if
    none). A non-finite phi or phi' counts as too long a step.

    Parameters
    ----------
    phi : callable
        alpha -> (phi(alpha), phi'(alpha), and two payloads returned with the chosen step: the
        loss tensor and the flat gradient there).
    phi0, slope0 : float
        phi(0) and phi'(0) < 0.
    trial : float
        The first trial step alpha_1 > 0.
    tolerance : float
        Stop zooming once the bracket is narrower than this.
    resolution : float
        Half the spacing of the loss's floating-point numbers at phi(0): sufficient decrease
        asks phi(alpha) <= phi(0) + c1 alpha phi'(0) + resolution, i.e. it is judged at the
        loss's own precision. A decrease smaller than the format can hold is not asked for
        (phi(alpha) = phi(0) passes it then): near a float32 optimum, c1 alpha phi'(0) falls
        below the rounding of phi, and the exact test would reject every step.

    Returns
    -------
    (alpha, payloads)
        payloads: those of phi at alpha, or None for alpha = 0 (nothing evaluated there).
    """
    evaluations = 0
    # Algorithm 3.5: extend the step until an interval is known to hold a strong-Wolfe point.
    previous = (0.0, phi0, slope0, None)  # (alpha, phi, phi', payload)
    alpha = trial
    while True:
        value, slope, *payload = phi(alpha)
        evaluations += 1
        current = (alpha, value, slope, payload)
        too_long = not (math.isfinite(value) and math.isfinite(slope)) or value > phi0 + c1 * alpha * slope0 + resolution
        if too_long or (evaluations > 1 and value >= previous[1]):
            return _zoom(phi, previous, current, phi0, slope0, c1, c2, max_evaluations - evaluations, tolerance, resolution)
        if abs(slope) <= -c2 * slope0:
            return alpha, tuple(payload)  # type: ignore[return-value]
        if slope >= 0:
            return _zoom(phi, current, previous, phi0, slope0, c1, c2, max_evaluations - evaluations, tolerance, resolution)
        if evaluations >= max_evaluations:
            return alpha, tuple(payload)  # still descending: the furthest point, sufficient decrease holds
        # alpha_{i+1} in (alpha_i, alpha_max): the cubic's minimiser, kept between 1.1 and 4
        # widths of the last interval beyond alpha_i (More and Thuente's extrapolation bounds)
        width = alpha - previous[0]
        step = _cubic_minimiser(previous[:3], current[:3])
        low, high = alpha + 1.1 * width, alpha + 4.0 * width
        previous, alpha = current, high if step is None else min(max(step, low), high)


def _zoom(
    phi: Callable[[float], tuple[float, float, torch.Tensor, torch.Tensor]],
    low: tuple,
    high: tuple,
    phi0: float,
    slope0: float,
    c1: float,
    c2: float,
    budget: int,
    tolerance: float,
    resolution: float = 0.0,
) -> tuple[float, tuple[torch.Tensor, torch.Tensor] | None]:
    """Algorithm 3.6: shrink [alpha_lo, alpha_hi] (either order) to a strong-Wolfe point.

    ``low`` satisfies sufficient decrease with the lowest phi so far and its phi' points into
    the interval, towards ``high``; both are (alpha, phi, phi', payload)."""
    while budget > 0 and abs(high[0] - low[0]) > tolerance:
        a, b = sorted((low[0], high[0]))
        width = b - a
        step = _cubic_minimiser(low[:3], high[:3]) if math.isfinite(high[1]) else None
        # safeguard: an interpolant outside the middle 80% of the interval (or none) bisects
        if step is None or not a + 0.1 * width <= step <= b - 0.1 * width:
            step = 0.5 * (a + b)
        value, slope, *payload = phi(step)
        budget -= 1
        trial = (step, value, slope, payload)
        too_long = not (math.isfinite(value) and math.isfinite(slope)) or value > phi0 + c1 * step * slope0 + resolution
        if too_long or value >= low[1]:
            high = trial
            continue
        if abs(slope) <= -c2 * slope0:
            return step, tuple(payload)  # type: ignore[return-value]
        if slope * (high[0] - low[0]) >= 0:
            high = low
        low = trial
    return low[0], None if low[3] is None else tuple(low[3])


def _cubic_minimiser(first: tuple[float, float, float], second: tuple[float, float, float]) -> float | None:
    """The minimiser of the cubic through two points with their slopes, (alpha, phi, phi') each
    (Nocedal and Wright, eq. 3.59); None if it has none or it is not finite."""
    a0, f0, g0 = first
    a1, f1, g1 = second
    if a0 == a1:
        return None
    d1 = g0 + g1 - 3.0 * (f0 - f1) / (a0 - a1)
    radicand = d1 * d1 - g0 * g1
    if not math.isfinite(radicand) or radicand < 0:
        return None
    d2 = math.copysign(math.sqrt(radicand), a1 - a0)
    denominator = g1 - g0 + 2.0 * d2
    if denominator == 0:
        return None
    step = a1 - (a1 - a0) * (g1 + d2 - d1) / denominator
    return step if math.isfinite(step) else None
