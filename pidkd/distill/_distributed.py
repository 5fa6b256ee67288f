"""Several processes for :func:`~pidkd.distill.fit` (``torchrun --nproc_per_node=N``): the few collectives it needs.

:func:`fit` uses the process group that is already initialised, or initialises one when the
environment says it runs under ``torchrun`` with ``WORLD_SIZE > 1`` (NCCL when it trains on CUDA,
by default on ``cuda:LOCAL_RANK``, else gloo), and destroys it on return only if it created it.
Without either it runs as one process, and nothing here is called.

Gradients are synchronised by hand, not by wrapping the models in
``torch.nn.parallel.DistributedDataParallel``: RID and TED change which parameters train from
one phase to the next (the filters in phase 1, the student in phase 2), which a DDP wrapper does
not support after it is built, and the method's filters are called inside
:meth:`~pidkd.distill.methods.DistillMethod.terms`, never through a wrapper's ``forward``. So, as
DDP does, every step averages the gradients of the parameters that the phase's optimizer updates
with one coalesced all-reduce (:func:`average_gradients_`) between ``backward`` and gradient
clipping; every rank runs the same code, so the same parameters have gradients on every rank.
At the start the parameters and buffers are broadcast from rank 0 (:func:`broadcast_`) so all ranks
start identical, and at the end of every epoch the buffers (BatchNorm running statistics, which
each rank accumulates on its own shard) are broadcast from rank 0 again before evaluation and
checkpointing, as DDP's ``broadcast_buffers`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Dist", "average_gradients_", "broadcast_", "checksum", "local_rank", "start", "stop", "world_from_env"]


#: The number of process groups :func:`start` has created in this process (each has its own store prefix;
#: every rank calls fit() equally often, so the prefixes agree).
_created = 0


@dataclass(frozen=True)
class Dist:
    """The process group of one :func:`fit` call: this process's ``rank`` among ``world`` processes.

    ``world == 1`` means a single process (no collective is ever called); ``created`` says whether
    :func:`start` initialised the group (and :func:`stop` must destroy it).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    created: bool = False

    @property
    def active(self) -> bool:
        """Whether there are several processes to synchronise."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (which writes checkpoints, shows progress and runs probes)."""
        return self.rank == 0

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` of every rank stacked along a new first axis (rank order)."""
        out = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(out, tensor)
        return torch.stack(out)

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over all ranks (in place; returned for chaining)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_object(self, obj: Any, device: torch.device) -> Any:
        """Rank 0's ``obj`` on every rank (pickled, sent through ``device``; for small values such as history rows)."""
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0, device=device if device.type != "cpu" else None)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        dist.barrier()


def world_from_env() -> int:
    """The number of processes :func:`start` would synchronise: the initialised group's, else torchrun's
    ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``; 0 without it)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def start(device: torch.device) -> Dist:
    """Join the initialised process group, or initialise one under torchrun (``WORLD_SIZE > 1``).

    A group :func:`start` creates uses NCCL when ``device`` (the training device) is a CUDA device,
    which becomes the current one, and gloo otherwise. Returns ``Dist()`` (rank 0 of 1) when there is
    neither a group nor ``WORLD_SIZE > 1``.
    """
    if dist.is_available() and dist.is_initialized():
        return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank())
    if world_from_env() <= 1:
        return Dist()
    if not dist.is_available():
        raise RuntimeError(
            f"fit() runs under torchrun (WORLD_SIZE={os.environ['WORLD_SIZE']}), but this PyTorch build has no "
            "torch.distributed. Install a PyTorch build with distributed support, or run one process."
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # A store prefix of its own for every group this process creates: destroying a group resets torch's
    # group names, so a second group under the same prefix could read the first one's stale addresses.
    global _created
    store, rank, world = next(dist.rendezvous("env://"))
    store = dist.PrefixStore(f"pidkd-fit-{_created}", store)
    _created += 1
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank(), created=True)


def stop(d: Dist) -> None:
    """Destroy the process group if :func:`start` created it."""
    if d.created and dist.is_initialized():
        dist.destroy_process_group()


def _groups(tensors: Iterable[torch.Tensor]) -> dict[tuple[torch.dtype, torch.device], list[torch.Tensor]]:
    """``tensors`` grouped by (dtype, device), in their order, so that each group flattens into one buffer."""
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    return groups


@torch.no_grad()
def broadcast_(tensors: Iterable[torch.Tensor]) -> None:
    """Overwrite ``tensors`` (parameters, buffers) with rank 0's, one collective per dtype."""
    for group in _groups(tensors).values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        dist.broadcast(flat, src=0)
        for t, new in zip(group, torch.split(flat, [t.numel() for t in group])):
            t.copy_(new.view_as(t))


@torch.no_grad()
def average_gradients_(params: Iterable[torch.Tensor], world: int) -> None:
    """Replace the gradients of ``params`` by their mean over the ranks (one all-reduce per dtype).

    Parameters without a gradient are skipped; every rank runs the same step, so they are the same
    parameters on every rank.
    """
    grads = [p.grad for p in params if p.grad is not None]
    for group in _groups(grads).values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(world)
        for g, new in zip(group, torch.split(flat, [g.numel() for g in group])):
            g.copy_(new.view_as(g))


def checksum(tensors: Iterable[torch.Tensor], device: torch.device) -> torch.Tensor:
    """A float64 fingerprint of ``tensors`` (sum and sum of squares of each), to compare them across ranks."""
    parts = [torch.stack([t.detach().double().sum(), t.detach().double().square().sum()]) for t in tensors]
    return torch.cat(parts).to(device) if parts else torch.zeros(2, dtype=torch.float64, device=device)
