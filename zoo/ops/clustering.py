"""k-means++ seeding and Lloyd iterations: where mixtures and HMMs start their fits."""

from __future__ import annotations

import torch

__all__ = ["kmeans_plus_plus"]


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
