r"""A Markov chain of K hidden states over one emission family: its exact paths, written once.

Given the parameters, everything a fit asks of a chain-structured latent is exact and comes from
the algorithms of :mod:`zoo.ops.markov` on the chain's log tensors: the collapsed likelihood
(forward algorithm), the state marginals (forward-backward), the MAP path (Viterbi), a posterior
path (forward-filtering backward-sampling) and, from that, imputed missing entries. A model whose
discrete latent is such a chain (:class:`~zoo.models.HiddenMarkovModel`) inherits
:class:`MarkovChainPaths` and states its own story; the paths need of it:

======================  ======================================================================
``num_states``          K
``family``              the emission :class:`~zoo.models.family.Family`, whose log-density table
                        (S, N, T, K) is the emission term of every path
``emission_sites``      the family's sites, each (K, ...) in a draw
``_check_ready()``      raises ValueError while the model is not set up for data
======================  ======================================================================

Draws hold ``initial`` (S, K) and ``transition`` (S, K, K) where K >= 2 (a chain of one state
has none: it starts there and stays). Data are padded sequences (N, T, D) with ``lengths``;
``states`` (N, T), where given, clamps the known steps (:func:`zoo.ops.markov.clamp_states`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from zoo.datasets.dataset import Dataset
from zoo.models.family import Family
from zoo.ops.baum_welch import sequence_mask
from zoo.ops.chunks import over_draw_chunks
from zoo.ops.clustering import reorder_components
from zoo.ops.markov import backward_sample, clamp_states, forward_backward, forward_log_likelihood, safe_log, viterbi

__all__ = ["MarkovChainPaths"]


class MarkovChainPaths:
    """The exact paths of a model whose latent is a Markov chain over an emission family (see
    the module docstring for what the model states)."""

    num_states: int
    family: Family
    emission_sites: tuple[str, ...]
    _check_ready: Callable[[], None]

    @staticmethod
    def _lengths(data: Dataset) -> torch.Tensor:
        if data.lengths is not None:
            return data.lengths
        return torch.full((len(data),), int(data.x.shape[1]), dtype=torch.long)

    @classmethod
    def _mask(cls, data: Dataset) -> torch.Tensor:
        """True at real steps: (N, T)."""
        return sequence_mask(cls._lengths(data), data.x.shape[1])

    # ------------------------------------------------------------------ the chain's tensors
    def log_emission(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, observed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(x_{n,t} | state k, theta_s), (S, N, T, K), of sites (S, K, ...), padded x (N, T, D)
        and its ``observed`` entries: the family's table (:meth:`zoo.models.family.Family.log_density`)."""
        return self.family.log_density(params, x, observed)

    def _messages(
        self, draws: dict[str, torch.Tensor], data: Dataset
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The chain as :mod:`zoo.ops.markov` takes it, from draws with a leading dim S: log initial
        (S, K) and transition (S, K, K) normalised as ``Categorical`` normalises them (values *and*
        gradients equal the enumerated model's), log emission (S, N, T, K), known states clamped."""
        self._check_ready()
        reference = draws[self.emission_sites[0]]
        num_draws, dtype = reference.shape[0], reference.dtype
        initial = draws["initial"] if "initial" in draws else torch.ones(num_draws, 1, dtype=dtype)
        transition = draws["transition"] if "transition" in draws else torch.ones(num_draws, 1, 1, dtype=dtype)
        if self.num_states > 1 and initial.dim() != 2:
            raise ValueError(f"draws['initial'] must have shape (num_draws, {self.num_states}), got {tuple(initial.shape)}")
        mask = self._mask(data)
        # padding replaced by a value inside every emission's support
        x = torch.where(mask.unsqueeze(-1), data.x, torch.zeros((), dtype=data.x.dtype))  # (N, T, D)
        log_emission = self.log_emission(draws, x, data.observed)
        if data.states is not None:
            log_emission = log_emission + clamp_states(data.states, self.num_states, log_emission.dtype)
        return safe_log(initial).log_softmax(-1), safe_log(transition).log_softmax(-1), log_emission, mask

    # ------------------------------------------------------------------ the paths
    def _over_draws(self, function: Any, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """``function(*messages)`` a chunk of draws at a time; the largest temporary of the
        forward pass per draw is N T K max(K, D)."""
        num_sequences, length, num_features = data.x.shape
        elements = num_sequences * length * self.num_states * max(self.num_states, num_features)
        return over_draw_chunks(lambda chunk: function(*self._messages(chunk, data)), draws, elements)

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log p(x_n | theta_s) by the forward algorithm: (S, num_sequences)."""
        return self._over_draws(forward_log_likelihood, draws, data)

    def marginals(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, torch.Tensor]:
        """p(state_t = k | x_n, theta_s) by forward-backward: {"state_t": (S, N, K)} for each t."""
        probs = self._over_draws(forward_backward, draws, data)
        return {f"state_{t}": probs[:, :, t] for t in range(probs.shape[2])}

    def discrete(self, params: dict[str, torch.Tensor], data: Dataset, temperature: int = 0) -> dict[str, torch.Tensor]:
        """Viterbi path (temperature 0) or a forward-filtering backward-sampling draw (1):
        {"state_t": LongTensor (N,)} for each t."""
        messages = self._messages({name: value.unsqueeze(0) for name, value in params.items()}, data)
        paths = (viterbi if temperature == 0 else backward_sample)(*messages)[0]
        return {f"state_{t}": paths[:, t] for t in range(paths.shape[1])}

    def impute(self, params: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """One draw of the missing entries of ``data`` from p(x_missing | x_observed, theta) given
        one parameter value (site shapes): a path drawn by forward-filtering backward-sampling
        (respecting known states), then each step's missing entries from its state's emission
        given its observed ones. Returns x's shape (N, T, D); padded steps as they are."""
        path = self.collect_discrete(self.discrete(params, data, temperature=1))  # (N, T)
        observed = data.observed if data.observed is not None else torch.ones_like(data.x, dtype=torch.bool)
        observed = observed | ~self._mask(data).unsqueeze(-1)
        emission = {name: params[name] for name in self.emission_sites}
        return self.family.fill(emission, path, data.x, observed)

    def collect_discrete(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """The per-step values as one tensor, time second: (N, T) paths or (N, T, K) probabilities."""
        steps = sorted((int(name.split("_")[1]), value) for name, value in values.items() if name.startswith("state_"))
        return torch.stack([value for _, value in steps], 1)

    def relabel(self, draws: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sort the states of every draw (chain, draw, K, ...) by their emission key; permute
        ``initial``, the rows and columns of ``transition`` and the emission sites alike."""
        if self.num_states == 1 or self.emission_sites[0] not in draws:
            return draws
        order = self.family.order_key(draws).argsort(-1)  # (c, d, K)
        sites = [name for name in ("initial", "transition") + self.emission_sites if name in draws]
        return draws | {name: reorder_components(draws[name], order, dims=2 if name == "transition" else 1) for name in sites}
