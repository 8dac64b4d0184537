"""k-means++ seeding and Lloyd iterations, where mixtures and HMMs start their fits; the naming
of clusters after known labels; and the reordering of components by which their draws are
relabelled."""

from __future__ import annotations

import itertools

import torch

__all__ = ["kmeans_plus_plus", "kmeans_labels", "name_clusters", "reorder_components"]

#: Up to this many clusters :func:`name_clusters` tries every permutation (7! = 5040 of them).
EXHAUSTIVE_NAMING = 7


def kmeans_plus_plus(
    x: torch.Tensor, num_components: int, seed: int = 0, num_iterations: int = 10
) -> torch.Tensor:
    """k-means++ seeding followed by a few Lloyd iterations.

    Parameters
    ----------
    x : Tensor, shape (N, D)
        The points (no batch dims).
    num_components : int
        K, the number of centres (1 <= K <= N).
    seed : int
        Seed of a private generator (the global RNG is not touched).
    num_iterations : int
        Lloyd iterations after seeding.

    Returns
    -------
    Tensor, shape (K, D)
        Cluster centres, sorted by their first coordinate. A centre whose cluster empties
        during the Lloyd iterations stays where it was.
    """
    generator = torch.Generator().manual_seed(int(seed))
    num_data = x.shape[0]
    first = torch.randint(num_data, (1,), generator=generator)
    centres = [x[first[0]]]
    distance = ((x - centres[0]) ** 2).sum(-1)
    for _ in range(1, num_components):
        total = distance.sum()
        probs = distance / total if total > 0 else torch.full_like(distance, 1.0 / num_data)
        index = torch.multinomial(probs, 1, generator=generator)[0]
        centres.append(x[index])
        distance = torch.minimum(distance, ((x - x[index]) ** 2).sum(-1))
    centre = torch.stack(centres)
    for _ in range(num_iterations):
        label = torch.cdist(x, centre).argmin(-1)
        counts = torch.bincount(label, minlength=num_components).to(x.dtype)
        sums = torch.zeros_like(centre).index_add_(0, label, x)
        moved = sums / counts.clamp(min=1).unsqueeze(-1)
        centre = torch.where(counts.unsqueeze(-1) > 0, moved, centre)
    return centre[centre[:, 0].argsort()]


def kmeans_labels(
    x: torch.Tensor, num_components: int, seed: int = 0, known: torch.Tensor | None = None
) -> torch.Tensor:
    """Each point's cluster from :func:`kmeans_plus_plus` (the nearest centre); with labels known
    for some points, clusters named after them (:func:`name_clusters`) and the known points
    keeping their own.

    Parameters
    ----------
    x : Tensor, shape (N, D)
        The points (no batch dims).
    num_components : int
        K, the number of clusters (1 <= K <= N).
    seed : int
        Seed of k-means++'s private generator.
    known : LongTensor, shape (N,), optional
        Each point's label in 0..K-1, or -1 where unknown.

    Returns
    -------
    LongTensor, shape (N,)
        Labels in 0..K-1.
    """
    centres = kmeans_plus_plus(x, num_components, seed=seed)
    labels = torch.cdist(x, centres).argmin(-1)
    if known is None:
        return labels
    return torch.where(known >= 0, known, name_clusters(centres, x, known)[labels])


def name_clusters(centres: torch.Tensor, features: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The label each cluster stands for, from the points whose label is known.

    Cluster c is named after the label whose known points' mean feature lies nearest its centre,
    the naming (a permutation) chosen to make the total distance least: over every permutation
    for K <= :data:`EXHAUSTIVE_NAMING`, else greedily, nearest pair first. A label with no known
    point costs nothing wherever it goes. Clustering overlapping groups splits a group's points
    across clusters, so the clusters' centres, not their shares of known points, identify them.

    Parameters
    ----------
    centres : Tensor, shape (K, F)
        The clusters' centres.
    features : Tensor, shape (M, F)
        The points that were clustered.
    known : LongTensor, shape (M,)
        Each point's label in 0..K-1, or -1 where unknown.

    Returns
    -------
    LongTensor, shape (K,)
        A permutation of 0..K-1: cluster c stands for label ``names[c]`` (so ``names[cluster]``
        renames every point's cluster).
    """
    num_labels = centres.shape[0]
    labelled = known >= 0
    ones = torch.ones_like(known[labelled], dtype=features.dtype)
    counts = torch.zeros(num_labels, dtype=features.dtype).index_add_(0, known[labelled], ones)
    means = torch.zeros_like(centres).index_add_(0, known[labelled], features[labelled]) / counts.clamp(min=1).unsqueeze(-1)
    cost = torch.cdist(centres, means) * (counts > 0)  # [cluster, label]
    if num_labels <= EXHAUSTIVE_NAMING:
        orders = torch.tensor(list(itertools.permutations(range(num_labels))))  # (K!, K): cluster c -> orders[:, c]
        return orders[int(cost[torch.arange(num_labels), orders].sum(-1).argmin())]
    names = torch.full((num_labels,), -1, dtype=torch.long)
    taken: set[int] = set()
    for flat in cost.flatten().argsort().tolist():
        cluster, label = divmod(flat, num_labels)
        if names[cluster] < 0 and label not in taken:
            names[cluster] = label
            taken.add(label)
    return names


def reorder_components(value: torch.Tensor, order: torch.Tensor, dims: int = 1) -> torch.Tensor:
    """Components of ``value`` put in ``order``: value[..., order[k], ...] at component k.

    Parameters
    ----------
    value : Tensor, shape (*B, K, ...) (or (*B, K, K, ...) with ``dims=2``)
        Per-component values (a site of posterior draws), its component dim right of ``*B``.
    order : LongTensor, shape (*B, K)
        A permutation of 0..K-1 per batch element (e.g. ``argsort`` of a sort key).
    dims : int
        How many consecutive dims index components (2 for a transition matrix, whose rows and
        columns are both permuted).

    Returns
    -------
    Tensor, the shape of ``value``
    """
    axis = order.dim() - 1
    for offset in range(dims):
        shape = order.shape[:-1] + (1,) * offset + order.shape[-1:]
        index = order.reshape(shape + (1,) * (value.dim() - len(shape))).expand_as(value)
        value = value.gather(axis + offset, index)
    return value
