"""Partially labelled rows: the density and the class posterior of rows some of whose classes are
known, from the table of log p(x_i, y_i = c).

A class-conditional model (Naive Bayes, a semi-supervised classifier) scores row i under each
class c, ``joint[..., i, c] = log p(x_i, y_i = c | theta)``. Where the row's label is known
(``labels[i] >= 0``) what was observed is (x_i, y_i); where it is not (``-1``), only x_i, its
class summed out.
"""

from __future__ import annotations

import torch

__all__ = ["labeled_log_likelihood", "labeled_posterior"]


def labeled_log_likelihood(joint: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """log p(x_i, y_i) for labeled rows, log p(x_i) = logsumexp_c joint for the others.

    Parameters
    ----------
    joint : Tensor, shape (*B, N, C)
        log p(x_i, y_i = c) for each row and class.
    labels : LongTensor, shape (N,), optional
        Each row's class in 0..C-1, or -1 where unknown; None: no row is labeled.

    Returns
    -------
    Tensor, shape (*B, N)
    """
    summed = joint.logsumexp(-1)
    if labels is None:
        return summed
    picked = joint.gather(-1, labels.clamp(min=0).expand(joint.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return torch.where(labels >= 0, picked, summed)


def labeled_posterior(probs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """p(y_i | everything observed of row i): ``probs`` (p(y_i | x_i)) where the label is unknown,
    the label itself (a one-hot row) where it is known.

    Parameters
    ----------
    probs : Tensor, shape (*B, N, C)
        p(y_i = c | x_i) for each row and class.
    labels : LongTensor, shape (N,), optional
        Each row's class in 0..C-1, or -1 where unknown; None: no row is labeled.

    Returns
    -------
    Tensor, shape (*B, N, C)
    """
    if labels is None:
        return probs
    one_hot = torch.nn.functional.one_hot(labels.clamp(min=0), probs.shape[-1]).to(probs.dtype)
    return torch.where((labels >= 0).unsqueeze(-1), one_hot, probs)
