"""Data-parallel training across the processes of a ``torch.distributed`` job (shared by SVI and
adversarial training).

The arithmetic is DistributedDataParallel's: every process holds the same parameters, takes its
shard of each global minibatch, computes its gradients, and one all-reduce per update averages
them, so every process applies the same update. The runners call the three helpers here:

* :func:`join` once, before training: (rank, world size), joining the job if asked to (gloo on
  CPU, nccl on GPUs; ``torchrun`` sets the rendezvous environment);
* :func:`shard` on each global minibatch's indices (or noise): this process's rows;
* :func:`average_gradients` after each backward pass: gradients and reported values averaged
  over the processes, in one bucket.
"""

from __future__ import annotations

import torch

__all__ = ["join", "shard", "average_gradients"]


def join(enabled: bool, device: str | torch.device = "cpu") -> tuple[int, int]:
    """(rank, world size) of this process; joins the torch.distributed job if ``enabled``.

    A process group already initialised (by the caller, or a test) is used as it is.
    """
    if not enabled:
        return 0, 1
    import torch.distributed as distributed

    if not distributed.is_available():
        raise ValueError("distributed=True, but this torch has no torch.distributed")
    if not distributed.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        distributed.init_process_group(backend=backend)
    return distributed.get_rank(), distributed.get_world_size()


def shard(rows: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This process's rows of a global minibatch: every ``world``-th row from ``rank`` (sizes
    differ by at most one row across processes)."""
    if world == 1:
        return rows
    return rows[rank::world]


def average_gradients(parameters: list[torch.Tensor], values: torch.Tensor, world: int) -> torch.Tensor:
    """All-reduce the gradients of ``parameters`` (and ``values``) to their mean over processes,
    in one bucket; returns the averaged ``values`` (same shape).

    ``values`` are what the runner reports (losses, scores): averaging them with the gradients
    costs no extra round trip. A parameter without a gradient counts as a zero gradient, and
    gets the average. Each process's loss must be its shard's estimate of the global batch's
    loss, weighted so that the mean over processes is the global one: then the mean of the
    gradients is the global batch's gradient.
    """
    import torch.distributed as distributed

    grads = [
        parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        for parameter in parameters
    ]
    dtype = grads[0].dtype if grads else values.dtype
    flat = torch.cat([grad.reshape(-1) for grad in grads] + [values.detach().reshape(-1).to(dtype)])
    distributed.all_reduce(flat)
    flat /= world
    offset = 0
    for parameter in parameters:
        size = parameter.numel()
        parameter.grad = flat[offset : offset + size].view_as(parameter).clone()
        offset += size
    return flat[offset:].reshape(values.shape)
