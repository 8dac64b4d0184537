r"""A class per row, over rows of mixed columns: the exact paths of a class-conditional model.

A class-conditional model draws each row's class y_i from its weights, then each block of the
row's columns from that block's family given the class (:mod:`zoo.models.columns`). Given the
parameters everything a fit asks of it is exact: the distribution of a row given its class (what
the model's ``forward`` observes), the table log p(x_i, y_i = c) (one family table per block,
missing entries integrated out), the density of partially labelled rows and
the class posterior (:mod:`zoo.ops.labels`), MAP and sampled classes row by row, and imputed
entries. :class:`ClassConditionalPaths` gives them to a model (:class:`~zoo.models.NaiveBayes`)
that states its own story and these:

=====================================  =========================================================
``num_classes``                        C
``total_count``                        trials per generated row of a multinomial block, or None
``_check_ready()``                     the model's :class:`~zoo.models.columns.ColumnLayout`, or
                                       a ValueError while it is not set up for data
``_family_params(block, params)``      the sites of one block of columns as its family's
                                       parameters
=====================================  =========================================================

Draws hold the class weights as ``weights`` (S, C). :func:`independent_discrete` serves any model
whose discrete latent is one value per row, rows independent given the parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.ops.indexing import Vindex

from zoo.datasets.dataset import Dataset
from zoo.models.base import Model
from zoo.models.columns import Block, ColumnLayout, MixedColumns, select_columns
from zoo.ops.chunks import over_draw_chunks
from zoo.ops.labels import labeled_log_likelihood, labeled_posterior

__all__ = ["ClassConditionalPaths", "independent_discrete"]


def independent_discrete(
    model: Model, params: dict[str, torch.Tensor], data: Dataset, temperature: int = 0
) -> dict[str, torch.Tensor]:
    """:meth:`zoo.models.Model.discrete` of a model whose enumerated sites are one value per row, the rows
    independent given the parameters (a mixture's assignment, a classifier's class).

    The jointly most probable values are then each row's most probable (temperature 0), and a
    joint draw is a draw per row (temperature 1), from ``model.marginals`` at the one parameter
    value ``params`` (site shapes): what ``infer_discrete`` on ``forward`` gives, faster.

    Returns
    -------
    dict
        {site: LongTensor (num_data,)}.
    """
    marginals = model.marginals({name: value[None] for name, value in params.items()}, data)
    if temperature == 0:
        return {site: probs[0].argmax(-1) for site, probs in marginals.items()}
    return {site: torch.multinomial(probs[0], 1)[:, 0] for site, probs in marginals.items()}


class ClassConditionalPaths:
    """The exact paths of a model with one class per row over rows of mixed columns (see the
    module docstring for what the model states)."""

    num_classes: int
    total_count: int | None
    _check_ready: Callable[[], ColumnLayout]
    _family_params: Callable[[Block, dict[str, torch.Tensor]], dict[str, torch.Tensor]]

    @staticmethod
    def _gather(value: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """value[..., classes, :] for class parameters (*B, C, L) in ``forward``, whose plates are
        the data's (dim -1) inside the classes' (dim -2): B is () or one posterior-draw dim, which
        sits at dim -(max_plate_nesting + 1) = -3 of ``classes``."""
        if value.dim() > 2:
            value = value.reshape((-1, 1, 1) + value.shape[-2:])
        return Vindex(value)[..., classes, :]

    def row_distribution(self, params: dict[str, torch.Tensor]) -> MixedColumns:
        """The distribution of a row given its class's sites ``params`` (gathered: batch *B): the
        product over blocks of their families' distributions, event (D,)."""
        layout = self._check_ready()
        blocks = layout.blocks(self.total_count or 1)
        parts = [(block, block.family.distribution(self._family_params(block, params), validate_args=False)) for block in blocks]
        return MixedColumns(parts, layout.num_features)

    def class_log_joint(
        self, draws: dict[str, torch.Tensor], x: torch.Tensor, observed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(x_i, y_i = c | theta_s) for flat draws: shape (S, N, C).

        Each block's term is its family's log-density table (:mod:`zoo.models.families`), the
        density ``forward`` observes; draws are taken in chunks that bound the broadcast
        Gaussian table (S, N, C, D_g). With ``observed`` (N, D) (``Dataset(missing="mask")``)
        the missing entries are integrated out: features are independent given the class, so
        their terms are dropped (a multinomial block's counts are not independent: refused).
        """
        layout = self._check_ready()
        blocks = layout.blocks(self.total_count or 1)

        def table(chunk: dict[str, torch.Tensor]) -> torch.Tensor:
            # normalised as Categorical normalises them: values and gradients equal the
            # enumerated definition's also off the simplex
            total = chunk["weights"].log().log_softmax(-1)[:, None, :]  # (S', 1, C)
            for block in blocks:
                columns = select_columns(x, block.columns)
                seen = None if observed is None else select_columns(observed, block.columns)
                total = total + block.family.log_density(self._family_params(block, chunk), columns, seen)
            return total.expand(total.shape[0], x.shape[0], self.num_classes)

        return over_draw_chunks(table, draws, elements_per_draw=x.shape[0] * self.num_classes * max(len(layout.gaussian), 1))

    def log_likelihood(self, draws: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """log p(x_i, y_i | theta_s) for labeled rows, log p(x_i | theta_s) for the rest: (S, N)."""
        return labeled_log_likelihood(self.class_log_joint(draws, data.x, data.observed), data.y)

    def marginals(self, draws: dict[str, torch.Tensor], data: Dataset) -> dict[str, torch.Tensor]:
        """p(y_i = c | x_i, theta_s) (one-hot where y_i is given): {"y": (S, N, C)}."""
        return {"y": labeled_posterior(self.class_log_joint(draws, data.x, data.observed).softmax(-1), data.y)}

    def discrete(
        self, params: dict[str, torch.Tensor], data: Dataset, temperature: int = 0
    ) -> dict[str, torch.Tensor]:
        """MAP (temperature 0) or sampled (1) classes given one parameter value, {"y": (N,)}, row
        by row (:func:`independent_discrete`); labeled rows keep their label."""
        return independent_discrete(self, params, data, temperature)

    def impute(self, params: dict[str, torch.Tensor], data: Dataset) -> torch.Tensor:
        """One draw of the missing entries of ``data`` from p(x_missing | x_observed, y, theta)
        given one parameter value (site shapes): each row's class drawn from p(y | x_observed)
        (kept where labeled), then each missing entry from its column's family given the class.
        Returns x's shape (N, D)."""
        layout = self._check_ready()
        classes = self.discrete(params, data, temperature=1)["y"]
        observed = data.observed if data.observed is not None else torch.ones_like(data.x, dtype=torch.bool)
        filled = data.x.clone()
        for block in layout.blocks(self.total_count or 1):
            columns = list(block.columns)
            filled[:, columns] = block.family.fill(
                self._family_params(block, params), classes, data.x[:, columns], observed[:, columns]
            )
        return filled
